"""Every grading command README.md and the instructor guide (book/instructors.md) show, run or mapped.

The docs' ```bash blocks that hold a grading command (`dev.py grade`, `course_tools.grading`,
`dask `) are read from the files themselves:

- the walk-throughs (the blocks that set REPO=) run as written, each as one `bash -euo pipefail`
  script, README's and then the guide's in one course: HOME is a temporary folder holding
  ~/Downloads/submissions.zip, a Canvas download of three students (tests/lms_fixtures.py): 4211
  the reference answers, 4377 a wrong cross_entropy (and a notes.txt), 5120 late with the blank
  notebook under another name. The test checks what they promise: the grades, the feedback pages,
  the summary, the export; the second walk-through grades nothing again;
- every other documented command line runs as written in the course they leave, after the
  files it names are made (export.zip for the --pattern example, the Moodle and Blackboard
  downloads the LMS exports read), each with a check of its own;
- the lines that need machines this test cannot have (a PostgreSQL server at dbhost, a Dask
  scheduler at HOST) are mapped: with the host replaced they must be what tests/test_postgres.py
  and tests/test_dask_grading.py run (flags parsed by the tool's parser, Dask's by their names).

A documented grading command that is neither run nor mapped fails the test, and so does a
check whose command left the docs.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import re
import shlex
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from lms_fixtures import FixtureSubmission, build_zip
from robustness.harness import ASSIGNMENT, REPO

from course_tools.grading.cli import build_parser

TESTS = Path(__file__).resolve().parent
DOCS = (REPO / "README.md", REPO / "book" / "instructors.md")
GRADING = re.compile(r"dev\.py grade|course_tools\.grading|\bdask ")
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
GUIDE_REPO = "/path/to/the/repository"  # the guide's placeholder for a checkout
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
# The Canvas download of the walk-throughs: (name, LMS user id, answers, late, notebook name).
RIGHT, WRONG, BLANK = "4211", "4377", "5120"


# ---------------------------------------------------------------- the docs' commands


@dataclass(frozen=True)
class Line:
    doc: str  # README.md or book/instructors.md
    text: str  # the command line as documented (continuations joined)

    def __str__(self) -> str:
        return f"{self.doc}: {self.text}"


def bash_blocks(path: Path) -> list[str]:
    return BASH_BLOCK.findall(path.read_text())


def command_lines(block: str) -> list[str]:
    """The block's command lines: continuations joined, blank and comment-only lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def documented() -> tuple[list[tuple[Path, str]], list[Line]]:
    """(walk-through blocks, every grading command line outside them), from README and the guide."""
    walks: list[tuple[Path, str]] = []
    others: list[Line] = []
    for path in DOCS:
        for block in bash_blocks(path):
            if not GRADING.search(block):
                continue
            lines = command_lines(block)
            if any(ln.startswith("REPO=") for ln in lines):
                walks.append((path, block))
            else:
                rel = str(path.relative_to(REPO))
                others += [Line(rel, ln) for ln in lines if GRADING.search(ln)]
    return walks, others


def tool_argv(text: str) -> list[str] | None:
    """The grading tool's arguments in a documented line (after `dev.py grade` or `-m course_tools.grading`)."""
    words = shlex.split(text.split(" #")[0])
    for i, w in enumerate(words):
        if w.endswith("dev.py") and words[i + 1 : i + 2] == ["grade"]:
            return words[i + 2 :]
        if w == "course_tools.grading" and i and words[i - 1] == "-m":
            return words[i + 1 :]
    return None


def dask_argv(text: str) -> list[str] | None:
    words = shlex.split(text.split(" #")[0])
    return words[1:] if words and Path(words[0]).name == "dask" else None


def subparser(sub: str) -> argparse.ArgumentParser:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[sub]


def set_options(argv: list[str]) -> dict[str, object]:
    """{dest: value} of what a grading command line sets: positionals, and options off their default."""
    parser = build_parser()
    ns = vars(parser.parse_args(argv))
    out: dict[str, object] = {"command": ns["command"]}
    for action in subparser(ns["command"])._actions:
        if action.dest in ("help",):
            continue
        if not action.option_strings or ns[action.dest] != action.default:
            out[action.dest] = ns[action.dest]
    return out


