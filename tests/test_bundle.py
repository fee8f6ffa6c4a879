"""The student bundle (`python3 dev.py bundle`): unpacked, it has the book, the exercises, course_lib
and the set-up instructions; it holds no solution region, no hidden test and nothing from
solutions/; course_lib imports from it; and its book opens from disk (file://) in Chromium
with math typeset and no console error, so a student can read it offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from browser import SCREENSHOTS, chrome, inspect_page

from course_tools.book.bundle import TOP, LeakError, answer_blocks, build_bundle

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unpacked(html: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle")
    archive = out / "student.zip"
    proc = subprocess.run(
        [sys.executable, "-m", "course_tools.book.bundle", "--html", str(html), "--out", str(archive)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"the bundle command failed:\n{proc.stdout}\n{proc.stderr}"
    with zipfile.ZipFile(archive) as zf:
        assert all(n.startswith(f"{TOP}/") for n in zf.namelist()), "everything unpacks into one folder"
        zf.extractall(out / "unpacked")
    return out / "unpacked" / TOP


def test_bundle_has_book_exercises_library_and_instructions(unpacked: Path):
    assert (unpacked / "book" / "index.html").exists()
    assert (unpacked / "book" / "book" / "ch01_backprop.html").exists()
    assert (unpacked / "book" / "_static" / "mathjax" / "tex-chtml.js").exists(), "math needs MathJax offline"
    for release in sorted((REPO / "exercises").glob("*/*.ipynb")):
        copy = unpacked / "exercises" / release.parent.name / release.name
        assert copy.read_bytes() == release.read_bytes(), f"{copy} differs from the committed release"
        nbformat.validate(nbformat.read(copy, as_version=4))
    assert (unpacked / "course_lib" / "__init__.py").exists()
    assert not list(unpacked.rglob("__pycache__"))
    setup = (unpacked / "SETUP.md").read_text()
    for step in (
        "book/index.html",
        "pip install -r requirements.txt",
        "pip install -e .",
        "jupyter lab",
        "Validate",
    ):
        assert step in setup, f"SETUP.md does not say {step!r}"
    assert (unpacked / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()
    assert 'packages = ["course_lib"]' in (unpacked / "pyproject.toml").read_text()
    assert "course_tools" not in (unpacked / "nbgrader_config.py").read_text(), (
        "students do not have course_tools"
    )


def test_bundle_holds_no_solution_no_hidden_test_and_nothing_from_solutions(unpacked: Path):
    files = [p for p in unpacked.rglob("*") if p.is_file()]
    assert len(files) > 100
    solutions = {
        hashlib.sha256(p.read_bytes()).hexdigest(): p for p in (REPO / "solutions").rglob("*") if p.is_file()
    }
    blocks = answer_blocks(REPO / "solutions")
    assert len(blocks) >= 10, "the reference answers were not found, so this test would prove nothing"
    for path in files:
        rel = path.relative_to(unpacked)
        assert "solutions" not in rel.parts, f"{rel} comes from a solutions folder"
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() not in solutions, f"{rel} is a copy of a file in solutions/"
        text = data.decode("utf-8", errors="ignore")
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{rel} contains {marker!r}"
        if path.suffix == ".ipynb":
            nb = json.loads(text)
            for cell in nb["cells"]:
                meta = cell.get("metadata", {}).get("nbgrader", {})
                src = "".join(cell["source"])
                if meta.get("solution") and cell["cell_type"] == "code":
                    assert "NotImplementedError" in src, (
                        f"{rel}: solution cell {meta.get('grade_id')} is not a stub"
                    )
    shown = []
    for path in files:
        if path.suffix not in {".ipynb", ".py", ".md", ".html", ".txt", ".js"}:
            continue
        text = path.read_text(errors="ignore")
        if path.suffix == ".ipynb":
            text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
        lines = [s for s in (ln.strip() for ln in text.splitlines()) if s and not s.startswith("#")]
        flat = "\n" + "\n".join(lines) + "\n"
        shown += [
            f"{path.relative_to(unpacked)}: {origin}"
            for block, origin in blocks.items()
            if f"\n{block}\n" in flat
        ]
    assert not shown, "reference answers visible in the bundle:\n" + "\n".join(shown)


def test_bundle_command_refuses_a_leak(html: Path, tmp_path: Path):
    """A release that still holds its solution region (a broken generate step) is refused, by file."""
    bad = tmp_path / "exercises" / "ps01_backprop"
    bad.mkdir(parents=True)
    source = REPO / "solutions" / "ps01_backprop" / "ps01_backprop.ipynb"
    (bad / "ps01_backprop.ipynb").write_bytes(source.read_bytes())
    with pytest.raises(
        LeakError, match=r"exercises/ps01_backprop/ps01_backprop.ipynb is a copy of solutions/"
    ):
        build_bundle(html, exercises=tmp_path / "exercises")
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:  # the markers stripped, the answers left in
        cell.source = "\n".join(
            ln for ln in cell.source.splitlines() if "SOLUTION" not in ln and "HIDDEN" not in ln
        )
    nbformat.write(nb, bad / "ps01_backprop.ipynb")
    with pytest.raises(
        LeakError, match=r"ps01_backprop.ipynb shows the reference answer of solutions/ps01_backprop"
    ):
        build_bundle(html, exercises=tmp_path / "exercises")


def test_course_lib_imports_from_the_unpacked_bundle(unpacked: Path, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(unpacked)
    proc = subprocess.run(
        [sys.executable, "-c", "import course_lib, course_lib.explorers; print(course_lib.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve().is_relative_to(unpacked.resolve())


def test_bundled_book_opens_from_disk_offline(unpacked: Path):
    page = (unpacked / "book" / "book" / "ch01_backprop.html").resolve()
    with chrome() as driver:
        report = inspect_page(
            driver, page.as_uri(), "bundle/book/ch01_backprop", SCREENSHOTS / "bundle", full_page=False
        )
    assert not report.problems, report.failure()
    assert report.n_math > 10 and report.n_figures >= 3
