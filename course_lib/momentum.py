"""Gradient descent with momentum on quadratic bowls: the experiments behind chapter 4's momentum.

On f(w) = ½ Σᵢ λᵢ wᵢ² every eigen-direction evolves on its own, so an optimiser's speed
can be read off as a per-step contraction factor of ‖w_t‖ (w* = 0). The functions here run
PyTorch's own optimisers on such bowls and measure that factor; the theory they are
compared with (Polyak 1964; Goh 2017, "Why Momentum Really Works") is on the chapter's page.

- quadratic_spectrum: eigenvalues from μ = L/κ to L.
- run_on_quadratic: ‖w_t‖ for t = 0..steps under any torch optimiser, gradients by autograd.
- measured_rate: the per-step factor over the second half of a run.
- momentum_explorer: momentum β × condition number κ at η = 1/L, drawn in 2-D.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .plots import STYLE
from .static_explorer import Control, StaticExplorer

MakeOptimizer = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


def quadratic_spectrum(condition: float, n: int = 20, big_l: float = 1.0) -> torch.Tensor:
    """n eigenvalues spaced evenly on a log scale from μ = L/κ to L (both included), float64."""
    if condition < 1 or n < 2:
        raise ValueError(f"need condition >= 1 and n >= 2, got {condition} and {n}")
    return torch.logspace(np.log10(big_l / condition), np.log10(big_l), n, dtype=torch.float64)


def run_on_quadratic(
    make_optimizer: MakeOptimizer,
    eigenvalues: torch.Tensor,
    steps: int,
    w0: torch.Tensor | None = None,
) -> np.ndarray:
    """‖w_t‖ for t = 0..steps when make_optimizer([w]) minimises ½ Σ λᵢ wᵢ² from w0 (ones).

    Returns an array of length steps + 1. A diverging run keeps its (inf or nan) values.
    """
    lam = eigenvalues.to(torch.float64)
    start = torch.ones_like(lam) if w0 is None else w0.to(torch.float64).clone()
    w = torch.nn.Parameter(start)
    opt = make_optimizer([w])
    norms = [float(w.detach().norm())]
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (lam * w * w).sum()
        loss.backward()
        opt.step()
        norms.append(float(w.detach().norm()))
    return np.array(norms)


def measured_rate(norms: Sequence[float], start: int | None = None) -> float:
    """Per-step contraction factor (‖w_T‖ / ‖w_s‖)^(1/(T-s)), s = start (default T // 2)."""
    v = np.asarray(norms, dtype=float)
    end = len(v) - 1
    s = end // 2 if start is None else start
    if not 0 <= s < end:
        raise ValueError(f"start must be in [0, {end}), got {s}")
    if not (np.isfinite(v[end]) and v[s] > 0):
        return float("inf")
    return float((v[end] / v[s]) ** (1.0 / (end - s)))


@functools.lru_cache(maxsize=64)
def _path_2d(beta: float, curvatures: tuple[float, float], lr: float, steps: int) -> np.ndarray:
    w = torch.nn.Parameter(torch.tensor([-4.0, 3.0], dtype=torch.float64))
    a = torch.tensor(curvatures, dtype=torch.float64)
    opt = torch.optim.SGD([w], lr=lr, momentum=beta)
    path = [w.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (a * w * w).sum()).backward()
        opt.step()
        path.append(w.detach().clone())
    out = torch.stack(path).numpy()
    out.flags.writeable = False  # cached: shared between calls
    return out


def render_momentum(beta: float, condition: float, steps: int = 100) -> Figure:
    """Heavy ball (torch.optim.SGD, momentum=β) at η = 1/L on a 2-D bowl, L = 1, μ = 1/κ.

    Left: contours and the path (plain gradient descent in grey). Right: ‖w_t‖ on a log
    scale for β and for β = 0, with the measured per-step factors in the title.
    """
    curv = (1.0 / condition, 1.0)
    path = _path_2d(beta, curv, 1.0, steps)
    plain = _path_2d(0.0, curv, 1.0, steps)
    norms = np.linalg.norm(path, axis=1)
    norms_gd = np.linalg.norm(plain, axis=1)
    rate, rate_gd = measured_rate(norms), measured_rate(norms_gd)
    with plt.rc_context(STYLE):
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.0, 3.4), gridspec_kw={"width_ratios": [1.2, 1]})
        g = np.linspace(-5, 5, 101)
        x1, x2 = np.meshgrid(g, g)
        ax.contour(x1, x2, 0.5 * (curv[0] * x1**2 + curv[1] * x2**2), levels=10, colors="0.8", linewidths=0.8)
        ax.plot(plain[:40, 0], plain[:40, 1], ".-", ms=2, color="0.55", lw=0.8, label="β = 0")
        ax.plot(path[:40, 0], path[:40, 1], "o-", ms=2.5, color="C3", lw=1.1, label=f"β = {beta:g}")
        ax.plot(-4.0, 3.0, "ks", ms=5)
        ax.set(xlim=(-5, 5), ylim=(-5, 5), xlabel="$w_1$ (curvature 1/κ)", ylabel="$w_2$ (curvature 1)")
        ax.set_title(f"κ = {condition:g}, η = 1/L, first 40 steps", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        t = np.arange(steps + 1)
        ax2.semilogy(t, np.maximum(norms_gd, 1e-16), color="0.55", lw=1.0, label="β = 0")
        ax2.semilogy(t, np.maximum(norms, 1e-16), color="C3", lw=1.4, label=f"β = {beta:g}")
        ax2.set(xlabel="step t", ylabel="‖w_t − w*‖", ylim=(1e-12, 1e2))
        ax2.set_title(f"factor per step: {rate:.3f} (β = 0: {rate_gd:.3f})", fontsize=10)
        ax2.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
    return fig


def momentum_explorer(
    betas: Sequence[float] = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9),
    conditions: Sequence[float] = (10.0, 100.0),
    *,
    default_beta: float = 0.5,
) -> StaticExplorer:
    """β slider × condition number over heavy-ball momentum on ½(w₁²/κ + w₂²), η = 1/L."""
    return StaticExplorer(
        render_momentum,
        [
            Control("beta", tuple(betas), default=default_beta, label="momentum β"),
            Control("condition", tuple(conditions), label="condition number κ", widget="select"),
        ],
        title="Momentum on an ill-conditioned bowl",
    )
