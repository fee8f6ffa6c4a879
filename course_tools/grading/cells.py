"""nbgrader cell metadata and hidden-test regions: what every grading module reads from a notebook."""

from __future__ import annotations

from nbformat import NotebookNode

HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def nbgrader_meta(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test_cell(cell: NotebookNode) -> bool:
    """A graded, autograded code cell (its tests decide points)."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


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
