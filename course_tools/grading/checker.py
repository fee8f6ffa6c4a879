"""The grader's side of a check: test cells run here, student functions are proxies into the kernel.

At autograde time every test cell's whole source (visible and hidden tests) runs in the
grader's own process, in a namespace built from the notebook's locked setup cells and the
earlier test cells. Each name a test uses that the test code does not define itself (a
function the student wrote) is a `Proxy`: calling it sends the arguments to the student's
kernel by value (cloudpickle, grader -> kernel only), runs the student's function there
(course_tools.grading.kernel.link) and decodes the reply, which is plain data: numbers,
strings, lists, dicts, tensors rebuilt from dtype + shape + raw bytes. Tensor arguments
modified in place, modules and optimisers passed in are updated from their state
afterwards, so a test reads them as it would in the kernel.

So the inputs of hidden tests, the references and every comparison live only here; the
student's code sees one call at a time, answers it once, and cannot reach this process.
`forbid` and `substitute` replace course_lib.checks' versions in the namespace: they
travel with the call to the kernel, where the link applies them.
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import torch
from nbclient.exceptions import DeadKernelError

from course_lib.checks import CheckFailed, ForbiddenCall

from .kernel.link import AUTOGRAD_TARGETS, TENSOR_DTYPES, functions, grad_holders

# aten ops that betray a forbidden built-in however it was reached (alias, private helper, C binding).
BETRAYING_OPS: dict[str, tuple[str, ...]] = {
    "torch.nn.functional.cross_entropy": ("aten._log_softmax", "aten.nll_loss_forward"),
    "torch.nn.functional.log_softmax": ("aten._log_softmax",),
    "torch.log_softmax": ("aten._log_softmax",),
    "torch.Tensor.log_softmax": ("aten._log_softmax",),
    "torch.special.log_softmax": ("aten._log_softmax",),
    "torch.nn.functional.nll_loss": ("aten.nll_loss_forward", "aten.nll_loss2d_forward"),
    "torch.logsumexp": ("aten.logsumexp",),
    "torch.Tensor.logsumexp": ("aten.logsumexp",),
    "torch.special.logsumexp": ("aten.logsumexp",),
    "torch.linalg.qr": ("aten.linalg_qr",),
    "torch.linalg.matrix_norm": ("aten.linalg_matrix_norm",),
    "torch.linalg.svdvals": ("aten._linalg_svd", "aten.linalg_svdvals"),
    "torch.linalg.svd": ("aten._linalg_svd",),
    "torch.linalg.eigvals": ("aten.linalg_eig",),
    "torch.optim.Adam": ("aten._fused_adam_", "aten._foreach_addcdiv_"),
    "torch.nn.functional.conv1d": ("aten.convolution", "aten._convolution"),
    "torch.conv1d": ("aten.convolution", "aten._convolution"),
    "torch.nn.functional.conv_transpose1d": ("aten.convolution", "aten._convolution"),
    "torch.conv_transpose1d": ("aten.convolution", "aten._convolution"),
}


def _betrayed(target: str, ops: set[str]) -> bool:
    if target in AUTOGRAD_TARGETS:  # reverse mode runs *_backward ops (forward mode is caught by name only)
        return any(op.endswith(("_backward", "_backward_data")) for op in ops)
    return any(op in ops for op in BETRAYING_OPS.get(target, ()))


@dataclass
class _CallContext:
    forbid: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # (targets, reason)
    substitute: dict[str, Any] = field(default_factory=dict)


class Checker:
    """One notebook's grading namespace, driving the student's kernel through `call_in_kernel`.

    call_in_kernel(name, payload) runs the student's function `name` in the kernel on the
    arguments in payload (base64 cloudpickle) and returns the kernel's reply, plain data
    (course_tools.grading.link_session.LinkSession.call); CheckFailed when there is none.
    """

    def __init__(self, call_in_kernel: Callable[[str, str], dict]):
        self._call_in_kernel = call_in_kernel
        self._ctx = _CallContext()
        self.namespace: dict[str, Any] = {"__name__": "__course_checker__", "__builtins__": builtins}
        self.calls = 0

    # -------------------------------------------------------------- cells

    def run_setup(self, source: str) -> None:
        """A locked, ungraded code cell (imports, constants, a layer with a planted bug)."""
        self._exec(source, "<setup>")

    def run_test(self, source: str, label: str) -> tuple[bool, str, str]:
        """Run a test cell's whole source here; (passed, exception name, message)."""
        try:
            self._exec(source, f"<{label}>")
        except DeadKernelError:
            raise  # the executor restarts the kernel and reports the crash against this cell
        except CheckFailed as exc:
            return False, type(exc).__name__, str(exc)
        except NotImplementedError:
            return (
                False,
                "NotImplementedError",
                "the function is not written yet (it raises NotImplementedError)",
            )
        except Exception as exc:  # noqa: BLE001 - any other failure of a check is a failed check
            return False, type(exc).__name__, str(exc)[:2000]
        return True, "", ""

    def _exec(self, source: str, filename: str) -> None:
        tree = ast.parse(source, filename=filename)
        for name in sorted(_free_names(tree) - set(self.namespace) - set(dir(builtins))):
            self.namespace[name] = Proxy(self, name)
        self._install_overrides()
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(tree, filename, "exec"), self.namespace)  # noqa: S102 - the course's own test code

    def _install_overrides(self) -> None:
        self.namespace["forbid"] = self.forbid
        self.namespace["substitute"] = self.substitute

    # -------------------------------------------------------------- contexts the tests use

    @contextlib.contextmanager
    def forbid(self, *targets: str, reason: str = "compute it by hand") -> Iterator[None]:
        """Calls of student functions inside the block must not reach these built-ins."""
        self._ctx.forbid.append((targets, reason))
        try:
            yield
        finally:
            self._ctx.forbid.pop()

    @contextlib.contextmanager
    def substitute(self, namespace: Any = None, **replacements: Any) -> Iterator[None]:
        """Calls inside the block see these stand-ins for the named student functions."""
        saved = dict(self._ctx.substitute)
        self._ctx.substitute.update(replacements)
        try:
            yield
        finally:
            self._ctx.substitute = saved

    # -------------------------------------------------------------- one call

    def call(self, name: str, args: tuple, kwargs: dict) -> Any:
        targets = [t for group, _ in self._ctx.forbid for t in group]
        request = {
            "args": args,
            "kwargs": kwargs,
            "grads": [t.grad for t in grad_holders([*args, *kwargs.values()])],
            "forbid": targets,
            "substitute": dict(self._ctx.substitute),
        }
        payload = base64.b64encode(cloudpickle.dumps(request)).decode()
        self.calls += 1
        reply = self._call_in_kernel(name, payload)
        forbidden = [str(t) for t in reply.get("forbidden", [])]
        ops = {str(op) for op in reply.get("ops", [])}
        for group, reason in self._ctx.forbid:
            for target in group:
                hit = target in forbidden or ("autograd" in forbidden and target in AUTOGRAD_TARGETS)
                if hit or _betrayed(target, ops):
                    raise ForbiddenCall(f"{name} must not call {target}: {reason}")
        if not reply.get("ok"):
            err = reply.get("error") or {}
            kind, message = str(err.get("type", "Error")), str(err.get("message", ""))
            if kind == "NotImplementedError":
                raise NotImplementedError(message)
            raise CheckFailed(f"{name} raised {kind}: {message}")
        _write_back_helpers(
            functions([*args, *kwargs.values(), *self._ctx.substitute.values()]), reply.get("helpers", [])
        )
        _write_back_holders(grad_holders([*args, *kwargs.values()]), reply.get("holders", []))
        _write_back(args, reply.get("args", []))
        kw_states = reply.get("kwargs") if isinstance(reply.get("kwargs"), dict) else {}
        _write_back(list(kwargs.values()), [kw_states.get(k) for k in kwargs])
        return decode(reply.get("result"))


