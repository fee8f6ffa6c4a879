"""course_lib.gradient_noise: per-example gradients against a loop of autograd, the mini-batch
error against direct computation and against σ²/B · (N − B)/(N − 1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.gradient_noise import (
    expected_minibatch_error,
    minibatch_gradient_error,
    noise_scale,
    per_example_gradients,
)
from course_lib.models import make_mlp


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = make_mlp(in_features=5, hidden=(7,), out_features=3, activation="tanh").double()
    x = torch.randn(40, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    return model, x, y


def test_rows_are_the_per_example_gradients(setup):
    model, x, y = setup
    G = per_example_gradients(model, F.cross_entropy, x, y)
    P = sum(p.numel() for p in model.parameters())
    assert G.shape == (40, P)
    for n in (0, 17, 39):
        model.zero_grad()
        F.cross_entropy(model(x[n : n + 1]), y[n : n + 1]).backward()
        torch.testing.assert_close(G[n], torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    torch.testing.assert_close(G.mean(0), torch.cat([p.grad.flatten() for p in model.parameters()]))


def test_parameters_are_left_alone(setup):
    model, x, y = setup
    before = [p.detach().clone() for p in model.parameters()]
    per_example_gradients(model, F.cross_entropy, x, y)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_minibatch_error_matches_direct_batches_and_theory(setup):
    model, x, y = setup
    G = per_example_gradients(model, F.cross_entropy, x, y)
    sigma2, signal = noise_scale(G)
    assert sigma2 > 0 and signal > 0
    sizes = [1, 4, 20, 40]
    measured = minibatch_gradient_error(G, sizes, n_batches=4000, generator=torch.Generator().manual_seed(1))
    theory = expected_minibatch_error(sigma2, len(G), sizes)
    assert measured[-1] == pytest.approx(0.0, abs=1e-12), "the whole data set has no error"
    for m, t in zip(measured[:-1], theory[:-1], strict=True):
        assert m == pytest.approx(t, rel=0.1)
    # the Gram-matrix shortcut equals forming the batches
    rg = torch.Generator().manual_seed(2)
    idx = torch.rand(50, len(G), generator=rg).argsort(dim=1)[:, :4]
    direct = (G[idx].mean(1) - G.mean(0)).pow(2).sum(1).mean().item()
    short = minibatch_gradient_error(G, [4], n_batches=50, generator=torch.Generator().manual_seed(2))[0]
    assert short == pytest.approx(direct, rel=1e-9)


def test_bad_arguments_raise(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="rows"):
        per_example_gradients(model, F.cross_entropy, x, y[:3])
    with pytest.raises(ValueError, match="batch sizes"):
        minibatch_gradient_error(torch.zeros(5, 2), [0, 6])
