"""Checking helpers for exercise tests: say which quantity is off, by how much, and what that usually means.

A bare `assert torch.allclose(a, b)` tells a student nothing. `check_close("dW1", a, b)`
says "dW1 has shape (3, 4), expected (4, 3): it looks transposed", or "dW1 is off:
largest error 0.25 at index (1, 2) ...; it is 32.0 x the expected value: a mean
taken where a sum was due, or the other way round?".

Every failure raises CheckFailed, an AssertionError, so nbgrader marks the test
cell failed and shows the message. The functions used for comparing are bound
when this module is imported, so a later monkeypatch of torch.allclose and
friends in the student's kernel does not change what these checks compute.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np
import torch

# Bound at import: the checks keep using the real functions even if a notebook rebinds torch's.
_as_tensor = torch.as_tensor
_isfinite = torch.isfinite
_isnan = torch.isnan
_abs = torch.abs
_where = torch.where
_argmax = torch.argmax
_unravel = np.unravel_index


class CheckFailed(AssertionError):
    """A check on a student's answer failed; the message says what and by how much."""


class ForbiddenCall(CheckFailed):
    """A graded function called a built-in that the exercise asks you to replace by your own code."""


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def to_tensor(name: str, value: Any) -> torch.Tensor:
    """Convert an answer to a float64 CPU tensor, or fail saying what `name` was instead."""
    if value is None:
        raise CheckFailed(f"{name} is None: did the function forget to `return` it?")
    if isinstance(value, torch.Tensor):
        t = value.detach()
    elif isinstance(value, np.ndarray | float | int | np.floating | np.integer | list | tuple):
        try:
            t = _as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise CheckFailed(f"{name} could not be read as numbers: {exc}") from None
    else:
        raise CheckFailed(f"{name} should be a tensor or a number, got {type(value).__name__}")
    if t.is_complex():
        raise CheckFailed(f"{name} has dtype {t.dtype}; expected real numbers")
    return t.to(device="cpu", dtype=torch.float64)


def check_shape(name: str, actual: Any, expected_shape: tuple[int, ...] | torch.Size) -> None:
    """Fail unless `actual` has exactly `expected_shape`; spot transposes and missing dimensions."""
    t = actual if isinstance(actual, torch.Tensor) else to_tensor(name, actual)
    got, want = tuple(t.shape), tuple(expected_shape)
    if got == want:
        return
    msg = f"{name} has shape {_fmt_shape(got)}, expected {_fmt_shape(want)}"
    if len(got) == 2 and got == want[::-1]:
        msg += ": it looks transposed (check the order in the matrix product, or a missing .T)"
    elif sorted(got) == sorted(want):
        msg += ": the same sizes in another order (a transpose or permute?)"
    elif math.prod(got) == math.prod(want):
        msg += ": the right number of entries in the wrong layout (a reshape or a missing keepdim?)"
    elif len(got) == len(want) - 1 or len(got) == 0:
        msg += ": a dimension is missing (summed over the wrong axis, or over all of them?)"
    elif len(got) == len(want) + 1:
        msg += ": an extra dimension (broadcasting produced an outer product?)"
    raise CheckFailed(msg)


def check_finite(name: str, actual: Any) -> None:
    """Fail if `actual` holds NaN or infinity, naming the first bad index."""
    t = to_tensor(name, actual)
    bad = ~_isfinite(t)
    if bool(bad.any()):
        flat = int(_argmax(bad.reshape(-1).to(torch.int64)))
        idx = tuple(int(i) for i in _unravel(flat, tuple(t.shape))) if t.dim() else ()
        value = float(t.reshape(-1)[flat])
        raise CheckFailed(
            f"{name} contains {int(bad.sum())} non-finite value(s), the first {value} at index {idx}: "
            "overflow in exp(), a log of 0, or a division by zero?"
        )


def _ratio_hint(a: torch.Tensor, e: torch.Tensor) -> str:
    """If actual is a constant multiple of expected, say so: the commonest normalisation and sign bugs."""
    mask = _abs(e) > 1e-12
    if not bool(mask.any()):
        return ""
    ratios = a[mask] / e[mask]
    c = float(ratios.median())
    if not math.isfinite(c) or abs(c) < 1e-12:
        return ""
    if float(_abs(ratios - c).max()) > 1e-6 * max(1.0, abs(c)):
        return ""
    everywhere = " everywhere" if ratios.numel() > 1 else ""
    if abs(c + 1) < 1e-6:
        return (
            " It is exactly -1 x the expected value: a sign error (gradient ascent, or a - that should be +)?"
        )
    if abs(c - round(c)) < 1e-6 and abs(c) >= 2 or abs(1 / c - round(1 / c)) < 1e-6 and abs(1 / c) >= 2:
        return (
            f" It is {c:.6g} x the expected value{everywhere}: a missing or extra normalisation "
            "(a mean where a sum was due, a batch size, or a factor 2)?"
        )
    if not everywhere:
        return ""  # one number is always some multiple of another: no hint
    return f" It is {c:.6g} x the expected value everywhere: a scale factor is off."


