"""Feedback pages for submissions that could not be graded at all.

nbgrader's generate_feedback renders autograded notebooks; a submission that is not valid JSON,
or holds no notebook, has none, so its student got no page and a bare 0 in the grade export,
the same as a blank notebook. `feedback` writes this page in its place: the score, what was wrong
with the file (intake's reasons, from the status store) and what to do next. It says nothing of
the tests, so it cannot leak hidden ones.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from .course import Course
from .status import StatusStore

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{assignment}: not graded</title></head>
<body>
<h1>{assignment}: your submission could not be graded</h1>
<p>It scored <strong>0 of {max_score:g}</strong>, because the grader could not read it:</p>
<ul>
{reasons}
</ul>
<p>What to do: open the notebook you handed in, in JupyterLab. If it does not open, download the
assignment again, copy your answers into it, save it under its original name
(<code>{notebooks}</code>) and hand it in again; then ask your instructor to grade it again.</p>
</body></html>
"""


def write_unreadable_pages(course: Course, assignment: str, students: list[str] | None = None) -> list[Path]:
    """A page per notebook of the assignment for each not-gradable submission (of `students`, if given)."""
    entries = StatusStore(course.root).entries(assignment)
    unreadable = {
        s: e for s, e in entries.items() if e.state == "not-gradable" and (not students or s in students)
    }
    if not unreadable:
        return []
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            return []
        notebooks = sorted(nb.name for nb in found.notebooks)
        max_score = float(found.max_score)
    written = []
    for student, entry in unreadable.items():
        reasons = "\n".join(f"<li>{escape(r)}</li>" for r in entry.issues) or "<li>no readable notebook</li>"
        page = PAGE.format(
            assignment=escape(assignment),
            max_score=max_score,
            reasons=reasons,
            notebooks=escape(", ".join(f"{n}.ipynb" for n in notebooks)),
        )
        folder = course.path("feedback", student, assignment)
        folder.mkdir(parents=True, exist_ok=True)
        for name in notebooks:
            (folder / f"{name}.html").write_text(page)
            written.append(folder / f"{name}.html")
    return written
