"""Grading on a Dask cluster (`autograde --scheduler`), with the commands the instructor guide shows.

The test starts a scheduler and two workers on localhost with Dask's own command line
(`dask scheduler`, `dask worker`: real processes, killed at teardown), grades ps01
submissions through the instructor tool with `--scheduler`, and compares with a local
`--jobs 1` run: the same score for every student and part. One submission sleeps in a
cell; while a worker grades it the test SIGKILLs that worker process (its nanny starts a
new one): every submission must still be graded, and the run must report the lost worker.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import cloudpickle
import nbformat
import psutil
import pytest
from assignments.ps01_mistakes import MISTAKES
from robustness.cluster import Cluster, dask_cluster, free_port
from robustness.harness import ASSIGNMENT, REPO, instructor, make_course, scores, status, write_files

from course_tools.grading import dask_pool
from course_tools.grading.dask_pool import pack, shared_files, unpack
from course_tools.grading.records import GradeJob, GradeResult
from course_tools.grading.submissions import fill, solution_answers

DASK = str(Path(sys.executable).parent / "dask")
LIMITS = ("--cell-timeout", "60", "--timeout", "300", "--memory", "3")
SLEEPER = "dora"  # reference answers, and a cell that sleeps long enough to kill its worker mid-run
SLEEP_S = 12


# ---------------------------------------------------------------- fast: the parts without a cluster


def test_local_grading_needs_no_dask():
    code = "import sys, course_tools.grading.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_pack_round_trip_and_no_escape(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.ipynb").write_text("{}")
    (src / "sub" / "data.csv").write_text("1,2")
    unpack(pack({".": src}), tmp_path / "out")
    assert (tmp_path / "out" / "a.ipynb").read_text() == "{}"
    assert (tmp_path / "out" / "sub" / "data.csv").read_text() == "1,2"

    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(tarfile.TarError):
        unpack(evil.getvalue(), tmp_path / "out2")
    assert not (tmp_path / "escaped.txt").exists()


def test_shared_files_are_what_a_worker_reads(tmp_path):
    root = tmp_path / "course"
    (root / "source" / "ps" / "data").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text("c = get_config()")
    (root / "source" / "ps" / "ps.ipynb").write_text("{}")  # the source notebook holds hidden tests
    (root / "source" / "ps" / "data" / "x.csv").write_text("1")
    (root / "solutions").mkdir()
    (tmp_path / "template.db").write_bytes(b"db")
    job = GradeJob(str(root), "c", "ps", "alice", str(tmp_path), str(tmp_path / "template.db"))
    assert sorted(shared_files(job)) == [
        "course/nbgrader_config.py",
        "course/source/ps/data/x.csv",
        "template.db",
    ]


class _FakeClient:
    def __init__(self, starts: int, suspicious: int | None):
        self.counts = {"starts": starts, "suspicious": suspicious}

    def run_on_scheduler(self, function, *args):
        return self.counts if function.__name__ == "attempts" else None


class _FakeFuture:
    key = "grade-0123abcd-ps-alice"

    def __init__(self, status: str, value=None, error: Exception | None = None):
        self.status, self.value, self.error = status, value, error

    def exception(self):
        return self.error

    def result(self):
        return self.value


JOB = GradeJob("/nowhere", "c", "ps", "alice", "/nowhere/staged", "/nowhere/t.db")


@pytest.mark.parametrize(
    "starts, suspicious, attempts",
    [
        (1, 0, 1),  # graded by the first worker
        (1, 1, 1),  # only queued on a worker that was lost: it never started there
        (2, 1, 2),  # started on a worker that died, graded on another
        (2, 0, 1),  # started twice, no worker died (a retirement): nothing was lost
        (3, 2, 3),
    ],
)
def test_attempts_count_workers_lost_while_grading(tmp_path, starts, suspicious, attempts):
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "ps.ipynb").write_text("{}")
    answer = GradeResult("alice", "ps", ok=True, scores={"notebooks": {}})
    future = _FakeFuture("finished", {"result": answer.to_json(), "autograded": pack({".": tmp_path / "nb"})})
    result = dask_pool._collect(_FakeClient(starts, suspicious), future, JOB, "topic", tmp_path / "state")
    assert result.ok and result.attempts == attempts
    assert Path(result.autograded) == tmp_path / "state" / "dask" / "autograded" / "alice" / "ps"
    assert (Path(result.autograded) / "ps.ipynb").read_text() == "{}"


def test_a_submission_that_keeps_killing_workers_fails_saying_so(tmp_path):
    from distributed.scheduler import KilledWorker

    future = _FakeFuture("error", error=KilledWorker(_FakeFuture.key, None, 3))
    result = dask_pool._collect(_FakeClient(4, 4), future, JOB, "topic", tmp_path)
    assert not result.ok and result.worker_lost and result.attempts == 4
    assert "4 Dask workers died" in result.error and "allowed-failures = 3" in result.error


def test_an_unreachable_scheduler_fails_every_job_saying_why(tmp_path, monkeypatch):
    monkeypatch.setattr(dask_pool, "CONNECT_TIMEOUT", "2s")
    jobs = [JOB, GradeJob("/nowhere", "c", "ps", "bob", "/nowhere/staged", "/nowhere/t.db")]
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    results = list(dask_pool.grade_on_dask(address, jobs, 60, tmp_path))
    assert [r.student for r in results] == ["alice", "bob"]
    assert all(not r.ok and f"cannot reach the Dask scheduler {address}" in r.error for r in results)


# ---------------------------------------------------------------- a real cluster on localhost


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from course_tools.grading.sandbox import unavailable_reason

    why = unavailable_reason()
    if why:
        pytest.skip(f"the grading sandbox cannot run here: {why}")
    with dask_cluster(tmp_path_factory.mktemp("dask")) as c:
        yield c


def _executing(dask_worker) -> list[str]:
    return [str(ts.key) for ts in dask_worker.state.executing]


cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module


class Killer(threading.Thread):
    """Waits until a worker is grading `student`'s submission, then SIGKILLs that worker process."""

    def __init__(self, cluster: Cluster, student: str, delay: float = 2.0, patience: float = 400):
        super().__init__(daemon=True)
        self.cluster, self.student, self.delay, self.patience = cluster, student, delay, patience
        self.killed: str = ""  # the address of the worker it killed
        self.error: str = ""
        self.stop = threading.Event()

    def run(self) -> None:
        from distributed import Client

        try:
            with Client(self.cluster.address, timeout="60s") as client:
                deadline = time.monotonic() + self.patience
                while not self.stop.is_set() and time.monotonic() < deadline:
                    running = client.run(_executing)
                    victim = next(
                        (
                            w
                            for w, keys in running.items()
                            if any(k.endswith(f"-{self.student}") for k in keys)
                        ),
                        None,
                    )
                    if victim and self._grading_kernel(client, victim):
                        time.sleep(self.delay)  # well inside the notebook's sleeping cell
                        pid = client.run(os.getpid, workers=[victim])[victim]
                        proc = psutil.Process(pid)
                        graders = proc.children(recursive=True)
                        os.kill(pid, signal.SIGKILL)  # the worker, not its nanny
                        for p in graders:  # and its grading subprocess: as if its machine were lost
                            p.kill()
                        self.killed = victim
                        return
                    time.sleep(0.5)
                self.error = f"never saw a worker grading {self.student}"
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _grading_kernel(client, worker: str) -> bool:
        """Whether the worker's grading subprocess has a sandboxed kernel (bwrap) running."""
        pid = client.run(os.getpid, workers=[worker])[worker]
        return any(p.name() == "bwrap" for p in psutil.Process(pid).children(recursive=True))


