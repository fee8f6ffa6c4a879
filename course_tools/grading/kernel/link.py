"""The student's side of the grading link: run one graded function on the grader's inputs.

The grader (course_tools.grading.checker) never trusts the student's kernel with a check.
When a test cell makes its first call of a student's function, the grader runs

    import course_tools.grading.kernel.link as _course_link_
    _course_link_.serve(globals(), "<a unix socket path in the kernel's own folder>")

in the kernel, and sends each call of that cell over the socket: the function's name and a
base64 cloudpickle of the arguments (course_tools.grading.link_session is the grader's end).
`answer` runs the student's function on them and replies with the return value and the
arguments' state afterwards, as plain data (numbers, strings, lists, dicts, and tensors as
dtype + shape + raw bytes), plus what the forbidden-call watch saw. When the grader hangs up
at the end of the cell, `serve` returns. Nothing the grader compares with ever enters this
process, and nothing but plain data leaves it: no pickle, no subclass, no __eq__ survives
the crossing. (Each call used to be an execute request of its own, ~20 ms, most of it the
kernel's handling of the request: a ps01 submission's 74 calls took 1.45 s that way on an idle
machine, and 0.6 s over the socket on a busy one.)

A student can patch this module. That changes only what their own answers are; it cannot
change the grader's references or comparisons. The forbidden-call watch (patched
built-ins and their aliases, the autograd engine, a dispatch mode recording aten ops) is
best effort: evading it costs the part's "not a built-in" check, never correctness.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import socket
import struct
from collections.abc import MutableMapping
from typing import Any

MAX_ITEMS = 2_000_000  # elements of all tensors in one reply; more is reported, not sent
MAX_FRAME_BYTES = 64 << 20  # a request or reply on the socket; MAX_ITEMS of float64 fit with room

TENSOR_DTYPES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)


class ForbiddenCall(AssertionError):
    """Raised inside the student's function when it calls a built-in the part forbids."""


def serve(namespace: MutableMapping[str, Any], path: str) -> None:
    """Answer the grader's calls on a unix socket at `path` until it hangs up (one test cell's calls)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1)
        conn, _ = listener.accept()
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
    with conn:
        while (frame := read_frame(conn)) is not None:
            request = json.loads(frame)
            reply = answer(namespace, request["name"], request["payload"])
            try:
                data = json.dumps(reply).encode()
            except (TypeError, ValueError) as exc:  # encode() makes plain data; this is a last guard
                data = json.dumps({"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}})
                data = data.encode()
            try:
                write_frame(conn, data)
            except OSError:  # the grader hung up first (it gave up on a call that ran too long)
                return


def write_frame(conn: socket.socket, data: bytes) -> None:
    """One message on the link: its length (4 bytes, big-endian), then the bytes."""
    conn.sendall(struct.pack(">I", len(data)) + data)


def read_frame(conn: socket.socket, limit: int = MAX_FRAME_BYTES) -> bytes | None:
    """The next message, or None when the other end has hung up; ValueError when it is too large."""
    head = _read_exactly(conn, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if size > limit:
        raise ValueError(f"a message of {size} bytes, more than the link's {limit}")
    data = _read_exactly(conn, size)
    if data is None:
        raise ConnectionError("the link closed in the middle of a message")
    return data


def _read_exactly(conn: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = conn.recv(min(n - got, 1 << 20))
        if not chunk:
            if got:
                raise ConnectionError("the link closed in the middle of a message")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def answer(namespace: MutableMapping[str, Any], name: str, payload: str) -> dict[str, Any]:
    """Run namespace[name] on the grader's arguments; the reply as plain data (see module doc)."""
    import cloudpickle

    request = cloudpickle.loads(base64.b64decode(payload))
    args, kwargs = request["args"], request["kwargs"]
    for tensor, grad in zip(grad_holders([*args, *kwargs.values()]), request.get("grads", []), strict=False):
        tensor.grad = grad  # pickling drops .grad; the grader sends them beside the arguments
    reply: dict[str, Any] = {"ok": False, "forbidden": [], "ops": []}
    budget = [MAX_ITEMS]
    fn = namespace.get(name)
    if fn is None:
        reply["error"] = {
            "type": "NameError",
            "message": f"{name} is not defined: did its cell run without error?",
        }
    else:
        watch = _Watch(namespace, request.get("forbid", ()))
        with _substituted(namespace, request.get("substitute", {})), watch:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - everything the student's code raises is reported
                reply["error"] = {"type": type(exc).__name__, "message": _message(exc)}
            else:
                reply["ok"] = True
        reply["forbidden"], reply["ops"] = watch.hits, sorted(watch.ops)
        if reply["ok"]:
            reply["result"] = _safe_encode(result, budget)
    helpers = functions([*args, *kwargs.values(), *request.get("substitute", {}).values()])
    reply["helpers"] = [_safe_encode(_function_state(f), budget) for f in helpers]
    reply["holders"] = [
        _safe_encode({"data": t.detach() if isinstance(t, _parameter()) else None, "grad": t.grad}, budget)
        for t in grad_holders([*args, *kwargs.values()])
    ]
    reply["args"] = [_safe_encode(_state(a), budget) for a in args]
    reply["kwargs"] = {k: _safe_encode(_state(v), budget) for k, v in kwargs.items()}
    return reply


