"""The instructor's grading tool: one command per step, nbgrader underneath.

    python -m course_tools.grading release   [ASSIGNMENT | --all] [--no-exchange]
    python -m course_tools.grading collect   ASSIGNMENT [--zip FILE ...] [--pattern REGEX]
    python -m course_tools.grading autograde ASSIGNMENT [--jobs N] [--student S ...] [--force]
    python -m course_tools.grading feedback  ASSIGNMENT [--student S ...] [--release]
    python -m course_tools.grading export    [--to grades.csv]
    python -m course_tools.grading status    [ASSIGNMENT] [--problems] [--json]

Run it in a course directory (one holding nbgrader_config.py), or pass --course.
The gradebook is the course's (`CourseDirectory.db_url`: SQLite by default,
PostgreSQL with --db-url postgresql://...). release, collect and feedback run
nbgrader's own commands; autograde is course_tools.grading.executor (parallel,
sandboxed, scored outside the kernel); export writes one row per student with a column per
assignment and a total.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from ..paths import env_with_venv
from .course import Course, NbgraderError
from .executor import RunOptions, autograde
from .sandbox import GiB, unavailable_reason
from .status import StatusStore, format_table

# Canvas names downloads <login>_[LATE_]<user id>_<submission id>_<your file name>[-<n>].ipynb
DEFAULT_PATTERN = r".*/(?P<student_id>[^/_]+)_(?:LATE_)?\d+_\d+_(?P<file_id>[^/]+?)(?:-\d+)?\.ipynb$"


def load_course(args: argparse.Namespace) -> Course:
    """Read the course directory's nbgrader_config.py; command-line options win."""
    return Course.load(
        Path(args.course), db_url=args.db_url, course_id=args.course_id, exchange=args.exchange
    )


def nbgrader(course: Course, *args: str, progress: str | None = None, total: int = 0) -> str:
    """Run `nbgrader ARGS` in the course; a progress bar counts the notebooks it converts."""
    with tqdm(total=total or None, desc=progress, unit="nb", disable=progress is None) as bar:

        def count(line: str) -> None:
            if "Converting notebook" in line or "Writing" in line and ".html" in line:
                bar.update(1)

        try:
            return course.run(*args, on_line=count)
        except NbgraderError as exc:
            sys.exit(str(exc)[-3000:])


def cmd_release(args: argparse.Namespace) -> int:
    course = load_course(args)
    source = course.root / course.source_directory
    available = sorted(p.name for p in source.iterdir() if p.is_dir()) if source.is_dir() else []
    names = available if args.all else [args.assignment]
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        sys.exit(f"no assignment {unknown or ''} in {source}; there are: {', '.join(available) or 'none'}")
    for name in names:
        nbgrader(course, "generate_assignment", name, "--force", progress=f"generate {name}")
        if not args.no_exchange:
            nbgrader(course, "release_assignment", name, "--force")
        where = course.root / course.release_directory / name
        print(f"released {name}: {where}" + ("" if args.no_exchange else f" and exchange {course.exchange}"))
    return 0


def check_zip_args(zips: list[str], pattern: str) -> re.Pattern:
    """Fail with a clear message, before anything is copied, on a missing zip or a bad pattern."""
    for z in zips:
        if not Path(z).is_file():
            sys.exit(f"no such file: {z}")
        if not zipfile.is_zipfile(z):
            sys.exit(f"not a zip archive: {z}")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        sys.exit(f"--pattern is not a valid regular expression: {exc}")
    missing = {"student_id", "file_id"} - set(regex.groupindex)
    if missing:
        sys.exit(f"--pattern needs the named groups {sorted(missing)}, e.g. (?P<student_id>...)")
    return regex


