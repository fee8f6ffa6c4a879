"""course_lib.schedules: recorded learning rates against closed forms and against a real training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import course_lib as cl
from course_lib.schedules import lr_sequence, plot_schedules

S = torch.optim.lr_scheduler


def test_step_and_exponential_match_closed_forms():
    t = np.arange(40)
    np.testing.assert_allclose(
        lr_sequence(lambda o: S.StepLR(o, 10, gamma=0.5), 40, lr=0.2), 0.2 * 0.5 ** (t // 10)
    )
    np.testing.assert_allclose(lr_sequence(lambda o: S.ExponentialLR(o, 0.9), 40), 0.9**t, rtol=1e-12)


def test_cosine_matches_closed_form():
    t = np.arange(50)
    got = lr_sequence(lambda o: S.CosineAnnealingLR(o, T_max=50, eta_min=0.1), 50)
    np.testing.assert_allclose(got, 0.1 + 0.45 * (1 + np.cos(math.pi * t / 50)), atol=1e-12)


def test_first_entry_is_the_initial_rate_and_length():
    got = lr_sequence(lambda o: S.LinearLR(o, start_factor=0.25, total_iters=4), 7, lr=2.0)
    np.testing.assert_allclose(got, [0.5, 0.875, 1.25, 1.625, 2.0, 2.0, 2.0])
    with pytest.raises(ValueError):
        lr_sequence(lambda o: S.StepLR(o, 1), 0)


def test_matches_the_rate_seen_by_course_lib_train():
    """train() steps the scheduler once per optimiser step; History.step_lr must be lr_sequence."""
    gen = cl.seed_everything(0)
    data = cl.load_digits()
    model = cl.make_mlp(hidden=(8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    sched = S.CosineAnnealingWarmRestarts(opt, T_0=5, T_mult=2)
    hist = cl.train(
        model, data.train, optimizer=opt, scheduler=sched, max_steps=30, generator=gen, progress=False
    )
    expected = lr_sequence(lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2), 30, lr=0.3)
    np.testing.assert_allclose(hist.step_lr, expected, rtol=1e-12)


def test_plot_schedules_returns_a_figure_with_one_panel_per_schedule():
    rec = {"a": [1.0, 0.5, 0.25], "b": [1.0, 1.0, 1.0]}
    fig = plot_schedules(rec, {"a": [1.0, 0.5, 0.25]}, ncols=3, log=("a",))
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2
    assert visible[0].get_yscale() == "log"