@pytest.mark.slow
def test_grades_on_dask_equal_a_local_run_and_survive_a_killed_worker(cluster: Cluster, tmp_path):
    course = make_course(tmp_path)
    release = nbformat.read(course.root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = solution_answers(
        nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    )
    wrong = next(m for m in MISTAKES if m.part == "cross_entropy")
    first = next(iter(answers))
    submissions = {
        "alice": fill(release, answers),
        "bob": fill(release, {**answers, wrong.part: wrong.source}),
        "carol": release,  # blank
        SLEEPER: fill(release, {**answers, first: f"import time\ntime.sleep({SLEEP_S})\n{answers[first]}"}),
    }
    for student, nb in submissions.items():
        write_files(
            course,
            student,
            {
                f"{ASSIGNMENT}.ipynb": nbformat.writes(nb).encode(),
                "timestamp.txt": b"2026-01-01 00:00:00 UTC",
            },
        )

    t0 = time.monotonic()
    local = instructor(
        course, "autograde", ASSIGNMENT, "--jobs", "1", "--student", "alice", "bob", "carol", *LIMITS
    )
    local_s = time.monotonic() - t0
    assert "3 graded" in local.stdout, local.stdout
    local_scores = scores(course)

    killer = Killer(cluster, SLEEPER)
    killer.start()
    t0 = time.monotonic()
    proc = instructor(
        course, "autograde", ASSIGNMENT, "--scheduler", cluster.address, "--force", *LIMITS, check=False
    )
    dask_s = time.monotonic() - t0
    killer.stop.set()
    killer.join(timeout=60)
    print(
        f"local --jobs 1: 3 submissions in {local_s:.0f} s; Dask, 2 workers, one killed: 4 in {dask_s:.0f} s"
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}\n{cluster.logs()}"
    assert killer.killed, f"the test did not kill a worker: {killer.error}\n{cluster.logs()}"

    # Every submission graded, the same as on this machine; the sleeper as the reference.
    dask_scores = scores(course)
    assert set(dask_scores) == set(submissions)
    for student in ("alice", "bob", "carol"):
        assert dask_scores[student] == local_scores[student], student
    assert dask_scores[SLEEPER] == local_scores["alice"]
    assert sum(local_scores["alice"].values()) > sum(local_scores["bob"].values()) > 0
    assert sum(local_scores["carol"].values()) == 0
    for student in submissions:
        assert (course.root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()

    # The run reports the lost worker, on the command line and in the status table.
    assert "1 submission(s) were graded again after their worker was lost" in proc.stdout, proc.stdout
    table = status(course)
    assert all(table[s]["state"].startswith("graded") for s in submissions), table
    assert any("graded on a second worker" in issue for issue in table[SLEEPER]["issues"]), table[SLEEPER]
    for student in ("alice", "bob", "carol"):
        assert not any("second worker" in issue for issue in table[student]["issues"]), table[student]
