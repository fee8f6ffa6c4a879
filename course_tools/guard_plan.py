"""Grader side of the guard: how a notebook is rewritten before it runs, and checked after.

Before execution (`GuardPlan.apply`): a first cell installs course_tools.guard;
each test cell becomes

    #@course-guard test <grade_id>
    __guard__.begin("<grade_id>")
    if __guard__.active:
        <the test, indented>
        __guard__.end("<grade_id>")

and each locked, ungraded code cell (the setup) ends with `__guard__.pin([...])`
naming what it defined. After execution (`GuardPlan.settle`): every test cell
that looks passed must carry the seal only the guard can print, or it is marked
failed; seals are removed, the original sources put back, the guard cell
dropped, and any line of a hidden test that reached an output is blanked out.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import io
import re
import secrets
import tokenize
from dataclasses import dataclass, field

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_output

from .guard import MARK_INSTALL, MARK_TEST, NOTICE_PREFIX, SEAL_PREFIX

HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
REDACTED = "[hidden test code removed]"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def nbgrader_meta(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test_cell(cell: NotebookNode) -> bool:
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_locked_setup(cell: NotebookNode) -> bool:
    meta = nbgrader_meta(cell)
    return (
        cell.cell_type == "code"
        and bool(meta.get("locked"))
        and not meta.get("grade")
        and not meta.get("solution")
    )


def indent_block(source: str, prefix: str = "    ") -> str:
    """Indent code by one level without touching the inside of multi-line string literals."""
    inside: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING and tok.start[0] != tok.end[0]:
            inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    lines = source.split("\n")
    return "\n".join(
        line if (i + 1 in inside or not line.strip()) else prefix + line for i, line in enumerate(lines)
    )


def top_level_bindings(source: str) -> tuple[dict[str, tuple[str, str | None]], list[str]]:
    """Names a cell binds at top level: {name: (module, attribute or None)} for imports, and the others."""
    imports: dict[str, tuple[str, str | None]] = {}
    others: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    imports[alias.asname] = (alias.name, None)
                else:
                    top = alias.name.split(".")[0]
                    imports[top] = (top, None)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    imports[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            others.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                others += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return imports, list(dict.fromkeys(others))


def hidden_lines(source: str) -> list[str]:
    """The distinctive lines of a cell's hidden-test regions (what must never reach a student)."""
    out, inside = [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        elif inside and len(line.strip()) >= 12 and not line.strip().startswith("#"):
            out.append(line.strip())
    return out


@dataclass
class GuardPlan:
    """What was changed in one notebook, and the secrets needed to check it afterwards."""

    spec_path: str
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))
    originals: dict[int, str] = field(default_factory=dict)  # id(cell) -> source before apply
    tests: dict[str, str] = field(default_factory=dict)  # grade_id -> guarded source
    defs: dict[str, list[str]] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    hidden: list[str] = field(default_factory=list)
    guard_cell: NotebookNode | None = None

    def spec(self) -> dict:
        """What the kernel-side guard reads (the key included; the file is read once and deleted)."""
        modules = sorted({m for m, _ in self.imports.values()})
        return {
            "key": self.key.hex(),
            "nonce": self.nonce,
            "tests": self.tests,
            "defs": self.defs,
            "imports": self.imports,
            "modules": modules,
        }

    def apply(self, nb: NotebookNode) -> None:
        """Rewrite `nb` in place: guard cell first, guarded test cells, pinned setup cells."""
        for cell in nb.cells:
            if is_test_cell(cell):
                gid = nbgrader_meta(cell)["grade_id"]
                try:
                    body = indent_block(cell.source)
                    tree = ast.parse(cell.source)
                except (SyntaxError, tokenize.TokenError):
                    continue  # cannot be guarded: graded as nbgrader would, without a seal check
                self.originals[id(cell)] = cell.source
                self.hidden += hidden_lines(cell.source)
                functions = (ast.FunctionDef, ast.AsyncFunctionDef)
                self.defs[gid] = [n.name for n in tree.body if isinstance(n, functions)]
                guarded = (
                    f"{MARK_TEST}{gid}\n__guard__.begin({gid!r})\nif __guard__.active:\n"
                    f"{body}\n    __guard__.end({gid!r})\n"
                )
                self.tests[gid] = guarded
                cell.source = guarded
            elif is_locked_setup(cell):
                try:
                    imports, others = top_level_bindings(cell.source)
                except SyntaxError:
                    continue
                self.imports.update(imports)
                self.originals[id(cell)] = cell.source
                if others:
                    cell.source = f"{cell.source}\n__guard__.pin({others!r})"
        self.guard_cell = new_code_cell(install_source(self.spec_path), metadata={"course_guard": True})
        nb.cells.insert(0, self.guard_cell)

    def expected_seal(self, gid: str) -> str:
        return hmac.new(self.key, f"{gid}:{self.nonce}".encode(), hashlib.sha256).hexdigest()

    def settle(self, nb: NotebookNode) -> dict:
        """Check seals, undo the rewrite, redact hidden lines; return what was found."""
        report: dict[str, list] = {"unsealed": [], "notices": [], "guard_error": []}
        if self.guard_cell is not None:
            errors = [o for o in self.guard_cell.get("outputs", []) if o.output_type == "error"]
            report["guard_error"] = [f"{o.ename}: {o.evalue}" for o in errors]
            nb.cells = [c for c in nb.cells if c is not self.guard_cell]
        for cell in nb.cells:
            if id(cell) not in self.originals:
                if cell.cell_type == "code":
                    self._clean_outputs(cell, report)
                continue
            cell.source = self.originals[id(cell)]
            if cell.cell_type != "code":
                continue
            gid = nbgrader_meta(cell).get("grade_id")
            sealed = self._clean_outputs(cell, report, gid if is_test_cell(cell) else None)
            if is_test_cell(cell) and gid in self.tests and not sealed and _looks_passed(cell):
                report["unsealed"].append(gid)
                cell.outputs.append(
                    new_output(
                        "error",
                        ename="TamperingDetected",
                        evalue=(
                            "this test did not finish under the grader's guard (its checks were "
                            "skipped or rewritten, or its errors hidden), so it earns no points"
                        ),
                        traceback=["TamperingDetected: the test's result could not be verified"],
                    )
                )
        return report

    def _clean_outputs(self, cell: NotebookNode, report: dict, gid: str | None = None) -> bool:
        """Remove seal lines (True if a valid one for `gid` was there), collect notices, redact."""
        sealed = False
        want = f"{SEAL_PREFIX} {gid} {self.expected_seal(gid)}" if gid else None
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                kept = []
                for line in out.text.split("\n"):
                    if line.startswith(SEAL_PREFIX):
                        sealed = sealed or (want is not None and hmac.compare_digest(line.strip(), want))
                        continue
                    if line.startswith(NOTICE_PREFIX):
                        report["notices"].append(f"{gid or 'cell'}: {line[len(NOTICE_PREFIX) :].strip()}")
                    kept.append(self._redact(line))
                out.text = "\n".join(kept)
            elif out.output_type == "error":
                out.evalue = self._redact(out.get("evalue", ""))
                out.traceback = [self._redact(t) for t in out.get("traceback", [])]
            elif "data" in out:
                for mime in ("text/plain", "text/html", "text/markdown"):
                    if isinstance(out.data.get(mime), str):
                        out.data[mime] = self._redact(out.data[mime])
        cell.outputs = [o for o in cell.get("outputs", []) if o.output_type != "stream" or o.text.strip()]
        return sealed

    def _redact(self, text: str) -> str:
        if not self.hidden or not text:
            return text
        plain = ANSI.sub("", text)
        if not any(h in plain for h in self.hidden):
            return text
        for h in self.hidden:
            plain = plain.replace(h, REDACTED)
        return plain


def install_source(spec_path: str) -> str:
    """The first cell: install the guard from the spec file (which it deletes)."""
    return f"{MARK_INSTALL}\nimport course_tools.guard\ncourse_tools.guard.install({spec_path!r})"


def _looks_passed(cell: NotebookNode) -> bool:
    """nbgrader's rule: a test cell earns its points when it shows no error and nothing on stderr."""
    return not any(
        o.output_type == "error" or (o.output_type == "stream" and o.get("name") == "stderr")
        for o in cell.get("outputs", [])
    )