class Proxy:
    """Stands for a function the student wrote; calling it runs that function in their kernel."""

    def __init__(self, checker: Checker, name: str):
        self._checker, self.__name__ = checker, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._checker.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<the student's {self.__name__}>"


# ---------------------------------------------------------------------------- replies


_DTYPES = {name: getattr(torch, name) for name in TENSOR_DTYPES}


def decode(value: Any, depth: int = 0) -> Any:
    """Plain data back to Python values: tensors, tuples, dicts. Anything unexpected fails the check."""
    if depth > 25:
        raise CheckFailed("the answer is nested too deeply")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [decode(v, depth + 1) for v in value]
    if not isinstance(value, dict) or len(value) != 1:
        raise CheckFailed("the answer could not be read")
    ((kind, body),) = value.items()
    if kind == "__tensor__":
        return _tensor(body)
    if kind == "__tuple__":
        return tuple(decode(v, depth + 1) for v in body)
    if kind == "__dict__":
        return {_key(decode(k, depth + 1)): decode(v, depth + 1) for k, v in body}
    if kind == "__float__":
        return float(str(body))
    if kind == "__module__":
        return {k: decode(v, depth + 1) for k, v in body.get("state", {}).items()}
    if kind == "__optimizer__":
        return decode(body, depth + 1)
    if kind == "__unsupported__":
        raise CheckFailed(f"the answer is {body}: return tensors, numbers, lists or dicts of those")
    raise CheckFailed("the answer could not be read")


