"""Kernel-side guard: a graded notebook cannot rig the tests that grade it.

Student code and nbgrader's test cells share one kernel, so a submission can
rebind `check_close`, patch `torch.nn.functional.cross_entropy` (the reference
the tests compare with), patch `torch.Tensor.__le__`, hide every traceback by
replacing IPython's `showtraceback`, or rewrite the test cells before they run.
The grader (course_tools.guarded_execute) counters that with this module:

1. a first cell, run in a fresh kernel before any student code, calls `install`:
   it snapshots the protected modules (torch, numpy, course_lib, builtins, ...)
   and classes, makes module attributes read-only (`torch.allclose = f` raises),
   and adds an audit hook (course_tools.guard_hook; PEP 578, cannot be removed) that refuses class patches,
   `__code__` swaps, ctypes, gc/frame introspection, tracing and new processes;
2. every test cell is wrapped as `begin(gid)` + one `if` block holding the test
   and `end(gid)`: `begin` puts back everything the notebook replaced (and says
   so in the output), `end` checks nothing was replaced while the test ran;
3. `end` asks the audit hook for a seal, an HMAC of the cell's id under a key
   only the hook holds. The hook gives it only if IPython compiled exactly the
   expected cell and executed exactly its code objects, in order, from the real
   `end`, in the notebook's own namespace. The grader gives points only to a
   test cell whose output carries a valid seal, so a test whose error was
   hidden, or whose code was skipped or rewritten, earns nothing.

What it does not stop: code that, while a test runs, swaps an attribute through
`vars(module)` and puts it back before the test ends, or rebinds the test's data
variables from inside the student's function. Such code is visible in the
submission; `course_tools.intake` flags the usual tools of it for review.
"""

from __future__ import annotations

import builtins
import copy
import importlib
import json
import linecache
import os
import sys
import types
from typing import Any

from .guard_hook import MARK_TEST, make_hook, trusted_code

MARK_INSTALL = "#@course-guard install"
SEAL_PREFIX = "[course-guard seal]"
NOTICE_PREFIX = "[course-guard]"
PROTECTED_MODULES = [
    "builtins",
    "math",
    "copy",
    "numpy",
    "numpy.testing",
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "torch.autograd",
    "torch.func",
    "torch.linalg",
    "torch.testing",
    "torch.optim",
    "course_lib",
    "course_lib.checks",
]
CLASS_PREFIXES = ("torch", "numpy", "course_lib")
SHELL_LISTS = ("ast_transformers", "input_transformers_post", "input_transformers_cleanup")
_MISSING = object()


class TamperingDetected(AssertionError):
    """The notebook changed what the tests use while a test ran; the test earns no points."""


def _is_mutable_class(obj: Any) -> bool:
    return (
        isinstance(obj, type)
        and str(getattr(obj, "__module__", "")).startswith(CLASS_PREFIXES)
        and not obj.__flags__ & (1 << 8)  # Py_TPFLAGS_IMMUTABLETYPE
    )


# Swapped by ipykernel itself on every execution (stdin forwarding), so never protected.
KERNEL_MANAGED = {"input", "raw_input", "getpass", "breakpoint", "display", "get_ipython", "exit", "quit"}


def _kept(name: str, value: Any) -> bool:
    """Which module attributes are protected: callables, modules and classes, plus __builtins__."""
    if name in KERNEL_MANAGED:
        return False
    if name == "__builtins__":
        return True
    if name.startswith("__") and name not in ("__import__", "__build_class__"):
        return False
    return callable(value) or isinstance(value, types.ModuleType)


