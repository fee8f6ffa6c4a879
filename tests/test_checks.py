"""course_lib.checks: every check passes what it should, fails what it should, and says why."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from course_lib.checks import (
    CheckFailed,
    ForbiddenCall,
    check_close,
    check_finite,
    check_keys,
    check_shape,
    check_true,
    check_unchanged,
    forbid,
    substitute,
    to_tensor,
)


def _fails(fn, *args, **kwargs) -> str:
    """Run a check that must fail; return its message."""
    with pytest.raises(CheckFailed) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_check_failed_is_an_assertion_error():
    assert issubclass(CheckFailed, AssertionError)
    assert issubclass(ForbiddenCall, CheckFailed)


# ---- check_close -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "actual, expected",
    [
        (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])),
        (torch.tensor([1.0, 2.0]) * (1 + 5e-6), torch.tensor([1.0, 2.0])),  # within rtol=1e-5
        (np.array([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float32)),
        (3, 3.0),
        ([0.5, 1.5], (0.5, 1.5)),
        (torch.tensor([1.0, 2.0], requires_grad=True), [1.0, 2.0]),
        (torch.tensor([True, False]), [1.0, 0.0]),
        (torch.tensor([math.inf, 1.0]), [math.inf, 1.0]),  # an expected inf is matched by inf
        (torch.tensor([math.nan, 1.0]), [math.nan, 1.0]),  # ... and an expected NaN by NaN
    ],
)
def test_check_close_passes(actual, expected):
    check_close("x", actual, expected)


def test_check_close_tolerances():
    check_close("x", 1.1, 1.0, rtol=0.2)
    check_close("x", 1.1, 1.0, rtol=0, atol=0.11)
    _fails(check_close, "x", 1.1, 1.0, rtol=0.05)
    _fails(check_close, "x", 1e-6, 0.0)  # atol=1e-8 by default
    msg = _fails(check_close, "x", 1.1, 1.0, rtol=0.05, atol=0.0)
    assert "rtol=0.05" in msg and "atol=0" in msg


def test_check_close_message_names_quantity_index_and_values():
    expected = torch.zeros(3, 4)
    actual = expected.clone()
    actual[1, 2] = 0.25
    actual[0, 0] = 0.01
    msg = _fails(check_close, "dW1", actual, expected)
    assert msg.startswith("dW1 is off")
    assert "index (1, 2)" in msg  # the worst entry, not the first
    assert "got 0.25" in msg and "expected 0" in msg
    assert "largest error 0.25" in msg
    assert "2 of 12 entries" in msg


def test_check_close_hint_appended():
    msg = _fails(check_close, "loss", 2.0, 1.0, hint="did you average?")
    assert msg.endswith("Hint: did you average?")


def test_check_close_transposed_shape():
    msg = _fails(check_close, "W", torch.zeros(3, 4), torch.zeros(4, 3))
    assert "W has shape (3, 4), expected (4, 3)" in msg and "transposed" in msg


def test_check_close_nan_names_non_finite_and_where():
    actual = torch.ones(2, 3)
    actual[1, 0] = math.nan
    msg = _fails(check_close, "probs", actual, torch.ones(2, 3))
    assert "probs" in msg and "non-finite" in msg and "index (1, 0)" in msg and "nan" in msg


@pytest.mark.parametrize(
    "actual, expected",
    [
        (5.0, math.inf),
        ([math.nan, 1.0], [1.0, math.inf]),
        ([1.0, 2.0], [math.nan, 2.0]),
        ([-math.inf, 2.0], [math.inf, 2.0]),
    ],
)
def test_check_close_non_finite_expected_still_compares(actual, expected):
    msg = _fails(check_close, "x", actual, expected)
    assert "x is off" in msg


def test_check_close_none_and_wrong_types():
    assert "forget to `return`" in _fails(check_close, "grad", None, [1.0])
    msg = _fails(check_close, "grad", "0.5", 0.5)
    assert "grad" in msg and "str" in msg
    msg = _fails(check_close, "grad", {"a": 1}, 0.5)
    assert "dict" in msg
    assert "could not be read as numbers" in _fails(check_close, "grad", ["a", "b"], [1.0, 2.0])
    assert "complex" in _fails(check_close, "grad", torch.tensor([1 + 2j]), [1.0])
    # a bad expected value is reported as such, not blamed on the student
    assert "the expected grad" in _fails(check_close, "grad", 1.0, None)


@pytest.mark.parametrize(
    "factor, words",
    [
        (32.0, ["32 x", "normalisation"]),
        (1 / 32, ["0.03125 x", "normalisation"]),
        (2.0, ["2 x", "normalisation"]),
        (-1.0, ["-1 x", "sign"]),
        (1.5, ["1.5 x", "scale factor"]),
    ],
)
def test_check_close_constant_multiple_hint(factor, words):
    expected = torch.tensor([[0.5, -1.0], [2.0, 0.0], [3.0, 0.25]])
    msg = _fails(check_close, "dx", expected * factor, expected)
    for w in words:
        assert w in msg


def test_check_close_no_ratio_hint_when_not_a_multiple():
    msg = _fails(check_close, "dx", [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert "x the expected value" not in msg


# ---- check_shape, check_finite, check_true ---------------------------------------------------


@pytest.mark.parametrize(
    "got, want, words",
    [
        ((3, 4), (4, 3), "transposed"),
        ((2, 3, 4), (4, 2, 3), "another order"),
        ((2, 6), (3, 4), "wrong layout"),
        ((3,), (3, 4), "dimension is missing"),
        ((), (5,), "dimension is missing"),
        ((3, 4, 5), (3, 4), "extra dimension"),
    ],
)
def test_check_shape_variants(got, want, words):
    msg = _fails(check_shape, "h", torch.zeros(got), want)
    assert words in msg and "h has shape" in msg


def test_check_shape_passes_and_formats():
    check_shape("h", torch.zeros(2, 3), (2, 3))
    check_shape("h", torch.zeros(2, 3), torch.Size([2, 3]))
    check_shape("h", [[1, 2, 3]], (1, 3))  # non-tensors are converted first
    msg = _fails(check_shape, "b", torch.zeros(4), (3,))
    assert "(4,)" in msg and "(3,)" in msg


def test_check_finite():
    check_finite("x", torch.tensor([1.0, -2.0]))
    msg = _fails(check_finite, "x", torch.tensor([[1.0, 2.0], [math.inf, math.nan]]))
    assert "2 non-finite" in msg and "index (1, 0)" in msg and "inf" in msg
    assert "non-finite" in _fails(check_finite, "s", math.nan)


def test_check_true():
    check_true(True, "never shown")
    assert _fails(check_true, False, "the loss should decrease") == "the loss should decrease"


def test_to_tensor_converts_to_float64_cpu():
    t = to_tensor("x", [1, 2])
    assert t.dtype == torch.float64 and t.device.type == "cpu"
    assert torch.equal(t, torch.tensor([1.0, 2.0], dtype=torch.float64))


# ---- check_unchanged, check_keys -------------------------------------------------------------


def test_check_unchanged():
    before = torch.arange(6.0).reshape(2, 3)
    check_unchanged("x", before, before.clone())
    after = before.clone()
    after[0, 1] += 1e-3
    assert "x was modified" in _fails(check_unchanged, "x", before, after)
    assert "modified" in _fails(check_unchanged, "x", before, before.reshape(3, 2))


def test_check_keys():
    check_keys("cache", {"a": 1, "b": 2}, ["a", "b"])
    check_keys("cache", {"a": 1}, {"a": None})
    msg = _fails(check_keys, "cache", {"a": 1, "z": 2}, {"a", "b"})
    assert "cache has the wrong keys" in msg and "missing ['b']" in msg and "unexpected ['z']" in msg
    assert "missing ['b']" in _fails(check_keys, "cache", {"a": 1}, ["a", "b"])
    assert "unexpected" in _fails(check_keys, "cache", {"a": 1, "b": 2}, ["a"])
    assert "should be a dict, got list" in _fails(check_keys, "cache", [1, 2], ["a"])


# ---- forbid, substitute ----------------------------------------------------------------------


def test_forbid_blocks_and_restores():
    original_ce = torch.nn.functional.cross_entropy
    original_backward = torch.Tensor.backward
    logits, y = torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 0])
    with forbid("torch.nn.functional.cross_entropy", "torch.Tensor.backward", reason="by hand"):
        with pytest.raises(ForbiddenCall, match="torch.nn.functional.cross_entropy: by hand"):
            F.cross_entropy(logits, y)  # the module attribute is what is replaced
        with pytest.raises(ForbiddenCall, match="cross_entropy"):
            torch.nn.CrossEntropyLoss()(logits, y)  # indirect calls are caught too
        loss = (logits**2).sum()
        with pytest.raises(ForbiddenCall, match="torch.Tensor.backward"):
            loss.backward()
        torch.softmax(logits, dim=1)  # everything else still works
    assert torch.nn.functional.cross_entropy is original_ce
    assert torch.Tensor.backward is original_backward
    F.cross_entropy(logits, y).backward()
    assert logits.grad is not None


def test_forbid_restores_after_an_exception():
    original = torch.autograd.grad
    with pytest.raises(ZeroDivisionError):
        with forbid("torch.autograd.grad"):
            assert torch.autograd.grad is not original
            _ = 1 / 0
    assert torch.autograd.grad is original


def test_forbidden_call_is_a_check_failure():
    # an exercise test that does not catch it still fails as a CheckFailed
    with pytest.raises(CheckFailed):
        with forbid("torch.matmul"):
            torch.matmul(torch.eye(2), torch.eye(2))
    assert torch.equal(torch.matmul(torch.eye(2), torch.eye(2)), torch.eye(2))


def test_forbid_unknown_target():
    with pytest.raises(ValueError, match="cannot resolve"):
        with forbid("no_such_module_xyz.f"):
            pass
    original = torch.nn.functional.relu
    with pytest.raises(AttributeError):
        with forbid("torch.nn.functional.relu", "torch.nn.functional.no_such_function"):
            pass
    assert torch.nn.functional.relu is original  # what was replaced before the error is put back


def test_substitute_rebinds_and_restores():
    namespace = {"f": "original f", "g": "original g"}
    with substitute(namespace, f="stand-in f", h="new h"):
        assert namespace == {"f": "stand-in f", "g": "original g", "h": "new h"}
    assert namespace == {"f": "original f", "g": "original g"}  # h, absent before, is removed


def test_substitute_restores_after_an_exception():
    namespace = {"f": 1}
    with pytest.raises(KeyError):
        with substitute(namespace, f=2, g=3):
            raise KeyError("x")
    assert namespace == {"f": 1}


def test_substitute_works_on_globals():
    g = globals()
    assert "_stand_in_name" not in g
    with substitute(g, _stand_in_name=42):
        assert eval("_stand_in_name", g) == 42
    assert "_stand_in_name" not in g


# ---- resistance to a notebook that rebinds torch's functions ---------------------------------


def test_checks_ignore_monkeypatched_torch(monkeypatch):
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(torch, "isclose", lambda a, b, *r, **k: torch.ones_like(a, dtype=torch.bool))
    monkeypatch.setattr(torch, "isfinite", lambda t: torch.ones_like(t, dtype=torch.bool))
    monkeypatch.setattr(torch, "isnan", lambda t: torch.zeros_like(t, dtype=torch.bool))
    monkeypatch.setattr(torch, "abs", lambda t: torch.zeros_like(t))
    monkeypatch.setattr(torch, "equal", lambda *a: True)
    assert "x is off" in _fails(check_close, "x", [1.0, 3.0], [1.0, 2.0])
    assert "non-finite" in _fails(check_close, "x", [1.0, math.nan], [1.0, 2.0])
    assert "non-finite" in _fails(check_finite, "x", [math.inf])
    check_close("x", [1.0, 2.0], [1.0, 2.0])
    assert "x is off" in _fails(check_close, "x", [1.0, 5.0], [1.0, math.inf])