def check_close(
    name: str,
    actual: Any,
    expected: Any,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    hint: str | None = None,
) -> None:
    """Fail unless actual == expected within |a - e| <= atol + rtol * |e| everywhere (like torch.allclose).

    Checks, in order: not None, numbers, shape, finiteness, values. The message names `name`,
    the worst entry, how many entries are off, and `hint` (what the mistake usually is).
    """
    e = to_tensor(f"the expected {name}", expected)
    a = to_tensor(name, actual)
    check_shape(name, a, tuple(e.shape))
    if bool(_isfinite(e).all()):
        check_finite(name, a)
    err = _abs(a - e)
    tol = atol + rtol * _abs(e)
    off = ~(err <= tol)  # a NaN error counts as off
    nonfinite = ~_isfinite(e)
    if bool(nonfinite.any()):  # where the expected value is inf or NaN, only the same value passes
        same = (a == e) | (_isnan(a) & _isnan(e))
        off = _where(nonfinite, ~same, off)
    if not bool(off.any()):
        return
    flat = int(_argmax(_where(off, (err - tol).nan_to_num(nan=math.inf), -math.inf).reshape(-1)))
    idx = tuple(int(i) for i in _unravel(flat, tuple(e.shape))) if e.dim() else ()
    worst_a, worst_e = float(a.reshape(-1)[flat]), float(e.reshape(-1)[flat])
    where = f" at index {idx}" if idx else ""
    msg = (
        f"{name} is off: largest error {float(err.reshape(-1)[flat]):.3g}{where} "
        f"(got {worst_a:.6g}, expected {worst_e:.6g}); {int(off.sum())} of {off.numel()} "
        f"entries outside tolerance (rtol={rtol:g}, atol={atol:g})."
    )
    msg += _ratio_hint(a, e)
    if hint:
        msg += f" Hint: {hint}"
    raise CheckFailed(msg)


def check_true(condition: bool, message: str) -> None:
    """Fail with `message` unless `condition` holds: for properties that are not a comparison."""
    if not condition:
        raise CheckFailed(message)


def check_unchanged(name: str, before: torch.Tensor, after: torch.Tensor) -> None:
    """Fail if a function modified an input it was meant to leave alone."""
    if before.shape != after.shape or not bool((before == after).all()):
        raise CheckFailed(
            f"{name} was modified by the function and not restored: "
            "work on a copy, or put every entry back after perturbing it"
        )


def _resolve(target: str) -> tuple[Any, str]:
    """'torch.nn.functional.cross_entropy' -> (module torch.nn.functional, 'cross_entropy')."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:-1]:
            obj = getattr(obj, attr)
        return obj, parts[-1]
    raise ValueError(f"cannot resolve {target!r}")


@contextlib.contextmanager
def forbid(*targets: str, reason: str = "compute it by hand") -> Iterator[None]:
    """Make the named built-ins raise ForbiddenCall while the block runs.

    with forbid("torch.nn.functional.cross_entropy", "torch.autograd.grad"):
        my_cross_entropy(logits, y)
    """
    saved: list[tuple[Any, str, Any]] = []
    try:
        for target in targets:
            owner, attr = _resolve(target)
            original = getattr(owner, attr)

            def blocked(*args: Any, _t: str = target, **kwargs: Any) -> Any:
                raise ForbiddenCall(f"this part must not call {_t}: {reason}")

            saved.append((owner, attr, original))
            setattr(owner, attr, blocked)
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


@contextlib.contextmanager
def substitute(namespace: MutableMapping[str, Any], **replacements: Any) -> Iterator[None]:
    """Temporarily rebind names in a namespace (a notebook's globals()).

    Lets a test check one graded function with known-good stand-ins for the others it
    calls, so that one mistake costs the points of its own part only.
    """
    missing = object()
    saved = {k: namespace.get(k, missing) for k in replacements}
    namespace.update(replacements)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is missing:
                namespace.pop(k, None)
            else:
                namespace[k] = v


def check_keys(name: str, actual: Any, expected_keys: Mapping[str, Any] | set[str] | list[str]) -> None:
    """Fail unless `actual` is a dict with exactly the expected keys."""
    if not isinstance(actual, Mapping):
        raise CheckFailed(f"{name} should be a dict, got {type(actual).__name__}")
    want, got = set(expected_keys), set(actual)
    if want != got:
        parts = []
        if want - got:
            parts.append(f"missing {sorted(want - got)}")
        if got - want:
            parts.append(f"unexpected {sorted(got - want)}")
        raise CheckFailed(f"{name} has the wrong keys: {', '.join(parts)}")