def cmd_collect(args: argparse.Namespace) -> int:
    course = load_course(args)
    a = args.assignment
    if not args.zip:
        nbgrader(course, "collect", a, "--update")
    else:
        regex = check_zip_args(args.zip, args.pattern)
        downloaded = course.root / "downloaded" / a
        for folder in ("archive", "extracted"):  # this download only: earlier ones were collected
            shutil.rmtree(downloaded / folder, ignore_errors=True)
        (downloaded / "archive").mkdir(parents=True)
        for z in args.zip:
            shutil.copy2(z, downloaded / "archive" / Path(z).name)
        names = [
            str(downloaded / "extracted" / Path(z).stem / n)  # where zip_collect will unpack it
            for z in args.zip
            for n in zipfile.ZipFile(z).namelist()
            if n.endswith(".ipynb")
        ]
        matched = [n for n in names if regex.match(n)]
        nbgrader(
            course, "zip_collect", a, "--force", f"--FileNameCollectorPlugin.named_regexp={args.pattern}"
        )
        unmatched = sorted(set(names) - set(matched))
        if unmatched:
            print(f"{len(unmatched)} notebook(s) did not match --pattern and were not collected:")
            print("  " + "\n  ".join(str(Path(n).relative_to(downloaded)) for n in unmatched[:20]))
    submitted = course.root / course.submitted_directory
    students = sorted(p.name for p in submitted.iterdir() if (p / a).is_dir()) if submitted.is_dir() else []
    print(f"{len(students)} submission(s) of {a} in {submitted}")
    return 0


def released_assignments(course: Course) -> list[str]:
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as gb:
        return sorted(a.name for a in gb.assignments)


def cmd_autograde(args: argparse.Namespace) -> int:
    course = load_course(args)
    known = released_assignments(course)
    if args.assignment not in known:
        sys.exit(
            f"{args.assignment} is not in the gradebook: run `release {args.assignment}` first "
            f"(the gradebook has: {', '.join(known) or 'nothing'})"
        )
    if not args.no_sandbox:
        reason = unavailable_reason()
        if reason:
            sys.exit(f"cannot sandbox student code: {reason}. Install it, or pass --no-sandbox (unsafe).")
    opts = RunOptions(
        jobs=args.jobs,
        cell_timeout=args.cell_timeout,
        timeout=args.timeout,
        memory_bytes=int(args.memory * GiB),
        sandbox=not args.no_sandbox,
        force=args.force,
        students=tuple(args.student or ()),
        scheduler=args.scheduler,
    )
    summary = autograde(course, args.assignment, opts)
    done = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())) or "nothing to do"
    per = summary.per_submission
    own = summary.notebook_seconds
    mean = (
        f", {sum(per) / len(per):.1f} s per submission ({sum(own) / len(own):.1f} s of it running the notebook)"
        if per
        else ""
    )
    print(f"{args.assignment}: {done}; {summary.skipped} unchanged skipped; {summary.seconds:.0f} s{mean}")
    if summary.workers_lost:
        print(f"{summary.workers_lost} submission(s) were graded again after their worker was lost")
    print(f"details: python -m course_tools.grading status {args.assignment} --problems")
    return 1 if summary.failed else 0


def hidden_test_lines(course: Course, assignment: str) -> list[str]:
    """Lines of the hidden tests that students never see (a line the release also shows is no secret)."""
    import nbformat
    from nbgrader.api import Gradebook

    from .cells import hidden_lines

    out: list[str] = []
    with Gradebook(course.db_url, course.course_id) as gb:
        for nb in gb.find_assignment(assignment).notebooks:
            for cell in nb.source_cells:
                out += hidden_lines(cell.source or "")
    shown: set[str] = set()
    for path in (course.root / course.release_directory / assignment).glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            shown.update(line.strip() for line in cell.source.split("\n"))
    # Short lines ("forbidden = (") also occur, spaces removed, in ordinary code: not evidence.
    return [line for line in out if line not in shown and len(line) >= 25]


def cmd_feedback(args: argparse.Namespace) -> int:
    course = load_course(args)
    a = args.assignment
    students = args.student or [
        p.parent.name for p in (course.root / course.autograded_directory).glob(f"*/{a}")
    ]
    extra = [f"--student={s}" for s in args.student or []]
    nbgrader(course, "generate_feedback", a, "--force", *extra, progress=f"feedback {a}", total=len(students))
    hidden = [re.sub(r"\s+", "", h) for h in hidden_test_lines(course, a)]
    leaked = []
    for html in sorted((course.root / course.feedback_directory).glob(f"*/{a}/*.html")):
        text = re.sub(r"<[^>]+>", "", html.read_text(errors="replace"))
        text = re.sub(r"\s+", "", text.replace("&#39;", "'").replace("&quot;", '"').replace("&amp;", "&"))
        if any(h in text for h in hidden):
            leaked.append(html)
            html.unlink()  # never hand out a file that shows hidden tests
    if leaked:
        print("withheld feedback that showed hidden-test code:", *map(str, leaked), sep="\n  ")
    if args.release and not leaked:
        nbgrader(course, "release_feedback", a)
    print(f"feedback for {a} in {course.root / course.feedback_directory}")
    return 1 if leaked else 0


