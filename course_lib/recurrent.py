"""Vanilla RNN and LSTM wrappers for sequence classification and regression.

h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), and the gradient that reaches step t from
step T is a product of T - t Jacobians diag(1 - h²) W_hh. When W_hh's spectral
radius exceeds 1 that product can grow geometrically (exploding gradients through
time); when it is below 1 it must shrink (vanishing) (Pascanu et al. 2013).
`scale_recurrent_` sets the radius, so chapters can place a network on either side.
The LSTM's additive cell path is the remedy for the vanishing side
(Hochreiter & Schmidhuber 1997).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


@dataclass(frozen=True)
class RecurrentConfig:
    """What a recurrent model is made of."""

    input_size: int = 1  # features per time step
    hidden_size: int = 32  # width of the hidden state h_t
    output_size: int = 1  # classes (logits) or regression targets
    cell: str = "rnn"  # "rnn" (tanh), "lstm" or "gru"
    num_layers: int = 1  # stacked recurrent layers, each fed the h_t of the one below
    per_step: bool = False  # False: read out h_T only (B, out); True: every h_t (B, T, out)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        if min(self.input_size, self.hidden_size, self.output_size, self.num_layers) < 1:
            raise ValueError(f"sizes must be positive, got {self}")


class RecurrentNet(nn.Module):
    """Recurrent cells `cells.0`, `cells.1`, ... unrolled over time, and a Linear read-out `head`.

    The loop over time steps is written out (nn.RNNCell / nn.LSTMCell / nn.GRUCell) rather
    than fused (nn.RNN), so every hidden state h_t is a tensor of its own: hooks, and the
    GradientMonitor, see ‖∂L/∂h_t‖ at each step, the gradient that travelled back through time.
    """

    def __init__(self, config: RecurrentConfig | None = None, **overrides):
        super().__init__()
        cfg = config or RecurrentConfig()
        if overrides:
            cfg = RecurrentConfig(**{**cfg.__dict__, **overrides})
        self.config = cfg
        sizes = [cfg.input_size] + [cfg.hidden_size] * cfg.num_layers
        self.cells = nn.ModuleList(CELLS[cfg.cell](sizes[i], sizes[i + 1]) for i in range(cfg.num_layers))
        self.head = nn.Linear(cfg.hidden_size, cfg.output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, out) or (B, T, out)
        if x.ndim != 3 or x.shape[-1] != self.config.input_size:
            raise ValueError(f"expected input (B, T, {self.config.input_size}), got {tuple(x.shape)}")
        seq = list(x.unbind(1))  # T tensors (B, I)
        for cell in self.cells:
            state = None  # zeros: h_0 = 0 (and c_0 = 0 for the LSTM)
            outs = []
            for x_t in seq:
                state = cell(x_t, state)  # (B, H), or ((B, H), (B, H)) for the LSTM
                outs.append(state[0] if isinstance(state, tuple) else state)
            seq = outs  # T tensors (B, H): this layer's h_t feed the next layer
        if self.config.per_step:
            return self.head(torch.stack(seq, dim=1))  # (B, T, out)
        return self.head(seq[-1])  # (B, out) from h_T

    def __repr__(self) -> str:
        c = self.config
        radius = max(r for rs in recurrent_radii(self).values() for r in rs)
        return (
            f"RecurrentNet(cell={c.cell}, {c.input_size}->{c.hidden_size}->{c.output_size}, "
            f"layers={c.num_layers}, per_step={c.per_step}, max radius(W_hh)={radius:.3f})"
        )


def make_rnn(cell: str = "rnn", **kwargs) -> RecurrentNet:
    """RecurrentNet(RecurrentConfig(cell=cell, **kwargs)): make_rnn("lstm", hidden_size=64)."""
    return RecurrentNet(RecurrentConfig(cell=cell, **kwargs))


def spectral_radius(matrix: torch.Tensor) -> float:
    """ρ(W) = max |λ_i(W)|, the largest eigenvalue modulus of a square matrix."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"spectral radius needs a square matrix, got shape {tuple(matrix.shape)}")
    return float(torch.linalg.eigvals(matrix.detach().double().cpu()).abs().max())


def _weight_hh(model: nn.Module) -> list[tuple[str, torch.Tensor, int]]:
    """(name, weight_hh, hidden size) of every recurrent matrix in `model` (cells or fused RNNs)."""
    found = [
        (f"{mn}.{pn}" if mn else pn, p, m.hidden_size)
        for mn, m in model.named_modules()
        if isinstance(m, nn.RNNBase | nn.RNNCellBase)
        for pn, p in m.named_parameters(recurse=False)
        if pn.startswith("weight_hh")
    ]
    if not found:
        raise TypeError(f"{type(model).__name__} holds no recurrent layer (RNN/LSTM/GRU or their cells)")
    return found


@torch.no_grad()
def scale_recurrent_(
    model: nn.Module, radius: float, *, orthogonal: bool = False, generator: torch.Generator | None = None
) -> nn.Module:
    """Rescale every recurrent H×H matrix in `model` in place so its spectral radius is `radius`.

    For LSTM/GRU each gate's block of weight_hh is scaled on its own. orthogonal=True first
    replaces each block by a random orthogonal matrix (all singular values equal), so that
    ‖W_hh v‖ = radius·‖v‖ for every v: in the linear regime the gradient through time then
    grows or shrinks by exactly `radius` per step. Returns the model.
    """
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    for name, w, h in _weight_hh(model):
        for block in w.split(h, dim=0):  # (H, H) views into weight_hh
            if orthogonal:
                a = torch.randn(h, h, generator=generator, dtype=torch.float64)
                q, r = torch.linalg.qr(a)
                block.copy_(q * torch.sign(torch.diagonal(r)))  # Haar-distributed orthogonal
            rho = spectral_radius(block)
            if rho == 0:
                raise ValueError(f"{name} has a zero block: its spectral radius cannot be rescaled")
            block.mul_(radius / rho)
    return model


def recurrent_radii(model: nn.Module) -> dict[str, list[float]]:
    """Spectral radius of each H×H block of every weight_hh in `model`, by parameter name."""
    return {name: [spectral_radius(b) for b in w.split(h, dim=0)] for name, w, h in _weight_hh(model)}
