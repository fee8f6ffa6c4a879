"""Learning-rate schedules: record what a `torch.optim.lr_scheduler` does, and draw it.

A scheduler changes `optimizer.param_groups[i]["lr"]` each time `scheduler.step()` is
called. `lr_sequence` runs one on a throw-away optimiser and records the learning rate
used by every optimiser step, so a schedule can be compared with its closed form and
drawn before any training is spent on it. `plot_schedules` draws several side by side,
each recorded sequence (dots) over a closed form (line) when one is given.

Convention (the one `course_lib.train` uses): the scheduler is stepped once per optimiser
step, so entry t is the learning rate of step t, counting from 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .plots import STYLE

MakeScheduler = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def lr_sequence(make_scheduler: MakeScheduler, steps: int, lr: float = 1.0) -> np.ndarray:
    """The learning rate of optimiser steps 0..steps-1 under make_scheduler(SGD(lr)).

    make_scheduler: e.g. `lambda opt: torch.optim.lr_scheduler.StepLR(opt, 30, 0.1)`.
    Returns a float64 array of length `steps`.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = make_scheduler(opt)
    out = np.empty(steps)
    for t in range(steps):
        out[t] = opt.param_groups[0]["lr"]
        opt.step()  # nothing to update (no gradient), but keeps the optimiser-then-scheduler order
        sched.step()
    return out


def plot_schedules(
    recorded: Mapping[str, Sequence[float]],
    closed_forms: Mapping[str, Sequence[float]] | None = None,
    *,
    ncols: int = 3,
    log: Sequence[str] = (),
    title: str | None = None,
) -> Figure:
    """One panel per named schedule: recorded learning rates (dots) over the closed form (line).

    log: names of the panels to draw with a logarithmic learning-rate axis.
    """
    names = list(recorded)
    nrows = -(-len(names) // ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows), squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            lrs = np.asarray(recorded[name], dtype=float)
            t = np.arange(len(lrs))
            if closed_forms and name in closed_forms:
                ax.plot(t, closed_forms[name], "-", color="0.35", lw=1.2, label="closed form")
            ax.plot(t, lrs, "o", ms=2.2, color="C0", label="torch scheduler")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("step t")
            if name in log:
                ax.set_yscale("log")
        axes.flat[0].set_ylabel("learning rate")
        axes.flat[0].legend(fontsize=8)
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig
