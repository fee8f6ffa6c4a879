"""Broken and hostile ps01 submissions, each a folder of files as a student would hand it in.

Every `Case` builds its files from the released notebook and the reference
answers, and says what grading must make of it: the state in the status table,
the test cells that must score zero (every other test cell must score full
marks), and words the status entry must contain. The robustness suite grades
them all in one run, two workers side by side, through the real pipeline.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import nbformat
from assignments.ps01_attacks import ATTACKS
from assignments.ps01_mistakes import MISTAKES
from nbformat import NotebookNode

from course_tools.grading.cells import grade_id
from course_tools.grading.submissions import fill

NB = "ps01_backprop"
TESTS = [
    "test_cross_entropy",
    "test_cross_entropy_grad",
    "test_two_layer_backward",
    "test_conv1d_backward",
    "test_central_difference",
    "test_relative_error",
    "test_find_wrong_gradients",
    "test_accumulated_gradients",
    "test_train_step",
]


def mistake(part: str, name: str) -> str:
    return next(m.source for m in MISTAKES if m.part == part and m.name == name)


WRONG = {
    "relative_error": mistake("relative_error", "absolute_error_only"),
    "cross_entropy": mistake("cross_entropy", "sum_instead_of_mean"),
    "cross_entropy_grad": mistake("cross_entropy_grad", "forgot_divide_by_n"),
}
WRONG_TESTS = {"test_relative_error", "test_cross_entropy", "test_cross_entropy_grad"}


@dataclass(frozen=True)
class Case:
    student: str
    build: Callable[[NotebookNode, dict[str, str]], dict[str, bytes]]
    state: str  # expected state in the status table
    lost: set[str] = field(default_factory=set)  # test cells that must score 0 (the others: full marks)
    mentions: tuple[str, ...] = ()  # words the status entry (issues and review notes) must contain


def as_files(nb: NotebookNode, name: str = f"{NB}.ipynb") -> dict[str, bytes]:
    return {name: nbformat.writes(nb).encode(), "timestamp.txt": b"2026-01-01 00:00:00.000000 UTC"}


def cell(nb: NotebookNode, gid: str) -> NotebookNode:
    return next(c for c in nb.cells if grade_id(c) == gid)


def with_answers(**overrides: str):
    def build(release: NotebookNode, answers: dict[str, str]) -> dict[str, bytes]:
        return as_files(fill(release, {**answers, **overrides}))

    return build


def prefixed(part: str, code: str, body: str | None = None):
    """The reference (or `body`) answer of `part` with `code` run at the top of the cell."""

    def build(release, answers):
        return as_files(fill(release, {**answers, part: code + "\n" + (body or answers[part])}))

    return build


def attack(part: str, name: str) -> str:
    return next(a.source for a in ATTACKS if a.part == part and a.name == name)


def fn(part: str, body: str, args: str) -> str:
    return f"def {part}({args}):\n" + "\n".join("    " + ln for ln in body.strip().split("\n")) + "\n"


def deleted_test(release, answers):
    nb = fill(release, answers)
    nb.cells = [c for c in nb.cells if grade_id(c) != "test_relative_error"]
    return as_files(nb)


def edited_test(release, answers):
    nb = fill(release, {**answers, "cross_entropy": WRONG["cross_entropy"]})
    cell(nb, "test_cross_entropy").source = 'print("cross_entropy: visible tests passed")'
    return as_files(nb)


def changed_type(release, answers):
    nb = fill(release, answers)
    c = cell(nb, "test_cross_entropy_grad")
    c.cell_type = "markdown"
    c.pop("outputs", None)
    c.pop("execution_count", None)
    return as_files(nb)


def duplicated_ids(release, answers):
    nb = fill(release, answers)
    extra = copy.deepcopy(cell(nb, "relative_error"))  # a pasted copy of a solution cell, same grade_id
    nb.cells.insert(5, extra)
    data = json.loads(nbformat.writes(nb))
    for c in data["cells"]:
        c["id"] = "same-id"
    return {f"{NB}.ipynb": json.dumps(data).encode()}


def not_json(release, answers):
    text = nbformat.writes(fill(release, answers))
    return {f"{NB}.ipynb": text[: len(text) // 2].encode()}


def missing(release, answers):
    return {"README.txt": b"I could not finish, sorry"}


def renamed_and_extra(release, answers):
    files = as_files(fill(release, answers), name=f"{NB} (1).ipynb")
    files["torch.py"] = b"raise SystemExit('shadowed torch')\n"
    files["notes.txt"] = b"my notes"
    return files


def huge_output(release, answers):
    nb = fill(
        release,
        {**answers, "two_layer_backward": 'print("x" * 6_000_000)\n' + answers["two_layer_backward"]},
    )
    stored = nbformat.v4.new_output("stream", name="stdout", text="y" * 20_000_000)
    cell(nb, "two_layer_backward").outputs = [stored]  # a huge stored output in the file, too
    return as_files(nb)


PATCH_CHECKS = """
import course_lib.checks
check_close = lambda *a, **k: None
check_shape = lambda *a, **k: None
check_finite = lambda *a, **k: None
check_true = lambda *a, **k: None
try:
    course_lib.checks.check_close = check_close