def _key(k: Any) -> Any:
    return k if isinstance(k, str | int | float | bool | tuple) or k is None else str(k)


def _tensor(body: Any) -> torch.Tensor:
    try:
        dtype = _DTYPES[body["dtype"]]
        shape = [int(s) for s in body["shape"]]
        raw = bytearray(base64.b64decode(body["b64"]))
        n = 1
        for s in shape:
            n *= s
        if len(raw) != n * torch.empty((), dtype=dtype).element_size():
            raise ValueError("size mismatch")
        if n == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape).clone()
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckFailed(f"a tensor in the answer could not be read ({exc})") from None


def _write_back(originals: list, states: list) -> None:
    """Bring the arguments' state after the call back to the grader's objects."""
    for original, state in zip(originals, states, strict=False):
        if state is None or not isinstance(state, dict):
            continue
        with contextlib.suppress(CheckFailed, RuntimeError, ValueError, KeyError, TypeError):
            if isinstance(original, torch.nn.Module) and "__module__" in state:
                body = state["__module__"]
                new_state = {k: decode(v) for k, v in body.get("state", {}).items()}
                with torch.no_grad():
                    for k, v in original.state_dict(keep_vars=True).items():
                        if (
                            k in new_state
                            and isinstance(new_state[k], torch.Tensor)
                            and new_state[k].shape == v.shape
                        ):
                            v.copy_(new_state[k].to(v.dtype))
                grads = body.get("grads", {})
                for k, p in original.named_parameters():
                    if k in grads:
                        g = decode(grads[k]) if grads[k] is not None else None
                        p.grad = g.to(p.dtype) if isinstance(g, torch.Tensor) and g.shape == p.shape else None
                original.train(bool(body.get("training", original.training)))
            elif isinstance(original, torch.optim.Optimizer) and "__optimizer__" in state:
                original.load_state_dict(decode(state["__optimizer__"]))


def _write_back_holders(holders: list, states: Any) -> None:
    """Gradients (and, for parameters, values) of the tensors passed in, as the call left them."""
    if not isinstance(states, list):
        return
    for original, state in zip(holders, states, strict=False):
        with contextlib.suppress(CheckFailed, TypeError, ValueError, AttributeError, RuntimeError):
            body = decode(state)
            data, grad = body.get("data"), body.get("grad")
            if isinstance(original, torch.nn.Parameter) and isinstance(data, torch.Tensor):
                if data.shape == original.shape:
                    with torch.no_grad():
                        original.copy_(data.to(original.dtype))
            if grad is None:
                original.grad = None
            elif isinstance(grad, torch.Tensor) and grad.shape == original.shape:
                original.grad = grad.to(original.dtype)


def _write_back_helpers(helpers: list, states: Any) -> None:
    """Bring the state the grader's own helpers recorded in the kernel (counters, call lists) back here."""
    if not isinstance(states, list):
        return
    for f, state in zip(helpers, states, strict=False):
        with contextlib.suppress(CheckFailed, TypeError, ValueError, AttributeError):
            body = decode(state)
            if not isinstance(body, dict):
                continue
            for name, value in (body.get("globals") or {}).items():
                if name in f.__globals__:
                    f.__globals__[name] = _merge(f.__globals__[name], value)
            for cell, value in zip(f.__closure__ or (), body.get("cells") or [], strict=False):
                if value is not None:
                    cell.cell_contents = _merge(cell.cell_contents, value)


def _merge(old: Any, new: Any) -> Any:
    """Update containers in place (other references to them see the change); replace the rest."""
    if isinstance(old, list) and isinstance(new, list | tuple):
        old[:] = list(new)
        return old
    if isinstance(old, dict) and isinstance(new, dict):
        old.clear()
        old.update(new)
        return old
    return new


# ---------------------------------------------------------------------------- names


def _free_names(tree: ast.AST) -> set[str]:
    """Names a cell reads but never binds anywhere (the functions the student must provide)."""
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            bound.update(node.names)
    return loaded - bound