def kind(line: Line) -> str:
    """How the test covers a line outside the walk-throughs: 'dask', 'scheduler', 'postgres' or 'run'."""
    if dask_argv(line.text) is not None:
        return "dask"
    argv = tool_argv(line.text)
    assert argv is not None, f"{line}: neither the grading tool nor dask"
    opts = set_options(argv)
    if opts.get("scheduler"):
        return "scheduler"
    if str(opts.get("db_url", "")).startswith("postgresql"):
        return "postgres"
    return "run"


# ---------------------------------------------------------------- fast: the docs' inventory and the maps


def test_the_docs_have_both_walk_throughs_and_every_line_has_a_check():
    walks, others = documented()
    assert [p.name for p, _ in walks] == ["README.md", "instructors.md"], walks
    readme, guide = (command_lines(b)[0] for _, b in walks)
    assert readme.split()[0] == "REPO=$PWD" and guide.split()[0] == f"REPO={GUIDE_REPO}", (readme, guide)
    for _, block in walks:  # each walk-through's grading commands parse with the tool's own parser
        for ln in command_lines(block):
            if GRADING.search(ln):
                argv = tool_argv(ln)
                assert argv is not None, ln
                if argv != ["--help"]:
                    set_options(argv)
    unchecked = [str(ln) for ln in others if kind(ln) == "run" and check_for(ln) is None]
    assert not unchecked, "documented grading commands that no test runs:\n" + "\n".join(unchecked)
    used = {id(check_for(ln)) for ln in others if kind(ln) == "run"}
    assert used == {id(c) for c in CHECKS}, "a check whose command is no longer in the docs"
    kinds = sorted(kind(ln) for ln in others)
    assert {"dask", "scheduler", "postgres", "run"} <= set(kinds), kinds


def _flags(argv: list[str]) -> tuple[list[str], dict[str, str | bool]]:
    """Positionals and {--option: value or True} of a Dask command line."""
    pos: list[str] = []
    opts: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        w = argv[i]
        if w.startswith("--"):
            if "=" in w:
                k, v = w.split("=", 1)
                opts[k] = v
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                opts[w] = argv[i + 1]
                i += 1
            else:
                opts[w] = True
        else:
            pos.append(w)
        i += 1
    return pos, opts


class _Captured(Exception):
    pass


def captured_cluster(monkeypatch, tmp_path) -> tuple[str, dict[str, list[str]]]:
    """The address and the `dask` command lines tests/robustness/cluster.py starts (nothing is started)."""
    import types

    from robustness import cluster

    started: dict[str, list[str]] = {}

    def start(self, *args: str, log: str):
        assert Path(cluster.DASK).name == "dask"
        started.setdefault(args[0], list(args))
        started["address"] = [self.address]

    def client(*a, **k):
        raise _Captured

    monkeypatch.setattr(cluster.Cluster, "start", start)
    monkeypatch.setitem(sys.modules, "distributed", types.SimpleNamespace(Client=client))
    with pytest.raises(_Captured), cluster.dask_cluster(tmp_path):
        pass
    return started.pop("address")[0], started


def scheduler_autograde_argv(address: str) -> list[str]:
    """The `autograde --scheduler` call of tests/test_dask_grading.py, its arguments evaluated."""
    source = (TESTS / "test_dask_grading.py").read_text()
    tree = ast.parse(source)
    constants = {
        t.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name) and isinstance(node.value, (ast.Constant, ast.Tuple))
    }
    constants["ASSIGNMENT"] = ASSIGNMENT
    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "instructor"):
            continue
        argv: list[str] = []
        for arg in node.args[1:]:  # the first is the course
            if isinstance(arg, ast.Constant):
                argv.append(arg.value)
            elif isinstance(arg, ast.Name):
                argv.append(constants[arg.id])
            elif isinstance(arg, ast.Starred):
                argv += list(constants[arg.value.id])
            elif isinstance(arg, ast.Attribute) and ast.unparse(arg) == "cluster.address":
                argv.append(address)
            else:
                raise AssertionError(f"test_dask_grading.py: cannot read {ast.unparse(arg)}")
        if "--scheduler" in argv:
            calls.append(argv)
    assert len(calls) == 1, calls
    return calls[0]


