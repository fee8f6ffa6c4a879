"""Parallel autograding of one assignment: intake, a pool of workers, one writer, a status table.

    submitted/<student>/<assignment>/  --intake-->  .grading/staging/<assignment>/<student>/
        --N course_tools.grading.worker processes, or Dask workers (each: scratch course, warm sandboxed kernels)-->
    scores  --GradebookWriter (the only writer)-->  gradebook      autograded/<student>/<assignment>/
                                                                    .grading/status.json

A submission that loops, crashes, or outlives `timeout` never holds up the
others: its worker is killed (with every kernel in its sandbox) and replaced,
and the submission is recorded as failed with the reason (course_tools.grading.local_pool;
course_tools.grading.dask_pool for a cluster). Unchanged submissions that were
already graded are skipped unless `force`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from tqdm.auto import tqdm

from .cells import nbgrader_meta
from .course import Course
from .gradebook import GradebookWriter, make_template
from .intake import Staged, stage_submission
from .local_pool import grade_locally
from .records import GradeJob, GradeResult
from .sandbox import GiB
from .status import Entry, StatusStore


@dataclass(frozen=True)
class RunOptions:
    jobs: int = max(1, os.cpu_count() or 1)
    cell_timeout: int = 120  # seconds per cell (nbgrader's Execute.timeout)
    timeout: int = 900  # seconds per submission, wall clock, everything included
    memory_bytes: int = 4 * GiB  # address space per kernel
    sandbox: bool = True
    force: bool = False
    students: tuple[str, ...] = ()
    progress: bool = True
    scheduler: str = ""  # a Dask scheduler address (tcp://host:port); empty: local worker processes


@dataclass
class Summary:
    assignment: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    per_submission: list[float] = field(default_factory=list)  # seconds a worker spent on each submission
    notebook_seconds: list[float] = field(default_factory=list)  # of which running its cells and checks
    skipped: int = 0
    workers_lost: int = 0  # submissions whose first worker died; each was graded again elsewhere

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


def source_cells(course: Course, assignment: str) -> dict[str, dict[str, dict]]:
    """{notebook: {grade_id: cell type, checksum, locked, graded}} of the assignment, from the gradebook."""
    out: dict[str, dict[str, dict]] = {}
    with Gradebook(course.db_url, course.course_id) as gb:
        for nb in gb.find_assignment(assignment).notebooks:
            graded = {c.name for c in nb.grade_cells} | {c.name for c in nb.task_cells}
            out[nb.name] = {
                c.name: {
                    "cell_type": c.cell_type,
                    "checksum": c.checksum,
                    "locked": c.locked,
                    "grade": c.name in graded,
                }
                for c in nb.source_cells
            }
    # The gradebook's checksums are of the source cells (hidden tests included); a student
    # hands back the release's, so compare with the checksums the release notebooks carry.
    for name, nb_cells in out.items():
        released = course.root / course.release_directory / assignment / f"{name}.ipynb"
        if not released.exists():
            continue
        for cell in nbformat.read(released, as_version=4).cells:
            meta = nbgrader_meta(cell)
            if meta.get("grade_id") in nb_cells and meta.get("checksum"):
                nb_cells[meta["grade_id"]]["checksum"] = meta["checksum"]
    return out


def shipped_files(course: Course, assignment: str) -> set[str]:
    """The non-notebook files the release holds (a student may hand those back)."""
    release = course.root / course.release_directory / assignment
    if not release.is_dir():
        return set()
    return {str(p.relative_to(release)) for p in release.rglob("*") if p.is_file() and p.suffix != ".ipynb"}


def submitted_students(course: Course, assignment: str) -> list[str]:
    root = course.root / course.submitted_directory
    return sorted(p.name for p in root.iterdir() if (p / assignment).is_dir()) if root.is_dir() else []


def _issues_from(result: GradeResult) -> list[str]:
    report = result.report or {}
    issues = [
        f"{c['cell']}: {c['kind']} ({c['detail'][:120]}); graded on from the next cell"
        for c in report.get("crashes", [])
    ]
    issues += [f"{gid}: cell timed out and was interrupted" for gid in report.get("timeouts", [])]
    issues += [f"{gid}: memory limit reached (MemoryError)" for gid in report.get("memory", [])]
    issues += [
        f"{gid}: {v['error'][:160]}"
        for gid, v in (report.get("verdicts") or {}).items()
        if not v.get("passed") and _suspicious(v.get("error", ""))
    ]
    if report.get("truncated"):
        issues.append(f"output cut in {len(report['truncated'])} cell(s)")
    return issues


def _suspicious(error: str) -> bool:
    """A failed check worth an instructor's look: a forbidden built-in, or an answer that did not cross."""
    marks = ("ForbiddenCall", "gave no answer", "could not be read", "the answer is")
    return any(mark in error for mark in marks)


