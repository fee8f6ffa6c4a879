"""The one writer of the course gradebook during parallel autograding.

Workers never open the course gradebook. Each grades into a scratch SQLite
gradebook made from a template (`make_template`: the assignment, its notebooks
and cells, no students) and reports the scores; the instructor process merges
them here, one submission per transaction, through nbgrader's own Gradebook API.
So a SQLite gradebook sees one writer (no "database is locked"), a PostgreSQL
one (`db_url=postgresql://...`) works the same way from one machine or many, and
a re-run updates the same rows: nbgrader's unique constraints plus
update-or-create mean no row is doubled, and manual scores are kept.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from nbgrader.api import Gradebook, InvalidEntry, MissingEntry
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError, SAWarning

# nbgrader's update_or_create_submission trips SQLAlchemy's autoflush warnings; the rows are right.
warnings.filterwarnings("ignore", category=SAWarning)

RETRIES = 8


def make_template(db_url: str, course_id: str, assignment: str, path: Path) -> Path:
    """A scratch gradebook holding only `assignment` (with its cells' sources), for workers to copy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with Gradebook(db_url, course_id) as src, Gradebook(f"sqlite:///{path}", course_id) as dst:
        a = src.find_assignment(assignment)
        dst.update_or_create_assignment(assignment, duedate=a.duedate)
        for nb in a.notebooks:
            dst.update_or_create_notebook(nb.name, assignment)
            for c in nb.grade_cells:
                dst.update_or_create_grade_cell(
                    c.name, nb.name, assignment, max_score=c.max_score, cell_type=c.cell_type
                )
            for c in nb.solution_cells:
                dst.update_or_create_solution_cell(c.name, nb.name, assignment)
            for c in nb.task_cells:
                dst.update_or_create_task_cell(
                    c.name, nb.name, assignment, max_score=c.max_score, cell_type=c.cell_type
                )
            for c in nb.source_cells:
                dst.update_or_create_source_cell(
                    c.name,
                    nb.name,
                    assignment,
                    cell_type=c.cell_type,
                    locked=c.locked,
                    source=c.source,
                    checksum=c.checksum,
                )
    return path


def _retrying(action, what: str):
    """Run action() again when the database is busy (SQLite) or a concurrent insert won (PostgreSQL)."""
    for attempt in range(RETRIES):
        try:
            return action()
        except (OperationalError, IntegrityError, InvalidEntry) as exc:
            if attempt == RETRIES - 1:
                raise RuntimeError(f"could not write {what} to the gradebook: {exc}") from exc
            time.sleep(0.2 * 2**attempt)


class GradebookWriter:
    """Writes merged results into the course gradebook (SQLite or PostgreSQL)."""

    def __init__(self, db_url: str, course_id: str):
        self.db_url, self.course_id = db_url, course_id
        self.gb = Gradebook(db_url, course_id)

    def close(self) -> None:
        self.gb.close()

    def __enter__(self) -> GradebookWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _submission(self, assignment: str, student: str, timestamp: str | None):
        gb = self.gb
        try:
            gb.find_student(student)
        except MissingEntry:
            gb.add_student(student)
        kwargs = {"timestamp": timestamp} if timestamp else {}
        return gb.update_or_create_submission(assignment, student, **kwargs)

    def merge(self, assignment: str, student: str, scores: dict) -> None:
        """Copy a worker's scores (course_tools.grading.worker.read_scores) into the gradebook."""

        def write():
            try:
                sub = self._submission(assignment, student, scores.get("timestamp"))
                for nb in sub.notebooks:
                    result = scores["notebooks"].get(nb.name)
                    for grade in nb.grades:
                        g = (result or {}).get("grades", {}).get(grade.name)
                        if g is None:  # a notebook that was not handed in scores zero, as in nbgrader
                            grade.auto_score, grade.needs_manual_grade = 0, False
                            continue
                        grade.auto_score = min(float(g["auto_score"] or 0), float(grade.max_score))
                        grade.needs_manual_grade = bool(g["needs_manual_grade"])
                    for comment in nb.comments:
                        text = (result or {}).get("comments", {}).get(comment.name)
                        comment.auto_comment = text
                    if result is not None:
                        nb.late_submission_penalty = result.get("late_submission_penalty")
                self.gb.db.commit()
            except Exception:
                self.gb.db.rollback()
                raise

        _retrying(write, f"{student}'s {assignment}")

    def record_zero(self, assignment: str, student: str, timestamp: str | None = None) -> None:
        """A submission that could not be graded at all (missing, not a notebook): zero on every cell."""
        self.merge(assignment, student, {"timestamp": timestamp, "notebooks": {}})


def consistency_problems(db_url: str, course_id: str, assignment: str) -> list[str]:
    """Doubled or missing rows for `assignment`: empty when every submission has exactly one of each grade."""
    from nbgrader.api import Grade, SubmittedAssignment, SubmittedNotebook

    problems = []
    with Gradebook(db_url, course_id) as gb:
        a = gb.find_assignment(assignment)
        cells_per_nb = {nb.id: len(nb.grade_cells) + len(nb.task_cells) for nb in a.notebooks}
        db = gb.db
        per_student = db.execute(
            select(SubmittedAssignment.student_id, func.count())
            .where(SubmittedAssignment.assignment_id == a.id)
            .group_by(SubmittedAssignment.student_id)
        ).all()
        problems += [f"{s}: {n} submissions of {assignment}" for s, n in per_student if n != 1]
        rows = db.execute(
            select(SubmittedAssignment.student_id, SubmittedNotebook.notebook_id, func.count(Grade.id))
            .join(SubmittedNotebook, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Grade, Grade.notebook_id == SubmittedNotebook.id, isouter=True)
            .where(SubmittedAssignment.assignment_id == a.id)
            .group_by(SubmittedAssignment.student_id, SubmittedNotebook.notebook_id)
        ).all()
        seen: dict[str, int] = {}
        for student, nb_id, n in rows:
            seen[student] = seen.get(student, 0) + 1
            if n != cells_per_nb.get(nb_id):
                problems.append(
                    f"{student}: {n} grades in a notebook with {cells_per_nb.get(nb_id)} graded cells"
                )
        problems += [
            f"{s}: {n} notebooks, expected {len(cells_per_nb)}"
            for s, n in seen.items()
            if n != len(cells_per_nb)
        ]
    return problems