def test_the_dask_recipe_is_what_test_dask_grading_runs(monkeypatch, tmp_path):
    _, others = documented()
    address, started = captured_cluster(monkeypatch, tmp_path)
    host, port = address.removeprefix("tcp://").rsplit(":", 1)

    def substituted(word: str) -> str:  # the docs' HOST and default port, as the test has them
        return word.replace("HOST", host).replace("8786", port)

    dask_lines = [ln for ln in others if kind(ln) == "dask"]
    assert sorted(dask_argv(ln.text)[0] for ln in dask_lines) == ["scheduler", "worker"], dask_lines
    for ln in dask_lines:
        assert ln.text.startswith("$REPO/.venv/bin/dask "), ln
        doc_pos, doc_opts = _flags([substituted(w) for w in dask_argv(ln.text)])
        test_pos, test_opts = _flags(started[doc_pos[0]])
        assert doc_pos == test_pos, (ln, started[doc_pos[0]])
        for flag, value in doc_opts.items():
            assert flag in test_opts, f"{ln}: the test does not pass {flag}"
            if value == "N":  # the docs' "number of cores"
                assert str(test_opts[flag]).isdigit(), (ln, test_opts)
            else:
                assert test_opts[flag] == value, f"{ln}: {flag} {value} here, {test_opts[flag]} in the test"

    (line,) = [ln for ln in others if kind(ln) == "scheduler"]
    assert line.text.startswith("$REPO/.venv/bin/python -m course_tools.grading "), line
    doc = set_options([substituted(w) for w in tool_argv(line.text)])
    run = set_options(scheduler_autograde_argv(address))
    assert {k: run.get(k) for k in doc} == doc, (line, run)


def test_the_postgresql_line_is_what_test_postgres_runs(monkeypatch, tmp_path):
    import inspect

    import test_postgres
    from robustness import harness, postgres
    from sqlalchemy.engine import make_url

    source = inspect.getsource(postgres.postgres_server)  # the URL the test's server has
    assert 'yield f"postgresql://grader@/{database}?host={sock}"' in source
    assert inspect.signature(postgres.postgres_server).parameters["database"].default == "gradebook"
    test_url = "postgresql://grader@/gradebook?host=/tmp/pg-gradebook-x/sock"

    ran: list[list[str]] = []

    def instructor(course, *args, **kwargs):
        ran.append(harness.instructor_command(course, *args)[0][3:])  # after python -m course_tools.grading
        raise _Captured

    monkeypatch.setattr(harness, "instructor", instructor)
    monkeypatch.setattr(test_postgres, "ensure_bubblewrap", lambda: "")
    with pytest.raises(_Captured):
        test_postgres.test_two_machines_grade_into_one_postgresql_gradebook(test_url, tmp_path)
    run = set_options(ran[0])

    _, others = documented()
    (line,) = [ln for ln in others if kind(ln) == "postgres"]
    doc = set_options(tool_argv(line.text))
    doc_url, run_url = make_url(doc.pop("db_url")), make_url(run["db_url"])
    replaced = doc_url._replace(host=None, query=run_url.query)  # the docs' URL, the test's host
    assert replaced.render_as_string(False) == run_url.render_as_string(False), (line, run["db_url"])
    assert {k: run.get(k) for k in doc} == doc, (line, run)


# ---------------------------------------------------------------- slow: the walk-throughs and the other lines


