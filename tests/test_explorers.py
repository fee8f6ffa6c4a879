"""course_lib.explorers: the chapters' interactive figures compute what they claim, checked
against closed forms, and their controls match their render functions."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from course_lib.explorers import (
    deep_linear_explorer,
    gd_on_quadratic,
    gradient_flow_explorer,
    learning_rate_explorer,
    render_deep_linear,
    render_gradient_flow,
    render_learning_rate,
)


@pytest.mark.parametrize("lr", [0.02, 0.15, 0.21])
def test_gd_on_quadratic_matches_the_closed_form(lr):
    a = np.array([1.0, 10.0])
    path = gd_on_quadratic(lr, tuple(a), start=(-4.0, 3.0), steps=12)
    t = np.arange(13)[:, None]
    expected = np.array([-4.0, 3.0]) * (1 - lr * a) ** t  # w_t = (1 - η a)^t w_0 per coordinate
    np.testing.assert_allclose(path, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("lr", "regime"),
    [(0.05, "converges"), (0.15, "oscillates, converges"), (0.2, "oscillates forever"), (0.21, "diverges")],
)
def test_learning_rate_figure_names_the_regime(lr, regime):
    fig = render_learning_rate(lr, condition=1.0)
    assert fig.axes[0].get_title().endswith(f": {regime}")
    f = fig.axes[1].lines[0].get_ydata()
    if regime == "diverges":
        assert f[-1] > 10 * f[0]
    elif regime == "oscillates forever":
        np.testing.assert_allclose(f[-1], f[0], rtol=1e-9)
    else:
        assert np.all(np.diff(f) < 0) and f[-1] < 0.1 * f[0], "the loss falls at every step"


def test_deep_linear_figure_agrees_with_the_closed_form():
    fig = render_deep_linear(20, 1.1, "orthogonal")
    theory, measured = (line.get_ydata() for line in fig.axes[0].lines[:2])
    np.testing.assert_allclose(measured, theory, rtol=1e-4)
    assert measured[0] / measured[-1] == pytest.approx(1.1**19, rel=1e-4), "exploding towards the input"
    fig = render_deep_linear(20, 0.9, "orthogonal")
    measured = fig.axes[0].lines[1].get_ydata()
    assert measured[0] / measured[-1] == pytest.approx(0.9**19, rel=1e-4), "vanishing towards the input"


def test_gradient_flow_figure_shows_the_diagnosis():
    fig = render_gradient_flow(12, "sigmoid", "default")
    assert "vanishing" in fig.axes[0].get_title()
    assert len(fig.axes[0].lines[0].get_xdata()) == 13, "12 hidden layers and the output layer"
    fig = render_gradient_flow(5, "relu", "he")
    assert "healthy" in fig.axes[0].get_title()


@pytest.mark.parametrize("factory", [learning_rate_explorer, deep_linear_explorer, gradient_flow_explorer])
def test_explorers_are_small_and_match_their_render_functions(factory):
    ex = factory()
    params = inspect.signature(ex.render).parameters
    for c in ex.controls:
        assert c.name in params, f"{c.name} is not an argument of {ex.render.__name__}"
        assert c.default in c.values
    assert 6 <= ex.n_frames <= 20, "every frame is computed at build time: keep the grid small"
    assert len(ex.controls) >= 2
