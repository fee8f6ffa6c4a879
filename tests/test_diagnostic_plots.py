"""course_lib.diagnostic_plots: each plot returns a Figure that draws what the record holds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from course_lib.data import load_digits
from course_lib.diagnosis import run_case
from course_lib.diagnostic_plots import (
    plot_gradient_flow,
    plot_gradient_heatmap,
    plot_layer_histograms,
    plot_update_ratios,
)
from course_lib.models import make_mlp
from course_lib.monitor import GradientMonitor, MonitorConfig
from course_lib.plots import STYLE
from course_lib.training import train


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = make_mlp(hidden=(16,) * 4, activation="tanh", init="xavier")
    with GradientMonitor(model, MonitorConfig(histogram_every=5)) as mon:
        train(model, load_digits().train, lr=0.1, epochs=1, max_steps=12, callbacks=[mon], progress=False)
    return mon.record


def test_gradient_flow_draws_the_median_per_layer(trained):
    fig = plot_gradient_flow(trained)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    line = ax.lines[0]
    want = np.median(
        trained.matrix(
            "out_grad_norm", ["hidden1.linear", "hidden2.linear", "hidden3.linear", "hidden4.linear", "out"]
        ),
        axis=1,
    )
    np.testing.assert_allclose(line.get_ydata(), want)
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "hidden1.linear"


def test_gradient_flow_compares_runs_and_marks_zeros(trained):
    dead = run_case("relu_negative_bias")
    fig = plot_gradient_flow({"tanh": trained, "dead ReLU": dead}, stat="grad_norm")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["tanh", "dead ReLU"]
    assert any("exactly 0" in t.get_text() for t in ax.texts), (
        "zero gradients are marked, not silently dropped"
    )
    with pytest.raises(KeyError, match="unknown statistic"):
        plot_gradient_flow(trained, stat="nope")


def test_histograms_one_curve_per_layer(trained):
    fig = plot_layer_histograms(trained)
    left, right = fig.axes
    assert len(left.lines) == 4 and len(right.lines) == 4, "four tanh layers"
    assert "step 10" in fig._suptitle.get_text()
    x = left.lines[0].get_xdata()
    assert x.min() >= -1 and x.max() <= 1, "tanh outputs"
    assert "log10" in right.get_xlabel()
    fig0 = plot_layer_histograms(trained, step=0, layers=["hidden1.act"])
    assert len(fig0.axes[0].lines) == 1
    with pytest.raises(KeyError, match="no samples at step 3"):
        plot_layer_histograms(trained, step=3)


def test_heatmap_is_layers_by_steps(trained):
    fig = plot_gradient_heatmap(trained)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (5, trained.n_steps)
    np.testing.assert_allclose(image[0], np.log10(trained.matrix("out_grad_norm", ["hidden1.linear"])[0]))


def test_update_ratios_with_guide_line(trained):
    fig = plot_update_ratios(trained)
    ax = fig.axes[0]
    guide = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(guide) == 1 and np.allclose(guide[0].get_ydata(), 1e-3)
    assert len(ax.lines) == 5 + 1
    np.testing.assert_allclose(ax.lines[0].get_ydata(), trained.matrix("update_ratio", ["hidden1.linear"])[0])


def test_plots_compose_into_one_figure_and_use_the_course_style(trained):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    assert plot_gradient_flow(trained, ax=axes[0]) is fig
    assert plot_gradient_heatmap(trained, ax=axes[1]) is fig
    assert plot_update_ratios(trained, ax=axes[2]) is fig
    own = plot_gradient_flow(trained)
    assert own.get_dpi() == STYLE["figure.dpi"]
    assert not own.axes[0].spines["top"].get_visible()


def test_clear_errors_when_the_record_lacks_what_a_plot_needs():
    no_updates = run_case("relu_he")  # record_step(): no optimiser step, no histograms
    with pytest.raises(ValueError, match="no update ratio"):
        plot_update_ratios(no_updates)
    with pytest.raises(ValueError, match="histogram_every"):
        plot_layer_histograms(no_updates)
    with pytest.raises(TypeError, match="MonitorRecord"):
        plot_gradient_flow([1, 2, 3])  # type: ignore[arg-type]
