"""course_lib.init_stats: the measured stds against autograd, nn.Linear hooks, and the theory of chapter 5."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.init_stats import (
    SCHEMES,
    init_std_explorer,
    linear_output_stds,
    render_init_std,
    scheme_weight_std,
    stack_stats,
)


def test_stack_stats_matches_an_autograd_run_of_the_same_stack():
    """Same generator, same draws: the stds equal those of the stack rebuilt with nn.Linear and .backward()."""
    depth, width, batch = 5, 16, 32
    stats = stack_stats(
        depth, width, "tanh", 0.4, bias_std=0.1, batch=batch, generator=torch.Generator().manual_seed(3)
    )
    g = torch.Generator().manual_seed(3)
    x = torch.randn(batch, width, generator=g, dtype=torch.float64, requires_grad=True)
    h, zs = x, []
    for _ in range(depth):
        w = 0.4 * torch.randn(width, width, generator=g, dtype=torch.float64)
        b = 0.1 * torch.randn(width, generator=g, dtype=torch.float64)
        z = h @ w.T + b
        z.retain_grad()
        zs.append(z)
        h = torch.tanh(z)
    v = torch.randn(h.shape, generator=g, dtype=torch.float64)
    (h * v).sum().backward()
    np.testing.assert_allclose(stats.pre_std, [z.detach().std().item() for z in zs], rtol=1e-12)
    np.testing.assert_allclose(stats.post_std, [torch.tanh(z.detach()).std().item() for z in zs], rtol=1e-12)
    np.testing.assert_allclose(stats.grad_std, [z.grad.std().item() for z in zs], rtol=1e-10)
    assert stats.depth == depth and "StackStats" in repr(stats)


@pytest.mark.parametrize("gain2", [0.5, 1.0, 2.0])
def test_linear_stack_follows_n_var_w_per_layer(gain2):
    """Linear layers: Var(z_l) = (n σ_w²)^l Var(x), forward and (square layers) backward alike."""
    depth, width = 10, 256
    stats = stack_stats(
        depth,
        width,
        "linear",
        math.sqrt(gain2 / width),
        batch=512,
        generator=torch.Generator().manual_seed(0),
    )
    predicted = gain2 ** (np.arange(1, depth + 1) / 2) * stats.input_std
    np.testing.assert_allclose(stats.pre_std, predicted, rtol=0.1)
    predicted_back = gain2 ** ((depth - np.arange(1, depth + 1)) / 2)
    np.testing.assert_allclose(stats.grad_std, predicted_back, rtol=0.1)


def test_relu_halves_the_second_moment():
    """ReLU with n σ_w² = c: E[z_l²] = c/2 · E[z_{l-1}²] (He et al. 2015); He's c = 2 keeps it level."""
    width = 512
    for c in (1.0, 2.0):
        stats = stack_stats(
            12, width, "relu", math.sqrt(c / width), batch=128, generator=torch.Generator().manual_seed(1)
        )
        ratio = (stats.pre_std[-1] / stats.pre_std[0]) ** (1 / 11)
        assert ratio == pytest.approx(math.sqrt(c / 2), rel=0.03)


def test_stack_stats_validates_its_arguments():
    with pytest.raises(ValueError, match="activation"):
        stack_stats(3, 4, "swish", 1.0)
    with pytest.raises(ValueError, match="entries"):
        stack_stats(3, 4, "relu", [1.0, 1.0])
    with pytest.raises(ValueError, match="depth"):
        stack_stats(0, 4, "relu", 1.0)


def test_per_layer_weight_std_and_given_input():
    x = torch.ones(8, 4, dtype=torch.float64)
    x[0] = -1  # not constant: a std exists
    stats = stack_stats(2, 4, "linear", [1.0, 0.0], x=x, generator=torch.Generator().manual_seed(0))
    assert stats.pre_std[1] == 0.0 and stats.pre_std[0] > 0
    assert stats.input_std == pytest.approx(x.std().item())


def test_linear_output_stds_reads_every_linear_and_leaves_no_hook():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 5), nn.ReLU(), nn.Sequential(nn.Linear(5, 4), nn.Tanh()), nn.Linear(4, 3)
    )
    x = torch.randn(50, 6)
    got = linear_output_stds(model, x)
    assert list(got) == ["0", "2.0", "3"]
    h1 = model[0](x)
    h2 = model[2][0](torch.relu(h1))
    h3 = model[3](torch.tanh(h2))
    for name, out in zip(got, (h1, h2, h3), strict=True):
        assert got[name] == pytest.approx(out.std().item(), rel=1e-6)
    assert not any(m._forward_hooks for m in model.modules())


def test_scheme_weight_stds():
    assert scheme_weight_std("N(0, 1)", 256) == 1.0
    assert scheme_weight_std("He", 200) == pytest.approx(math.sqrt(2 / 200))
    layer = nn.Linear(300, 300)  # PyTorch's default: U(±1/sqrt(n)), variance 1/(3n)
    assert scheme_weight_std("PyTorch default", 300) == pytest.approx(layer.weight.std().item(), rel=0.02)
    assert set(SCHEMES) >= {"Xavier", "He", "PyTorch default"}


def test_explorer_renders_every_setting():
    fig = render_init_std("relu", "N(0, 1)", depth=10, width=32)
    assert "relu" in fig.axes[0].get_title()
    ex = init_std_explorer(activations=("relu",), schemes=("He", "Xavier"), depth=5, width=16)
    assert ex.n_frames == 2
    html = ex.to_html()
    assert html.count("data:image/png;base64,") >= 2 and "Xavier" in html
