"""Plots of a MonitorRecord in the course style. Every function returns its Figure.

- plot_gradient_flow: ‖∂L/∂h_l‖ per layer, input to output, log scale; several runs at once.
- plot_layer_histograms: per-layer distributions of activations and back-propagated
  gradients, as in Glorot & Bengio (2010), figures 3-7.
- plot_gradient_heatmap: a layer × step map of log10 gradient norms.
- plot_update_ratios: ‖Δθ‖/‖θ‖ per layer over training, against the ~1e-3 guide line.

Pass `ax=` to draw into an axes of a larger figure (the function then returns that figure).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .monitor import GradientMonitor
from .monitor_record import LAYER_STATS, MonitorRecord
from .plots import STYLE

Recordish = MonitorRecord | GradientMonitor
WEIGHTED = ("linear", "conv", "recurrent", "custom")  # as diagnosis.WEIGHTED
STAT_LABELS = {
    "out_grad_norm": "‖∂L/∂h‖₂ (layer output)",
    "grad_norm": "‖∂L/∂θ‖₂ (layer parameters)",
    "act_std": "activation std",
    "update_ratio": "update/data ratio ‖Δθ‖/‖θ‖",
}


_backend_ready = False


def _ensure_backend() -> None:
    """Load pyplot's backend once, outside any rc_context.

    In a Jupyter kernel the inline backend switches interactive mode on when it loads. If it
    first loads inside `plt.rc_context`, leaving the context restores interactive=False and
    no later figure of the notebook is displayed; creating (and closing) one figure first
    avoids that.
    """
    global _backend_ready
    if not _backend_ready:
        plt.close(plt.figure())
        _backend_ready = True


def _record(r: Recordish) -> MonitorRecord:
    _ensure_backend()  # every plot function calls _record before it enters rc_context
    if isinstance(r, GradientMonitor):
        return r.record
    if not isinstance(r, MonitorRecord):
        raise TypeError(f"expected a MonitorRecord or a GradientMonitor, got {type(r).__name__}")
    if r.n_steps == 0:
        raise ValueError("the record has no steps yet: train with the monitor or call record_step() first")
    return r


def _pick(rec: MonitorRecord, kinds: Sequence[str] | None, layers: Sequence[str] | None) -> list[str]:
    if layers is not None:
        return list(layers)
    names = [i.name for i in rec.layer_info if kinds is None or i.kind in kinds]
    if not names:
        raise ValueError(f"no monitored layer of kind {kinds}; the layers are {rec.layers}")
    return names


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new = plt.subplots(figsize=figsize)
    return fig, new


def _positive(a: np.ndarray) -> np.ndarray:
    """Values a log axis can show: zeros and negatives become NaN (not drawn)."""
    return np.where(a > 0, a, np.nan)


def plot_gradient_flow(
    records: Recordish | Mapping[str, Recordish],
    *,
    stat: str = "out_grad_norm",
    kinds: Sequence[str] | None = WEIGHTED,
    step: int | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Median of `stat` over steps (or at `step`) per layer, input on the left; band: min to max over steps."""
    runs = {
        label: _record(r)
        for label, r in (records.items() if isinstance(records, Mapping) else [("", records)])
    }
    if stat not in LAYER_STATS:
        raise KeyError(f"unknown statistic {stat!r}; choose from {LAYER_STATS}")
    with plt.rc_context(STYLE):
        fig, ax = _axes(ax, (6.4, 3.8))
        hidden_zero = False
        for label, rec in runs.items():
            names = _pick(rec, kinds, None)
            vals = rec.matrix(stat, names)  # (layers, steps)
            x = np.arange(1, len(names) + 1)
            at = (
                vals[:, step] if step is not None else np.nanmedian(np.where(np.isnan(vals), np.inf, vals), 1)
            )
            zero = x[at == 0]
            if zero.size:  # mark layers whose gradient is exactly zero at the bottom edge
                hidden_zero = True
                ax.plot(
                    zero,
                    np.zeros(zero.size),
                    "v",
                    color="0.3",
                    ms=6,
                    clip_on=False,
                    transform=ax.get_xaxis_transform(),
                )
            vals = _positive(vals)
            if step is not None:
                ax.plot(x, vals[:, step], marker="o", ms=3, label=label or None)
            else:
                with warnings.catch_warnings():  # a layer with no value at all is a gap
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mid, lo, hi = np.nanmedian(vals, 1), np.nanmin(vals, 1), np.nanmax(vals, 1)
                (line,) = ax.plot(x, mid, marker="o", ms=3, label=label or None)
                if vals.shape[1] > 1:
                    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_yscale("log")
        ax.set_ylabel(STAT_LABELS.get(stat, stat))
        if len(runs) == 1 and len(names) <= 24:
            ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
            ax.set_xlabel("layer (input → output)")
        else:
            ax.set_xlabel("layer index (input → output)")
        if hidden_zero:
            ax.text(
                0.01, 0.03, "▼ exactly 0 (off the log scale)", transform=ax.transAxes, fontsize=8, color="0.3"
            )
        if len(runs) > 1:
            ax.legend()
        ax.set_title(title or "gradient flow")
        fig.tight_layout()
    return fig


