"""course_lib.models: the MLP's structure against its config, and each initialisation against theory."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.models import (
    ACTIVATIONS,
    MLPConfig,
    count_parameters,
    init_linear_,
    make_mlp,
    pytorch_default_bound,
)

# A layer large enough that sample variances sit within a few percent of the theory.
FAN_IN, FAN_OUT = 512, 256


def _big(init: str, activation: str = "identity", **kw) -> nn.Sequential:
    torch.manual_seed(0)
    model = make_mlp(
        in_features=FAN_IN, hidden=(FAN_OUT,), out_features=128, init=init, activation=activation, **kw
    )
    return model.requires_grad_(False)  # plain tensors: float() on them gives no autograd warning


def _var(w: torch.Tensor) -> float:
    return float(w.double().var(unbiased=False))


# ---- structure -------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", [(), (32,), (32, 16, 8)])
def test_shapes_and_names(hidden):
    model = make_mlp(in_features=20, hidden=hidden, out_features=7)
    names = [name for name, _ in model.named_children()]
    assert names == [f"hidden{i}" for i in range(1, len(hidden) + 1)] + ["out"]
    widths = [20, *hidden]
    for i, n_out in enumerate(hidden, start=1):
        lin = getattr(model, f"hidden{i}").linear
        assert lin.weight.shape == (n_out, widths[i - 1])
    assert model.out.weight.shape == (7, widths[-1])
    assert model(torch.randn(5, 20)).shape == (5, 7)


def test_config_and_overrides():
    cfg = MLPConfig(in_features=10, hidden=(4, 4), out_features=3, activation="tanh")
    model = make_mlp(cfg, hidden=[6, 6, 6])  # a list override is turned into a tuple of ints
    assert [n for n, _ in model.named_children()] == ["hidden1", "hidden2", "hidden3", "out"]
    assert isinstance(model.hidden1.act, nn.Tanh)
    assert model.hidden1.linear.in_features == 10
    assert cfg.hidden == (4, 4)  # the config itself is left alone
    default = make_mlp()
    assert default.hidden1.linear.in_features == 64 and default.out.out_features == 10


FUNCTIONAL = {
    "identity": (nn.Identity, lambda z: z),
    "sigmoid": (nn.Sigmoid, torch.sigmoid),
    "tanh": (nn.Tanh, torch.tanh),
    "relu": (nn.ReLU, F.relu),
    "leaky_relu": (nn.LeakyReLU, lambda z: F.leaky_relu(z, 0.01)),
    "gelu": (nn.GELU, F.gelu),
    "silu": (nn.SiLU, F.silu),
}


def test_every_activation_is_covered():
    assert set(FUNCTIONAL) == set(ACTIVATIONS)


@pytest.mark.parametrize("activation", sorted(FUNCTIONAL))
def test_activation_module_and_functional_form(activation):
    module_type, fn = FUNCTIONAL[activation]
    torch.manual_seed(0)
    model = make_mlp(in_features=6, hidden=(9, 9), out_features=2, activation=activation)
    for block in (model.hidden1, model.hidden2):
        assert isinstance(block.act, module_type)
    x = torch.randn(4, 6) * 3
    h1 = fn(F.linear(x, model.hidden1.linear.weight, model.hidden1.linear.bias))
    torch.testing.assert_close(model.hidden1(x), h1)
    h2 = fn(F.linear(h1, model.hidden2.linear.weight, model.hidden2.linear.bias))
    torch.testing.assert_close(model(x), F.linear(h2, model.out.weight, model.out.bias))


def test_leaky_relu_slope():
    assert make_mlp(activation="leaky_relu").hidden1.act.negative_slope == 0.01


@pytest.mark.parametrize(
    "norm, norm_type",
    [(None, nn.Identity), ("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)],
)
def test_norm_layers(norm, norm_type):
    model = make_mlp(in_features=5, hidden=(8, 8), out_features=3, norm=norm)
    for block in (model.hidden1, model.hidden2):
        assert type(block.norm) is norm_type
    n_norm = sum(isinstance(m, nn.BatchNorm1d | nn.LayerNorm) for m in model.modules())
    assert n_norm == (0 if norm is None else 2)


def test_norm_sits_before_activation():
    torch.manual_seed(0)
    model = make_mlp(in_features=5, hidden=(8,), out_features=3, norm="layer", activation="tanh")
    x = torch.randn(6, 5)
    block = model.hidden1
    expected = torch.tanh(F.layer_norm(block.linear(x), (8,), block.norm.weight, block.norm.bias))
    torch.testing.assert_close(block(x), expected)


def test_residual_only_where_widths_match():
    model = make_mlp(in_features=5, hidden=(8, 8, 4), out_features=3, residual=True)
    assert [model.hidden1.residual, model.hidden2.residual, model.hidden3.residual] == [False, True, False]
    assert not make_mlp(hidden=(8, 8), residual=False).hidden2.residual
    assert "residual=True" in repr(model.hidden2)


def test_residual_forward_is_x_plus_block():
    torch.manual_seed(0)
    model = make_mlp(in_features=8, hidden=(8, 8), out_features=3, residual=True, activation="tanh")
    block = model.hidden2
    x = torch.randn(5, 8)
    torch.testing.assert_close(block(x), x + torch.tanh(block.linear(x)))
    torch.testing.assert_close(model.hidden1(x), x + torch.tanh(model.hidden1.linear(x)))


# ---- initialisation against theory -----------------------------------------------------------


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
def test_xavier_variance(activation):
    model = _big("xavier", activation)
    gain = nn.init.calculate_gain(activation) if activation != "identity" else 1.0
    w = model.hidden1.linear.weight
    bound = gain * math.sqrt(6 / (FAN_IN + FAN_OUT))
    assert float(w.abs().max()) <= bound
    assert _var(w) == pytest.approx(gain**2 * 2 / (FAN_IN + FAN_OUT), rel=0.03)
    # the output layer is not followed by a nonlinearity: gain 1
    assert _var(model.out.weight) == pytest.approx(2 / (FAN_OUT + 128), rel=0.05)


def test_he_variance():
    model = _big("he", "relu")
    assert _var(model.hidden1.linear.weight) == pytest.approx(2 / FAN_IN, rel=0.03)
    assert float(model.hidden1.linear.weight.mean()) == pytest.approx(0.0, abs=3e-3)
    # the output layer gets Xavier, not He
    assert _var(model.out.weight) == pytest.approx(2 / (FAN_OUT + 128), rel=0.05)


@pytest.mark.parametrize("std", [0.01, 0.5])
def test_normal_variance(std):
    model = _big("normal", init_std=std)
    for w in (model.hidden1.linear.weight, model.out.weight):
        assert _var(w) == pytest.approx(std**2, rel=0.05)


def test_constant_exact():
    model = _big("constant", init_std=0.25, bias_init=-0.5)
    for lin in (model.hidden1.linear, model.out):
        assert torch.equal(lin.weight, torch.full_like(lin.weight, 0.25))
        assert torch.equal(lin.bias, torch.full_like(lin.bias, -0.5))


@pytest.mark.parametrize("activation, gain2", [("identity", 1.0), ("relu", 2.0)])
def test_orthogonal(activation, gain2):
    model = _big("orthogonal", activation)
    w = model.hidden1.linear.weight.double()  # (256, 512): orthonormal rows up to the gain
    torch.testing.assert_close(w @ w.T, gain2 * torch.eye(FAN_OUT, dtype=torch.float64), atol=1e-5, rtol=0)
    wo = model.out.weight.double()  # (128, 256), gain 1
    torch.testing.assert_close(wo @ wo.T, torch.eye(128, dtype=torch.float64), atol=1e-5, rtol=0)


def test_default_keeps_pytorch_init():
    model = _big("default", bias_init=0.5)  # bias_init is ignored by the default init
    for lin in (model.hidden1.linear, model.out):
        bound = 1 / math.sqrt(lin.in_features)
        assert pytorch_default_bound(lin.in_features) == pytest.approx(bound)
        assert float(lin.weight.abs().max()) <= bound
        assert float(lin.weight.abs().max()) > 0.99 * bound  # uniform fills the interval
        assert _var(lin.weight) == pytest.approx(bound**2 / 3, rel=0.05)
        assert float(lin.bias.abs().max()) <= bound
        assert not torch.all(lin.bias == 0.5)
    # and it is exactly what nn.Linear gives from the same seed
    torch.manual_seed(0)
    ref = nn.Linear(FAN_IN, FAN_OUT)
    assert torch.equal(model.hidden1.linear.weight, ref.weight)


def test_pytorch_default_bound_matches_nn_linear():
    torch.manual_seed(0)
    for fan_in in (3, 50, 1000):
        lin = nn.Linear(fan_in, 400).requires_grad_(False)
        bound = pytorch_default_bound(fan_in)
        assert float(lin.weight.abs().max()) <= bound
        assert float(lin.weight.abs().max()) > 0.98 * bound


@pytest.mark.parametrize("init", ["constant", "normal", "xavier", "he", "orthogonal"])
def test_bias_init_applied(init):
    model = make_mlp(in_features=6, hidden=(5, 4), out_features=3, init=init, bias_init=0.3)
    for lin in (model.hidden1.linear, model.hidden2.linear, model.out):
        assert torch.equal(lin.bias, torch.full_like(lin.bias, 0.3))


def test_init_linear_rejects_unknown():
    with pytest.raises(ValueError, match="init"):
        init_linear_(nn.Linear(3, 3), "glorot")


@pytest.mark.parametrize(
    "overrides, name",
    [
        ({"activation": "swish"}, "activation"),
        ({"init": "kaiming"}, "init"),
        ({"norm": "group"}, "norm"),
        ({"hidden": (8, 0)}, "width"),
        ({"in_features": 0}, "width"),
        ({"out_features": -1}, "width"),
    ],
)
def test_invalid_config_raises(overrides, name):
    with pytest.raises(ValueError, match=name):
        MLPConfig(**overrides)
    with pytest.raises(ValueError, match=name):
        make_mlp(**overrides)


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_count_parameters(norm):
    model = make_mlp(in_features=64, hidden=(32, 16), out_features=10, norm=norm)
    manual = (64 * 32 + 32) + (32 * 16 + 16) + (16 * 10 + 10)
    if norm is not None:
        manual += 2 * (32 + 16)  # scale and shift per feature
    assert count_parameters(model) == manual
    model.out.weight.requires_grad_(False)  # frozen parameters are not counted
    assert count_parameters(model) == manual - 16 * 10
