"""A Dask cluster on localhost for the grading tests, started with Dask's own command line.

The commands are the instructor guide's (book/instructors.md, "Grading on several machines
with Dask"): `dask scheduler` and one `dask worker` per grading machine, here two workers
as real processes on this machine, stopped (and whatever they left) at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    address: str
    base: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    strays: set[int] = field(default_factory=set)  # pids of processes the test's kill left behind

    def start(self, *args: str, log: str) -> subprocess.Popen:
        out = open(self.base / log, "w")  # noqa: SIM115  (the process's log, closed by the OS at exit)
        proc = subprocess.Popen(
            [DASK, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.base.glob("*.log")))

    def stop(self) -> None:
        pids = set(self.strays)
        for proc in self.procs:
            try:
                pids |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                pass
        workers, scheduler = self.procs[1:], self.procs[:1]
        for group in (workers, scheduler):  # the workers first, while their scheduler is still there
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in group:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        for pid in pids:  # grading subprocesses (own sessions) that outlived their Dask worker
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass


@contextlib.contextmanager
def dask_cluster(base: Path, workers: int = 2) -> Iterator[Cluster]:
    """A scheduler and `workers` workers (one task at a time each) on 127.0.0.1; stopped on exit."""
    from distributed import Client

    port = free_port()
    c = Cluster(f"tcp://127.0.0.1:{port}", base)
    try:
        c.start(
            "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard", log="scheduler.log"
        )
        for i in range(workers):
            c.start(
                "worker",
                c.address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--name",
                f"grader-{i}",
                "--local-directory",
                str(c.base / f"w{i}"),
                log=f"worker-{i}.log",
            )
        with Client(c.address, timeout="120s") as client:
            client.wait_for_workers(workers, timeout=180)
        yield c
    except Exception:
        print(c.logs())
        raise
    finally:
        c.stop()
