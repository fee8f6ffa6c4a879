"""Benchmark: the instructor tool's parallel autograde against plain sequential `nbgrader autograde`.

    .venv/bin/python benchmarks/bench_grading.py [--n 40] [--jobs 2] [--keep DIR]

Builds N synthetic ps01 submissions (right, partly wrong, broken), grades the
same set twice in two course directories: once with
`python -m course_tools.grading autograde --jobs 2` (sandboxed, scored outside the kernel) and
once with `nbgrader autograde` (one notebook after another, unsandboxed), then
prints the speed ratio (the design's goal: at least 3), the tool's time per
submission beside the floor (a kernel started and `import torch` run) and beside
the notebook's own run time (its cells and checks: the goal is at most 0.5 s more; and, for
reference, the same notebook's cells in one warm kernel with its tests inside it), and the
peak memory of each worker with its kernels. Both runs must agree on every score.
Not a test: timings depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import psutil
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from assignments.ps01_mistakes import MISTAKES  # noqa: E402
from robustness.harness import instructor, make_course, scores  # noqa: E402

from course_tools.grading.course import Course  # noqa: E402
from course_tools.grading.status import StatusStore  # noqa: E402
from course_tools.grading.submissions import fill, solution_answers, write_submission  # noqa: E402

ASSIGNMENT = "ps01_backprop"


def synthetic_class(
    release: nbformat.NotebookNode, answers: dict[str, str], n: int
) -> dict[str, nbformat.NotebookNode]:
    """n submissions: 40% right, 40% one realistic mistake each, 20% broken (blank, syntax error, crash)."""
    first, last = sorted(answers)[0], sorted(answers)[-1]
    broken = [
        release,
        fill(release, {**answers, first: "def oops(z):\n    return (z"}),  # a syntax error
        fill(release, {**answers, last: "raise RuntimeError('I gave up')"}),  # a crash
    ]
    out = {}
    for i in range(n):
        kind = ("right", "right", "wrong", "wrong", "broken")[i % 5]
        if kind == "right":
            nb = fill(release, answers)
        elif kind == "wrong":
            m = MISTAKES[i % len(MISTAKES)]
            nb = fill(release, {**answers, m.part: m.source})
        else:
            nb = broken[i % len(broken)]
        out[f"s{i:03d}-{kind}"] = nb
    return out


def floor_seconds(repeats: int = 3) -> float:
    """Median time to start a Python kernel and import torch in it (what every submission costs at least)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3")
        try:
            reply = kc.execute_interactive("import torch, course_lib", timeout=300)
            assert reply["content"]["status"] == "ok", reply
            times.append(time.perf_counter() - t)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    return statistics.median(times)


def notebook_alone_seconds(repeats: int = 3) -> float:
    """Median time of the reference notebook's cells in one already-started kernel, tests in the kernel.

    The notebook's own run time, with nothing of the grading around it: no sandbox, no kernel
    start, no checks outside the kernel (the tool's cells-and-checks figure adds those calls).
    """
    source = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    times = []
    for _ in range(repeats):
        nb = copy.deepcopy(source)
        client = NotebookClient(
            nb, timeout=600, resources={"metadata": {"path": str(REPO / "solutions" / ASSIGNMENT)}}
        )
        with client.setup_kernel():
            client.execute_cell(nbformat.v4.new_code_cell("import torch, course_lib"), 0)
            t = time.perf_counter()
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, index)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


class WorkerMemory:
    """Samples the resident memory of each grading worker plus its kernels; keeps the peak per worker."""

    def __init__(self) -> None:
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for proc in psutil.process_iter(["cmdline"]):
                try:
                    if "course_tools.grading.worker" not in " ".join(proc.info["cmdline"] or []):
                        continue
                    rss = proc.memory_info().rss + sum(
                        c.memory_info().rss for c in proc.children(recursive=True)
                    )
                except psutil.Error:
                    continue
                self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), rss)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="number of submissions (default 40)")
    parser.add_argument("--jobs", type=int, default=2, help="workers for the tool (default 2)")
    parser.add_argument("--keep", help="build the courses in this folder and keep them")
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    base = Path(args.keep or tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        tool = make_course(base / "tool", release_args=("--no-exchange",))
        plain_root = base / "plain" / "course"
        shutil.copytree(tool.root, plain_root)
        plain = Course(
            root=plain_root, exchange=tool.exchange, db_url=f"sqlite:///{plain_root / 'gradebook.db'}"
        )
        release = nbformat.read(tool.root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        answers = solution_answers(
            nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        )
        for course in (tool, plain):
            for student, nb in synthetic_class(release, answers, args.n).items():
                write_submission(nb, course.root / "submitted", student, ASSIGNMENT, ASSIGNMENT)

        print(f"{args.n} submissions of {ASSIGNMENT}; machine: {os.cpu_count()} cores", flush=True)
        floor = floor_seconds()
        print(f"floor (start a kernel, import torch and course_lib): {floor:.1f} s", flush=True)
        alone = notebook_alone_seconds()
        print(f"the reference notebook alone (cells and tests in one warm kernel): {alone:.1f} s", flush=True)

        t = time.perf_counter()
        plain.run("autograde", ASSIGNMENT, "--force")
        t_plain = time.perf_counter() - t
        print(f"plain nbgrader autograde, sequential: {t_plain:.0f} s", flush=True)

        with WorkerMemory() as memory:
            t = time.perf_counter()
            proc = instructor(tool, "autograde", ASSIGNMENT, "--jobs", str(args.jobs))
            t_tool = time.perf_counter() - t
        print(f"instructor autograde --jobs {args.jobs}: {t_tool:.0f} s", flush=True)
        print("  its summary: " + proc.stdout.strip().splitlines()[0], flush=True)

        mismatched = {s for s, v in scores(tool).items() if scores(plain).get(s) != v}
        entries = StatusStore(tool.root).entries(ASSIGNMENT)
        per = [e.seconds for e in entries.values() if e.seconds]
        print()
        print(f"speed ratio (plain / tool): {t_plain / t_tool:.2f}x   (goal >= 3x)")
        print(
            f"per submission, one worker: median {statistics.median(per):.1f} s, max {max(per):.1f} s; "
            f"floor {floor:.1f} s (median = {statistics.median(per) / floor:.2f} x floor)"
        )
        print(f"wall time per submission with {args.jobs} workers: {t_tool / args.n:.1f} s")
        peaks = sorted(memory.peak.values(), reverse=True)[: args.jobs]
        print(
            "peak memory per worker (worker + its kernel): "
            + ", ".join(f"{p / 2**20:.0f} MiB" for p in peaks)
        )
        print(
            f"scores identical in both runs: {'yes' if not mismatched else f'NO, differ for {sorted(mismatched)}'}"
        )
        return 1 if mismatched else 0
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