except PermissionError as exc:
    print("refused:", exc)
vars(course_lib.checks)["check_close"] = check_close
"""

PATCH_TORCH = """
import numpy as np
import torch.nn.functional
vars(torch.nn.functional)["cross_entropy"] = lambda logits, y, *a, **k: cross_entropy(logits, y)
for owner, name, fake in [(torch, "allclose", lambda *a, **k: True), (np, "allclose", lambda *a, **k: True),
                          (torch.testing, "assert_close", lambda *a, **k: None)]:
    try:
        setattr(owner, name, fake)
    except PermissionError as exc:
        print("refused:", exc)
torch.Tensor.__le__ = lambda self, other: torch.ones(self.shape, dtype=torch.bool)
torch.Tensor.any = lambda self, *a, **k: torch.tensor(False)
"""

HIDE_ERRORS = """
ip = get_ipython()
ip.showtraceback = lambda *a, **k: None
ip._showtraceback = lambda *a, **k: None
ip.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)
"""

REWRITE_TESTS = """
import ast
class _DropChecks(ast.NodeTransformer):
    def visit_Expr(self, node):
        call = node.value
        if isinstance(call, ast.Call) and getattr(call.func, "id", "").startswith("check_"):
            return ast.Pass()
        return node
get_ipython().ast_transformers.append(_DropChecks())
"""

FAKE_OUTPUT = """
print("All tests passed! Score: 20/20")
for t in ["test_relative_error", "test_cross_entropy", "test_cross_entropy_grad"]:
    print(f"{t}: visible tests passed")
"""

SNOOP = """
import os, glob, linecache, inspect
SNOOPED = []
def _try(path):
    try:
        with open(path, "rb") as fh:
            fh.read(100)
        print("SNOOP READ", path)
    except Exception as exc:
        print("SNOOP DENIED", path, type(exc).__name__)
for pattern in ["{course}/solutions/*/*.ipynb", "{course}/gradebook.db", "{course}/submitted/*/*/*.ipynb",
                "{repo}/solutions/*/*.ipynb", "../../../gradebook.db", "../../../../*/gradebook.db",
                "/proc/1/environ", "*.ipynb"]:
    for path in glob.glob(pattern) or [pattern]:
        _try(path)
print("SNOOP ROOT", sorted(os.listdir("/")))
print("SNOOP COURSE", os.path.exists("{course}/solutions"), os.path.exists("{course}/gradebook.db"),
      os.path.exists("{course}/submitted"), os.path.exists("{repo}/solutions"))

def relative_error(a, b):
    ns = get_ipython().user_ns
    SNOOPED.append(repr(ns.get("_ih")))
    SNOOPED.append(repr(list(linecache.cache.values())))
    try:
        SNOOPED.append(repr([f.frame.f_code.co_consts for f in inspect.stack()]))
    except Exception as exc:
        SNOOPED.append(repr(exc))
    num = torch.linalg.vector_norm(a.detach() - b.detach()).item()
    den = torch.linalg.vector_norm(a.detach()).item() + torch.linalg.vector_norm(b.detach()).item()
    return num / max(den, 1e-12)
"""

NETWORK = """
import socket, urllib.request
for what, attempt in [
    ("http", lambda: urllib.request.urlopen("http://pypi.org", timeout=5)),
    ("tcp", lambda: socket.create_connection(("1.1.1.1", 53), timeout=5)),
    ("unix", lambda: socket.socket(socket.AF_UNIX).connect("/var/run/postgresql/.s.PGSQL.5432")),
]:
    try:
        attempt()
        print("NET REACHED", what)
    except Exception as exc:
        print("NET BLOCKED", what, type(exc).__name__)