def class_notebooks() -> dict[str, nbformat.NotebookNode]:
    from assignments.ps01_mistakes import MISTAKES

    from course_tools.grading.submissions import fill, solution_answers

    release = nbformat.read(REPO / "exercises" / ASSIGNMENT / NOTEBOOK, as_version=4)
    answers = solution_answers(nbformat.read(REPO / "solutions" / ASSIGNMENT / NOTEBOOK, as_version=4))
    wrong = next(m for m in MISTAKES if m.part == "cross_entropy")
    return {
        RIGHT: fill(release, answers),
        WRONG: fill(release, {**answers, wrong.part: wrong.source}),
        BLANK: release,
    }


NAMES = {RIGHT: "Wei Zhang", WRONG: "Wei Zhang", BLANK: "Pat OBrien"}


def download(lms: str, dest: Path, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    """The class as `lms` hands it out: the same notebooks, the same user ids (the nbgrader ids)."""
    subs = [
        FixtureSubmission(
            NAMES[sid],
            sid,
            nb,
            notebook_name="my_solution.ipynb" if sid == BLANK else NOTEBOOK,
            late=sid == BLANK,
            extra_files={"notes.txt": "see the plot"} if sid == WRONG else {},
        )
        for sid, nb in notebooks.items()
    ]
    return build_zip(lms, dest, subs)


def _children_cpu() -> float:
    import resource

    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


# Each command and when it started, on stderr (shown when a step fails); the script itself is unchanged.
TRACE = "PS4='+ [${EPOCHREALTIME}] '; set -x\n"


@dataclass
class Course:
    """The walk-throughs' course: HOME, ~/grading and how to run a documented line in it."""

    home: Path
    notebooks: dict[str, nbformat.NotebookNode]

    @property
    def root(self) -> Path:
        return self.home / "grading"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("COURSE_TOOLS_GRADE_PROG", None)
        env["HOME"] = str(self.home)
        env["REPO"] = str(REPO)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # python3: 3.11
        return env

    def bash(self, script: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
        t0, cpu0 = time.monotonic(), _children_cpu()
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", TRACE + script],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        wall, cpu = time.monotonic() - t0, _children_cpu() - cpu0
        print(f"{wall:5.1f} s ({cpu:5.1f} s CPU)  {script.strip().splitlines()[-1][:100]}")
        print(*(f"    {ln[:150]}" for ln in proc.stderr.splitlines() if ln.startswith("+ [")), sep="\n")
        assert proc.returncode == 0, (
            f"{script}\nexit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
        return proc

    def feedback_pages(self) -> dict[str, float]:
        pages = self.root.glob(f"feedback/*/{ASSIGNMENT}/{NOTEBOOK.replace('.ipynb', '.html')}")
        return {p.parts[-3]: p.stat().st_mtime_ns for p in pages}

    def collect(self, lms: str) -> None:
        """Collect the class from `lms`'s download (the same notebooks: nothing to grade again)."""
        from course_tools.grading.cli import main

        z = download(lms, self.home / f"{lms}.zip", self.notebooks)
        assert main(["collect", ASSIGNMENT, "--zip", str(z), "--lms", lms, f"--course={self.root}"]) in (
            0,
            None,
        )


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


FULL = 20.0
EXPECTED = {RIGHT: FULL, WRONG: FULL - 2, BLANK: 0.0}  # the wrong cross_entropy costs its 2 points


def check_plain_grades(path: Path) -> None:
    rows = {r["student_id"]: r for r in csv.DictReader(open(path, newline=""))}
    assert set(rows) == set(EXPECTED), rows
    for sid, score in EXPECTED.items():
        assert float(rows[sid][ASSIGNMENT]) == float(rows[sid]["total"]) == score, rows[sid]
        assert rows[sid][f"{ASSIGNMENT} state"] == "graded", rows[sid]
        assert rows[sid][f"{ASSIGNMENT} lms_user_id"] == sid
    assert rows[BLANK][f"{ASSIGNMENT} late"] == "yes" and rows[RIGHT][f"{ASSIGNMENT} late"] == "no"
    assert rows[RIGHT]["last_name"] == "zhangwei"  # Canvas's names: its sortable name, in one word


def check_summary(out: str, graded: int = 3) -> None:
    assert f"== {ASSIGNMENT}: summary of {graded} graded submission(s)" in out, out
    assert "per part (graded cell)" in out and "score distribution" in out, out
    assert re.search(r"test_cross_entropy\s+\S+ / 2\s+67% \(2/3\)", out), out  # the wrong one and the blank


# -- what each documented line outside the walk-throughs must do: prepare(course, opts), check(...)


@dataclass
class Check:
    matches: Callable[[dict], bool]
    check: Callable[[Course, dict, subprocess.CompletedProcess], None]
    prepare: Callable[[Course, dict], None] = lambda course, opts: None


def _prepare_pattern_zip(course: Course, opts: dict) -> None:
    (name,) = opts["zip"]
    path = course.root / name
    member = f"{RIGHT}/{NOTEBOOK}"
    assert re.match(opts["pattern"], f"{path.stem}/{member}"), "the documented pattern and the test's layout"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, nbformat.writes(course.notebooks[RIGHT]))
        z.writestr(f"{WRONG}/plot.png", b"png")  # matches nothing: listed, not collected


def _check_pattern(course: Course, opts: dict, proc: subprocess.CompletedProcess) -> None:
    (name,) = opts["zip"]
    assert f"collected 1 submission(s) of {ASSIGNMENT} from {name}" in proc.stdout, proc.stdout
    assert f"{name}:{WRONG}/plot.png" in proc.stdout, proc.stdout  # listed, never dropped silently
    got = nbformat.read(course.root / "submitted" / RIGHT / ASSIGNMENT / NOTEBOOK, as_version=4)
    assert nbformat.writes(got) == nbformat.writes(course.notebooks[RIGHT])


def _prepare_export(course: Course, opts: dict) -> None:
    course.collect(opts["format"])  # the user ids an LMS format needs come from that LMS's download


def _check_export(course: Course, opts: dict, proc: subprocess.CompletedProcess) -> None:
    fmt, to = opts["format"], course.root / opts["to"]
    rows = read_csv(to)
    assert f"wrote {opts['to']}" in proc.stdout, proc.stdout
    lms_id = opts.get("lms_id")
    if fmt == "canvas":
        column = f"{ASSIGNMENT} ({lms_id})" if lms_id else ASSIGNMENT  # Canvas matches an id, else a title
        assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column], rows[0]
        assert rows[1][0].strip() == "Points Possible" and float(rows[1][-1]) == FULL
        got = {r[1]: float(r[-1]) for r in rows[2:]}
    elif fmt == "blackboard":
        assert rows[0][-1] == f"{ASSIGNMENT} [Total Pts: 20 Score] |{lms_id}", rows[0]
        got = {r[2]: float(r[-1]) for r in rows[1:]}
    else:
        assert rows[0][:5] == ["Identifier", "Full name", "Email address", "Status", "Grade"], rows[0]
        got = {r[0].removeprefix("Participant "): float(r[4]) for r in rows[1:]}
    assert got == EXPECTED, rows
    if fmt != "moodle":  # the late flag and the state, where the LMS does not read them
        states = {r["student_id"]: r for r in csv.DictReader(open(to.with_name(f"{to.stem}-states.csv")))}
        assert all(states[s]["state"] == "graded" for s in EXPECTED), states
        assert states[BLANK]["late"] == ("yes" if fmt == "canvas" else "no"), (
            states
        )  # Blackboard: by the due date


def _check_regrade(course: Course, opts: dict, proc: subprocess.CompletedProcess) -> None:
    (sid,) = opts["student"]
    assert opts["force"] and f"{ASSIGNMENT}: 1 graded;" in proc.stdout, proc.stdout
    assert re.search(rf"feedback page\(s\) older than the grade: {sid}\b", proc.stdout), proc.stdout
    assert f"feedback {ASSIGNMENT} --student {sid}" in proc.stdout, proc.stdout


def _prepare_feedback(course: Course, opts: dict) -> None:
    course.pages_before = course.feedback_pages()


def _check_feedback_one(course: Course, opts: dict, proc: subprocess.CompletedProcess) -> None:
    from course_tools.grading.summary import summarise

    (sid,) = opts["student"]
    after = course.feedback_pages()
    changed = {s for s in after if after[s] != course.pages_before.get(s)}
    assert changed == {sid}, (course.pages_before, after)
    assert sid not in summarise(load(course), ASSIGNMENT).stale.feedback


def load(course: Course):
    from course_tools.grading.course import Course as GradingCourse

    return GradingCourse.load(course.root)


CHECKS = [
    Check(lambda o: o["command"] == "collect" and "pattern" in o, _check_pattern, _prepare_pattern_zip),
    Check(
        lambda o: o["command"] == "export" and o.get("format") in ("canvas", "moodle", "blackboard"),
        _check_export,
        _prepare_export,
    ),
    Check(lambda o: o["command"] == "autograde" and "student" in o, _check_regrade),
    Check(lambda o: o["command"] == "feedback" and "student" in o, _check_feedback_one, _prepare_feedback),
]


def check_for(line: Line) -> Check | None:
    opts = set_options(tool_argv(line.text))
    found = [c for c in CHECKS if c.matches(opts)]
    assert len(found) <= 1, f"{line}: more than one check"
    return found[0] if found else None


@pytest.mark.slow
def test_the_walk_throughs_and_every_documented_command_run_as_written(tmp_path):
    from course_tools.grading.sandbox import unavailable_reason

    why = unavailable_reason()
    if why:
        pytest.fail(f"the grading sandbox cannot run here: {why}")
    t_start, cpu_start = time.monotonic(), _children_cpu()
    home = tmp_path / "home"
    (home / "Downloads").mkdir(parents=True)
    course = Course(home, class_notebooks())
    download("canvas", home / "Downloads" / "submissions.zip", course.notebooks)
    (_, readme), (_, guide) = documented()[0]

    # README's walk-through, from the repository, as written.
    out = course.bash(readme, cwd=REPO).stdout
    assert f"{ASSIGNMENT}: 3 graded;" in out, out
    check_summary(out)
    assert "3 submission(s)" in out, out
    assert set(course.feedback_pages()) == set(EXPECTED), list(course.root.rglob("*.html"))
    for line in command_lines(readme):  # what its export line wrote
        argv = tool_argv(line)
        if argv and argv[0] == "export":
            opts = set_options(argv)
            if opts.get("format", "plain") == "plain":
                check_plain_grades(course.root / opts.get("to", "grades.csv"))
            else:
                _check_export(course, opts, subprocess.CompletedProcess([], 0, out, ""))

    # The guide's, in the same course: nothing changed, so nothing is graded again.
    pages = course.feedback_pages()
    script = guide.replace(f"REPO={GUIDE_REPO}", f"REPO={shlex.quote(str(REPO))}", 1)
    out = course.bash(script, cwd=tmp_path).stdout
    assert f"{ASSIGNMENT}: nothing to do; 3 unchanged skipped" in out, out
    check_summary(out)
    assert "nothing stale" in out or "older than the grade" not in out, out
    assert set(course.feedback_pages()) == set(pages)
    check_plain_grades(course.root / "grades.csv")
    from course_tools.grading.status import StatusStore

    assert {s: e.state for s, e in StatusStore(course.root).entries(ASSIGNMENT).items()} == dict.fromkeys(
        EXPECTED, "graded"
    )

    # Every other documented line, in the docs' order, in that course.
    _, others = documented()
    ran: list[str] = []
    for line in others:
        if kind(line) != "run":
            continue  # mapped: test_the_dask_recipe_..., test_the_postgresql_line_...
        check = check_for(line)
        assert check is not None, f"{line}: no check"
        opts = set_options(tool_argv(line.text))
        check.prepare(course, opts)
        proc = course.bash(line.text, cwd=course.root)
        check.check(course, opts, proc)
        ran.append(str(line))
    assert ran == [str(ln) for ln in others if kind(ln) == "run"]
    print(
        f"README's and the guide's walk-throughs and {len(ran)} more lines: "
        f"{time.monotonic() - t_start:.0f} s, {_children_cpu() - cpu_start:.0f} s CPU in subprocesses"
    )
