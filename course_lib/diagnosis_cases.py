"""The constructed cases the diagnosis is validated on, and that the reference page shows.

Each case is a network built to show one problem at initialisation (or to be healthy),
with the one finding `diagnosis.diagnose` must give for it, and nothing else:

    record = run_case("sigmoid_deep")          # three mini-batches, no optimiser step
    diagnose(record)                            # [vanishing]

`tests/test_diagnosis.py` checks every case for several seeds; `tests/test_diagnosis_models.py`
checks the diagnosis on a wider set of realistic models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .data import load_digits
from .deep_linear import make_deep_linear
from .models import make_mlp
from .monitor import GradientMonitor, MonitorRecord
from .recurrent import make_rnn, scale_recurrent_


@dataclass(frozen=True)
class Case:
    """A network built to show one problem at initialisation, and the finding it must produce."""

    name: str  # short key
    expected: str  # the one finding kind the diagnosis must give (and no other)
    description: str  # how it is built


CASES = {
    c.name: c
    for c in (
        Case("sigmoid_deep", "vanishing", "10 sigmoid layers of 64, PyTorch's default init, on digits"),
        Case("linear_scale_1.5", "exploding", "20 linear layers of 64, orthogonal weights × 1.5, on digits"),
        Case("relu_negative_bias", "dead", "6 ReLU layers of 64, He init, every bias -2, on digits"),
        Case("tanh_large_init", "saturated", "4 tanh layers of 64, weights N(0, 1), on digits"),
        Case(
            "rnn_radius_1.2",
            "exploding",
            "tanh RNN of 64, orthogonal W_hh with spectral radius 1.2, no bias, 30 steps",
        ),
        Case("relu_he", "healthy", "10 ReLU layers of 64, He init, on digits"),
    )
}


def build_case(name: str, *, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model, inputs, targets) of a constructed case; the loss is cross-entropy on the model's logits."""
    if name not in CASES:
        raise KeyError(f"unknown case {name!r}; the cases are {list(CASES)}")
    torch.manual_seed(seed)
    if name == "rnn_radius_1.2":
        model = make_rnn("rnn", input_size=1, hidden_size=64, output_size=2)
        scale_recurrent_(model, 1.2, orthogonal=True)
        with torch.no_grad():
            for p_name, p in model.cells.named_parameters():
                if "bias" in p_name:
                    p.zero_()
        x = 0.01 * torch.randn(192, 30, 1)  # (B, T, 1): small inputs keep tanh in its linear range
        return model, x, (x.sum(dim=(1, 2)) > 0).long()
    builders = {
        "sigmoid_deep": lambda: make_mlp(hidden=(64,) * 10, activation="sigmoid"),
        "linear_scale_1.5": lambda: make_deep_linear(20, 64, out_features=10, weight_scale=1.5),
        "relu_negative_bias": lambda: make_mlp(
            hidden=(64,) * 6, activation="relu", init="he", bias_init=-2.0
        ),
        "tanh_large_init": lambda: make_mlp(hidden=(64,) * 4, activation="tanh", init="normal", init_std=1.0),
        "relu_he": lambda: make_mlp(hidden=(64,) * 10, activation="relu", init="he"),
    }
    model = builders[name]()
    x, y = load_digits(seed=seed).train
    return model, x[:192], y[:192]


def run_case(name: str, *, seed: int = 0, steps: int = 3, batch_size: int = 64) -> MonitorRecord:
    """Monitor a constructed case for `steps` mini-batches at initialisation (no optimiser step)."""
    model, x, y = build_case(name, seed=seed)
    with GradientMonitor(model) as mon:
        for k in range(steps):
            xb, yb = x[k * batch_size : (k + 1) * batch_size], y[k * batch_size : (k + 1) * batch_size]
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            mon.record_step(loss)
    return mon.record
