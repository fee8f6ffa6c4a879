"""Benchmarks for the budgets in COURSE_DESIGN.md §8. Prints figures; asserts nothing.

    python3 dev.py bench [--skip-book] [--submissions N]

1. the book, cold and with one chapter changed (in a scratch copy of the repository);
2. each page's execution time (from the build's execution cache): a chapter longer than a page
   is a landing page plus section pages, each a notebook with the chapter budget of its own;
3. each assignment's reference solution, executed end to end;
4. autograde per submission with the instructor tool (one worker, warm sandboxed kernels) and what
   it costs beyond the notebook's own run (its cells and the checker's calls): the budget is 0.5 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from course_tools.book.build import build  # noqa: E402
from course_tools.grading.course import Course  # noqa: E402
from course_tools.grading.executor import RunOptions, autograde  # noqa: E402
from course_tools.grading.submissions import fill, solution_answers, write_submission  # noqa: E402

BUDGETS = {"chapter": 45.0, "book_cold": 480.0, "book_rebuild": 60.0, "reference": 60.0}


def line(label: str, seconds: float, budget: float | None = None) -> None:
    verdict = "" if budget is None else ("  within budget" if seconds <= budget else "  OVER BUDGET")
    limit = "" if budget is None else f"  (budget {budget:.0f} s)"
    print(f"  {label:<48} {seconds:8.1f} s{limit}{verdict}", flush=True)


def scratch_copy(dest: Path) -> Path:
    """The repository without environments and builds, for building without touching the real one."""
    ignore = shutil.ignore_patterns(".venv", "_build", ".git", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def chapter_times(build_dir: Path) -> dict[str, float]:
    """Execution seconds per notebook, as jupyter-cache recorded them during the build."""
    from jupyter_cache import get_cache

    cache = get_cache(build_dir / ".jupyter_cache")
    times = {}
    for rec in cache.list_cache_records():
        data = rec.data or {}
        if "execution_seconds" in data:
            times[Path(rec.uri).name if rec.uri else f"record {rec.pk}"] = float(data["execution_seconds"])
    for proj in cache.list_project_records():
        rec = cache.get_cached_project_nb(proj.uri)
        if rec is not None and "execution_seconds" in (rec.data or {}):
            times[Path(proj.uri).name] = float(rec.data["execution_seconds"])
    return times


def bench_book() -> None:
    print("Book", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp:
        root = scratch_copy(Path(tmp) / "repo")
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        rc = build(out, rebuild_all=True, root=root)
        cold = time.perf_counter() - t0
        if rc:
            print("  the book build failed; figures below are not meaningful")
        line("whole book, cold", cold, BUDGETS["book_cold"])
        for name, seconds in sorted(chapter_times(out / "_build").items()):
            line(f"execute {name}", seconds, BUDGETS["chapter"])
        chapter = root / "book" / "ch01_backprop.md"  # chapter 1's landing page
        text = chapter.read_text()
        marker = "```{code-cell} ipython3\n"
        chapter.write_text(text.replace(marker, marker + "# benchmark: a changed cell\n", 1))
        t0 = time.perf_counter()
        build(out, root=root)
        line(f"rebuild after changing {chapter.name}", time.perf_counter() - t0, BUDGETS["book_rebuild"])


def run_notebook(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 600) -> float:
    t0 = time.perf_counter()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return time.perf_counter() - t0


def floor_seconds(cwd: Path, repeats: int = 3) -> float:
    """Start a kernel and import torch: the least any autograded submission costs."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")])
    return statistics.median(run_notebook(nb, cwd) for _ in range(repeats))


def bench_assignments(n_submissions: int) -> None:
    print("Assignments", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
        tmp_path = Path(tmp)
        floor = floor_seconds(tmp_path)
        line("floor: start a kernel + import torch", floor)
        for src_dir in sorted((REPO / "solutions").iterdir()):
            name = src_dir.name
            source = nbformat.read(src_dir / f"{name}.ipynb", as_version=4)
            release = nbformat.read(REPO / "exercises" / name / f"{name}.ipynb", as_version=4)
            reference = fill(release, solution_answers(source))
            own = run_notebook(reference, tmp_path)
            line(f"{name}: reference solution end to end", own, BUDGETS["reference"])
            course = Course.create(tmp_path / name / "course")
            shutil.copytree(src_dir, course.root / "solutions" / name)
            course.run("generate_assignment", name, "--force")
            for i in range(n_submissions):
                write_submission(reference, course.root / "submitted", f"student{i:03d}", name, name)
            summary = autograde(course, name, RunOptions(jobs=1, force=True, progress=False))
            per = statistics.median(summary.per_submission)
            overhead = statistics.median(
                s - cells for s, cells in zip(summary.per_submission, summary.notebook_seconds, strict=True)
            )
            line(f"{name}: autograde per submission, one warm worker (median of {n_submissions})", per)
            line(f"{name}:   beyond the notebook's own run (its cells and checks)", overhead, 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-book", action="store_true")
    parser.add_argument("--skip-assignments", action="store_true")
    parser.add_argument("--submissions", type=int, default=4)
    args = parser.parse_args()
    if not args.skip_book:
        bench_book()
    if not args.skip_assignments:
        bench_assignments(args.submissions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
