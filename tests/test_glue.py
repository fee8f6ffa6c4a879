"""course_lib.glue publishes exactly what myst_nb.glue(display=False) publishes, for Python
numbers made from NumPy scalars and tensors, and refuses what MyST-NB could not format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import course_lib.glue as cg


def _published(monkeypatch, module, attr, call):
    seen = []
    monkeypatch.setattr(module, attr, lambda data, raw, metadata: seen.append((data, metadata)))
    call()
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("value", [0.25, 3, "2 × 10⁻⁹", 1e-300])
def test_same_output_as_myst_nb(monkeypatch, value):
    import myst_nb.ext.glue as mg

    ours = _published(monkeypatch, cg, "display", lambda: cg.glue("ch00_x", value))
    theirs = _published(monkeypatch, mg, "ipy_display", lambda: mg.glue("ch00_x", value, display=False))
    assert ours == theirs
    assert cg.GLUE_PREFIX == mg.GLUE_PREFIX


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.float64(0.5), 0.5),
        (np.int64(7), 7),
        (np.float32(0.25), 0.25),
        (torch.tensor(1.5), 1.5),
        (torch.tensor([2]), 2),
        (np.array(3.0), 3.0),
    ],
)
def test_numpy_and_torch_scalars_become_python_numbers(monkeypatch, value, expected):
    data, metadata = _published(monkeypatch, cg, "display", lambda: cg.glue("ch00_y", value))
    assert data == {cg.GLUE_PREFIX + "text/plain": repr(expected)}
    assert metadata == {"scrapbook": {"name": "ch00_y", "mime_prefix": cg.GLUE_PREFIX}}
    assert type(cg.plain(value)) is type(expected)


@pytest.mark.parametrize("value", [torch.zeros(3), np.zeros((2, 2)), [1, 2], None])
def test_non_numbers_are_refused(value):
    with pytest.raises(TypeError, match="glue"):
        cg.glue("ch00_z", value)
