"""The student bundle: one archive a student unpacks and uses offline.

    python3 dev.py bundle [--out FILE.zip] [--html DIR]

It holds the HTML book (MathJax included, so math renders with no network), the
student notebooks of exercises/, the course_lib package with a pyproject.toml that
installs only it, the pinned requirements, a student nbgrader configuration (course id
and cell timeouts, nothing of the instructor's), and SETUP.md with the set-up steps.

Before anything is written the bundle is checked, and the command fails, naming the
file, when any of it holds a solution region or hidden-test marker, a file identical to
one in solutions/, or a line of a reference answer that the released notebook does not
show (so an answer whose markers were stripped is caught too). tests/test_bundle.py
proves the same on the unpacked archive.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_tools.grading.answer_code import regions
from course_tools.grading.cells import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END
from course_tools.paths import REPO

ROOT = REPO
TOP = "gradient-problems-student"  # the folder the archive unpacks into
MARKERS = (SOLUTION_BEGIN, SOLUTION_END, "BEGIN SOLUTION", "END SOLUTION", HIDDEN_BEGIN, HIDDEN_END)
SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".jupyter_cache", "reports", ".doctrees"}
SKIP_NAMES = {".buildinfo", ".DS_Store"}

STUDENT_NBGRADER_CONFIG = '''"""nbgrader settings for students: the course id and enough time per cell for PyTorch.

JupyterLab's Validate button reads this file from the folder JupyterLab was started in.
"""

c = get_config()  # noqa: F821

c.CourseDirectory.course_id = "gradient-problems"
c.Execute.timeout = 120
c.Execute.startup_timeout = 120
'''

SETUP = """# Gradient Problems in Deep Learning: student bundle

This folder is everything a student needs, and works offline once installed.

| path | what |
|---|---|
| `book/index.html` | the course book: open it in a browser (no network needed; math and figures are included) |
| `exercises/<assignment>/` | the assignments, one notebook each |
| `course_lib/` | the small library the chapters and the assignments import |
| `requirements.txt` | the exact package versions the course is built and graded with |
| `nbgrader_config.py` | lets JupyterLab's **Validate** button run the notebook as the grader will |

## Read the book