def plot_layer_histograms(
    record: Recordish,
    *,
    step: int | None = None,
    layers: Sequence[str] | None = None,
    bins: int = 40,
    title: str | None = None,
) -> Figure:
    """Per-layer distributions: activation values (left) and log10 |∂L/∂h| (right), one curve per layer.

    In the style of Glorot & Bengio (2010): curves shift and narrow from layer to layer when
    signals saturate, vanish or explode. The gradient panel uses log10 of the magnitudes so that
    layers many orders of magnitude apart share one axis (exact zeros are left out and counted).
    Layers default to the activation modules (the weighted layers if there are none); `step`
    defaults to the last step with samples. Needs MonitorConfig(histogram_every=N).
    """
    rec = _record(record)
    if not rec.samples:
        raise ValueError(
            "no histogram samples were kept: create the monitor with MonitorConfig(histogram_every=N)"
        )
    step = max(rec.samples) if step is None else step
    if step not in rec.samples:
        raise KeyError(f"no samples at step {step}; samples were kept at steps {sorted(rec.samples)}")
    kept = rec.samples[step]
    if layers is None:
        acts = [n for n in rec.layers if n in kept and _kind(rec, n) == "activation"]
        layers = acts or [n for n in _pick(rec, WEIGHTED, None) if n in kept]
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(layers), 1)))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8))
        can_die = {info.name: info.can_die for info in rec.layer_info}
        for ax, what in zip(axes, ("act", "grad"), strict=True):
            series, zeros, total = {}, 0, 0
            for name in layers:
                v = kept.get(name, {}).get(what)
                if v is None:
                    continue
                v = v[np.isfinite(v)]
                if what == "grad" or can_die.get(name, False):  # ReLU's zeros, gradients' zeros: counted
                    zeros, total = zeros + int(np.sum(v == 0)), total + v.size
                    v = v[v != 0]
                series[name] = np.log10(np.abs(v)) if what == "grad" else v
            pooled = np.concatenate(list(series.values())) if series else np.empty(0)
            if pooled.size == 0:
                ax.text(0.5, 0.5, "no samples", ha="center", transform=ax.transAxes)
                continue
            lo, hi = float(pooled.min()), float(pooled.max())
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
            centres = (edges[:-1] + edges[1:]) / 2
            for name, v in series.items():
                density, _ = np.histogram(v, bins=edges, density=True)
                ax.plot(centres, density, color=colors[list(layers).index(name)], lw=1.3, label=name)
            ax.set_ylabel("density")
            if zeros:
                ax.text(
                    0.01,
                    0.97,
                    f"exact zeros left out: {zeros / total:.0%}",
                    transform=ax.transAxes,
                    fontsize=8,
                    va="top",
                )
        axes[0].set_xlabel("activation value")
        axes[1].set_xlabel("log10 |∂L/∂h|  (back-propagated gradient)")
        if len(layers) <= 12:
            axes[0].legend(fontsize=8, loc="upper right")
        fig.suptitle(title or f"per-layer distributions at step {step} (input: dark, output: light)")
        fig.tight_layout()
    return fig


def _kind(rec: MonitorRecord, name: str) -> str:
    return next(i.kind for i in rec.layer_info if i.name == name)


def plot_gradient_heatmap(
    record: Recordish,
    *,
    stat: str = "out_grad_norm",
    kinds: Sequence[str] | None = WEIGHTED,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """log10 of `stat` as a (layers × steps) image, input layer at the top; grey: not measured or 0."""
    rec = _record(record)
    names = _pick(rec, kinds, None)
    with np.errstate(all="ignore"):
        img = np.log10(_positive(rec.matrix(stat, names)))
    cmap = plt.get_cmap("magma").with_extremes(bad="0.85")
    steps = rec.steps
    gap = float(steps[1] - steps[0]) if len(steps) > 1 else 1.0  # MonitorConfig(every=N) spaces them N apart
    extent = (steps[0] - gap / 2, steps[-1] + gap / 2, len(names) - 0.5, -0.5)
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = _axes(ax, (7.0, 0.8 + 0.22 * len(names) + 1.2))
        mesh = ax.imshow(
            np.ma.masked_invalid(img), aspect="auto", cmap=cmap, interpolation="nearest", extent=extent
        )
        fig.colorbar(mesh, ax=ax, label=f"log10 {STAT_LABELS.get(stat, stat)}")
        ax.set_yticks(np.arange(len(names)), names, fontsize=8 if len(names) <= 30 else 5)
        ax.set_xlabel("step")
        ax.set_title(title or "gradient norm per layer and step")
        fig.tight_layout()
    return fig


def plot_update_ratios(
    record: Recordish,
    *,
    kinds: Sequence[str] | None = WEIGHTED,
    layers: Sequence[str] | None = None,
    target: float = 1e-3,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """‖Δθ‖/‖θ‖ per layer at each step (log scale) with the healthy ~1e-3 guide line."""
    rec = _record(record)
    names = _pick(rec, kinds, layers)
    ratios = rec.matrix("update_ratio", names)
    if np.all(np.isnan(ratios)):
        raise ValueError(
            "no update ratio was recorded: it needs an optimiser step between on_after_backward() "
            "and on_step_end() (train(..., callbacks=[monitor]) does this; record_step() does not)"
        )
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(names)))
    with plt.rc_context(STYLE):
        fig, ax = _axes(ax, (7.4, 3.8))
        for name, row, color in zip(names, ratios, colors, strict=True):
            ax.plot(rec.steps, _positive(row), color=color, lw=1.2, label=name)
        ax.axhline(target, ls="--", color="crimson", lw=1.2, label=f"{target:g} guide")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(STAT_LABELS["update_ratio"])
        if len(names) <= 12:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title(title or "update-to-data ratio (input: dark, output: light)")
        fig.tight_layout()
    return fig
