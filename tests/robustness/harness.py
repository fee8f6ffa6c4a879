"""A course directory for the grading tests, driven through the instructor tool's real command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nbgrader.api import Gradebook

from course_tools.grading.course import Course

REPO = Path(__file__).resolve().parents[2]
ASSIGNMENT = "ps01_backprop"


def make_course(
    base: Path,
    db_url: str | None = None,
    assignments: tuple[str, ...] = (ASSIGNMENT,),
    release_args: tuple[str, ...] = (),
) -> Course:
    """A course directory with the repository's config and the source of `assignments`, released."""
    course = Course.create(base / "course", exchange=base / "exchange", db_url=db_url)
    for a in assignments:
        shutil.copytree(REPO / "solutions" / a, course.root / "solutions" / a)
        instructor(course, "release", a, *release_args)
    return course


def instructor_command(course: Course, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `python -m course_tools.grading ARGS` for this course."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [
        sys.executable,
        "-m",
        "course_tools.grading",
        *args,
        f"--course={course.root}",
        f"--db-url={course.db_url}",
        f"--course-id={course.course_id}",
        f"--exchange={course.exchange}",
    ]
    return cmd, env


def instructor(
    course: Course, *args: str, check: bool = True, timeout: float = 1200
) -> subprocess.CompletedProcess:
    """Run `python -m course_tools.grading ARGS` in the course, as an instructor would."""
    cmd, env = instructor_command(course, *args)
    proc = subprocess.run(cmd, cwd=course.root, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`instructor {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def write_files(course: Course, student: str, files: dict[str, bytes], assignment: str = ASSIGNMENT) -> None:
    folder = course.root / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def scores(course: Course, assignment: str = ASSIGNMENT) -> dict[str, dict[str, float]]:
    """{student: {grade cell: score}} from the course gradebook."""
    out: dict[str, dict[str, float]] = {}
    with Gradebook(course.db_url, course.course_id) as gb:
        for sub in gb.assignment_submissions(assignment):
            out[sub.student_id] = {g.name: float(g.score) for nb in sub.notebooks for g in nb.grades}
    return out


def max_scores(course: Course, assignment: str = ASSIGNMENT) -> dict[str, float]:
    with Gradebook(course.db_url, course.course_id) as gb:
        return {
            c.name: float(c.max_score)
            for nb in gb.find_assignment(assignment).notebooks
            for c in nb.grade_cells
        }


def status(course: Course, assignment: str = ASSIGNMENT) -> dict[str, dict]:
    return json.loads(instructor(course, "status", assignment, "--json").stdout)[assignment]


def outputs_text(nb_path: Path) -> str:
    """All output text of a notebook (streams, errors, plain-text data)."""
    nb = json.loads(nb_path.read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain") or ""
            parts.append("".join(text) if isinstance(text, list) else text)
            parts += [out.get("evalue", "")] + out.get("traceback", [])
    return "\n".join(parts)