def _message(exc: BaseException) -> str:
    try:
        return str(exc)[:2000]
    except Exception:  # noqa: BLE001 - a hostile __str__
        return "(the error's message could not be read)"


# ---------------------------------------------------------------------------- encoding


def _safe_encode(value: Any, budget: list[int]) -> Any:
    try:
        return encode(value, budget)
    except Exception as exc:  # noqa: BLE001 - a hostile object: report what it was, not crash the link
        return {"__unsupported__": f"could not be read ({type(exc).__name__})"}


def encode(value: Any, budget: list[int] | None = None, depth: int = 0) -> Any:
    """Plain JSON-able data for a value; tensors as {"__tensor__": {dtype, shape, b64}}."""
    import numpy as np
    import torch

    budget = budget if budget is not None else [MAX_ITEMS]
    if depth > 20:
        return {"__unsupported__": "nested too deeply"}
    if value is None or type(value) is bool or type(value) is str:
        return value
    if type(value) is int:
        return value if abs(value) < 2**63 else {"__float__": repr(float(value))}
    if type(value) is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return encode(value.item(), budget, depth + 1)
    if isinstance(value, np.ndarray):
        return encode(torch.from_numpy(np.ascontiguousarray(value)), budget, depth + 1)
    if isinstance(value, torch.Tensor):
        t = torch.Tensor.as_subclass(value, torch.Tensor).detach()
        if t.is_complex() or str(t.dtype).replace("torch.", "") not in TENSOR_DTYPES:
            return {"__unsupported__": f"a tensor of dtype {t.dtype}"}
        budget[0] -= t.numel()
        if budget[0] < 0:
            return {"__unsupported__": f"a tensor of {t.numel()} elements (too large to send)"}
        flat = t.cpu().contiguous().reshape(-1)
        data = flat.view(torch.uint8).numpy().tobytes()  # raw bytes: NaN, inf and bfloat16 cross exactly
        shape, dtype = list(t.shape), str(t.dtype).replace("torch.", "")
        return {"__tensor__": {"dtype": dtype, "shape": shape, "b64": base64.b64encode(data).decode()}}
    if isinstance(value, (list, tuple)):
        items = [encode(v, budget, depth + 1) for v in list(value)[:100_000]]
        return items if type(value) is list else {"__tuple__": items}
    if isinstance(value, dict):
        if all(type(k) is str for k in value):
            return {"__dict__": [[k, encode(v, budget, depth + 1)] for k, v in list(value.items())[:100_000]]}
        return {
            "__dict__": [
                [encode(k, budget, depth + 1), encode(v, budget, depth + 1)]
                for k, v in list(value.items())[:100_000]
            ]
        }
    if isinstance(value, torch.nn.Module):
        return {"__module__": _module_state(value, budget, depth)}
    if isinstance(value, torch.optim.Optimizer):
        return {"__optimizer__": encode(value.state_dict(), budget, depth + 1)}
    if isinstance(value, (int, float)):  # subclasses of int/float: only their plain value crosses
        return encode(float(value) if isinstance(value, float) else int(value), budget, depth + 1)
    return {"__unsupported__": f"an object of type {type(value).__name__}"}


def _module_state(module: Any, budget: list[int], depth: int) -> dict:
    state = {k: encode(v, budget, depth + 1) for k, v in module.state_dict().items()}
    grads = {
        k: (None if p.grad is None else encode(p.grad, budget, depth + 1))
        for k, p in module.named_parameters()
    }
    return {"state": state, "grads": grads, "training": bool(module.training)}


def _state(value: Any) -> Any:
    """What the grader takes back about an argument after the call: a module's or optimiser's state.

    Tensors passed in come back only as gradients (and values, for nn.Parameter) through
    `grad_holders`: a plain input tensor changed in place is NOT taken back, so code that
    edits its inputs cannot move the reference the grader computes from them afterwards.
    """
    import torch

    if isinstance(value, torch.nn.Module | torch.optim.Optimizer):
        return value
    return None


def _parameter() -> type:
    import torch

    return torch.nn.Parameter


def grad_holders(values: list) -> list:
    """Tensors that can carry a .grad among the values (one level into containers; modules' parameters)."""
    import torch

    out = []
    for v in values:
        items = list(v.values()) if isinstance(v, dict) else list(v) if isinstance(v, list | tuple) else [v]
        for item in items:
            if isinstance(item, torch.nn.Module):
                out += list(item.parameters())
            elif isinstance(item, torch.Tensor) and item.requires_grad and item.is_leaf:
                out.append(item)
    return out


