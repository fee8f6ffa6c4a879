"""Build the book with warnings as errors; when a chapter fails, say which one and which cell.

    python -m course_tools.book.build [--out DIR] [--all]

Jupyter Book reports a failing notebook as a Sphinx warning and saves the
traceback under <out>/html/reports/. This wrapper prints, for each failed
chapter, its source file, the failing cell's source and the error, then exits
non-zero, so neither a reader nor CI has to dig through the log.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from course_tools.paths import REPO, venv_program

ROOT = REPO


def failed_chapters(out: Path, root: Path = ROOT) -> list[tuple[str, str]]:
    """(chapter source, report text) for every execution report the build left."""
    reports = (
        sorted((out / "html" / "reports").rglob("*.err.log")) if (out / "html" / "reports").exists() else []
    )
    found = []
    for report in reports:
        rel = report.relative_to(out / "html" / "reports").as_posix().removesuffix(".err.log")
        src = next((p for p in (root / f"{rel}.md", root / f"{rel}.ipynb") if p.exists()), root / rel)
        found.append((str(src.relative_to(root)), report.read_text()))
    return found


def summarise_report(text: str, limit: int = 40) -> str:
    """The failing cell's source and the last lines of the traceback from a MyST-NB report."""
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    lines = ansi.sub("", text).strip().splitlines()
    return "\n".join(lines[-limit:])


def build(out: Path, rebuild_all: bool = False, root: Path = ROOT) -> int:
    """Build the book at `root` into out/_build; return 0 on success, else print what failed and return non-zero."""
    cmd = [
        venv_program("jupyter-book"),
        "build",
        str(root),
        "--path-output",
        str(out),
        "-W",
        "--keep-going",
    ]
    if rebuild_all:
        cmd.append("--all")
    reports = out / "_build" / "html" / "reports"
    if reports.exists():
        for old in reports.rglob("*.err.log"):
            old.unlink()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root)
    seconds = time.perf_counter() - start
    failures = failed_chapters(out / "_build", root)
    for chapter, report in failures:
        print(f"\n[book] chapter {chapter} failed to execute:\n{summarise_report(report)}", file=sys.stderr)
    if proc.returncode != 0 or failures:
        print(f"\n[book] build FAILED after {seconds:.1f} s", file=sys.stderr)
        return proc.returncode or 1
    print(f"[book] built in {seconds:.1f} s: {out / '_build' / 'html' / 'index.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT, help="directory that receives _build/ (default: the repository)"
    )
    parser.add_argument("--all", action="store_true", help="rebuild every page, not only changed ones")
    args = parser.parse_args(argv)
    return build(args.out.resolve(), args.all)


if __name__ == "__main__":
    sys.exit(main())
