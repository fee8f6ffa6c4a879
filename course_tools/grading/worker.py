"""A grading worker: runs nbgrader's autograde for one submission at a time, each in a scratch course.

    python -m course_tools.grading.worker      (reads jobs as JSON lines on stdin, answers on stdout)

The instructor tool starts `--jobs N` of these and feeds them submissions. A
worker imports nbgrader once and then, for each job, builds a scratch course
directory holding only what grading that student needs: the course's
nbgrader_config.py, the assignment's non-notebook source files, the student's
(validated) submission, and a scratch gradebook copied from a template that
holds the assignment and nothing about other students. nbgrader's Autograde
converter runs there with course_tools.grading.guarded_execute in place of Execute.
The worker never writes the course gradebook: it answers with the scores it
read back from the scratch gradebook, and the instructor process (the single
writer) merges them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.converters import Autograde
from nbgrader.coursedir import CourseDirectory
from nbgrader.utils import capture_log
from traitlets.config import Config

from ..paths import env_with_venv
from .checked_execute import autograde_preprocessors
from .course import course_config
from .guarded_execute import GuardedExecute
from .records import GradeJob, GradeResult
from .schema_cache import install as check_metadata_schema_once


def job_config(job: GradeJob, jobdir: Path) -> Config:
    """The course config with the worker's settings on top."""
    config = course_config(Path(job.course_root))
    over = Config()
    over.CourseDirectory.root = str(jobdir)
    over.CourseDirectory.db_url = f"sqlite:///{jobdir / 'gradebook.db'}"
    over.CourseDirectory.course_id = job.course_id
    over.Autograde.autograde_preprocessors = autograde_preprocessors(GuardedExecute)
    over.OverwriteCells.add_missing_cells = True
    over.Execute.timeout = int(job.cell_timeout)
    over.Execute.startup_timeout = 120
    over.GuardedExecute.use_sandbox = bool(job.sandbox)
    over.GuardedExecute.memory_bytes = int(job.memory_bytes)
    over.GuardedExecute.cpu_seconds = int(job.cpu_seconds)
    over.GuardedExecute.report_path = str(jobdir / "report.json")
    over.GuardedExecute.runtime_root = job.runtime_root
    over.GuardedExecute.work_root = job.work_dir
    config.merge(over)
    return config


def build_job_dir(job: GradeJob) -> Path:
    """The scratch course for one student; nothing of other students, no solution notebooks."""
    course_root = Path(job.course_root)
    assignment, student = job.assignment, job.student
    jobdir = Path(job.work_dir) / student
    shutil.rmtree(jobdir, ignore_errors=True)
    jobdir.mkdir(parents=True)
    os.chmod(jobdir, 0o711)
    if (course_root / "nbgrader_config.py").exists():
        shutil.copy2(course_root / "nbgrader_config.py", jobdir / "nbgrader_config.py")
    source = course_root / job.source_directory / assignment
    target = jobdir / job.source_directory / assignment
    target.mkdir(parents=True)
    if source.is_dir():  # data files only: nbgrader copies these over the student's
        for path in source.rglob("*"):
            if path.is_file() and path.suffix != ".ipynb" and ".ipynb_checkpoints" not in path.parts:
                (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.relative_to(source))
    shutil.copytree(job.staged, jobdir / "submitted" / student / assignment)
    shutil.copy2(job.template_db, jobdir / "gradebook.db")
    os.chmod(jobdir / "gradebook.db", 0o600)
    return jobdir


def read_scores(db_url: str, assignment: str, student: str) -> dict:
    """Everything autograde wrote for this student, as plain data for the merge."""
    out: dict = {"notebooks": {}, "timestamp": None}
    with Gradebook(db_url) as gb:
        sub = gb.find_submission(assignment, student)
        out["timestamp"] = sub.timestamp.isoformat() if sub.timestamp else None
        for nb in sub.notebooks:
            out["notebooks"][nb.name] = {
                "late_submission_penalty": nb.late_submission_penalty,
                "grades": {
                    g.name: {
                        "auto_score": g.auto_score,
                        "max_score": g.max_score,
                        "needs_manual_grade": g.needs_manual_grade,
                    }
                    for g in nb.grades
                },
                "comments": {c.name: c.auto_comment for c in nb.comments},
            }
    return out


def grade(job: GradeJob) -> GradeResult:
    """Autograde one submission; never raises (a failure is reported in the result)."""
    start = time.monotonic()
    answer = GradeResult(job.student, job.assignment)
    try:
        jobdir = build_job_dir(job)
        config = job_config(job, jobdir)
        coursedir = CourseDirectory(config=config)
        coursedir.assignment_id = job.assignment
        coursedir.student_id = job.student
        app = Autograde(coursedir=coursedir, config=config)
        app.force = True
        app.create_student = True
        result = capture_log(app)
        report_path = jobdir / "report.json"
        answer.report = json.loads(report_path.read_text()) if report_path.exists() else {}
        answer.log = result.get("log", "")[-6000:]
        autograded = jobdir / "autograded" / job.student / job.assignment
        if result["success"] and autograded.is_dir():
            answer.scores = read_scores(config.CourseDirectory.db_url, job.assignment, job.student)
            answer.autograded = str(autograded)
            answer.ok = True
        else:
            answer.error = _failure_reason(result)
    except Exception:  # the worker must survive anything one submission does
        answer.error = traceback.format_exc()[-3000:]
    answer.seconds = round(time.monotonic() - start, 2)
    return answer


def _failure_reason(result: dict) -> str:
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    for line in text.splitlines():
        if "Error" in line and "Traceback" not in line:
            return line.strip()[:500]
    return text.strip()[-500:] or "nbgrader autograde failed"


def main() -> int:
    os.environ["PATH"] = env_with_venv()["PATH"]
    check_metadata_schema_once()
    # Answers go to a private copy of stdout; fd 1 becomes stderr, so nothing nbgrader or a
    # kernel prints can corrupt the answers channel.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        answer = grade(GradeJob.from_json(line))
        out.write(answer.to_json() + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