def cmd_export(args: argparse.Namespace) -> int:
    from nbgrader.api import Gradebook, MissingEntry

    course = load_course(args)
    out = Path(args.to)
    with Gradebook(course.db_url, course.course_id) as gb:
        assignments = sorted(gb.assignments, key=lambda a: (a.duedate is None, a.duedate, a.name))
        names = [a.name for a in assignments]
        with open(out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["student_id", "last_name", "first_name", "email", *names, "total"])
            for st in sorted(gb.students, key=lambda s: s.id):
                scores = []
                for a in names:
                    try:
                        scores.append(gb.find_submission(a, st.id).score)
                    except MissingEntry:
                        scores.append(0.0)
                w.writerow(
                    [st.id, st.last_name or "", st.first_name or "", st.email or "", *scores, sum(scores)]
                )
        maxima = ", ".join(f"{a.name} {a.max_score:g}" for a in assignments)
        n_students = len(gb.students)
    print(f"wrote {out}: {n_students} student(s); maximum scores: {maxima}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    course = load_course(args)
    store = StatusStore(course.root)
    names = [args.assignment] if args.assignment else store.assignments()
    if args.json:
        print(json.dumps({a: store.data.get(a, {}) for a in names}, indent=1))
        return 0
    if not names:
        print("nothing graded yet")
    for a in names:
        print(format_table(a, store.entries(a), only_problems=args.problems))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_tools.grading",
        description="Grade a class with nbgrader: release, collect, autograde (parallel, sandboxed), "
        "feedback, export, status.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--course", default=".", help="course directory (holds nbgrader_config.py); default: ."
    )
    common.add_argument(
        "--db-url", help="gradebook URL, e.g. postgresql://host/db (default: from the config)"
    )
    common.add_argument("--course-id", help="nbgrader course id (default: from the config)")
    common.add_argument("--exchange", help="nbgrader exchange root (default: from the config)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("release", parents=[common], help="generate the student version and release it")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("assignment", nargs="?", help="assignment name (a folder of the source directory)")
    g.add_argument("--all", action="store_true", help="every assignment in the source directory")
    p.add_argument("--no-exchange", action="store_true", help="only generate (for an LMS upload)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("collect", parents=[common], help="collect submissions (exchange or LMS zip)")
    p.add_argument("assignment")
    p.add_argument(
        "--zip", nargs="+", metavar="FILE", help="LMS download(s) to unpack with nbgrader zip_collect"
    )
    p.add_argument(
        "--pattern",
        default=DEFAULT_PATTERN,
        help="regex on each file's path with groups student_id and file_id (default: Canvas's names)",
    )
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("autograde", parents=[common], help="grade submissions in parallel, sandboxed")
    p.add_argument("assignment")
    p.add_argument(
        "--jobs", "-j", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)"
    )
    p.add_argument("--student", nargs="+", help="only these students")
    p.add_argument("--force", action="store_true", help="regrade submissions that did not change")
    p.add_argument("--cell-timeout", type=int, default=120, help="seconds per cell (default 120)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per submission (default 900)")
    p.add_argument("--memory", type=float, default=4, help="GiB of address space per kernel (default 4)")
    p.add_argument("--no-sandbox", action="store_true", help="run student code unsandboxed (unsafe)")
    p.add_argument(
        "--scheduler",
        default="",
        help="grade on the workers of a Dask distributed cluster (tcp://HOST:PORT) instead of --jobs local ones",
    )
    p.set_defaults(func=cmd_autograde)

    p = sub.add_parser("feedback", parents=[common], help="HTML feedback without hidden tests")
    p.add_argument("assignment")
    p.add_argument("--student", nargs="+", help="only these students")
    p.add_argument("--release", action="store_true", help="also release it through the exchange")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("export", parents=[common], help="CSV: a row per student, a column per assignment")
    p.add_argument("--to", default="grades.csv", help="output file (default grades.csv)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("status", parents=[common], help="what is graded, what failed and why")
    p.add_argument("assignment", nargs="?")
    p.add_argument("--problems", action="store_true", help="only submissions with issues or review notes")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ["PATH"] = env_with_venv()["PATH"]
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
