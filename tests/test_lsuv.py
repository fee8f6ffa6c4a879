"""course_lib.lsuv: every layer's output variance within tolerance of 1, measured independently."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import course_lib as cl
from course_lib.lsuv import lsuv_


def _outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    outs, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(lambda mod, i, o, n=name: outs.__setitem__(n, o.detach())))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return outs


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_every_layer_has_unit_variance_after_lsuv(activation):
    torch.manual_seed(0)
    model = cl.make_mlp(hidden=(32,) * 8, activation=activation, init="normal", init_std=0.01)
    x = torch.randn(256, 64)
    steps = lsuv_(model, x, tol=0.02, generator=torch.Generator().manual_seed(0))
    assert [s.name for s in steps] == [f"hidden{k}.linear" for k in range(1, 9)] + ["out"]
    outs = _outputs(model, x)
    for s in steps:
        assert abs(outs[s.name].var().item() - 1) < 0.02, s
        assert s.std_after == pytest.approx(outs[s.name].std().item(), rel=1e-5)
    assert "rescalings" in repr(steps[0])


def test_weights_are_rescaled_orthonormal_matrices_and_biases_untouched():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    biases = [m.bias.detach().clone() for m in (model[0], model[2])]
    lsuv_(model, torch.randn(128, 10), generator=torch.Generator().manual_seed(2))
    for m, b in zip((model[0], model[2]), biases, strict=True):
        w = m.weight.detach().double()
        small = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T  # c² I
        c2 = small.diagonal().mean()
        torch.testing.assert_close(
            small / c2, torch.eye(small.shape[0], dtype=torch.float64), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(m.bias.detach(), b)


def test_without_orthogonal_only_scales_keep_the_direction():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Tanh(), nn.Linear(8, 8, bias=False))
    before = [m.weight.detach().clone() for m in (model[0], model[2])]
    lsuv_(model, torch.randn(64, 8), orthogonal=False)
    for m, w0 in zip((model[0], model[2]), before, strict=True):
        ratio = m.weight.detach() / w0
        torch.testing.assert_close(ratio, torch.full_like(ratio, ratio.mean().item()), rtol=1e-5, atol=0)


def test_generator_makes_it_repeat_and_arguments_are_checked():
    x = torch.randn(64, 64)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = cl.make_mlp(hidden=(16, 16))
        torch.manual_seed(123 + len(weights))  # the global RNG differs; the generator decides
        lsuv_(model, x, generator=torch.Generator().manual_seed(5))
        weights.append(model.hidden1.linear.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1])
    with pytest.raises(ValueError):
        lsuv_(model, x, tol=0)
    with pytest.raises(ValueError, match="no nn.Linear"):
        lsuv_(nn.ReLU(), x)
    model.train()
    lsuv_(model, x)
    assert model.training
