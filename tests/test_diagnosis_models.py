"""course_lib.diagnosis on realistic models its rules were not built around.

Each scenario is a model a student might write (convolutional, normalised, recurrent fused
and unrolled, attention, residual, weight sharing, custom layers, frozen backbones,
float64), either healthy or broken in one known way, trained or recorded the way a user
would. The diagnosis must name exactly that problem and nothing else, for several seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.data import load_digits
from course_lib.diagnosis import diagnose, report
from course_lib.models import make_mlp
from course_lib.monitor import GradientMonitor
from course_lib.recurrent import make_rnn, scale_recurrent_
from course_lib.training import train

SEEDS = (0, 1, 2)
DIGITS = load_digits()


# ---- layers and models a user writes -----------------------------------------------------------


class MyLinear(nn.Module):
    """A user's own linear layer: its own weight and bias, no nn.Linear inside."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias


class CustomNet(nn.Module):
    def __init__(self, depth: int, activation: type[nn.Module], width: int = 64):
        super().__init__()
        sizes = [64] + [width] * depth
        self.layers = nn.ModuleList(MyLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.acts = nn.ModuleList(activation() for _ in range(depth))
        self.head = MyLinear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(self.layers, self.acts, strict=True):
            x = act(layer(x))
        return self.head(x)


class ConvNet(nn.Module):
    def __init__(self, bias: float | None = None):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(16 * 64, 10)
        if bias is not None:
            with torch.no_grad():
                for m in self.features:
                    if isinstance(m, nn.Conv2d):
                        m.bias.fill_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 64) digits -> (B, 1, 8, 8) images
        return self.head(self.features(x.view(-1, 1, 8, 8)).flatten(1))


class RowLSTM(nn.Module):
    """Digits read row by row: a fused nn.LSTM over 8 steps of 8 pixels."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 32, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.view(-1, 8, 8))  # (B, 8, 32)
        return self.head(out[:, -1])


class RowCells(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = make_rnn("gru", input_size=8, hidden_size=32, output_size=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x.view(-1, 8, 8))


class AttentionBlock(nn.Module):
    """Pre-LN transformer block over the 8 rows of a digit as tokens."""

    def __init__(self, d: int = 32):
        super().__init__()
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(0.02 * torch.randn(8, d))
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.view(-1, 8, 8)) + self.pos  # (B, 8, d)
        a = self.norm1(h)
        h = h + self.attn(a, a, a, need_weights=False)[0]
        h = h + self.mlp(self.norm2(h))
        return self.head(h.mean(dim=1))


class Residual(nn.Module):
    def __init__(self, width: int = 64, blocks: int = 8):
        super().__init__()
        self.inp = nn.Linear(64, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)) for _ in range(blocks)
        )
        self.head = nn.Linear(width, 10)
        for block in self.blocks:  # scaled residual branches keep the sum's variance bounded
            with torch.no_grad():
                block[2].weight.mul_(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


class Shared(nn.Module):
    """One Linear applied three times: its weight is shared across depth."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(64, 64)
        self.shared = nn.Linear(64, 64)
        self.act = nn.Tanh()
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.inp(x))
        for _ in range(3):
            h = self.act(self.shared(h))
        return self.head(h)


class WithUnusedHead(nn.Module):
    """An MLP with a second head that forward() never calls (left over from an experiment)."""

    def __init__(self, activation: str = "relu", depth: int = 4, init: str = "he"):
        super().__init__()
        self.body = make_mlp(hidden=(64,) * depth, activation=activation, init=init)
        self.aux_head = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FrozenBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = make_mlp(hidden=(64, 64), activation="relu", init="he", out_features=64)
        self.backbone.requires_grad_(False)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class LogLayer(nn.Module):
    """A user's layer that takes a log of its input: NaN where the input is negative."""

    def __init__(self, n: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x) * self.scale


def class0_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the batch's examples of class 0: 0/0 = NaN in a batch without any."""
    per = F.cross_entropy(logits, y, reduction="none")
    mask = (y == 0).to(per.dtype)
    return (per * mask).sum() / mask.sum()


# ---- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    expected: str  # the one finding kind the diagnosis must give
    build: Callable[[], nn.Module]
    lr: float = 0.05
    steps: int = 8
    optimizer: str = "sgd"
    loss_fn: Callable | None = None
    at_init: bool = False  # record three batches without an optimiser step (record_step)
    sequences: bool = False  # synthetic (B, 40, 1) sequences instead of digits
    batch_size: int = 64
    dtype: torch.dtype = torch.float32
    layer: str | None = None  # the layer the finding must name, when one


