"""course_lib.plots: each function returns a Figure with the axes and lines its arguments call for."""

from __future__ import annotations

import math

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.figure import Figure

from course_lib.plots import STYLE, _smooth, plot_histories, plot_validation, use_course_style
from course_lib.training import History


def _history(steps: int = 20, epochs: int = 4, diverge_at: int | None = None, seed: int = 0) -> History:
    rng = np.random.default_rng(seed)
    loss = list(np.exp(-np.arange(steps) / 10) + 0.05 * rng.random(steps))
    grad = list(1.0 + rng.random(steps))
    h = History(
        step_loss=loss,
        step_grad_norm=grad,
        step_lr=[0.1] * steps,
        epoch_train_loss=list(np.linspace(1, 0.5, epochs)),
        epoch_val_loss=list(np.linspace(1, 0.6, epochs)),
        epoch_val_acc=list(np.linspace(0.5, 0.9, epochs)),
    )
    if diverge_at is not None:
        h.step_loss = h.step_loss[:diverge_at] + [math.inf]
        h.step_grad_norm = h.step_grad_norm[:diverge_at] + [math.nan]
        h.stopped_at_step = diverge_at
    return h


def test_use_course_style_sets_rcparams():
    with mpl.rc_context():
        mpl.rcParams["axes.grid"] = False
        mpl.rcParams["figure.dpi"] = 50
        use_course_style()
        for key, value in STYLE.items():
            got = mpl.rcParams[key]
            assert (tuple(got) if isinstance(value, tuple) else got) == value, key
        assert mpl.rcParams["axes.grid"] is True and mpl.rcParams["figure.dpi"] == 110


def test_plots_do_not_change_global_style():
    with mpl.rc_context():
        mpl.rcParams["figure.dpi"] = 50
        plot_histories({"a": _history()})
        plot_validation({"a": _history()})
        assert mpl.rcParams["figure.dpi"] == 50


@pytest.mark.parametrize("show_grad_norm, n_axes", [(True, 2), (False, 1)])
def test_plot_histories_axes_and_lines(show_grad_norm, n_axes):
    hists = {"sgd": _history(seed=0), "adam": _history(seed=1), "clip": _history(seed=2)}
    fig = plot_histories(hists, show_grad_norm=show_grad_norm, title="runs")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    ax_loss = fig.axes[0]
    assert len(ax_loss.lines) == 3
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["sgd", "adam", "clip"]
    np.testing.assert_allclose(ax_loss.lines[1].get_ydata(), hists["adam"].step_loss)
    np.testing.assert_array_equal(ax_loss.lines[0].get_xdata(), np.arange(20))
    assert ax_loss.get_xlabel() == "step" and ax_loss.get_yscale() == "linear"
    if show_grad_norm:
        ax_g = fig.axes[1]
        assert len(ax_g.lines) == 3 and ax_g.get_yscale() == "log"
        np.testing.assert_allclose(ax_g.lines[2].get_ydata(), hists["clip"].step_grad_norm)
    assert fig._suptitle is not None and fig._suptitle.get_text() == "runs"


def test_plot_histories_log_loss():
    fig = plot_histories({"a": _history()}, log_loss=True)
    assert fig.axes[0].get_yscale() == "log"


def test_plot_histories_marks_divergence():
    hists = {"stable": _history(), "diverged": _history(diverge_at=12, seed=1)}
    fig = plot_histories(hists)
    ax_loss = fig.axes[0]
    assert len(ax_loss.lines) == 3  # two curves and one vertical marker
    marker = ax_loss.lines[-1]
    np.testing.assert_array_equal(marker.get_xdata(), [12, 12])
    assert len(fig.axes[1].lines) == 2  # no marker on the gradient-norm axes


def test_plot_histories_smoothing():
    h = _history(steps=20)
    fig = plot_histories({"a": h}, smooth=5)
    for ax, values in zip(fig.axes, (h.step_loss, h.step_grad_norm), strict=True):
        (line,) = ax.lines
        assert len(line.get_ydata()) == 20 - 5 + 1
        # a moving average is plotted at the last step of its window, on both axes alike
        np.testing.assert_array_equal(line.get_xdata(), np.arange(4, 20))
        np.testing.assert_allclose(line.get_ydata(), np.convolve(values, np.ones(5) / 5, mode="valid"))


def test_plot_histories_window_longer_than_data():
    h = _history(steps=3)
    fig = plot_histories({"a": h}, smooth=10)  # too short to smooth: plotted as is
    (line,) = fig.axes[0].lines
    np.testing.assert_allclose(line.get_ydata(), h.step_loss)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(3))


def test_smooth_helper():
    v = [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(_smooth(v, 2), [1.5, 2.5, 3.5])
    np.testing.assert_allclose(_smooth(v, 1), v)
    np.testing.assert_allclose(_smooth(v, 5), v)


def test_plot_validation():
    hists = {"a": _history(epochs=4), "b": _history(epochs=6, seed=1)}
    fig = plot_validation(hists, title="val")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), np.arange(1, 7))
    np.testing.assert_allclose(ax.lines[0].get_ydata(), hists["a"].epoch_val_acc)
    assert ax.get_ylim() == pytest.approx((0, 1.02))
    assert ax.get_title() == "val" and ax.get_xlabel() == "epoch"


def test_plot_validation_of_a_diverged_run():
    # a run that diverged in its first epoch has no validation points: an empty line, no error
    h = _history(diverge_at=3)
    h.epoch_val_acc = []
    fig = plot_validation({"diverged": h, "ok": _history()})
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [0, 4]