def _install_autograded(src: Path, dest: Path) -> None:
    """Replace autograded/<student>/<assignment> with the worker's result in one rename."""
    tmp = dest.with_name(dest.name + ".incoming")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    for path in [tmp, *tmp.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)


def autograde(course: Course, assignment: str, opts: RunOptions) -> Summary:
    """Grade every (or the chosen) submission of `assignment`; see the module docstring."""
    start = time.monotonic()
    state = course.root / ".grading"
    store = StatusStore(course.root)
    summary = Summary(assignment)

    def record(student: str, entry: Entry) -> None:
        store.put(assignment, student, entry)
        summary.counts[entry.state] = summary.counts.get(entry.state, 0) + 1

    with GradebookWriter(course.db_url, course.course_id) as writer:
        jobs = _prepare_jobs(course, assignment, opts, state, store, writer, record, summary)
        staged_of = {job.student: staged for job, staged in jobs}
        results = _dispatch([job for job, _ in jobs], opts, state)
        bar = tqdm(total=len(jobs), desc=f"autograde {assignment}", unit="sub", disable=not opts.progress)
        for result in results:
            record(result.student, _take_result(course, writer, result, staged_of[result.student]))
            if result.ok:
                summary.per_submission.append(result.seconds)
                summary.notebook_seconds.append(float(result.report.get("cells_seconds", 0.0)))
            summary.workers_lost += int(result.attempts > 1)
            bar.update(1)
            bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())))
        bar.close()
    summary.seconds = time.monotonic() - start
    return summary


def _prepare_jobs(
    course, assignment, opts, state, store, writer, record, summary
) -> list[tuple[GradeJob, Staged]]:
    """Stage every submission; record the unreadable ones as not gradable; skip the unchanged ones."""
    staging = state / "staging" / assignment
    template = make_template(course.db_url, course.course_id, assignment, state / f"template-{assignment}.db")
    cells = source_cells(course, assignment)
    with Gradebook(course.db_url, course.course_id) as gb:
        max_score = float(gb.find_assignment(assignment).max_score)
    notebooks = sorted(cells)
    shipped = shipped_files(course, assignment)
    jobs: list[tuple[GradeJob, Staged]] = []
    for student in list(opts.students) or submitted_students(course, assignment):
        src = course.path("submitted", student, assignment)
        staged = stage_submission(src, student, notebooks, shipped, staging, cells)
        old = store.get(assignment, student)
        if not opts.force and old and old.fingerprint == staged.fingerprint and old.state != "failed":
            summary.skipped += 1
            continue
        if staged.staged is None:
            writer.record_zero(assignment, student, staged.timestamp)
            entry = Entry(
                "not-gradable", 0.0, max_score, staged.issues, staged.review, 0.0, staged.fingerprint
            )
            record(student, entry)
            continue
        job = GradeJob(
            course_root=str(course.root),
            course_id=course.course_id,
            assignment=assignment,
            student=student,
            staged=str(staged.staged),
            template_db=str(template),
            source_directory=course.source_directory,
            cell_timeout=opts.cell_timeout,
            memory_bytes=opts.memory_bytes,
            cpu_seconds=opts.timeout,
            sandbox=opts.sandbox,
        )
        jobs.append((job, staged))
    return jobs


def _dispatch(jobs: list[GradeJob], opts: RunOptions, state: Path) -> Iterator[GradeResult]:
    """The results of `jobs`, from local worker processes or, with opts.scheduler, a Dask cluster."""
    if not jobs:
        return iter(())
    if opts.scheduler:
        from .dask_pool import grade_on_dask  # needs the dask packages only when asked for

        return grade_on_dask(opts.scheduler, jobs, opts.timeout, state)
    return grade_locally(jobs, opts.jobs, opts.timeout, state)


def _take_result(course: Course, writer: GradebookWriter, result: GradeResult, staged: Staged) -> Entry:
    """Merge one result into the gradebook and autograded/, and say what the status table shows."""
    student, assignment = result.student, result.assignment
    if not result.ok:
        error = (result.error or "unknown error").strip().splitlines()[-1][:300]
        return Entry(
            "failed", None, None, [*staged.issues, error], staged.review, result.seconds, staged.fingerprint
        )
    writer.merge(assignment, student, result.scores)
    _install_autograded(Path(result.autograded), course.path("autograded", student, assignment))
    grades = [g for nb in result.scores["notebooks"].values() for g in nb["grades"].values()]
    score = sum(min(g["auto_score"] or 0, g["max_score"]) for g in grades)
    total = sum(g["max_score"] for g in grades)
    issues = staged.issues + _issues_from(result)
    if result.attempts > 1:
        issues.append(
            f"graded on a second worker: the first was lost while grading it ({result.attempts} tries)"
        )
    name = "graded-with-issues" if issues else "graded"
    return Entry(name, score, total, issues, staged.review, result.seconds, staged.fingerprint)
