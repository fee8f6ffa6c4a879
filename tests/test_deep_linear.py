"""course_lib.deep_linear: the closed-form gradients against autograd, and the monitor against the closed form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.deep_linear import (
    closed_form_gradients,
    half_mse,
    make_deep_linear,
    scaled_orthogonal_norms,
    weights_of,
)
from course_lib.monitor import GradientMonitor, MonitorConfig


def _batch(b: int = 16, d_in: int = 8, d_out: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d_in, generator=g, dtype=torch.float64), torch.randn(
        b, d_out, generator=g, dtype=torch.float64
    )


@pytest.mark.parametrize("init", ["orthogonal", "normal"])
def test_closed_form_gradients_equal_autograd(init):
    torch.manual_seed(0)
    model = make_deep_linear(6, 10, in_features=7, out_features=4, weight_scale=1.3, init=init).double()
    x, y = _batch(d_in=7, d_out=4)
    outs = []
    h = x
    for layer in model:
        h = layer(h)
        h.retain_grad()
        outs.append(h)
    half_mse(h, y).backward()
    out_grads, weight_grads = closed_form_gradients(weights_of(model), x, y)
    for ell, (layer, h_l) in enumerate(zip(model, outs, strict=True), start=1):
        torch.testing.assert_close(out_grads[ell - 1], h_l.grad, msg=f"∂L/∂h_{ell}")
        torch.testing.assert_close(weight_grads[ell - 1], layer.weight.grad, msg=f"∂L/∂W_{ell}")


@pytest.mark.parametrize("scale", [0.8, 1.0, 1.5])
def test_monitor_matches_the_scaled_orthogonal_closed_form(scale):
    """‖∂L/∂h_l‖ = s^(L-l)‖E‖ and ‖∂L/∂W_l‖ = s^(L-1)‖EᵀX‖ for W_l = s·Q_l: measured by the monitor."""
    depth, width = 12, 16
    torch.manual_seed(0)
    model = make_deep_linear(depth, width, weight_scale=scale).double()
    x, y = _batch(d_in=width, d_out=width)
    with GradientMonitor(model, MonitorConfig(track_updates=False)) as mon:
        out = model(x)
        half_mse(out, y).backward()
        mon.record_step()
    e = (out.detach() - y) / x.shape[0]  # E = ∂L/∂f
    want_out, want_w = scaled_orthogonal_norms(depth, scale, float(e.norm()), float((e.T @ x).norm()))
    got_out = mon.record.matrix("out_grad_norm")[:, 0]
    got_w = mon.record.matrix("grad_norm")[:, 0]
    for ell in range(depth):
        assert got_out[ell] == pytest.approx(want_out[ell], rel=1e-5), f"‖∂L/∂h_{ell + 1}‖"
        assert got_w[ell] == pytest.approx(want_w[ell], rel=1e-5), f"‖∂L/∂W_{ell + 1}‖"
    assert got_out[0] / got_out[-1] == pytest.approx(scale ** (depth - 1), rel=1e-5)


def test_closed_form_from_the_input_alone_with_zero_targets():
    """With Y = 0: E = s^L Q X / B, so ‖E‖ = s^L ‖X‖ / B and ‖EᵀX‖ = s^L ‖XᵀX‖ / B: no forward pass needed."""
    depth, width, s = 8, 12, 1.2
    torch.manual_seed(1)
    model = make_deep_linear(depth, width, weight_scale=s).double()
    x, _ = _batch(d_in=width)
    b = x.shape[0]
    want_out, want_w = scaled_orthogonal_norms(
        depth, s, s**depth * float(x.norm()) / b, s**depth * float((x.T @ x).norm()) / b
    )
    out_grads, weight_grads = closed_form_gradients(
        weights_of(model), x, torch.zeros(b, width, dtype=torch.float64)
    )
    for ell in range(depth):
        assert float(out_grads[ell].norm()) == pytest.approx(want_out[ell], rel=1e-5)  # float32 Q
        assert float(weight_grads[ell].norm()) == pytest.approx(want_w[ell], rel=1e-5)


def test_factory_shapes_and_inits():
    torch.manual_seed(0)
    model = make_deep_linear(4, 32, in_features=10, out_features=3, weight_scale=1.5)
    assert [n for n, _ in model.named_children()] == ["layer1", "layer2", "layer3", "layer4"]
    assert model(torch.randn(5, 10)).shape == (5, 3)
    assert all(m.bias is None for m in model)
    w = model.layer2.weight.detach().double()
    torch.testing.assert_close(w @ w.T, 1.5**2 * torch.eye(32, dtype=torch.float64), atol=1e-5, rtol=0)
    w1 = model.layer1.weight.detach().double()  # (32, 10): orthonormal columns, scaled
    torch.testing.assert_close(w1.T @ w1, 1.5**2 * torch.eye(10, dtype=torch.float64), atol=1e-5, rtol=0)
    normal = make_deep_linear(2, 512, weight_scale=2.0, init="normal")
    assert float(normal.layer1.weight.detach().var()) == pytest.approx(4.0 / 512, rel=0.05)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = make_deep_linear(3, 8, generator=g1), make_deep_linear(3, 8, generator=g2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        make_deep_linear(0, 4)
    with pytest.raises(ValueError, match="init"):
        make_deep_linear(2, 4, init="he")
    with pytest.raises(ValueError, match="weight_scale"):
        make_deep_linear(2, 4, weight_scale=0.0)
    with pytest.raises(ValueError, match="bias-free"):
        weights_of(nn.Sequential(nn.Linear(2, 2)))
    assert math.isclose(float(half_mse(torch.ones(2, 3), torch.zeros(2, 3))), 1.5)