Open `book/index.html` in any browser. Each chapter's interactive figures work without
Python: move a slider or pick a setting and the figure changes. (The search box needs the
book to be served: `python3 -m http.server -d book` and open http://127.0.0.1:8000/.)

## Set up Python (once; needs the package index, then no network)

Python 3.11 is required.

```bash
cd {top}
python3.11 -m venv .venv
.venv/bin/pip install -r requirements.txt    # on Linux add --extra-index-url https://download.pytorch.org/whl/cpu for the small CPU build of torch
.venv/bin/pip install -e .                   # makes `import course_lib` work in the notebooks
```

On Windows use `.venv\\Scripts\\pip` and `.venv\\Scripts\\jupyter`.

## Work on an assignment

```bash
.venv/bin/jupyter lab exercises/{first}/{first}.ipynb
```

Start JupyterLab from this folder (so the **Validate** button finds `nbgrader_config.py`).
Replace each `raise NotImplementedError()` with your answer and run every cell: the test
cell under each answer is the visible test, and its message says what is wrong. Then click
**Validate** in the notebook's toolbar: it runs the whole notebook the way the grader will.
Hidden tests with other shapes, seeds and edge cases run only at grading time.

Hand in through **Nbgrader → Assignment List → Submit** when your course uses nbgrader's
exchange, or upload the `.ipynb` file to your course's learning platform.
"""


class LeakError(RuntimeError):
    """Something in the bundle would show a student an answer or a hidden test."""


@dataclass
class Bundle:
    """Archive members: path inside the archive -> bytes."""

    files: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, data: bytes) -> None:
        if name in self.files:
            raise ValueError(f"{name} added twice")
        self.files[name] = data

    def add_tree(self, src: Path, dest: str, suffixes: tuple[str, ...] | None = None) -> None:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if not path.is_file() or path.name in SKIP_NAMES or SKIP_PARTS & set(rel.parts):
                continue
            if suffixes is not None and path.suffix not in suffixes:
                continue
            self.add(f"{dest}/{rel.as_posix()}", path.read_bytes())


def student_pyproject(root: Path = ROOT) -> str:
    """A pyproject.toml that installs course_lib alone, with the repository's pinned dependencies."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    deps = "\n".join(f'    "{d}",' for d in project["dependencies"])
    return f"""[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "course_lib"
version = "{project["version"]}"
description = "{project["description"]}"
requires-python = "{project["requires-python"]}"
dependencies = [
{deps}
]

[tool.setuptools]
packages = ["course_lib"]
"""


def _normalised(text: str) -> list[str]:
    """Code lines stripped of indentation, without blank and comment-only lines."""
    return [s for s in (ln.strip() for ln in text.splitlines()) if s and not s.startswith("#")]


def answer_blocks(solutions: Path) -> dict[str, str]:
    """The reference answers and hidden tests, as blocks of normalised lines: block -> where it is from.

    A block is the code of one solution region (between the markers) or one hidden-test
    region with at least two lines; a single line (`return x @ w.T`) is too generic to tell
    an answer from the book's own code.
    """
    blocks: dict[str, str] = {}
    pairs = ((SOLUTION_BEGIN, SOLUTION_END), (HIDDEN_BEGIN, HIDDEN_END))
    for source in sorted(solutions.glob("*/*.ipynb")):
        for k, cell in enumerate(nbformat.read(source, as_version=4).cells):
            for begin, end in pairs:
                for region in regions(cell.source, begin, end):
                    body = _normalised(region)
                    if len(body) >= 2:
                        blocks.setdefault("\n".join(body), f"{source.relative_to(solutions.parent)} cell {k}")
    return blocks


def find_leaks(bundle: Bundle, solutions: Path) -> list[str]:
    """Every member that shows a marker, a copy of a solutions/ file, or a reference answer's code."""
    leaks = []
    solution_files = {
        hashlib.sha256(p.read_bytes()).hexdigest(): p for p in solutions.rglob("*") if p.is_file()
    }
    blocks = answer_blocks(solutions)
    for name, data in sorted(bundle.files.items()):
        digest = hashlib.sha256(data).hexdigest()
        if digest in solution_files:
            leaks.append(f"{name} is a copy of {solution_files[digest].relative_to(solutions.parent)}")
            continue
        if "solutions/" in name.split("/", 1)[-1]:
            leaks.append(f"{name} is under a solutions/ folder")
        text = data.decode("utf-8", errors="ignore")
        for marker in MARKERS:
            if marker in text:
                leaks.append(f"{name} contains {marker!r}")
                break
        if name.endswith(".ipynb"):  # notebook JSON: look at the cells' source
            try:
                text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
            except Exception:  # noqa: BLE001  (not a notebook after all: keep the raw text)
                pass
        flat = "\n" + "\n".join(_normalised(text)) + "\n"
        for block, origin in blocks.items():
            if f"\n{block}\n" in flat:
                leaks.append(f"{name} shows the reference answer of {origin}: {block.splitlines()[0]!r} ...")
                break
    return leaks


def build_bundle(
    html: Path, *, root: Path = ROOT, exercises: Path | None = None, solutions: Path | None = None
) -> Bundle:
    """Collect the bundle's files and check them; raise LeakError naming every leak."""
    exercises = exercises or root / "exercises"
    solutions = solutions or root / "solutions"
    if not (html / "index.html").exists():
        raise FileNotFoundError(f"no built book at {html} (run `python3 dev.py book` first)")
    notebooks = sorted(exercises.glob("*/*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no assignments in {exercises}")
    bundle = Bundle()
    bundle.add_tree(html, f"{TOP}/book")
    bundle.add_tree(exercises, f"{TOP}/exercises")
    bundle.add_tree(root / "course_lib", f"{TOP}/course_lib", suffixes=(".py",))
    bundle.add(f"{TOP}/pyproject.toml", student_pyproject(root).encode())
    bundle.add(f"{TOP}/requirements.txt", (root / "requirements.txt").read_bytes())
    bundle.add(f"{TOP}/nbgrader_config.py", STUDENT_NBGRADER_CONFIG.encode())
    first = notebooks[0].parent.name
    bundle.add(f"{TOP}/SETUP.md", SETUP.format(top=TOP, first=first).encode())
    leaks = find_leaks(bundle, solutions)
    if leaks:
        raise LeakError("the student bundle would leak:\n  " + "\n  ".join(leaks))
    return bundle


def write_zip(bundle: Bundle, out: Path) -> Path:
    """Write the archive (members sorted, fixed timestamps: the same input gives the same bytes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name in sorted(bundle.files):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, bundle.files[name])
    out.write_bytes(buf.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "_build" / f"{TOP}.zip", help="the archive to write"
    )
    parser.add_argument("--html", type=Path, help="a built book to use (default: build it into _build/html)")
    args = parser.parse_args(argv)
    html = args.html
    if html is None:
        from course_tools.book.build import build

        if build(ROOT) != 0:
            return 1
        html = ROOT / "_build" / "html"
    try:
        bundle = build_bundle(html.resolve())
    except (LeakError, FileNotFoundError) as exc:
        print(f"[bundle] {exc}", file=sys.stderr)
        return 1
    out = write_zip(bundle, args.out.resolve())
    size = out.stat().st_size / 2**20
    print(f"[bundle] {len(bundle.files)} files, {size:.1f} MiB: {out}")
    print(f"[bundle] unpack it and read {TOP}/SETUP.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
