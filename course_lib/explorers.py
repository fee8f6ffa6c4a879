"""The course's interactive figures: one render function each, shown static or live.

Each function returns a `StaticExplorer` (course_lib.static_explorer): as a cell's last
expression it is self-contained HTML whose controls swap figures computed when the book is
built, so it works in the static book with no kernel; `.live()` gives the same controls as
ipywidgets in JupyterLab, recomputing with the same code.

- learning_rate_explorer: gradient descent on a quadratic bowl, η and the condition number
  as controls (chapter 1; converge, oscillate or diverge at η < 1/L, 1/L < η < 2/L, η > 2/L).
- deep_linear_explorer: ‖∂L/∂h_l‖ through a deep linear net against the closed form s^(L-l)
  (chapter 2; Saxe et al. 2013), depth, weight scale and initialisation as controls.
- gradient_flow_explorer: per-layer gradient flow of an MLP on digits after a few SGD steps
  (chapter 3), depth, activation and initialisation as controls. It runs
  `course_lib.widgets.run_experiment`, the experiment behind the full ipywidgets explorer.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .data import DigitsSplit, load_digits
from .deep_linear import closed_form_gradients, make_deep_linear, scaled_orthogonal_norms, weights_of
from .diagnosis import diagnose
from .diagnostic_plots import plot_gradient_flow
from .plots import STYLE
from .static_explorer import Control, StaticExplorer
from .widgets import ExplorerSettings, run_experiment

# ---------------------------------------------------------------------------------------------
# chapter 1: gradient descent on a quadratic bowl


def gd_on_quadratic(
    lr: float, curvatures: tuple[float, float], start: tuple[float, float] = (-4.0, 3.0), steps: int = 25
) -> np.ndarray:
    """Iterates of w ← w − η ∇f(w) for f(w) = ½ Σ_i a_i w_i², gradients by autograd. Returns (steps+1, 2)."""
    a = torch.tensor(curvatures, dtype=torch.float64)
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    path = [w.detach().clone()]
    for _ in range(steps):
        loss = 0.5 * (a * w * w).sum()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
        w.grad = None
        path.append(w.detach().clone())
    return torch.stack(path).numpy()


def render_learning_rate(lr: float, condition: float, curvature: float = 10.0, steps: int = 25) -> Figure:
    """Contours and the GD path (left), f(w_t) against t (right), for L = curvature, κ = condition."""
    a = (curvature / condition, curvature)  # curvatures along w1 and w2; L = max = curvature
    path = gd_on_quadratic(lr, a, steps=steps)
    f = 0.5 * (a[0] * path[:, 0] ** 2 + a[1] * path[:, 1] ** 2)
    big_l = max(a)
    regime = (
        "converges"
        if lr < 1 / big_l
        else (
            "oscillates, converges"
            if lr < 2 / big_l
            else ("oscillates forever" if lr == 2 / big_l else "diverges")
        )
    )
    with plt.rc_context(STYLE):
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.0, 3.4), gridspec_kw={"width_ratios": [1.2, 1]})
        g = np.linspace(-5, 5, 101)
        x1, x2 = np.meshgrid(g, g)
        ax.contour(x1, x2, 0.5 * (a[0] * x1**2 + a[1] * x2**2), levels=12, colors="0.75", linewidths=0.8)
        shown = np.clip(path, -5, 5)
        ax.plot(shown[:, 0], shown[:, 1], "o-", ms=3, color="C3", lw=1.2)
        ax.plot(*path[0], "ks", ms=5)
        ax.set(xlim=(-5, 5), ylim=(-5, 5), xlabel="$w_1$", ylabel="$w_2$", aspect="equal")
        ax.set_title(f"η = {lr:g}, L = {big_l:g}, κ = {condition:g}: {regime}", fontsize=10)
        ax2.semilogy(np.arange(len(f)), np.maximum(f, 1e-30), "o-", ms=3, color="C3")
        ax2.set(xlabel="step t", ylabel="$f(w_t)$", ylim=(1e-12, 1e8))
        ax2.axhline(f[0], color="0.6", lw=0.8, ls="--")
        ax2.set_title(f"η·L = {lr * big_l:.2f} (1 and 2 are the thresholds)", fontsize=10)
        fig.tight_layout()
    return fig


def learning_rate_explorer(
    lrs: Sequence[float] = (0.02, 0.09, 0.11, 0.19, 0.2, 0.21),
    conditions: Sequence[float] = (10.0, 1.0),
    *,
    default_lr: float = 0.09,
) -> StaticExplorer:
    """η slider × condition number over GD on f(w) = ½(a₁w₁² + a₂w₂²), L = a₂ = 10."""
    return StaticExplorer(
        render_learning_rate,
        [
            Control("lr", tuple(lrs), default=default_lr, label="learning rate η"),
            Control("condition", tuple(conditions), label="condition number κ", widget="select"),
        ],
        title="Gradient descent on a quadratic bowl",
    )


# ---------------------------------------------------------------------------------------------
# chapter 2: the product of Jacobians in a deep linear network


def render_deep_linear(depth: int, weight_scale: float, init: str, width: int = 32, seed: int = 0) -> Figure:
    """Measured ‖∂L/∂h_l‖ (dots) against the closed form s^(L-l)‖E‖ (line), l = 1..depth."""
    gen = torch.Generator().manual_seed(seed)
    model = make_deep_linear(depth, width, weight_scale=weight_scale, init=init, generator=gen)
    x = torch.randn(64, width, generator=gen)
    y = torch.randn(64, width, generator=gen)
    out_grads, _ = closed_form_gradients(weights_of(model), x, y)
    measured = [g.norm().item() for g in out_grads]
    theory, _ = scaled_orthogonal_norms(depth, weight_scale, out_grads[-1].norm().item(), 1.0)
    layers = np.arange(1, depth + 1)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        ax.semilogy(layers, theory, "-", color="0.4", lw=1.2, label="closed form $s^{L-l}\\,\\|E\\|$")
        ax.semilogy(layers, measured, "o", ms=4, color="C0", label=f"measured ({init} init)")
        ax.set(xlim=(0, 41), ylim=(1e-6, 1e6), xlabel="layer l (input → output)", ylabel="‖∂L/∂h_l‖")
        ratio = measured[0] / measured[-1]
        ax.set_title(f"depth {depth}, s = {weight_scale:g}: first/last layer = {ratio:.2g}", fontsize=10)
        ax.legend(loc="upper right")
        fig.tight_layout()
    return fig


def deep_linear_explorer(
    depths: Sequence[int] = (10, 20, 40),
    scales: Sequence[float] = (0.8, 0.9, 1.0, 1.1, 1.2),
    inits: Sequence[str] = ("orthogonal",),
) -> StaticExplorer:
    """depth × weight scale (× initialisation, when more than one) over a deep linear net's backward signal."""
    controls = [
        Control("depth", tuple(depths), default=depths[len(depths) // 2]),
        Control(
            "weight_scale", tuple(scales), default=1.0 if 1.0 in scales else None, label="weight scale s"
        ),
    ]
    if len(inits) > 1:
        controls.append(Control("init", tuple(inits), label="initialisation", widget="select"))

    def render(depth: int, weight_scale: float, init: str = inits[0]) -> Figure:
        return render_deep_linear(depth, weight_scale, init)

    render.__name__ = "render_deep_linear"
    return StaticExplorer(
        render,
        controls,
        title="Backward signal through a deep linear network",
    )


# ---------------------------------------------------------------------------------------------
# chapter 3: gradient flow of an MLP on digits


def render_gradient_flow(
    depth: int, activation: str, init: str, steps: int = 3, width: int = 32, data: DigitsSplit | None = None
) -> Figure:
    """Gradient flow after `steps` SGD steps (widgets.run_experiment), with the diagnosis in the title."""
    settings = ExplorerSettings(
        depth=depth, activation=activation, init=init, steps=steps, width=width, batch_size=64
    )
    record = run_experiment(settings, data)
    kinds = ", ".join(dict.fromkeys(f.kind for f in diagnose(record)))
    fig = plot_gradient_flow(record, title=f"depth {depth}, {activation}, {init} init: {kinds}")
    ax = fig.axes[0]
    ax.set_ylim(1e-20, 1e3)  # the same scale for every setting, deep sigmoid nets included
    ax.set_xlabel("layer (input → output)")
    if depth > 12:  # too many layer names to read: keep every other one
        for k, label in enumerate(ax.get_xticklabels()):
            label.set_visible(k % 2 == 0)
    fig.tight_layout()
    return fig


def gradient_flow_explorer(
    depths: Sequence[int] = (5, 10, 20),
    activations: Sequence[str] = ("sigmoid", "tanh", "relu"),
    inits: Sequence[str] = ("default", "he"),
    *,
    steps: int = 3,
) -> StaticExplorer:
    """depth × activation × initialisation over an MLP's per-layer gradient norms on digits."""
    data = load_digits()

    def render(depth: int, activation: str, init: str) -> Figure:
        return render_gradient_flow(depth, activation, init, steps=steps, data=data)

    render.__name__ = "render_gradient_flow"
    return StaticExplorer(
        render,
        [
            Control("depth", tuple(depths), default=depths[len(depths) // 2]),
            Control("activation", tuple(activations), widget="select"),
            Control("init", tuple(inits), label="initialisation", widget="select"),
        ],
        title="Gradient flow: depth × activation × initialisation",
    )
