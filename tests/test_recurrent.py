"""course_lib.recurrent: the unrolled cells against PyTorch's fused RNN/LSTM, the spectral radius
set exactly, and the gradient through time against ρ^(T-1) in the linear regime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.monitor import GradientMonitor
from course_lib.recurrent import (
    RecurrentConfig,
    RecurrentNet,
    make_rnn,
    recurrent_radii,
    scale_recurrent_,
    spectral_radius,
)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("per_step", [False, True])
def test_shapes(cell, per_step):
    model = make_rnn(cell, input_size=3, hidden_size=8, output_size=5, num_layers=2, per_step=per_step)
    out = model(torch.randn(4, 6, 3))
    assert out.shape == ((4, 6, 5) if per_step else (4, 5))
    assert [n for n, _ in model.named_children()] == ["cells", "head"]


@pytest.mark.parametrize(("cell", "fused"), [("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_unrolled_cells_equal_pytorch_fused_layers(cell, fused):
    torch.manual_seed(0)
    model = make_rnn(cell, input_size=3, hidden_size=8, output_size=2, num_layers=2, per_step=True)
    ref = fused(3, 8, num_layers=2, batch_first=True)
    with torch.no_grad():
        for k, c in enumerate(model.cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{k}").copy_(getattr(c, name))
    x = torch.randn(4, 9, 3)
    hs, _ = ref(x)
    torch.testing.assert_close(model(x), model.head(hs))


def test_scale_recurrent_sets_the_radius():
    torch.manual_seed(0)
    for cell in ("rnn", "lstm"):
        model = make_rnn(cell, hidden_size=16)
        scale_recurrent_(model, 1.2)
        for radii in recurrent_radii(model).values():
            assert np.allclose(radii, 1.2, rtol=1e-5), radii
    model = make_rnn("rnn", hidden_size=16)
    scale_recurrent_(model, 0.9, orthogonal=True)
    w = model.cells[0].weight_hh.detach().double()
    sv = torch.linalg.svdvals(w)
    assert torch.allclose(sv, torch.full_like(sv, 0.9), atol=1e-5), (
        "orthogonal: every singular value is the radius"
    )
    fused = nn.LSTM(2, 4)
    scale_recurrent_(fused, 0.5)
    assert np.allclose(recurrent_radii(fused)["weight_hh_l0"], 0.5, rtol=1e-5)
    assert "radius" in repr(model)


def test_spectral_radius_against_numpy():
    a = torch.randn(7, 7, generator=torch.Generator().manual_seed(0))
    assert spectral_radius(a) == pytest.approx(float(np.abs(np.linalg.eigvals(a.numpy())).max()), rel=1e-5)
    with pytest.raises(ValueError, match="square"):
        spectral_radius(torch.randn(2, 3))


@pytest.mark.parametrize("radius", [0.9, 1.0, 1.2])
def test_gradient_through_time_is_radius_to_the_T_minus_1(radius):
    """Linear regime (tiny inputs, no bias), orthogonal W_hh: ‖∂L/∂h_1‖/‖∂L/∂h_T‖ ≈ ρ^(T-1) (Pascanu et al. 2013)."""
    torch.manual_seed(0)
    t_steps = 20
    model = make_rnn("rnn", input_size=1, hidden_size=32, output_size=2)
    scale_recurrent_(model, radius, orthogonal=True)
    with torch.no_grad():
        model.cells[0].bias_ih.zero_()
        model.cells[0].bias_hh.zero_()
    x = 1e-4 * torch.randn(16, t_steps, 1)
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), torch.randint(0, 2, (16,))).backward()
        mon.record_step()
    rec = mon.record
    ratio = rec.matrix("time_grad_first", ["cells.0"])[0, 0] / rec.matrix("time_grad_last", ["cells.0"])[0, 0]
    assert ratio == pytest.approx(radius ** (t_steps - 1), rel=0.01)


def test_bad_input():
    with pytest.raises(ValueError, match="cell"):
        RecurrentConfig(cell="transformer")
    with pytest.raises(ValueError, match="positive"):
        RecurrentConfig(hidden_size=0)
    model = RecurrentNet(input_size=2)
    with pytest.raises(ValueError, match=r"\(B, T, 2\)"):
        model(torch.randn(4, 2))
    with pytest.raises(ValueError, match="radius"):
        scale_recurrent_(model, -1.0)
    with pytest.raises(TypeError, match="no recurrent layer"):
        scale_recurrent_(nn.Linear(2, 2), 1.0)
