"""Grading on a Dask distributed cluster: `autograde ... --scheduler tcp://HOST:PORT`.

    instructor process                          each Dask worker process (any machine)
    ------------------                          --------------------------------------
    one task per GradeJob, carrying the   -->   unpack into a scratch course under its local directory,
    files the job names, as bytes               grade with a course_tools.grading.worker subprocess
                                                (local_pool.Worker: the same code as `--jobs N`, its
                                                warm kernels kept from one task to the next)
    unpack the autograded folder under    <--   the GradeResult and the autograded folder, as bytes
    .grading/dask/; yield the result

No filesystem is shared: a task carries the staged submission, and (once per run, as a
task of its own that Dask recomputes if the worker holding it is lost) the course's
nbgrader_config.py, the assignment's non-notebook source files and the template
gradebook. The instructor process stays the only writer of the course gradebook.

A Dask worker that dies while grading (killed, out of memory, its machine lost) loses
no submission: the scheduler gives the task to another worker, and the result says how
many workers tried it (`GradeResult.attempts`; every task logs an event when it starts
on a worker, so a task that was only queued on the lost worker is not counted). A task
that outlives `distributed.scheduler.allowed-failures` (3) workers ends as a failed
result saying so, never as an exception that stops the run. Task errors are not
retried: grading is deterministic and a failing job says why in its result.
"""

from __future__ import annotations

import io
import itertools
import shutil
import sys
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from .records import GradeJob, GradeResult

SHARED_COURSE = "course"  # in the shared bundle: nbgrader_config.py and <source>/<assignment>/ data files
TEMPLATE_DB = "template.db"
CONNECT_TIMEOUT = "30s"  # how long to try reaching the scheduler before every job fails, saying so


# ---------------------------------------------------------------- packing files as bytes


def pack(files: dict[str, Path]) -> bytes:
    """A gzipped tar of `files` ({name in the archive: file or folder on disk})."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=3) as tar:
        for name, path in files.items():
            tar.add(path, arcname=name, recursive=True)
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> None:
    """Extract `pack`'s archive into dest; nothing may land outside it (tarfile's "data" filter)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        tar.extractall(dest, filter="data")


def shared_files(job: GradeJob) -> dict[str, Path]:
    """What every job of the run reads besides the submission (see worker.build_job_dir)."""
    root = Path(job.course_root)
    files: dict[str, Path] = {TEMPLATE_DB: Path(job.template_db)}
    if (root / "nbgrader_config.py").exists():
        files[f"{SHARED_COURSE}/nbgrader_config.py"] = root / "nbgrader_config.py"
    source = root / job.source_directory / job.assignment
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix != ".ipynb" and ".ipynb_checkpoints" not in path.parts:
                rel = path.relative_to(root)
                files[f"{SHARED_COURSE}/{rel.as_posix()}"] = path
    return files


def _shared_bundle(data: bytes) -> bytes:
    """A task whose value is the run's shared files (so a lost copy is recomputed, not lost)."""
    return data


# ---------------------------------------------------------------- on a Dask worker

_lock = threading.Lock()
_idle: list = []  # local_pool.Worker processes of this Dask worker process, not grading right now
_numbers = itertools.count()
_sandbox_problem: list[str | None] = []  # cached course_tools.grading.sandbox.unavailable_reason()


def _scratch_root() -> Path:
    try:
        from distributed import get_worker

        base = Path(get_worker().local_directory)
    except ValueError:  # not in a Dask worker (a direct call)
        base = Path(tempfile.gettempdir())
    root = base / "course-grading"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _take_grader(root: Path):
    """An idle grading subprocess of this Dask worker process, or a new one (one per running task)."""
    from .local_pool import Worker

    with _lock:
        if _idle:
            return _idle.pop()
        index = next(_numbers)
    return Worker(index, root / "logs")


def _give_back(grader) -> None:
    with _lock:
        _idle.append(grader)


def _sandbox_reason() -> str | None:
    with _lock:
        if not _sandbox_problem:
            from .sandbox import unavailable_reason

            _sandbox_problem.append(unavailable_reason())
        return _sandbox_problem[0]


