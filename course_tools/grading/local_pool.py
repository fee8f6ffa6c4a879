"""Grading on this machine: `--jobs N` worker processes (course_tools.grading.worker), fed one job at a time.

A submission that loops, crashes, or outlives its time never holds up the
others: its worker is killed (with every kernel in its sandbox) and replaced,
and the submission comes back as a failed result saying why. Each worker keeps
its warm kernel parent (course_tools.grading.warm) from one submission to the next.
"""

from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..paths import env_with_venv
from .records import GradeJob, GradeResult


class Worker:
    """One course_tools.grading.worker process, talked to with JSON lines."""

    def __init__(self, index: int, log_dir: Path):
        self.index = index
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(log_dir / f"worker-{index}.log", "a")  # noqa: SIM115  (kept open for the process)
        env = env_with_venv()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "course_tools.grading.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            start_new_session=True,  # its own process group: killed as one, kernels included
        )
        self.buffer = b""

    def ask(self, job: GradeJob, timeout: float) -> GradeResult:
        """Send a job, wait for its result; kill the worker and say why if it takes too long or dies."""
        try:
            self.proc.stdin.write((job.to_json() + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return GradeResult.failure(job, "the grading worker had died", worker_lost=True)
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                return GradeResult.failure(
                    job, f"timed out after {timeout:.0f} s (whole submission)", worker_lost=True
                )
            ready, _, _ = select.select([fd], [], [], min(left, 5))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    self.kill()
                    return GradeResult.failure(job, "the grading worker died", worker_lost=True)
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return GradeResult.from_json(line.decode())

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


def grade_locally(jobs: list[GradeJob], n_workers: int, timeout: float, state: Path) -> Iterator[GradeResult]:
    """Grade `jobs` with up to n_workers worker processes; yield each result as it is ready.

    Worker i builds its scratch courses in state/work/w<i> and logs to state/logs/worker-<i>.log.
    """
    todo: queue.Queue = queue.Queue()
    for job in jobs:
        todo.put(job)
    done: queue.Queue = queue.Queue()

    def run_worker(i: int) -> None:
        worker = None
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                break
            if worker is None:
                worker = Worker(i, state / "logs")
            job = replace(job, work_dir=str(state / "work" / f"w{i}"))
            try:
                result = worker.ask(job, timeout)
            except Exception as exc:  # a garbled answer: treat the worker as lost
                worker.kill()
                result = GradeResult.failure(job, f"grading worker failed: {exc}", worker_lost=True)
            if result.worker_lost:
                worker = None
            done.put(result)
        if worker is not None:
            worker.close()

    n = max(1, min(n_workers, len(jobs)))
    threads = [threading.Thread(target=run_worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for _ in range(len(jobs)):
        yield done.get()
    for t in threads:
        t.join()