def functions(values: list) -> list:
    """The plain Python functions among the values (one level into lists, tuples and dicts), in order."""
    import types

    out = []
    for v in values:
        items = list(v.values()) if isinstance(v, dict) else list(v) if isinstance(v, list | tuple) else [v]
        out += [f for f in items if isinstance(f, types.FunctionType)]
    return out


def _function_state(f: Any) -> dict:
    """What the grader's own helper (a stand-in, a wrapped loss) recorded while it ran here.

    The plain data it reads from its globals and closure (counters, lists of calls) goes back,
    so a test can ask how the student's code used it. Reported by this kernel, so a test may use
    it only for advice-level checks (was the stand-in called?), never for correctness.
    """
    import torch

    def plain(v: Any) -> bool:
        return isinstance(v, int | float | bool | str | list | dict | tuple | torch.Tensor) or v is None

    names = [n for n in f.__code__.co_names if n in f.__globals__ and plain(f.__globals__[n])]
    cells = []
    for cell in f.__closure__ or ():
        try:
            cells.append(cell.cell_contents if plain(cell.cell_contents) else None)
        except ValueError:  # an empty cell
            cells.append(None)
    return {"globals": {n: f.__globals__[n] for n in names}, "cells": cells}


# ---------------------------------------------------------------------------- forbidden calls


def _substituted(namespace: MutableMapping[str, Any], replacements: dict[str, Any]):
    """Rebind names in the student's namespace for one call (known-good stand-ins for other parts)."""
    from course_lib.checks import substitute

    return substitute(namespace, **replacements)


def _resolve(target: str) -> tuple[Any, str]:
    """'torch.nn.functional.cross_entropy' -> (module torch.nn.functional, 'cross_entropy')."""
    from course_lib.checks import _resolve as resolve

    return resolve(target)


AUTOGRAD_TARGETS = {
    "torch.autograd.grad",
    "torch.autograd.backward",
    "torch.Tensor.backward",
    "torch.func.grad",
    "torch.func.vjp",
    "torch.func.jacrev",
    "torch.func.jacfwd",
    "torch.autograd.functional.jacobian",
    "torch.autograd.functional.vjp",
}


class _Watch:
    """While the student's function runs: forbidden built-ins raise and are recorded, aten ops are recorded."""

    def __init__(self, namespace: MutableMapping[str, Any], targets: Any):
        self.namespace, self.targets = namespace, [str(t) for t in targets]
        self.hits: list[str] = []
        self.ops: set[str] = set()
        self._undo: list[tuple[Any, str, Any, bool]] = []
        self._mode: Any = None

    def _blocker(self, target: str):
        def blocked(*args: Any, **kwargs: Any) -> Any:
            if target not in self.hits:
                self.hits.append(target)
            raise ForbiddenCall(f"this part must not call {target}")

        return blocked

    def __enter__(self) -> _Watch:
        if not self.targets:
            return self
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        originals = {}
        for target in self.targets:
            try:
                owner, attr = _resolve(target)
                original = getattr(owner, attr)
            except (ValueError, AttributeError):
                continue
            originals[id(original)] = target
            self._swap(owner, attr, self._blocker(target))
        # Aliases bound before the call (`from torch.autograd import grad`, `ce = F.cross_entropy`).
        for key, value in list(self.namespace.items()):
            if id(value) in originals and not key.startswith("__"):
                self._swap(self.namespace, key, self._blocker(originals[id(value)]), item=True)
        if AUTOGRAD_TARGETS & set(self.targets):
            engine_cls = torch.autograd.variable.Variable
            watch = self

            class _Engine:
                def __getattr__(self, name: str) -> Any:
                    def run(*args: Any, **kwargs: Any) -> Any:
                        if "autograd" not in watch.hits:
                            watch.hits.append("autograd")
                        raise ForbiddenCall("this part must not use autograd")

                    return run

            self._swap(engine_cls, "_execution_engine", _Engine())
        ops = self.ops

        class _Record(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                ops.add(str(func.overloadpacket))
                return func(*args, **(kwargs or {}))

        self._mode = _Record()
        self._mode.__enter__()
        return self

    def _swap(self, owner: Any, attr: str, new: Any, item: bool = False) -> None:
        if item:
            self._undo.append((owner, attr, owner[attr], True))
            owner[attr] = new
        else:
            self._undo.append((owner, attr, getattr(owner, attr), False))
            setattr(owner, attr, new)

    def __exit__(self, *exc: Any) -> None:
        if self._mode is not None:
            with contextlib.suppress(Exception):
                self._mode.__exit__(None, None, None)
        for owner, attr, original, item in reversed(self._undo):
            if item:
                owner[attr] = original
            else:
                setattr(owner, attr, original)
