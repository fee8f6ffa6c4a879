"""Parallel autograding of one assignment: intake, a pool of workers, one writer, a status table.

    submitted/<student>/<assignment>/  --intake-->  .grading/staging/<assignment>/<student>/
        --N course_tools.grade_worker processes (each: scratch course, sandboxed kernels)-->
    scores  --GradebookWriter (the only writer)-->  gradebook      autograded/<student>/<assignment>/
                                                                    .grading/status.json

A submission that loops, crashes, or outlives `timeout` never holds up the
others: its worker is killed (with every kernel in its sandbox) and replaced,
and the submission is recorded as failed with the reason. Unchanged submissions
that were already graded are skipped unless `force`.
"""

from __future__ import annotations

import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from tqdm.auto import tqdm

from .gradebook_merge import GradebookWriter, make_template
from .grading_status import Entry, StatusStore
from .intake import Staged, stage_submission
from .sandbox import GiB


@dataclass(frozen=True)
class CourseInfo:
    """Where a course's files and gradebook are (course_tools.instructor reads them from its config)."""

    root: Path
    db_url: str
    course_id: str
    exchange: str
    source_directory: str = "source"
    release_directory: str = "release"
    submitted_directory: str = "submitted"
    autograded_directory: str = "autograded"
    feedback_directory: str = "feedback"


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


@dataclass
class Summary:
    assignment: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    per_submission: list[float] = field(default_factory=list)
    skipped: int = 0

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


class Worker:
    """One course_tools.grade_worker process, talked to with JSON lines."""

    def __init__(self, index: int, log_dir: Path):
        self.index = index
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(log_dir / f"worker-{index}.log", "a")  # noqa: SIM115  (kept open for the process)
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "course_tools.grade_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            start_new_session=True,  # its own process group: killed as one, kernels included
        )
        self.buffer = b""

    def ask(self, job: dict, timeout: float) -> dict:
        """Send a job, wait for its answer; kill the worker and say why if it takes too long or dies."""
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"ok": False, "error": "the grading worker had died", "dead": True}
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                return {
                    "ok": False,
                    "error": f"timed out after {timeout:.0f} s (whole submission)",
                    "dead": True,
                }
            ready, _, _ = select.select([fd], [], [], min(left, 5))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    self.kill()
                    return {"ok": False, "error": "the grading worker died", "dead": True}
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.log.closed:
            self.log.close()


def source_cells(course: CourseInfo, assignment: str) -> dict[str, dict[str, dict]]:
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
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade_id") in nb_cells and meta.get("checksum"):
                nb_cells[meta["grade_id"]]["checksum"] = meta["checksum"]
    return out


def shipped_files(course: CourseInfo, assignment: str) -> set[str]:
    """The non-notebook files the release holds (a student may hand those back)."""
    release = course.root / course.release_directory / assignment
    if not release.is_dir():
        return set()
    return {str(p.relative_to(release)) for p in release.rglob("*") if p.is_file() and p.suffix != ".ipynb"}


def submitted_students(course: CourseInfo, assignment: str) -> list[str]:
    root = course.root / course.submitted_directory
    return sorted(p.name for p in root.iterdir() if (p / assignment).is_dir()) if root.is_dir() else []


def _issues_from(answer: dict) -> list[str]:
    report = answer.get("report") or {}
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