def install(spec_path: str) -> None:
    """Set up the guard in a fresh kernel from the grader's spec file (read once, then deleted)."""
    with open(spec_path) as fh:
        spec = json.load(fh)
    os.remove(spec_path)
    shell = get_ipython()  # noqa: F821  (IPython injects it into builtins)
    user_ns = shell.user_ns
    key = bytes.fromhex(spec.pop("key"))
    nonce = spec["nonce"]

    names = list(dict.fromkeys(PROTECTED_MODULES + spec.get("modules", [])))
    modules = {n: importlib.import_module(n) for n in names}
    snap = {n: {k: v for k, v in vars(m).items() if _kept(k, v)} for n, m in modules.items()}
    classes = {}
    for values in snap.values():
        for v in values.values():
            if _is_mutable_class(v):
                classes[v] = dict(vars(v))
    functions = [v for values in snap.values() for v in values.values() if isinstance(v, types.FunctionType)]
    protected_function_ids = {id(f) for f in functions}
    kwdefaults = {f: dict(f.__kwdefaults__) for f in functions if f.__kwdefaults__}
    sys_attrs = {n: getattr(sys, n) for n in ("stdout", "stderr")}
    shell_lists = {n: list(getattr(shell, n)) for n in SHELL_LISTS}
    kernel = getattr(shell, "kernel", None)
    watched = [o for o in (shell, kernel, getattr(kernel, "session", None)) if o is not None]
    instance_keys = [(o, set(vars(o))) for o in watched]
    callbacks = {e: list(cbs) for e, cbs in shell.events.callbacks.items()}

    pins: dict[str, Any] = {}  # name -> trusted value (imports resolved from the snapshot)
    for name, origin in spec.get("imports", {}).items():
        module_name, attr = origin
        pins[name] = modules.get(module_name) or importlib.import_module(module_name)
        if attr is not None:
            pins[name] = snap.get(module_name, {}).get(attr, getattr(pins[name], attr))
    copies: dict[str, Any] = {}  # name -> pristine copy of a pinned value, restored by begin
    expected_codes = _expected_codes(spec["tests"])
    state: dict[str, Any] = {"gid": None, "began": None, "bound": {}, "blocked": []}
    audit, write = sys.audit, sys_attrs["stdout"].write

    def differences() -> list[tuple[Any, str, Any, dict, str]]:
        """(owner, name, current value, snapshot dict, label) for every protected entry that changed.

        A change the libraries make themselves is accepted into the snapshot: a wrapper
        defined in torch/numpy/course_lib code around the original (torch wraps
        Optimizer.step on first use), or a class re-exposing the method it inherits
        (course_lib's forbid() leaves that behind).
        """
        found = []
        owners = [(m, snap[n], n) for n, m in modules.items()]
        owners += [(cls, saved, cls.__qualname__) for cls, saved in classes.items()]
        for owner, saved, label in owners:
            current = vars(owner)
            keys = set(saved) | (set(current) if isinstance(owner, type) else set())
            for k in keys:
                now, was = current.get(k, _MISSING), saved.get(k, _MISSING)
                if now is was:
                    continue
                if _benign(owner, k, now, was):
                    saved[k] = now
                    continue
                found.append((owner, k, now, saved, f"{label}.{k}"))
        return found

    def restore() -> list[str]:
        """Put back every protected object the notebook replaced; return their names."""
        fixed = []
        for owner, k, _now, saved, label in differences():
            was = saved.get(k, _MISSING)
            if isinstance(owner, type):
                if was is _MISSING:
                    type.__delattr__(owner, k)
                else:
                    type.__setattr__(owner, k, was)
            else:
                vars(owner)[k] = was
            fixed.append(label)
        for n, m in modules.items():
            if sys.modules.get(n) is not m:
                sys.modules[n] = m
                fixed.append(f"sys.modules[{n!r}]")
        for f, saved_kw in kwdefaults.items():
            if f.__kwdefaults__ != saved_kw:
                f.__kwdefaults__ = dict(saved_kw)
                fixed.append(f"{f.__module__}.{f.__qualname__} defaults")
        for n, v in sys_attrs.items():
            if getattr(sys, n) is not v:
                setattr(sys, n, v)
                fixed.append(f"sys.{n}")
        for n, saved_list in shell_lists.items():
            if getattr(shell, n) != saved_list:
                setattr(shell, n, list(saved_list))
                fixed.append(f"IPython {n}")
        for obj, keys in instance_keys:
            for k in [k for k in vars(obj) if k not in keys and callable(getattr(type(obj), k, None))]:
                del vars(obj)[k]  # an instance attribute hiding a method, e.g. shell.showtraceback = ...
                fixed.append(f"{type(obj).__name__}.{k}")
        if shell.custom_exceptions != ():
            shell.set_custom_exc((), None)
            fixed.append("IPython custom exception handler")
        for e, cbs in callbacks.items():
            if shell.events.callbacks.get(e) != cbs:
                shell.events.callbacks[e] = list(cbs)
                fixed.append(f"IPython {e} callbacks")
        bound = {}
        for name, value in pins.items():
            if user_ns.get(name, _MISSING) is not value:
                fixed.append(name)
            user_ns[name] = bound[name] = value
        for name, pristine in copies.items():
            user_ns[name] = bound[name] = copy.deepcopy(pristine)
        state["bound"] = bound
        return fixed

    def changed() -> list[str]:
        """What differs from the snapshot now (empty when nothing was replaced)."""
        out = [label for *_, label in differences()]
        out += [f"{f.__qualname__} defaults" for f, kw in kwdefaults.items() if f.__kwdefaults__ != kw]
        out += [f"sys.{n}" for n, v in sys_attrs.items() if getattr(sys, n) is not v]
        out += [n for n, v in state["bound"].items() if user_ns.get(n, _MISSING) is not v]
        return out

    def pin(names: list[str]) -> None:
        """Record the values a locked cell just defined; each test starts from them."""
        for name in names:
            if name in user_ns and name not in pins:
                value = user_ns[name]
                if isinstance(value, types.ModuleType | types.FunctionType | type):
                    pins[name] = value
                else:
                    try:
                        copies[name] = copy.deepcopy(value)
                    except Exception:  # not copyable: keep the object itself
                        pins[name] = value

    def begin(gid: str) -> None:
        fixed = restore()
        _scrub_history(shell, user_ns)
        if state["blocked"]:
            write(f"{NOTICE_PREFIX} refused earlier: {', '.join(sorted(set(state['blocked'])))}\n")
            state["blocked"] = []
        if fixed:
            write(f"{NOTICE_PREFIX} put back before {gid}: {', '.join(sorted(set(fixed))[:12])}\n")
        state["began"] = gid

    def end(gid: str) -> None:
        problems = [] if state["began"] == gid else [f"the test {gid} did not start through the guard"]
        problems += changed()
        for name in spec.get("defs", {}).get(gid, []):
            fn_code = getattr(user_ns.get(name), "__code__", None)
            if fn_code is None or fn_code not in nested_codes.get(gid, ()):
                problems.append(f"{name} (defined by the test) was replaced")
        state["began"] = None
        if problems:
            raise TamperingDetected(
                f"while {gid} ran, the notebook replaced what the test uses: {', '.join(problems[:8])}. "
                "The test earns no points."
            )
        seal: list[str] = []
        audit("course.guard.seal", gid, seal)
        if seal:
            write(f"\n{SEAL_PREFIX} {gid} {seal[0]}\n")

    nested_codes = {
        gid: [c for code in codes for c in code.co_consts if isinstance(c, types.CodeType)]
        for gid, codes in expected_codes.items()
    }
    guard = types.SimpleNamespace(begin=begin, end=end, pin=pin, active=True)
    user_ns["__guard__"] = guard
    for m in modules.values():
        if m is not builtins:  # ipykernel rebinds builtins.input on every execution
            m.__class__ = _guarded_class(type(m), snap[m.__name__])
    sys.addaudithook(
        make_hook(
            key=key,
            nonce=nonce,
            expected=spec["tests"],
            expected_codes=expected_codes,
            user_ns=user_ns,
            end_code=end.__code__,
            guard_codes={end.__code__, begin.__code__, restore.__code__, changed.__code__},
            protected_function_ids=protected_function_ids,
            protected_modules=list(modules.values()),
            state=state,
        )
    )