"""


def snoop(course: str, repo: str):
    def build(release, answers):
        nb = fill(release, {**answers, "relative_error": SNOOP.format(course=course, repo=repo)})
        nb.cells.append(nbformat.v4.new_code_cell("print('\\n'.join(SNOOPED))"))  # show what was gathered
        return as_files(nb)

    return build


def cases(course: str, repo: str) -> list[Case]:
    """Every robustness case; `course` and `repo` are paths the snooping submission tries to read."""
    loop = fn("relative_error", "while True:\n    pass", "a, b")
    stubborn = fn(
        "cross_entropy",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        "logits, y",
    )
    return [
        Case("reference", with_answers(), "graded"),
        Case(
            "partly-wrong",
            with_answers(cross_entropy=WRONG["cross_entropy"]),
            "graded",
            {"test_cross_entropy"},
        ),
        Case(
            "infinite-loop",
            with_answers(relative_error=loop),
            "graded-with-issues",
            {"test_relative_error"},
            ("timed out and was interrupted",),
        ),
        Case(
            "loop-ignores-interrupt",
            with_answers(cross_entropy=stubborn),
            "graded-with-issues",
            {"test_cross_entropy"},
            ("timeout",),
        ),
        Case(
            "os-exit",
            with_answers(relative_error=fn("relative_error", "import os\nos._exit(3)", "a, b")),
            "graded-with-issues",
            {"test_relative_error"},
            ("kernel died", "_exit"),
        ),
        Case(
            "segfault",
            with_answers(
                cross_entropy_grad=fn(
                    "cross_entropy_grad", "import faulthandler\nfaulthandler._sigsegv()", "logits, y"
                )
            ),
            "graded-with-issues",
            {"test_cross_entropy_grad"},
            ("kernel died",),
        ),
        Case(
            "memory-bomb",
            prefixed("cross_entropy_grad", "hog = []\nwhile True:\n    hog.append(bytearray(1 << 28))"),
            "graded-with-issues",
            {"test_cross_entropy_grad"},
            ("memory limit",),
        ),
        Case(
            "deleted-test-cell",
            deleted_test,
            "graded-with-issues",
            set(),
            ("test_relative_error was deleted",),
        ),
        Case("edited-test-cell", edited_test, "graded-with-issues", {"test_cross_entropy"}, ("edited",)),
        Case("changed-cell-type", changed_type, "graded-with-issues", set(), ("from code to markdown",)),
        Case(
            "duplicated-ids", duplicated_ids, "graded-with-issues", set(), ("renumbered", "appears 2 times")
        ),
        Case("not-json", not_json, "not-gradable", set(TESTS), ("not valid JSON",)),
        Case("missing-notebook", missing, "not-gradable", set(TESTS), ("missing notebook",)),
        Case("renamed-and-extra", renamed_and_extra, "graded-with-issues", set(), ("renamed", "torch.py")),
        Case("huge-output", huge_output, "graded-with-issues", set(), ("output cut",)),
        Case(
            "monkeypatch-checks",
            prefixed("relative_error", PATCH_CHECKS, WRONG["relative_error"]),
            "graded",
            {"test_relative_error"},
            ("replaces course_lib.checks.check_close",),
        ),
        Case(
            "monkeypatch-torch",
            prefixed("cross_entropy", PATCH_TORCH, WRONG["cross_entropy"]),
            "graded",
            # F.cross_entropy in its own kernel now runs the wrong answer, so the loss its train_step
            # and accumulated_gradients receive is wrong too: self-inflicted, and nothing is gained.
            {"test_cross_entropy", "test_train_step", "test_accumulated_gradients"},
            ("calls setattr", "replaces torch.Tensor.__le__"),
        ),
        Case(
            "hides-errors",
            with_answers(
                **{"relative_error": HIDE_ERRORS + "\n" + WRONG["relative_error"]},
                cross_entropy=WRONG["cross_entropy"],
            ),
            "graded",
            {"test_relative_error", "test_cross_entropy"},
            ("get_ipython",),
        ),
        Case(
            "rewrites-tests",
            prefixed("relative_error", REWRITE_TESTS, WRONG["relative_error"]),
            "graded",
            {"test_relative_error"},
            ("rewrites the code of later cells",),
        ),
        Case(
            "fake-output",
            with_answers(
                relative_error=FAKE_OUTPUT + "\n" + WRONG["relative_error"],
                cross_entropy=WRONG["cross_entropy"],
            ),
            "graded",
            {"test_relative_error", "test_cross_entropy"},
        ),
        Case(
            "snoop",
            snoop(course, repo),
            "graded-with-issues",
            set(),
            ("get_ipython", "inspect", "output cut"),
        ),
        # Attacks on the comparisons themselves: the verdict is made outside the kernel, so none earns a point.
        Case(
            "tensor-subclass",
            with_answers(cross_entropy_grad=attack("cross_entropy_grad", "tensor_subclass")),
            "graded",
            {"test_cross_entropy_grad"},
            ("tensor subclass",),
        ),
        Case(
            "function-mode",
            with_answers(cross_entropy_grad=attack("cross_entropy_grad", "function_mode")),
            "graded",
            {"test_cross_entropy_grad"},
            ("torch function mode",),
        ),
        Case(
            "reads-frames",
            with_answers(cross_entropy=attack("cross_entropy", "read_expected_from_frames")),
            "graded",
            {"test_cross_entropy"},
            ("inspect",),
        ),
        Case(
            "private-binding",
            with_answers(cross_entropy=attack("cross_entropy", "private_c_binding")),
            "graded-with-issues",
            {"test_cross_entropy"},
            ("ForbiddenCall", "torch._C"),
        ),
        Case(
            "autograd-alias",
            with_answers(cross_entropy_grad=attack("cross_entropy_grad", "autograd_imported_at_top")),
            "graded-with-issues",
            {"test_cross_entropy_grad"},
            ("ForbiddenCall",),
        ),
        Case(
            "edits-inputs",
            with_answers(cross_entropy_grad=attack("cross_entropy_grad", "edit_inputs_in_place")),
            "graded",
            {"test_cross_entropy_grad"},
        ),
        Case("network", prefixed("relative_error", NETWORK), "graded", set(), ("socket",)),
    ]
