"""The instructor's grading tool: one command per step, nbgrader underneath.

    python -m course_tools.grading release   [ASSIGNMENT | --all] [--no-exchange]
    python -m course_tools.grading collect   ASSIGNMENT [--zip FILE ... [--lms canvas|moodle|blackboard | --pattern REGEX]]
    python -m course_tools.grading autograde ASSIGNMENT [--jobs N] [--student S ...] [--force]
    python -m course_tools.grading feedback  ASSIGNMENT [--student S ...] [--release]
    python -m course_tools.grading export    [--to FILE] [--format plain|canvas|moodle|blackboard] [--assignment A]
    python -m course_tools.grading status    [ASSIGNMENT] [--problems] [--json]
    python -m course_tools.grading summary   ASSIGNMENT [--json]

Run it in a course directory (one holding nbgrader_config.py), or pass --course.
The gradebook is the course's (`CourseDirectory.db_url`: SQLite by default,
PostgreSQL with --db-url postgresql://...). release, collect and feedback run
nbgrader's own commands; autograde is course_tools.grading.executor (parallel,
sandboxed, scored outside the kernel) and ends with the summary (per-part failures, common
messages, identical code, stale feedback); export writes the plain CSV (a row per student, a
column per assignment, a total) or an LMS's own import file.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import statistics
import sys
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from ..paths import env_with_venv
from . import alembic_head
from .course import Course, NbgraderError
from .executor import RunOptions, autograde
from .feedback_unreadable import write_unreadable_pages
from .sandbox import GiB, unavailable_reason
from .status import StatusStore, format_table


def invoked_as(args: argparse.Namespace | None = None) -> str:
    """This tool's command line as the instructor ran it, for the hints it prints.

    `python3 <repo>/dev.py grade` when dev.py started it (its parent process), else this Python's
    full path with `-m course_tools.grading` (works outside the venv too). COURSE_TOOLS_GRADE_PROG
    overrides it. The subcommand follows; its options, `course_option(args)` among them, after that.
    """
    prog = os.environ.get("COURSE_TOOLS_GRADE_PROG", "")
    if not prog:
        try:
            parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            parent = []
        for i, word in enumerate(parent):
            if word.endswith("dev.py") and parent[i + 1 : i + 2] == ["grade"]:
                prog = f"python3 {shlex.quote(str(Path(word).resolve()))} grade"
        prog = prog or f"{shlex.quote(sys.executable)} -m course_tools.grading"
    return prog


def course_option(args: argparse.Namespace) -> str:
    """' --course DIR' when the command was given one (to end a hint's command line), else ''."""
    course = getattr(args, "course", ".")
    return "" if course == "." else f" --course {shlex.quote(str(Path(course).resolve()))}"


def check_course_dir(root: Path) -> None:
    """Exit, having done nothing, unless `root` is a course directory (holds nbgrader_config.py)."""
    if not root.is_dir():
        sys.exit(f"no such directory: {root} (--course)")
    if (root / "nbgrader_config.py").is_file():
        return
    parent = next((p for p in root.parents if (p / "nbgrader_config.py").is_file()), None)
    todo = (
        f"The course directory is {parent}: run there, or pass --course {parent}."
        if parent
        else "Run it in a course directory (one holding nbgrader_config.py), or pass --course DIR."
    )
    sys.exit(f"{root} is not a course directory (it has no nbgrader_config.py), so nothing was done. {todo}")


def check_released(course: Course, assignment: str, args: argparse.Namespace) -> None:
    """Exit, having done nothing, unless `assignment` was released (in the gradebook or release folder)."""
    release = course.root / course.release_directory
    folders = [p.name for p in release.iterdir() if p.is_dir()] if release.is_dir() else []
    known = sorted(set(released_assignments(course)) | set(folders))
    if assignment in known:
        return
    close = difflib.get_close_matches(assignment, known, n=1)
    source = course.root / course.source_directory
    todo = (
        f"Did you mean {close[0]}?"
        if close
        else f"Release it first: {invoked_as(args)} release {assignment}{course_option(args)}"
        if (source / assignment).is_dir()
        else f"There is no {assignment} in {source} either."
    )
    sys.exit(
        f"{assignment} was never released in {course.root}, so nothing was done. {todo} "
        f"(released: {', '.join(known) or 'none'})"
    )


def load_course(args: argparse.Namespace) -> Course:
    """Read the course directory's nbgrader_config.py; command-line options win.

    Every command starts here, so every command refuses, before it creates or deletes anything, to
    run outside a course directory (a subfolder of one too: nbgrader would make a stray gradebook
    there) or, all but `release`, on an assignment that was never released.
    """
    root = Path(args.course).resolve()
    check_course_dir(root)
    course = Course.load(root, db_url=args.db_url, course_id=args.course_id, exchange=args.exchange)
    assignment = getattr(args, "assignment", None)
    if assignment and args.command != "release":
        check_released(course, assignment, args)
    return course


def nbgrader(
    course: Course,
    *args: str,
    progress: str | None = None,
    total: int = 0,
    counts: str = "Converting notebook",
) -> str:
    """Run `nbgrader ARGS` in the course; a progress bar counts its output lines that contain `counts`.

    One kind of line per notebook (counting "Writing ... .html" as well counted feedback twice); at
    the end the bar's total is what was counted, so it never ends at "5 of 6" or "10 of 5".
    """
    with tqdm(total=total or None, desc=progress, unit="nb", disable=progress is None) as bar:

        def count(line: str) -> None:
            if counts in line:
                bar.update(1)

        try:
            out = course.run(*args, on_line=count)
        except NbgraderError as exc:
            sys.exit(str(exc)[-3000:])
        bar.total = bar.n
        bar.refresh()
        return out


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


def check_zip_args(zips: list[str], pattern: str | None) -> re.Pattern | None:
    """Fail with a clear message, before anything is copied, on a missing zip or a bad pattern."""
    for z in zips:
        if not Path(z).is_file():
            sys.exit(f"no such file: {z}")
        if not zipfile.is_zipfile(z):
            sys.exit(f"not a zip archive: {z}")
    if pattern is None:
        return None
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        sys.exit(f"--pattern is not a valid regular expression: {exc}")
    missing = {"student_id", "file_id"} - set(regex.groupindex)
    if missing:
        sys.exit(f"--pattern needs the named groups {sorted(missing)}, e.g. (?P<student_id>...)")
    return regex


def assignment_notebooks(course: Course, assignment: str) -> list[str]:
    """The assignment's notebook file names: its release folder's, else the gradebook's."""
    names = sorted(p.name for p in (course.root / course.release_directory / assignment).glob("*.ipynb"))
    if names or not released_assignments(course):
        return names
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as gb:
        return sorted(f"{nb.name}.ipynb" for nb in gb.find_assignment(assignment).notebooks)


def _print_list(title: str, lines: list[str], limit: int = 30) -> None:
    if lines:
        print(title)
        print(
            "  "
            + "\n  ".join(lines[:limit])
            + (f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else "")
        )


def collect_zip(course: Course, a: str, args: argparse.Namespace) -> list[str]:
    """`collect --zip`: read and check the whole download, then unpack it (course_tools.grading.lms_collect)."""
    from nbgrader.api import Gradebook, MissingEntry

    from . import lms_collect

    if args.pattern and args.lms:
        sys.exit("give --lms or --pattern, not both (--pattern is for a layout none of the LMSs uses)")
    regex = check_zip_args(args.zip, args.pattern)
    lms = args.lms or "canvas"
    notebooks = assignment_notebooks(course, a)
    if not notebooks:
        sys.exit(f"{a} has no notebooks in {course.root / course.release_directory / a}: release it again")
    duedate = None
    if released_assignments(course):
        with Gradebook(course.db_url, course.course_id) as gb:
            try:
                duedate = gb.find_assignment(a).duedate
            except MissingEntry:
                pass
    zips = [Path(z) for z in args.zip]
    try:
        result = lms_collect.plan(lms, zips, notebooks, pattern=regex, duedate=duedate)
    except lms_collect.CollectError as exc:
        sys.exit(str(exc))
    collected = lms_collect.apply(result, course.root, course.root / course.submitted_directory, a)
    with Gradebook(course.db_url, course.course_id) as gb:  # names, so that exports carry them
        for sid in collected:
            e = result.entries[sid]
            try:
                st = gb.find_student(sid)
                if st.first_name or st.last_name or not e.name:
                    continue
            except MissingEntry:
                pass
            first, last = ("", e.name) if e.lms == "canvas" else lms_collect.split_name(e.name)
            gb.update_or_create_student(sid, first_name=first or None, last_name=last or None)
    layout = f"--pattern {args.pattern}" if regex else f"{lms}'s layout"
    print(
        f"collected {len(collected)} submission(s) of {a} from {', '.join(z.name for z in zips)} ({layout}):"
    )
    for e in (result.entries[s] for s in collected):
        print(f"  {e.student_id:<14} {e.name or '':<24} {'late' if e.late else '':<5} {', '.join(e.files)}")
    by_reason: dict[str, list[str]] = {}
    for sid, e in result.entries.items():
        for item in e.ignored:
            member, _, reason = item.rpartition(": ")
            by_reason.setdefault(reason, []).append(f"{sid} ({e.name or e.lms_user_id}): {member}")
    for reason, lines in sorted(by_reason.items()):
        _print_list(f"ignored, {reason}:", lines)
    _print_list(
        f"{len(result.unmatched)} file(s) did not match {layout} and were not collected:", result.unmatched
    )
    for note in result.notes:
        print(note)
    return collected


def cmd_collect(args: argparse.Namespace) -> int:
    course = load_course(args)
    a = args.assignment
    if not args.zip:
        if args.pattern or args.lms:
            sys.exit(
                "--lms and --pattern describe a --zip download; without --zip collect reads the exchange"
            )
        nbgrader(course, "collect", a, "--update")
        new = ""
    else:
        new = f" ({len(collect_zip(course, a, args))} from this download)"
    submitted = course.root / course.submitted_directory
    students = sorted(p.name for p in submitted.iterdir() if (p / a).is_dir()) if submitted.is_dir() else []
    print(f"{len(students)} submission(s) of {a} in {submitted}{new}")
    return 0


def released_assignments(course: Course) -> list[str]:
    """The gradebook's assignments (none, and no gradebook file created, when there is no SQLite file)."""
    from nbgrader.api import Gradebook

    if course.db_url.startswith("sqlite:///") and not Path(course.db_url[len("sqlite:///") :]).exists():
        return []
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
    beyond = statistics.median(p - o for p, o in zip(per, own, strict=True)) if per else 0.0
    mean = (
        f", {sum(per) / len(per):.1f} s per submission ({sum(own) / len(own):.1f} s of it running the"
        f" notebook; median {beyond:.2f} s beyond it)"
        if per
        else ""
    )
    print(f"{args.assignment}: {done}; {summary.skipped} unchanged skipped; {summary.seconds:.0f} s{mean}")
    if summary.workers_lost:
        print(f"{summary.workers_lost} submission(s) were graded again after their worker was lost")
    print_summary(course, args)
    print(f"details: {invoked_as(args)} status {args.assignment} --problems{course_option(args)}")
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
    if args.student:  # nbgrader's --student takes one id: one run per student asked for
        for student in args.student:
            nbgrader(course, "generate_feedback", a, "--force", f"--student={student}")
    else:
        nbgrader(course, "generate_feedback", a, "--force", progress=f"feedback {a}", total=len(students))
    unreadable = write_unreadable_pages(course, a, args.student)
    if unreadable:
        print(f"{len(unreadable)} page(s) for submissions that could not be graded (why, and what to do)")
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
    from .export import ExportError, export

    course = load_course(args)
    try:
        result = export(
            course,
            fmt=args.format,
            assignment=args.assignment,
            to=Path(args.to) if args.to else None,
            lms_id=args.lms_id or "",
            lms_name=args.lms_name or "",
        )
    except ExportError as exc:
        sys.exit(str(exc))
    print("\n".join(result.lines))
    return 0


def print_summary(course: Course, args: argparse.Namespace) -> None:
    """The class summary at the end of autograde; grading is done, so a failure here only warns."""
    from .summary import format_report, summarise

    try:
        print("\n" + format_report(summarise(course, args.assignment), prog=invoked_as(args)) + "\n")
    except Exception as exc:  # never turn a finished grading run into a crash
        print(
            f"(no summary: {type(exc).__name__}: {exc}; try `{invoked_as(args)} summary {args.assignment}`)"
        )


def cmd_summary(args: argparse.Namespace) -> int:
    """What an instructor reads first: per-part results, failures, copies, what is stale."""
    from .summary import format_report, summarise

    course = load_course(args)
    report = summarise(course, args.assignment)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(format_report(report, prog=invoked_as(args)))
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
    from .summary import stale_warnings

    for a in names:
        print(format_table(a, store.entries(a), only_problems=args.problems))
        for line in stale_warnings(course, a, prog=invoked_as(args)):
            print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_tools.grading",
        description="Grade a class with nbgrader: release, collect, autograde (parallel, sandboxed), "
        "feedback, export, status, summary.",
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
        "--zip",
        nargs="+",
        metavar="FILE",
        help='LMS download(s) ("download all submissions"): checked whole, then unpacked into submitted/',
    )
    p.add_argument(
        "--lms",
        choices=("canvas", "moodle", "blackboard"),
        help="the LMS the zip comes from, which names its files its own way (default canvas)",
    )
    p.add_argument(
        "--pattern",
        help="instead of --lms, for another layout: regex on '<zip name without .zip>/<path in the zip>' "
        "with named groups student_id and file_id (the notebook's name without .ipynb)",
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

    p = sub.add_parser(
        "export",
        parents=[common],
        help="grades as a CSV, or in the file Canvas, Moodle or Blackboard imports",
    )
    p.add_argument(
        "--to", help="output file (default grades.csv; for an LMS format <assignment>-<format>.csv)"
    )
    p.add_argument(
        "--format",
        choices=("plain", "canvas", "moodle", "blackboard"),
        default="plain",
        help="plain: a row per student, a column per assignment (default); canvas: gradebook import CSV; "
        "moodle: the assignment's offline grading worksheet; blackboard: Grade Center upload. "
        "The LMS formats need --assignment and an LMS download collected with collect --zip",
    )
    p.add_argument("--assignment", help="only this assignment (required by the LMS formats)")
    p.add_argument(
        "--lms-id",
        help="the LMS's id of the assignment: Canvas's assignment id (the number in its address), "
        "Blackboard's Grade Center Column ID; Moodle needs none",
    )
    p.add_argument("--lms-name", help="the assignment's name in the LMS (default: the assignment's name)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("status", parents=[common], help="what is graded, what failed and why")
    p.add_argument("assignment", nargs="?")
    p.add_argument("--problems", action="store_true", help="only submissions with issues or review notes")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "summary",
        parents=[common],
        help="per-part results, common failures, identical answers, stale feedback (autograde prints it too)",
    )
    p.add_argument("assignment")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ["PATH"] = env_with_venv()["PATH"]
    alembic_head.install()  # autograde's template gradebook: no `alembic heads` subprocess
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