def _expected_codes(tests: dict[str, str]) -> dict[str, list[types.CodeType]]:
    """The code objects IPython will execute for each test cell, one per top-level statement."""
    import ast

    out = {}
    for gid, source in tests.items():
        tree = compile(source, "<guard>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
        out[gid] = [
            compile(ast.Module([node], []), "<guard>", "exec", dont_inherit=True) for node in tree.body
        ]
    return out


def _scrub_history(shell: Any, user_ns: dict) -> None:
    """Drop test-cell sources from IPython's input history and linecache (no copying hidden tests)."""
    hm = shell.history_manager
    for hist in (hm.input_hist_parsed, hm.input_hist_raw):
        for i, text in enumerate(hist):
            if MARK_TEST in text:
                hist[i] = ""
    for k in [k for k in user_ns if k.startswith("_i")]:
        if isinstance(user_ns[k], str) and MARK_TEST in user_ns[k]:
            user_ns[k] = ""
    for cache in (linecache.cache, getattr(linecache, "_ipython_cache", {})):
        stale = [
            k
            for k, v in cache.items()
            if isinstance(v, tuple) and len(v) > 2 and any(MARK_TEST in line for line in v[2] or [])
        ]
        for k in stale:
            del cache[k]


def _benign(owner: Any, name: str, now: Any, was: Any) -> bool:
    """A change made by the libraries themselves (see differences() in install)."""
    if now is _MISSING:
        return False
    if was is _MISSING and isinstance(owner, type):
        for base in owner.__mro__[1:]:
            if name in vars(base):
                return vars(base)[name] is now
        return False
    code = getattr(now, "__code__", None)
    if code is None or not trusted_code(code):
        return False
    inner = now
    for _ in range(5):
        inner = getattr(inner, "__wrapped__", None)
        if inner is None:
            return False
        if inner is was:
            return True
    return False


def _guarded_class(base: type, saved: dict[str, Any]) -> type:
    """A module class whose protected attributes only the libraries themselves may replace."""

    def check(self: Any, name: str, value: Any) -> None:
        if saved.get(name, value) is value:
            return
        if trusted_code(sys._getframe(2).f_code):
            saved[name] = value  # e.g. torch._dynamo wrapping torch.manual_seed on import
            return
        raise PermissionError(
            f"{self.__name__}.{name} cannot be replaced while this notebook is graded "
            "(the tests use it); define a function of your own instead"
        )

    def __setattr__(self: Any, name: str, value: Any) -> None:
        check(self, name, value)
        base.__setattr__(self, name, value)

    def __delattr__(self: Any, name: str) -> None:
        check(self, name, _MISSING)
        base.__delattr__(self, name)

    return type("GuardedModule", (base,), {"__setattr__": __setattr__, "__delattr__": __delattr__})