def grade_task(job_json: str, shared: bytes, submission: bytes, timeout: float, topic: str) -> dict:
    """Grade one job on this Dask worker: {"result": GradeResult JSON, "autograded": tar bytes, "worker"}.

    Runs in a thread of the Dask worker; nbgrader and the student's kernels run in a
    course_tools.grading.worker subprocess (local_pool.Worker), never in this process.
    """
    from distributed import get_worker

    try:
        dask_worker = get_worker()
        address = dask_worker.address
        dask_worker.log_event(topic, {"worker": address})  # counted by the instructor's process
    except ValueError:
        address = ""
    job = GradeJob.from_json(job_json)
    root = _scratch_root()
    (root / "jobs").mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="job-", dir=root / "jobs"))
    packed = b""
    try:
        if job.sandbox and _sandbox_reason():
            result = GradeResult.failure(
                job, f"Dask worker {address} cannot sandbox student code: {_sandbox_reason()}"
            )
        else:
            unpack(shared, scratch)
            unpack(submission, scratch / "staged")
            course = scratch / SHARED_COURSE
            course.mkdir(exist_ok=True)
            grader = _take_grader(root)
            # One work folder per grading subprocess, kept: its warm kernel parent is bound to it.
            work = root / "work" / f"g{grader.index}"
            local = replace(
                job,
                course_root=str(course),
                staged=str(scratch / "staged"),
                template_db=str(scratch / TEMPLATE_DB),
                work_dir=str(work),  # the grading subprocess builds the job's course in work/<student>
            )
            healthy = False
            try:
                try:
                    result = grader.ask(local, timeout)
                    healthy = not result.worker_lost
                except Exception as exc:  # a garbled answer: the grading subprocess is not trusted again
                    result = GradeResult.failure(job, f"grading worker failed: {exc}", worker_lost=True)
                if result.ok and result.autograded and Path(result.autograded).is_dir():
                    packed = pack({".": Path(result.autograded)})
            finally:
                shutil.rmtree(work / job.student, ignore_errors=True)
                if healthy:
                    _give_back(grader)
                elif grader.proc.poll() is None:  # (ask kills a worker it gives up on itself)
                    grader.kill()
    except Exception as exc:  # unpacking or packing failed: say so in the result
        result = GradeResult.failure(job, f"on Dask worker {address}: {type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result.ok and not packed:
        result = GradeResult.failure(job, f"Dask worker {address} graded it but found no autograded folder")
    return {"result": result.to_json(), "autograded": packed, "worker": address}


# ---------------------------------------------------------------- on the scheduler


def _attempts_reader():
    """The function run on the scheduler for one finished task (see `_collect`).

    Made inside a function so that cloudpickle sends its code by value: the scheduler
    needs nothing of this repository to run it.
    """

    def attempts(key: str, topic: str, dask_scheduler=None) -> dict:
        """How many workers started the task, and how many the scheduler saw die while it was theirs."""
        ts = dask_scheduler.tasks.get(key)
        starts = len(dask_scheduler.get_events(topic))
        topics = getattr(getattr(dask_scheduler, "_broker", None), "_topics", None)
        if isinstance(topics, dict):  # one topic per task: forget it once read
            topics.pop(topic, None)
        return {"starts": starts, "suspicious": ts.suspicious if ts is not None else None}

    return attempts


def _sandbox_check() -> str | None:
    from .sandbox import unavailable_reason

    return unavailable_reason()


# ---------------------------------------------------------------- in the instructor's process


def grade_on_dask(scheduler: str, jobs: list[GradeJob], timeout: float, state: Path) -> Iterator[GradeResult]:
    """Grade `jobs` on the workers of the Dask cluster at `scheduler`; yield each result as it is ready.

    Every job gets exactly one result. An autograded folder comes back under
    state/dask/autograded/<student>/<assignment>, which result.autograded names.
    """
    from distributed import Client, as_completed

    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except Exception as exc:  # unreachable, or not a Dask scheduler: every job fails, saying why
        for job in jobs:
            yield GradeResult.failure(job, f"cannot reach the Dask scheduler {scheduler}: {exc}")
        return
    with client:
        _check_workers(client, scheduler, jobs)
        run = uuid.uuid4().hex[:8]
        shared: dict[tuple, object] = {}
        futures = {}
        failed_early: list[GradeResult] = []
        for job in jobs:
            try:
                group = (job.course_root, job.source_directory, job.assignment, job.template_db)
                if group not in shared:
                    data = pack(shared_files(job))
                    shared[group] = client.submit(
                        _shared_bundle, data, key=f"grading-shared-{job.assignment}-{run}-{len(shared)}"
                    )
                submission = pack({".": Path(job.staged)})
            except Exception as exc:
                failed_early.append(GradeResult.failure(job, f"could not pack the submission: {exc}"))
                continue
            # One task group ("grade", Dask's prefix ends at the run's hex token) for every
            # submission: the scheduler learns one duration and, for a large class, queues the
            # tasks itself instead of handing each worker a share up front.
            key = f"grade-{run}-{job.assignment}-{job.student}"
            topic = f"course-grading-start-{key}"
            future = client.submit(
                grade_task, job.to_json(), shared[group], submission, timeout, topic, key=key, retries=0
            )
            futures[future] = (job, topic)
        yield from failed_early
        for future in as_completed(list(futures)):
            job, topic = futures.pop(future)
            yield _collect(client, future, job, topic, state)
            future.release()


def _check_workers(client, scheduler: str, jobs: list[GradeJob]) -> None:
    """Say when there is no worker yet; stop before grading when a worker cannot sandbox student code."""
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        print(f"no Dask worker has joined {scheduler} yet: waiting for one", file=sys.stderr, flush=True)
        return
    if any(job.sandbox for job in jobs):
        try:
            answers = client.run(_sandbox_check)
        except Exception as exc:  # a worker leaving right now: each task checks again where it runs
            print(f"could not ask the Dask workers whether they can sandbox: {exc}", file=sys.stderr)
            return
        problems = {w: why for w, why in answers.items() if why}
        if problems:
            lines = "\n  ".join(f"{w}: {why}" for w, why in problems.items())
            raise SystemExit(f"cannot sandbox student code on these Dask workers:\n  {lines}")


def _collect(client, future, job: GradeJob, topic: str, state: Path) -> GradeResult:
    """The GradeResult of one finished task, its autograded folder unpacked here."""
    from distributed.scheduler import KilledWorker

    try:
        counts = client.run_on_scheduler(_attempts_reader(), future.key, topic)
    except Exception:
        counts = {"starts": 1, "suspicious": None}
    # The workers it started on (a task only queued on a worker that was lost never started
    # there), bounded by the workers the scheduler saw die while the task was theirs.
    attempts = max(1, counts["starts"])
    if counts["suspicious"] is not None:
        attempts = max(1, min(attempts, 1 + counts["suspicious"]))
    try:
        if future.status == "cancelled":
            return GradeResult.failure(job, "the Dask task was cancelled (was the scheduler lost?)")
        if future.status == "error":
            exc = future.exception()
            if isinstance(exc, KilledWorker):
                died = counts["suspicious"] or exc.allowed_failures + 1
                result = GradeResult.failure(
                    job,
                    f"not graded: {died} Dask workers died while it was theirs (at most "
                    f"distributed.scheduler.allowed-failures = {exc.allowed_failures} may); "
                    "look for what kills them",
                    worker_lost=True,
                )
                result.attempts = died
                return result
            return GradeResult.failure(job, f"the Dask task failed: {type(exc).__name__}: {exc}")
        out = future.result()
        result = GradeResult.from_json(out["result"])
        result.attempts = attempts
        if result.ok:
            dest = state / "dask" / "autograded" / job.student / job.assignment
            shutil.rmtree(dest, ignore_errors=True)
            unpack(out["autograded"], dest)
            result.autograded = str(dest)
        return result
    except Exception as exc:  # a lost scheduler, a bad archive: this job fails, the others go on
        result = GradeResult.failure(
            job, f"the Dask task's result could not be read: {type(exc).__name__}: {exc}"
        )
        result.attempts = attempts
        return result
