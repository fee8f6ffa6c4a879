"""Build submissions from a released notebook: what a student would hand in.

Used by the grading tests and the benchmark to make reference, blank and
deliberately wrong submissions that go through the real nbgrader pipeline.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .cells import SOLUTION_BEGIN as BEGIN
from .cells import SOLUTION_END as END
from .cells import grade_id, is_solution


def solution_answers(source_nb: NotebookNode) -> dict[str, str]:
    """grade_id -> the code a student who got it right would type (solution markers removed)."""
    answers = {}
    for cell in source_nb.cells:
        if cell.cell_type == "code" and is_solution(cell):
            lines = [ln for ln in cell.source.split("\n") if BEGIN not in ln and END not in ln]
            answers[grade_id(cell)] = "\n".join(lines)
    return answers


def fill(release_nb: NotebookNode, answers: dict[str, str]) -> NotebookNode:
    """A copy of the student notebook with the given solution cells' sources replaced."""
    nb = copy.deepcopy(release_nb)
    unknown = set(answers) - {grade_id(c) for c in nb.cells if is_solution(c)}
    if unknown:
        raise KeyError(f"no solution cell with grade_id {sorted(unknown)} in the notebook")
    for cell in nb.cells:
        if is_solution(cell) and grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def write_submission(
    nb: NotebookNode, submitted_dir: Path, student: str, assignment: str, notebook: str
) -> Path:
    """Place a notebook where `nbgrader collect` would: submitted/<student>/<assignment>/<notebook>.ipynb."""
    target = submitted_dir / student / assignment
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{notebook}.ipynb"
    nbformat.write(nb, path)
    (target / "timestamp.txt").write_text("2026-01-01 00:00:00.000000 UTC")
    return path
