"""course_lib.momentum: heavy-ball runs on quadratics against the theory of Polyak (1964)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from course_lib.momentum import (
    measured_rate,
    momentum_explorer,
    quadratic_spectrum,
    render_momentum,
    run_on_quadratic,
)


def test_spectrum_ends_and_order():
    lam = quadratic_spectrum(100, n=5, big_l=2.0)
    assert lam.dtype == torch.float64 and lam.shape == (5,)
    assert math.isclose(lam[0].item(), 0.02) and math.isclose(lam[-1].item(), 2.0)
    assert bool((lam[1:] > lam[:-1]).all())
    with pytest.raises(ValueError):
        quadratic_spectrum(0.5)


def test_gradient_descent_rate_is_the_theory():
    """GD at η = 2/(μ+L) contracts by (κ-1)/(κ+1) per step."""
    kappa = 50.0
    lam = quadratic_spectrum(kappa)
    norms = run_on_quadratic(lambda p: torch.optim.SGD(p, lr=2 / (1 + 1 / kappa)), lam, 400)
    assert len(norms) == 401 and norms[0] == pytest.approx(math.sqrt(20))
    assert measured_rate(norms) == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-4)


def test_heavy_ball_rate_is_polyaks():
    kappa = 100.0
    lam = quadratic_spectrum(kappa)
    lr = 4 / (1 + math.sqrt(1 / kappa)) ** 2
    beta = ((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)) ** 2
    norms = run_on_quadratic(lambda p: torch.optim.SGD(p, lr=lr, momentum=beta), lam, 1500)
    # critically damped extremes decay like t * rate^t: the measured factor is a little above
    assert measured_rate(norms) == pytest.approx(math.sqrt(beta), rel=3e-3)


def test_one_direction_matches_the_scalar_recursion():
    lam = torch.tensor([0.3], dtype=torch.float64)
    norms = run_on_quadratic(
        lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.6), lam, 30, w0=torch.tensor([2.0])
    )
    w, b, ref = 2.0, 0.0, [2.0]
    for _ in range(30):
        b = 0.6 * b + 0.3 * w
        w = w - 0.5 * b
        ref.append(abs(w))
    np.testing.assert_allclose(norms, ref, rtol=1e-12)


def test_measured_rate_of_a_geometric_sequence_and_divergence():
    assert measured_rate(0.5 ** np.arange(11)) == pytest.approx(0.5)
    assert measured_rate(0.5 ** np.arange(11), start=0) == pytest.approx(0.5)
    assert measured_rate([1.0, 2.0, float("inf")]) == float("inf")
    with pytest.raises(ValueError):
        measured_rate([1.0, 0.5], start=1)


def test_explorer_renders_every_frame():
    fig = render_momentum(0.5, 10.0, steps=20)
    assert isinstance(fig, Figure)
    ex = momentum_explorer(betas=(0.0, 0.5), conditions=(10.0,))
    assert ex.n_frames == 2
    assert "Momentum on an ill-conditioned bowl" in ex.to_html()
