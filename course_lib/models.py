"""Model factories: a configurable multi-layer perceptron.

The MLP is an `nn.Sequential` of named blocks so that diagnostics can address
layers by name ("hidden3.linear") and chapters can swap one ingredient at a
time: depth, width, activation, initialisation, normalisation, residual paths.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}

INITS = ("default", "constant", "normal", "xavier", "he", "orthogonal")
NORMS = (None, "batch", "layer")


@dataclass(frozen=True)
class MLPConfig:
    """What an MLP is made of. Every field has a comment saying what it controls."""

    in_features: int = 64  # input width (digits: 64 pixels)
    hidden: tuple[int, ...] = (64,)  # width of each hidden layer; len(hidden) = number of hidden layers
    out_features: int = 10  # output width (digits: 10 classes -> logits)
    activation: str = "relu"  # one of ACTIVATIONS
    init: str = "default"  # one of INITS; "default" keeps PyTorch's own nn.Linear init
    init_std: float = 1.0  # std for init="normal"; value for init="constant"
    bias_init: float = 0.0  # bias value for every init except "default"
    norm: str | None = None  # None, "batch" (BatchNorm1d) or "layer" (LayerNorm), before the activation
    residual: bool = False  # h <- h + block(h) where in and out widths match

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if any(int(w) < 1 for w in self.hidden) or self.in_features < 1 or self.out_features < 1:
            raise ValueError(f"layer widths must be positive, got {self}")


class Block(nn.Module):
    """One hidden layer: linear -> optional norm -> activation, with an optional skip path."""

    def __init__(self, n_in: int, n_out: int, activation: str, norm: str | None, residual: bool):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        if norm == "batch":
            self.norm: nn.Module = nn.BatchNorm1d(n_out)
        elif norm == "layer":
            self.norm = nn.LayerNorm(n_out)
        else:
            self.norm = nn.Identity()
        self.act = ACTIVATIONS[activation]()
        self.residual = residual and n_in == n_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n_in) -> (B, n_out)
        out = self.act(self.norm(self.linear(x)))
        return x + out if self.residual else out

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


def init_linear_(
    layer: nn.Linear, init: str, *, std: float = 1.0, bias: float = 0.0, gain: float = 1.0
) -> None:
    """Initialise one Linear layer in place.

    xavier: U(-a, a), a = gain*sqrt(6/(fan_in+fan_out))  (Glorot & Bengio 2010)
    he:     N(0, 2/fan_in)                                (He et al. 2015, ReLU)
    normal: N(0, std^2);  constant: every weight = std;  orthogonal: Saxe et al. 2013.
    default leaves PyTorch's init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
    """
    if init == "default":
        return
    with torch.no_grad():
        if init == "constant":
            layer.weight.fill_(std)
        elif init == "normal":
            layer.weight.normal_(0.0, std)
        elif init == "xavier":
            nn.init.xavier_uniform_(layer.weight, gain=gain)
        elif init == "he":
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
        elif init == "orthogonal":
            nn.init.orthogonal_(layer.weight, gain=gain)
        else:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if layer.bias is not None:
            layer.bias.fill_(bias)


def make_mlp(config: MLPConfig | None = None, **overrides) -> nn.Sequential:
    """Build an MLP: hidden blocks named hidden1..hiddenL, then a Linear named "out" giving logits.

    Pass a config, keyword overrides, or both: make_mlp(hidden=(32,) * 10, activation="sigmoid").
    """
    cfg = config or MLPConfig()
    if overrides:
        fields = {**cfg.__dict__, **overrides}
        if "hidden" in overrides:
            fields["hidden"] = tuple(int(w) for w in overrides["hidden"])
        cfg = MLPConfig(**fields)
    layers: dict[str, nn.Module] = {}
    width = cfg.in_features
    gain = nn.init.calculate_gain(cfg.activation) if cfg.activation in ("sigmoid", "tanh", "relu") else 1.0
    for i, n_out in enumerate(cfg.hidden, start=1):
        block = Block(width, n_out, cfg.activation, cfg.norm, cfg.residual)
        init_linear_(block.linear, cfg.init, std=cfg.init_std, bias=cfg.bias_init, gain=gain)
        layers[f"hidden{i}"] = block
        width = n_out
    out = nn.Linear(width, cfg.out_features)
    init_linear_(out, cfg.init if cfg.init != "he" else "xavier", std=cfg.init_std, bias=cfg.bias_init)
    layers["out"] = out
    return nn.Sequential(OrderedDict(layers))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pytorch_default_bound(fan_in: int) -> float:
    """Bound a of PyTorch's default nn.Linear weight init U(-a, a): a = 1/sqrt(fan_in).

    (kaiming_uniform_ with a=sqrt(5): gain^2 = 2/(1+5) = 1/3, bound = sqrt(3)*gain/sqrt(fan_in).)
    Its variance 1/(3*fan_in) is neither Xavier's 2/(fan_in+fan_out) nor He's 2/fan_in.
    """
    return 1.0 / math.sqrt(fan_in)
