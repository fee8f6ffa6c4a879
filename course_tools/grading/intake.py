"""Check and tidy one submission before grading: find its notebooks, make them readable, flag the odd.

`stage_submission` copies what will be graded into a staging folder and says
what it found: a renamed notebook (`ps01_backprop (1).ipynb`) is renamed back,
a notebook that is not JSON or not a notebook is reported (the student scores
zero for it), duplicated or missing cell ids are renumbered, stored outputs are
dropped (nbgrader clears them anyway; a huge one would only cost memory), and
files the assignment does not ship are left out (a `torch.py` next to the
notebook would otherwise shadow the real torch). It also scans the student's
cells for code that reaches into the grader (IPython internals, monkeypatching,
frames, ctypes, the network, the file system outside): that never changes a
grade by itself, it is listed for a person to review.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .cells import grade_id, nbgrader_meta

MAX_NOTEBOOK_BYTES = 100 * 1024 * 1024
SKIP_PARTS = {".ipynb_checkpoints", "__pycache__", "__MACOSX"}

REVIEW_NAMES = {
    "get_ipython": "uses IPython internals (get_ipython)",
    "ctypes": "imports ctypes",
    "gc": "uses the garbage collector's object lists",
    "_getframe": "inspects stack frames",
    "settrace": "installs a tracer",
    "setprofile": "installs a profiler",
    "__builtins__": "touches __builtins__",
    "builtins": "touches the builtins module",
    "__code__": "swaps function code",
    "__globals__": "reaches into function globals",
    "_exit": "calls os._exit",
    "socket": "uses sockets",
    "urllib": "uses urllib (network)",
    "requests": "uses requests (network)",
    "subprocess": "starts processes",
    "system": "runs a shell command",
    "setattr": "calls setattr",
    "signal": "handles signals",
    "inspect": "inspects stack frames or source (inspect)",
    "f_locals": "reads another frame's variables",
    "__torch_function__": "overrides torch functions (a tensor subclass)",
    "__torch_dispatch__": "overrides torch operators (a tensor subclass)",
    "TorchFunctionMode": "installs a torch function mode",
    "TorchDispatchMode": "installs a torch dispatch mode",
    "_C": "calls torch's private C bindings (torch._C)",
    "ops": "calls operators directly (torch.ops)",
    "ast_transformers": "rewrites the code of later cells",
    "import_module": "imports by name at run time (importlib)",
}
MODULE_ROOTS = {"torch", "np", "numpy", "F", "nn", "course_lib", "checks", "math", "sys", "builtins"}


@dataclass
class Staged:
    """The outcome of intake for one student."""

    student: str
    staged: Path | None  # folder to grade, or None when no notebook could be read
    issues: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    fingerprint: str = ""
    timestamp: str | None = None


def fingerprint(folder: Path) -> str:
    """A hash of every file in a submission folder (names and contents)."""
    h = hashlib.sha256()
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            h.update(str(path.relative_to(folder)).encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def _pick(expected: str, candidates: list[Path]) -> Path | None:
    """The file that is most likely the expected notebook under another name."""
    stem = expected.lower()
    close = [p for p in candidates if stem in p.stem.lower().replace(" ", "_").replace("-", "_")]
    if len(close) == 1:
        return close[0]
    return candidates[0] if len(candidates) == 1 else None


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, list[str]]:
    """Read a submitted notebook as leniently as is safe; return it (or None) and what was wrong."""
    issues: list[str] = []
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return None, [f"{path.name} is {size / 2**20:.0f} MiB, over the {MAX_NOTEBOOK_BYTES >> 20} MiB limit"]
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        return None, [f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"]
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        return None, [f"{path.name} is JSON but not a notebook (no list of cells)"]
    for cell in data["cells"]:  # repaired before nbformat reads it: a list for metadata makes it raise
        if isinstance(cell, dict):
            for key, kind, default in (("metadata", dict, {}), ("source", (str, list), "")):
                if not isinstance(cell.get(key, default), kind):
                    cell[key] = default
                    issues.append(f"{path.name}: a cell's {key} had the wrong type and was emptied")
    raw_ids = [c.get("id") for c in data["cells"] if isinstance(c, dict)]
    repeated = len(raw_ids) - len(set(raw_ids)) if all(isinstance(i, str) for i in raw_ids) else 0
    if repeated:  # nbformat renumbers these itself while reading, silently but for a warning
        issues.append(f"{path.name}: {repeated} duplicated cell id(s) renumbered")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(data), as_version=4, capture_validation_error={})
    except Exception as exc:  # nbformat raises many types on malformed input
        return None, [f"{path.name} cannot be read as a notebook ({type(exc).__name__}: {exc})"]
    ids: set[str] = set()
    renumbered = 0
    for cell in nb.cells:
        for key, default in (("metadata", {}), ("source", "")):
            if not isinstance(cell.get(key), type(default)):
                cell[key] = nbformat.from_dict(default) if key == "metadata" else ""
        cid = cell.get("id")
        if not isinstance(cid, str) or not re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", cid) or cid in ids:
            cell["id"] = uuid.uuid4().hex[:8]
            renumbered += 1
        ids.add(cell["id"])
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    if renumbered:
        issues.append(f"{path.name}: {renumbered} missing or duplicated cell id(s) renumbered")
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        issues.append(f"{path.name} does not follow the notebook format ({exc.message[:120]}); graded anyway")
    return nb, issues


def review_notes(nb: nbformat.NotebookNode, locked_ids: set[str] | None = None) -> list[str]:
    """Suspicious constructs in the student's own cells (not the locked ones), with where they are.

    locked_ids: the grade ids the assignment's source locks (nbgrader puts those cells back).
    Given, a cell is skipped only when the source locks it, whatever the submission's own
    metadata claims; without it, the submission's metadata is trusted.
    """
    notes: list[str] = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if locked_ids is None:
            locked = meta.get("locked") and not meta.get("solution")
        else:
            locked = meta.get("grade_id") in locked_ids
        if cell.get("cell_type") != "code" or locked:
            continue
        where = meta.get("grade_id") or f"cell {cell.get('id')}"
        source = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in cell.source.split("\n"))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Name):
                name = node.id
            elif isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.alias):
                name = node.name.split(".")[0]
            if name in REVIEW_NAMES:
                notes.append(f"{where} line {getattr(node, 'lineno', '?')}: {REVIEW_NAMES[name]}")
            if isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    root = t
                    while isinstance(root, ast.Attribute | ast.Subscript):
                        root = root.value
                    if (
                        isinstance(t, ast.Attribute)
                        and isinstance(root, ast.Name)
                        and root.id in MODULE_ROOTS
                    ):
                        notes.append(f"{where} line {node.lineno}: replaces {ast.unparse(t)}")
    return list(dict.fromkeys(notes))


def compare_with_source(nb: nbformat.NotebookNode, name: str, source: dict[str, dict]) -> list[str]:
    """What the student did to the locked and graded cells (nbgrader puts most of it back)."""
    from nbgrader.utils import compute_checksum

    issues = []
    seen: dict[str, int] = {}
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid not in source:
            continue
        seen[gid] = seen.get(gid, 0) + 1
        want = source[gid]
        if cell.get("cell_type") != want["cell_type"]:
            issues.append(
                f"{name}: cell {gid} changed from {want['cell_type']} to {cell.get('cell_type')} (put back)"
            )
        elif want["locked"]:
            try:
                same = compute_checksum(cell) == want["checksum"]
            except (KeyError, ValueError, TypeError):
                same = False
            if not same:
                issues.append(f"{name}: locked cell {gid} was edited (put back)")
    for gid, want in source.items():
        if gid not in seen and (want["grade"] or want["locked"]):
            restored = "put back" if want["grade"] else "not restored by nbgrader"
            issues.append(f"{name}: cell {gid} was deleted ({restored})")
    return issues


def dedupe_grade_ids(nb: nbformat.NotebookNode, name: str) -> list[str]:
    """Keep nbgrader's metadata on the last cell of each grade_id (nbgrader's choice); the copies
    before it become ordinary cells that still run. (nbgrader's own DeduplicateIds leaves an empty
    `nbgrader` entry behind that makes add_missing_cells fail with KeyError.)"""
    counts: dict[str, int] = {}
    for cell in reversed(nb.cells):
        gid = grade_id(cell)
        if gid is None:
            continue
        counts[gid] = counts.get(gid, 0) + 1
        if counts[gid] > 1:
            del cell["metadata"]["nbgrader"]
    return [
        f"{name}: cell {gid} appears {n} times (the last is graded, the others ran as ordinary cells)"
        for gid, n in counts.items()
        if n > 1
    ]


def stage_submission(
    submitted: Path,
    student: str,
    notebooks: list[str],
    shipped_files: set[str],
    staging: Path,
    source_cells: dict[str, dict[str, dict]] | None = None,
) -> Staged:
    """Prepare staging/<student>/ from submitted/<student>/<assignment>/ (see the module docstring)."""
    out = Staged(student=student, staged=None, fingerprint=fingerprint(submitted))
    if not submitted.is_dir():
        out.issues.append("no submission")
        return out
    files = [
        p
        for p in sorted(submitted.rglob("*"))
        if p.is_file() and not SKIP_PARTS & set(p.relative_to(submitted).parts)
    ]
    target = staging / student
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    found = 0
    # Any notebook that is not an expected one at the top level may be it: renamed, or in a folder.
    spare = [p for p in files if p.suffix == ".ipynb" and not (p.parent == submitted and p.stem in notebooks)]
    used: set[Path] = set()
    for name in notebooks:
        path = submitted / f"{name}.ipynb"
        if not path.exists():
            path = _pick(name, [p for p in spare if p not in used])
            if path is None:
                out.issues.append(f"missing notebook {name}.ipynb (scored zero)")
                continue
            out.issues.append(f"renamed {path.relative_to(submitted)} to {name}.ipynb")
        used.add(path)
        nb, issues = read_notebook(path)
        out.issues += issues
        if nb is None:
            out.issues.append(f"{name}.ipynb could not be graded (scored zero)")
            continue
        out.issues += compare_with_source(nb, name, (source_cells or {}).get(name, {}))
        out.issues += dedupe_grade_ids(nb, name)
        nbformat.write(nb, target / f"{name}.ipynb")
        locked_ids = None
        if source_cells and name in source_cells:
            locked_ids = {gid for gid, c in source_cells[name].items() if c.get("locked")}
        out.review += review_notes(nb, locked_ids)
        found += 1
    ignored = []
    for p in files:
        rel = str(p.relative_to(submitted))
        if p in used or p.suffix == ".ipynb" and p.parent == submitted and p.stem in notebooks:
            continue
        if rel == "timestamp.txt":
            shutil.copy2(p, target / rel)
            out.timestamp = p.read_text(errors="replace").strip() or None
        elif rel in shipped_files:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target / rel)
        else:
            ignored.append(rel)
    if ignored:
        shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        out.issues.append(f"ignored file(s) the assignment does not ship: {shown}")
    if found:
        out.staged = target
    return out
