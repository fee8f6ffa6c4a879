"""nbgrader cell metadata, solution and hidden-test regions: what every course tool reads from a notebook.

The one place that knows nbgrader's cell metadata and region markers; intake, the checker,
feedback, the exercise generator, the bundle's leak check and the tests all read cells here.
"""

from __future__ import annotations

from nbformat import NotebookNode

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def nbgrader_meta(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_id(cell: NotebookNode) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_solution(cell: NotebookNode) -> bool:
    """A cell the student answers in (its solution region is removed in the release)."""
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell: NotebookNode) -> bool:
    """A graded cell that is not an answer: its tests (or, for markdown, a manual grade) decide points."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not bool(meta.get("solution"))


def is_test_cell(cell: NotebookNode) -> bool:
    """A graded, autograded code cell (its tests decide points)."""
    return cell.cell_type == "code" and is_test(cell)


def is_locked_setup(cell: NotebookNode) -> bool:
    """A locked code cell that is neither graded nor an answer (imports, constants, a given layer)."""
    meta = nbgrader_meta(cell)
    return (
        cell.cell_type == "code"
        and bool(meta.get("locked"))
        and not meta.get("grade")
        and not meta.get("solution")
    )


def visible_part(source: str) -> str:
    """A test cell's source without its hidden-test regions (what the release shows)."""
    kept, hidden = [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line:
            hidden = True
        elif HIDDEN_END in line:
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept)


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