SCENARIOS = {
    # healthy, trained for a few steps
    "conv": Scenario("healthy", ConvNet),
    "mlp_batchnorm": Scenario("healthy", lambda: make_mlp(hidden=(64,) * 6, norm="batch", init="he")),
    "mlp_layernorm_tanh": Scenario(
        "healthy", lambda: make_mlp(hidden=(64,) * 6, norm="layer", activation="tanh", init="xavier")
    ),
    "lstm_fused": Scenario("healthy", RowLSTM, lr=0.1),
    "gru_cells": Scenario("healthy", RowCells, lr=0.1),
    "attention": Scenario("healthy", AttentionBlock, optimizer="adam", lr=1e-3),
    "residual": Scenario("healthy", Residual),
    "shared_weights": Scenario("healthy", Shared),
    "custom_layers": Scenario("healthy", lambda: CustomNet(4, nn.ReLU)),
    "frozen_backbone": Scenario("healthy", FrozenBackbone),
    "unused_head": Scenario("healthy", WithUnusedHead),
    "float64": Scenario("healthy", lambda: make_mlp(hidden=(64,) * 4, init="he"), dtype=torch.float64),
    # broken in one known way
    "custom_sigmoid_deep": Scenario(
        "vanishing", lambda: CustomNet(10, nn.Sigmoid), at_init=True, layer="layers.0"
    ),
    "unused_head_sigmoid_deep": Scenario(
        "vanishing",
        lambda: WithUnusedHead("sigmoid", depth=10, init="default"),
        at_init=True,
        layer="body.hidden1.linear",
    ),
    "float64_sigmoid_deep": Scenario(
        "vanishing",
        lambda: make_mlp(hidden=(64,) * 10, activation="sigmoid"),
        at_init=True,
        dtype=torch.float64,
    ),
    "relu_large_init": Scenario(
        "exploding", lambda: make_mlp(hidden=(64,) * 12, init="normal", init_std=0.35), at_init=True
    ),
    "conv_negative_bias": Scenario("dead", lambda: ConvNet(bias=-3.0), at_init=True),
    "lstm_cells_large_recurrent": Scenario(
        "exploding",
        lambda: scale_recurrent_(make_rnn("lstm", input_size=1, hidden_size=32, output_size=2), 8.0),
        at_init=True,
        sequences=True,
        layer="cells.0",
    ),
    "conv_lr_too_low": Scenario("update_ratio", ConvNet, lr=1e-6),
    "adam_lr_too_high": Scenario(
        "update_ratio",
        lambda: make_mlp(hidden=(64,) * 3, norm="layer", activation="tanh", init="xavier"),
        optimizer="adam",
        lr=0.05,
        steps=6,
    ),
    "nan_born_in_loss": Scenario("nonfinite", ConvNet, lr=0.01, loss_fn=class0_loss, batch_size=16, steps=40),
    "nan_born_in_custom_layer": Scenario(
        "nonfinite",
        lambda: nn.Sequential(nn.Linear(64, 32), LogLayer(32), nn.Linear(32, 10)),
        layer="1",
    ),
}


def run_scenario(name: str, seed: int):
    """(history or None, monitor) after running a scenario the way a user would."""
    sc = SCENARIOS[name]
    torch.manual_seed(seed)
    model = sc.build().to(sc.dtype)
    if sc.sequences:
        g = torch.Generator().manual_seed(seed)
        x = 0.01 * torch.randn(192, 40, 1, generator=g)
        y = (x.sum(dim=(1, 2)) > 0).long()
    else:
        x, y = DIGITS.train
    x = x.to(sc.dtype)
    mon = GradientMonitor(model)
    with mon:
        if sc.at_init:
            for k in range(3):
                xb, yb = x[64 * k : 64 * (k + 1)], y[64 * k : 64 * (k + 1)]
                model.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                mon.record_step(loss)
            return None, mon
        opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[sc.optimizer]
        hist = train(
            model,
            (x, y),
            optimizer=opt_cls(model.parameters(), lr=sc.lr),
            epochs=5,
            max_steps=sc.steps,
            batch_size=sc.batch_size,
            loss_fn=sc.loss_fn,
            callbacks=[mon],
            generator=torch.Generator().manual_seed(seed),
            progress=False,
        )
    return hist, mon


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_diagnosis_names_exactly_the_known_problem(name, seed):
    sc = SCENARIOS[name]
    hist, mon = run_scenario(name, seed)
    findings = diagnose(mon)
    assert [f.kind for f in findings] == [sc.expected], (
        f"{name}, seed {seed}: expected only {sc.expected!r}, got\n{report(findings)}"
    )
    f = findings[0]
    if sc.layer is not None:
        assert f.layer == sc.layer, f"{name}: the finding names {f.layer!r}, not {sc.layer!r}:\n{f}"
    if f.layer is not None:
        assert mon.record.label(f.layer) in f.message, "the layer is named with its type"
    assert "too high" not in f.message or "too low" not in f.message
