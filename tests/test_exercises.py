"""exercises/ is exactly what nbgrader generates from solutions/, and holds nothing it should not."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest

from course_tools.exercises import generate, stale_files
from course_tools.grading.cells import grade_id, is_solution, is_test

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir())


def tracked(pattern: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / line for line in out.stdout.split()]


def test_there_is_at_least_one_assignment():
    assert ASSIGNMENTS, "solutions/ holds no assignment"


@pytest.mark.slow
def test_exercises_are_generated_from_solutions(tmp_path: Path):
    errors = generate(REPO / "solutions", tmp_path)
    assert not errors, errors
    diffs = stale_files(tmp_path, REPO / "exercises")
    assert not diffs, f"exercises/ is stale (run `python3 dev.py exercises`): {diffs}"


def test_stale_exercises_are_detected(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "ps").mkdir(parents=True)
    (b / "ps").mkdir(parents=True)
    (a / "ps" / "x.ipynb").write_text("1")
    (b / "ps" / "x.ipynb").write_text("2")
    (a / "ps" / "y.ipynb").write_text("1")
    assert sorted(stale_files(a, b)) == ["ps/x.ipynb (changed)", "ps/y.ipynb (missing)"]


def test_no_answers_on_the_student_side():
    for folder in ("exercises", "course_lib", "book"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".ipynb", ".md", ".txt"}:
                text = path.read_text(errors="replace")
                for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS"):
                    assert marker not in text, f"{path.relative_to(REPO)} contains {marker!r}"


def test_no_python_answers_inside_assignments():
    for name in ASSIGNMENTS:
        extra = [p.name for p in (REPO / "solutions" / name).iterdir() if p.suffix != ".ipynb"]
        assert not extra, f"solutions/{name} holds non-notebook files that nbgrader would release: {extra}"


def test_notebooks_in_git_carry_no_outputs():
    for path in tracked("*.ipynb"):
        nb = json.loads(path.read_text())
        with_outputs = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("outputs")]
        assert not with_outputs, f"{path.relative_to(REPO)} has outputs in cells {with_outputs}"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_assignment_meets_the_standard(name: str):
    """Design §6: 6-10 graded parts, each a solution cell with its own test cell, visible and hidden tests."""
    nb = nbformat.read(REPO / "solutions" / name / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    solutions = [grade_id(c) for c in nb.cells if is_solution(c) and c.cell_type == "code"]
    tests = {grade_id(c): c for c in nb.cells if is_test(c)}
    assert 6 <= len(tests) <= 10, f"{name} has {len(tests)} graded parts; the standard is 6-10"
    for sol in solutions:
        assert f"test_{sol}" in tests, f"{name}: solution cell {sol} has no test cell test_{sol}"
    for gid, cell in tests.items():
        src = cell.source
        assert "### BEGIN HIDDEN TESTS" in src and "### END HIDDEN TESTS" in src, (
            f"{name}/{gid} has no hidden tests"
        )
        visible = src.split("### BEGIN HIDDEN TESTS")[0]
        assert "check_" in visible or "assert" in visible, f"{name}/{gid} has no visible test"
        assert cell.metadata.nbgrader.get("points", 0) > 0, f"{name}/{gid} is worth no points"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_malformed_solution_notebook_is_reported_by_name(tmp_path: Path):
    solutions = tmp_path / "solutions"
    (solutions / "ps98_broken").mkdir(parents=True)
    (solutions / "ps98_broken" / "ps98_broken.ipynb").write_text('{"cells": [ this is not json')
    good = ASSIGNMENTS[0]
    (solutions / good).mkdir()
    for f in (REPO / "solutions" / good).glob("*.ipynb"):
        (solutions / good / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out"
    errors = generate(solutions, out)
    assert len(errors) == 1 and "ps98_broken.ipynb" in errors[0] and "not a valid notebook" in errors[0]
    assert (out / good / f"{good}.ipynb").exists(), "one bad notebook stopped the others from being generated"
