"""What crosses a process boundary while grading: one job (a submission to grade) and its result.

The instructor process builds a `GradeJob` per submission and sends it to a grading
worker (a local `course_tools.grading.worker` process, or a Dask worker); the worker
answers with a `GradeResult`. Both travel as JSON, so they hold only plain data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class GradeJob:
    """Everything a worker needs to grade one student's submission of one assignment."""

    course_root: str  # the course directory (its nbgrader_config.py and source/ data files)
    course_id: str
    assignment: str
    student: str
    staged: str  # the validated submission folder (course_tools.grading.intake)
    template_db: str  # a gradebook holding the assignment and no student
    source_directory: str = "source"
    cell_timeout: int = 120  # seconds per cell
    memory_bytes: int = 4 << 30  # address space per kernel
    cpu_seconds: int = 900  # CPU seconds per kernel
    sandbox: bool = True
    work_dir: str = ""  # the worker's scratch folder; the job's course is built in work_dir/<student>
    runtime_root: str = "/tmp"  # where kernels' socket folders go (unix socket paths must be short)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GradeJob:
        return cls(**_known(cls, json.loads(text)))


@dataclass
class GradeResult:
    """What grading one submission gave: the scores to merge, or why there are none."""

    student: str
    assignment: str
    ok: bool = False
    scores: dict = field(default_factory=dict)  # {"timestamp", "notebooks": {name: {grades, comments, ...}}}
    autograded: str = ""  # the worker's autograded/<student>/<assignment> folder
    report: dict = field(default_factory=dict)  # GuardedExecute's report: crashes, timeouts, verdicts
    error: str = ""
    log: str = ""
    seconds: float = 0.0
    worker_lost: bool = False  # the worker died or was killed while grading this submission
    attempts: int = 1  # how many workers tried it (a Dask worker that dies hands the job on)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GradeResult:
        return cls(**_known(cls, json.loads(text)))

    @classmethod
    def failure(cls, job: GradeJob, error: str, *, worker_lost: bool = False) -> GradeResult:
        return cls(job.student, job.assignment, ok=False, error=error, worker_lost=worker_lost)


def _known(cls, data: dict) -> dict:
    """Only the fields the record has: a newer sender's extra keys are ignored, not fatal."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
