"""Plots in one consistent style. Every function returns its Figure so chapters can compose them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .training import History

STYLE = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.6,
    "savefig.bbox": "tight",
}


def use_course_style() -> None:
    """Apply the course's matplotlib style globally (chapters call this once at the top)."""
    plt.rcParams.update(STYLE)


def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    kernel = np.ones(window) / window
    return np.convolve(v, kernel, mode="valid")


def plot_histories(
    histories: Mapping[str, History],
    *,
    smooth: int = 1,
    log_loss: bool = False,
    show_grad_norm: bool = True,
    title: str | None = None,
) -> Figure:
    """Loss per step (and gradient norm per step) for several named runs, on shared axes."""
    with plt.rc_context(STYLE):
        ncols = 2 if show_grad_norm else 1
        fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 3.6), squeeze=False)
        ax_loss = axes[0, 0]
        for label, hist in histories.items():
            ys = _smooth(hist.step_loss, smooth)
            ax_loss.plot(np.arange(len(ys)) + (smooth - 1 if len(ys) < hist.steps else 0), ys, label=label)
            if hist.diverged:
                ax_loss.axvline(hist.stopped_at_step, ls=":", color="crimson", lw=1)
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("training loss")
        if log_loss:
            ax_loss.set_yscale("log")
        ax_loss.legend()
        if show_grad_norm:
            ax_g = axes[0, 1]
            for label, hist in histories.items():
                gs = _smooth(hist.step_grad_norm, smooth)
                shift = smooth - 1 if len(gs) < len(hist.step_grad_norm) else 0
                ax_g.plot(np.arange(len(gs)) + shift, gs, label=label)  # aligned with the loss curve
            ax_g.set_yscale("log")
            ax_g.set_xlabel("step")
            ax_g.set_ylabel("gradient norm ‖∇L‖₂")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


def plot_validation(histories: Mapping[str, History], *, title: str | None = None) -> Figure:
    """Validation accuracy per epoch for several named runs."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for label, hist in histories.items():
            ax.plot(
                np.arange(1, len(hist.epoch_val_acc) + 1), hist.epoch_val_acc, marker="o", ms=3, label=label
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend()
        if title:
            ax.set_title(title)
        fig.tight_layout()
    return fig