def autograde(course: CourseInfo, assignment: str, opts: RunOptions) -> Summary:
    """Grade every (or the chosen) submission of `assignment`; see the module docstring."""
    start = time.monotonic()
    state = course.root / ".grading"
    staging = state / "staging" / assignment
    template = make_template(course.db_url, course.course_id, assignment, state / f"template-{assignment}.db")
    cells = source_cells(course, assignment)
    with Gradebook(course.db_url, course.course_id) as gb:
        max_score = float(gb.find_assignment(assignment).max_score)
    notebooks = sorted(cells)
    shipped = shipped_files(course, assignment)
    students = list(opts.students) or submitted_students(course, assignment)
    store = StatusStore(course.root)
    summary = Summary(assignment)

    def record(student: str, entry: Entry) -> None:
        store.put(assignment, student, entry)
        summary.counts[entry.state] = summary.counts.get(entry.state, 0) + 1

    jobs: list[tuple[dict, Staged]] = []
    with GradebookWriter(course.db_url, course.course_id) as writer:
        for student in students:
            src = course.root / course.submitted_directory / student / assignment
            staged = stage_submission(src, student, notebooks, shipped, staging, cells)
            old = store.get(assignment, student)
            if not opts.force and old and old.fingerprint == staged.fingerprint and old.state != "failed":
                summary.skipped += 1
                continue
            if staged.staged is None:
                writer.record_zero(assignment, student, staged.timestamp)
                record(
                    student,
                    Entry(
                        "not-gradable", 0.0, max_score, staged.issues, staged.review, 0.0, staged.fingerprint
                    ),
                )
                continue
            job = {
                "course_root": str(course.root),
                "course_id": course.course_id,
                "assignment": assignment,
                "student": student,
                "staged": str(staged.staged),
                "template_db": str(template),
                "source_directory": course.source_directory,
                "cell_timeout": opts.cell_timeout,
                "memory_bytes": opts.memory_bytes,
                "cpu_seconds": opts.timeout,
                "sandbox": opts.sandbox,
                "runtime_root": "/tmp",
            }
            jobs.append((job, staged))

        todo: queue.Queue = queue.Queue()
        for item in jobs:
            todo.put(item)
        done: queue.Queue = queue.Queue()
        n_workers = max(1, min(opts.jobs, len(jobs)))

        def run_worker(i: int) -> None:
            worker = None
            while True:
                try:
                    job, staged = todo.get_nowait()
                except queue.Empty:
                    break
                if worker is None:
                    worker = Worker(i, state / "logs")
                job["work_dir"] = str(state / "work" / f"w{i}")
                try:
                    answer = worker.ask(job, opts.timeout)
                except Exception as exc:  # a garbled answer: treat the worker as lost
                    worker.kill()
                    answer = {"ok": False, "error": f"grading worker failed: {exc}", "dead": True}
                if answer.pop("dead", False):
                    worker = None
                done.put((job, staged, answer))
            if worker is not None:
                worker.close()

        threads = [threading.Thread(target=run_worker, args=(i,), daemon=True) for i in range(n_workers)]
        for t in threads:
            t.start()
        bar = tqdm(total=len(jobs), desc=f"autograde {assignment}", unit="sub", disable=not opts.progress)
        for _ in range(len(jobs)):
            job, staged, answer = done.get()
            student = job["student"]
            seconds = answer.get("seconds")
            if answer.get("ok"):
                writer.merge(assignment, student, answer["scores"])
                dest = course.root / course.autograded_directory / student / assignment
                _install_autograded(Path(answer["autograded"]), dest)
                grades = [g for nb in answer["scores"]["notebooks"].values() for g in nb["grades"].values()]
                score = sum(min(g["auto_score"] or 0, g["max_score"]) for g in grades)
                total = sum(g["max_score"] for g in grades)
                issues = staged.issues + _issues_from(answer)
                state_name = "graded-with-issues" if issues else "graded"
                record(
                    student,
                    Entry(state_name, score, total, issues, staged.review, seconds, staged.fingerprint),
                )
                summary.per_submission.append(seconds or 0)
            else:
                error = str(answer.get("error", "unknown error")).strip().splitlines()[-1][:300]
                record(
                    student,
                    Entry(
                        "failed",
                        None,
                        None,
                        [*staged.issues, error],
                        staged.review,
                        seconds,
                        staged.fingerprint,
                    ),
                )
            bar.update(1)
            bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())))
        bar.close()
        for t in threads:
            t.join()
    summary.seconds = time.monotonic() - start
    return summary
