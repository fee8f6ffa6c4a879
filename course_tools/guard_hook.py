"""The guard's audit hook (PEP 578): it refuses what would let a notebook rig its tests, and seals honest tests.

Installed once per kernel by course_tools.guard.install; an audit hook cannot be
removed, and this one keeps its key and state only in closures. It

- refuses ctypes, frame and garbage-collector introspection, tracers, new
  processes, replacing a protected function's code or a protected module's
  class, and reading another process's memory or environment;
- watches IPython compile and execute each test cell and gives `end()` a seal
  (an HMAC of the cell's id under the grader's key) only if exactly the expected
  test code ran, in order, in the notebook's namespace.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

MARK_TEST = "#@course-guard test "
_SITE = os.path.dirname(os.path.dirname(importlib.import_module("ipykernel").__file__))
_COURSE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRUSTED_FILES = (
    "<frozen importlib",
    os.path.join(_SITE, "torch", ""),
    os.path.join(_SITE, "numpy", ""),
    os.path.join(_COURSE, "course_lib", ""),
)
BLOCKED_EVENTS = (
    "ctypes.",
    "gc.get_objects",
    "gc.get_referrers",
    "gc.get_referents",
    "sys._current_frames",
    "sys.settrace",
    "sys.setprofile",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "pty.spawn",
)
FRAME_ATTRS = ("tb_frame", "f_back", "gi_frame", "cr_frame", "ag_frame")


def trusted_code(code: types.CodeType) -> bool:
    """Library code allowed to rebind protected names (torch rebinds some of its own on first use)."""
    return code.co_filename.startswith(TRUSTED_FILES)


def make_hook(
    *,
    key: bytes,
    nonce: str,
    expected: dict[str, str],
    expected_codes: dict[str, list[types.CodeType]],
    user_ns: dict,
    end_code: types.CodeType,
    guard_codes: set,
    protected_function_ids: set,
    protected_modules: list,
    state: dict,
):
    """The audit hook. Only it holds the key; it keeps no reference reachable from Python code."""
    from _hashlib import hmac_digest

    getframe, code_type, str_type, bytes_type = sys._getframe, types.CodeType, str, bytes
    busy = [False]
    cell: dict[str, Any] = {"gid": None, "file": None, "pos": 0, "ok": False}
    expected_src = {gid: src.rstrip("\n") for gid, src in expected.items()}
    mark = MARK_TEST

    def deny(event: str) -> None:
        state["blocked"].append(event)
        raise PermissionError(f"{event} is not allowed while this notebook is graded")

    def hook(event: str, args: tuple) -> None:
        if busy[0]:
            return
        busy[0] = True
        try:
            _dispatch(event, args)
        finally:
            busy[0] = False

    def _dispatch(event: str, args: tuple) -> None:
        if event == "compile":
            src = args[0]
            if type(src) is bytes_type:
                src = src.decode("utf-8", "replace")
            if type(src) is str_type and src.startswith(mark):
                gid = src[len(mark) : src.find("\n")].strip()
                ok = expected_src.get(gid) == src.rstrip("\n")
                cell.update(gid=gid, file=args[1], pos=0, ok=ok)
        elif event == "exec":
            code = args[0]
            if cell["gid"] is not None and type(code) is code_type and code.co_filename == cell["file"]:
                codes = expected_codes.get(cell["gid"], ())
                pos = cell["pos"]
                if pos < len(codes) and code == codes[pos]:
                    cell["pos"] = pos + 1
                else:
                    cell["ok"] = False
        elif event == "course.guard.seal":
            gid, out = args
            codes = expected_codes.get(gid, ())
            caller = _caller()  # end(), which called sys.audit
            test_frame = caller.f_back if caller is not None else None
            if (
                cell["gid"] == gid
                and cell["ok"]
                and cell["pos"] == len(codes)
                and caller.f_code is end_code
                and test_frame is not None
                and test_frame.f_code == codes[-1]
                and test_frame.f_globals is user_ns
            ):
                out.append(hmac_digest(key, f"{gid}:{nonce}".encode(), "sha256").hex())
            cell["gid"] = None
        elif event == "object.__getattr__":
            if args[1] in FRAME_ATTRS:
                target = getattr(args[0], args[1], None)
                if target is not None and target.f_code in hook_codes:
                    deny("frame access into the grader")
        elif event == "sys._getframe":
            if args[0].f_code in hook_codes:
                deny("frame access into the grader")
        elif event in ("object.__setattr__", "object.__delattr__"):
            obj, name = args[0], args[1]
            caller = _caller()
            if caller is not None and _from_guard(caller):
                return
            if caller is not None and trusted_code(caller.f_code):
                return
            if id(obj) in protected_function_ids and name in ("__code__", "__defaults__", "__kwdefaults__"):
                deny(f"replacing {getattr(obj, '__qualname__', '?')}.{name}")
            elif isinstance(obj, types.ModuleType) and name == "__class__" and obj in protected_modules:
                deny(f"replacing the class of module {obj.__name__}")
        elif event == "open":
            path = args[0]
            if isinstance(path, str | bytes):
                p = os.fsdecode(path)
                if p.startswith("/proc/") and p.rsplit("/", 1)[-1] in ("mem", "environ", "pagemap"):
                    deny(f"open {p}")
        elif event.startswith(BLOCKED_EVENTS):
            deny(event)

    def _caller() -> Any:
        """The Python frame whose operation raised the event (skipping the hook's own frames)."""
        frame = getframe(1)
        while frame is not None and frame.f_code in hook_codes:
            frame = frame.f_back
        return frame

    def _from_guard(frame: Any) -> bool:
        """True when the guard's own restore() (or install) is the one putting values back."""
        for _ in range(3):
            if frame is None:
                return False
            if frame.f_code in guard_codes:
                return True
            frame = frame.f_back
        return False

    hook_codes = {hook.__code__, _dispatch.__code__, _caller.__code__, _from_guard.__code__, deny.__code__}
    return hook
