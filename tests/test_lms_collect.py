"""`collect --zip` on each LMS's own download layout, and every command's refusal of wrong inputs.

Real zips (tests/lms_fixtures.py, in each LMS's layout), real nbgrader gradebook, the real command
line (in process: `main([...])`, the same code path without a Python start each). No autograde here:
the course is the repository's released ps01 copied in, with a gradebook made once per session.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from lms_fixtures import FixtureSubmission, build_zip

from course_tools.grading import lms_collect
from course_tools.grading.cli import build_parser, invoked_as, main, nbgrader
from course_tools.grading.course import Course
from course_tools.grading.lms_records import load_manifest
from course_tools.paths import env_with_venv

REPO = Path(__file__).resolve().parents[1]
A = "ps01_backprop"
NB = f"{A}.ipynb"
DUE = datetime(2026, 10, 5, 13, 30)  # the template gradebook's due date (Blackboard's late flag)


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    """A course with ps01 released (the repository's release copied in) and in the gradebook."""
    from alembic.script import ScriptDirectory
    from nbgrader.api import Gradebook
    from nbgrader.dbutil import ALEMBIC_DIR

    base = tmp_path_factory.mktemp("template")
    course = Course.create(base / "course", exchange=base / "exchange")
    shutil.copytree(REPO / "exercises" / A, course.root / "exercises" / A)
    (course.root / "solutions").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        # A new gradebook stamps its schema version, which nbgrader asks a fresh `alembic heads`
        # process for; read the same migration scripts in this process instead (seconds saved).
        head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
        mp.setattr("nbgrader.api.get_alembic_version", lambda: head)
        mp.setenv("PATH", env_with_venv()["PATH"])
        with Gradebook(course.db_url, course.course_id) as gb:
            gb.update_or_create_assignment(A, duedate=DUE)
    return course.root


@pytest.fixture
def course(template, tmp_path) -> Course:
    shutil.copytree(template, tmp_path / "course")
    return Course.load(tmp_path / "course")


@pytest.fixture(scope="session")
def release() -> nbformat.NotebookNode:
    return nbformat.read(REPO / "exercises" / A / NB, as_version=4)


def marked(nb: nbformat.NotebookNode, marker: str) -> nbformat.NotebookNode:
    """The notebook with a markdown cell `marker`, to tell which attempt was collected."""
    out = nbformat.from_dict(nb)
    out.cells.append(nbformat.v4.new_markdown_cell(marker))
    return out


def run(course_or_dir, *args: str, capsys=None) -> tuple[int, str]:
    """`python -m course_tools.grading ARGS --course DIR` in process: (exit code, stdout + message)."""
    root = course_or_dir.root if isinstance(course_or_dir, Course) else course_or_dir
    argv = [*args] + ([f"--course={root}"] if root is not None else [])
    try:
        code, message = main(argv), ""
    except SystemExit as exc:
        code, message = (exc.code if isinstance(exc.code, int) else 1), str(exc.code)
    out = capsys.readouterr().out if capsys else ""
    return code, out + message


def tree(root: Path) -> dict[str, str]:
    """Every file under root with a hash of its bytes (what "nothing changed" compares)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def submitted(course: Course, student: str) -> Path:
    return course.root / "submitted" / student / A / NB


def names_in_gradebook(course: Course) -> dict[str, tuple[str, str]]:
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as gb:
        return {s.id: (s.first_name or "", s.last_name or "") for s in gb.students}


# --- each LMS's layout ------------------------------------------------------------------------


def test_canvas_download(course, release, tmp_path, capsys):
    zip_ = build_zip(
        "canvas",
        tmp_path / "submissions.zip",
        [
            FixtureSubmission("Wei Zhang", "4211", marked(release, "second"), late=True, attempts=[release]),
            FixtureSubmission(
                "Wei Zhang",
                "4377",
                marked(release, "other Wei"),
                extra_files={"notes.txt": "n", "plot.png": b"\x89"},
            ),
            FixtureSubmission("Ana Lima", "5001", marked(release, "renamed"), notebook_name="my ps01.ipynb"),
        ],
    )
    code, out = run(course, "collect", A, "--zip", str(zip_), capsys=capsys)  # --lms canvas is the default
    assert code == 0, out
    assert "marked" not in out and "3 submission(s)" in out, out
    assert "second" in submitted(course, "4211").read_text()  # the re-upload (-1), Canvas's current file
    assert "other Wei" in submitted(course, "4377").read_text()  # same name, another student
    assert "renamed" in submitted(course, "5001").read_text()  # the only notebook, under another name
    assert "2 students are named 'zhangwei'" in out
    assert re.search(r"ignored, not a notebook:\n(  .*\n)*  4377 .*notes\.txt", out), out
    assert "plot.png" in out
    manifest = load_manifest(course.root, A)
    assert set(manifest) == {"4211", "4377", "5001"}
    assert manifest["4211"].late and not manifest["4377"].late
    assert (manifest["4211"].lms, manifest["4211"].lms_user_id, manifest["4211"].name) == (
        "canvas",
        "4211",
        "zhangwei",
    )
    assert sorted(i.split(": ")[1] for i in manifest["4377"].ignored) == ["not a notebook"] * 2
    assert names_in_gradebook(course)["4211"] == ("", "zhangwei")


@pytest.mark.parametrize("layout", ["", "moodle3", "moodle-flat"])
def test_moodle_download(course, release, tmp_path, capsys, layout):
    zip_ = build_zip(
        "moodle",
        tmp_path / "moodle.zip",
        [
            FixtureSubmission("Wei Zhang", "4211", marked(release, "first Wei")),
            FixtureSubmission(
                "Wei Zhang", "4377", marked(release, "second Wei"), extra_files={"notes.txt": "n"}
            ),
            FixtureSubmission("Ana Lima", "77", marked(release, "Ana")),
        ],
        layout=layout,
    )
    with zipfile.ZipFile(zip_, "a") as z:  # Moodle's online-text plugin beside the files
        z.writestr("Ana Lima_77_assignsubmission_onlinetext/onlinetext.html", "<p>see my notebook</p>")
    code, out = run(course, "collect", A, "--zip", str(zip_), "--lms", "moodle", capsys=capsys)
    assert code == 0, out
    assert "first Wei" in submitted(course, "4211").read_text()
    assert "second Wei" in submitted(course, "4377").read_text()
    assert "Ana" in submitted(course, "77").read_text()
    manifest = load_manifest(course.root, A)
    assert manifest["4377"].name == "Wei Zhang" and manifest["4377"].lms == "moodle"
    assert any("notes.txt: not a notebook" in i for i in manifest["4377"].ignored)
    assert any("onlinetext.html: not a notebook" in i for i in manifest["77"].ignored)
    assert "2 students are named 'Wei Zhang'" in out and "ignored, not a notebook" in out
    assert names_in_gradebook(course)["4211"] == ("Wei", "Zhang")


def test_blackboard_download(course, release, tmp_path, capsys):
    zip_ = build_zip(
        "blackboard",
        tmp_path / "gradebook.zip",
        [
            FixtureSubmission(
                "Wei Zhang",
                "wzhang",
                marked(release, "third attempt"),
                attempts=[marked(release, "first attempt"), marked(release, "second attempt")],
                submitted_at=datetime(2026, 10, 5, 14, 0),  # after DUE: late
            ),
            FixtureSubmission(
                "Wei Zhang", "wzhang2", marked(release, "on time"), submitted_at=datetime(2026, 10, 5, 9, 0)
            ),
        ],
    )
    code, out = run(course, "collect", A, "--zip", str(zip_), "--lms", "blackboard", capsys=capsys)
    assert code == 0, out
    assert "third attempt" in submitted(course, "wzhang").read_text()
    assert "on time" in submitted(course, "wzhang2").read_text()
    manifest = load_manifest(course.root, A)
    assert manifest["wzhang"].late and not manifest["wzhang2"].late
    assert manifest["wzhang"].name == "Wei Zhang" and manifest["wzhang"].submitted_at == "2026-10-05T14:00:00"
    assert sum("an earlier attempt" in i for i in manifest["wzhang"].ignored) == 2
    assert "ignored, an earlier attempt (kept the latest)" in out
    stamp = (course.root / "submitted" / "wzhang" / A / "timestamp.txt").read_text()
    assert stamp.startswith("2026-10-05 14:00:00")


def test_collect_again_replaces_only_the_students_of_the_new_download(course, release, tmp_path, capsys):
    first = build_zip(
        "canvas",
        tmp_path / "first.zip",
        [
            FixtureSubmission("Ana Lima", "1", marked(release, "v1")),
            FixtureSubmission("Bo Chen", "2", release),
        ],
    )
    assert run(course, "collect", A, "--zip", str(first), capsys=capsys)[0] == 0
    again = build_zip(
        "canvas", tmp_path / "again.zip", [FixtureSubmission("Ana Lima", "1", marked(release, "v2"))]
    )
    code, out = run(course, "collect", A, "--zip", str(again), capsys=capsys)
    assert code == 0 and "2 submission(s)" in out and "(1 from this download)" in out, out
    assert "v2" in submitted(course, "1").read_text() and submitted(course, "2").exists()
    assert set(load_manifest(course.root, A)) == {"1", "2"}


def test_pattern_for_another_layout(course, release, tmp_path, capsys):
    zip_ = tmp_path / "other.zip"
    with zipfile.ZipFile(zip_, "w") as z:
        z.writestr(f"carol/{NB}", nbformat.writes(release))
        z.writestr("carol/readme.md", "hi")
    pattern = r"other/(?P<student_id>[^/]+)/(?P<file_id>ps01_backprop)\.ipynb$"
    code, out = run(course, "collect", A, "--zip", str(zip_), "--pattern", pattern, capsys=capsys)
    assert code == 0, out
    assert submitted(course, "carol").exists()
    assert "1 file(s) did not match" in out and "carol/readme.md" in out


# --- refusing wrong inputs, changing nothing --------------------------------------------------


def test_a_download_that_matches_nothing_changes_nothing(course, release, tmp_path, capsys):
    canvas = build_zip("canvas", tmp_path / "canvas.zip", [FixtureSubmission("Ana Lima", "1", release)])
    assert run(course, "collect", A, "--zip", str(canvas), capsys=capsys)[0] == 0
    before = tree(course.root)
    moodle = build_zip("moodle", tmp_path / "moodle.zip", [FixtureSubmission("Bo Chen", "2", release)])
    code, out = run(course, "collect", A, "--zip", str(moodle), capsys=capsys)  # forgot --lms moodle
    assert code != 0 and "nothing changed" in out and "add --lms moodle" in out, out
    only_text = build_zip(
        "canvas",
        tmp_path / "pdfs.zip",
        [FixtureSubmission("Bo Chen", "2", None, extra_files={"a.pdf": b"%"})],
    )
    code, out = run(course, "collect", A, "--zip", str(only_text), capsys=capsys)
    assert code != 0 and "holds no notebook" in out, out
    assert tree(course.root) == before


COMMANDS = [
    ("release", A),
    ("collect", A),
    ("collect", A, "--zip", "download.zip"),
    ("autograde", A, "--no-sandbox"),
    ("feedback", A),
    ("export",),
    ("status",),
    ("summary", A),
]


def _commands() -> list[tuple[str, ...]]:
    known = build_parser()._subparsers._group_actions[0].choices
    return [c for c in COMMANDS if c[0] in known]


@pytest.mark.parametrize("where", ["not a course", "subfolder of a course"])
def test_every_command_refuses_outside_a_course(course, tmp_path, capsys, monkeypatch, where):
    place = tmp_path / "elsewhere" if where == "not a course" else course.root / "notebooks"
    place.mkdir()
    before_course = tree(course.root)
    monkeypatch.chdir(place)  # no --course: the current directory
    for args in _commands():
        code, out = run(None, *args, capsys=capsys)
        assert code != 0, f"{args} succeeded"
        assert "is not a course directory" in out and "nothing was done" in out, (args, out)
        if where != "not a course":
            assert f"--course {course.root}" in out, out
        assert list(place.iterdir()) == [], f"{args} created {list(place.iterdir())}"
    assert tree(course.root) == before_course


@pytest.mark.parametrize("name", ["ps01_backprp", "hw9"])
def test_every_command_refuses_an_assignment_never_released(course, tmp_path, capsys, name):
    zip_ = build_zip(
        "canvas", tmp_path / "download.zip", [FixtureSubmission("Ana Lima", "1", nbformat.v4.new_notebook())]
    )
    before = tree(course.root)
    for args in _commands():
        if args[0] in ("release", "export", "status"):
            continue
        args = tuple(name if a == A else str(zip_) if a == "download.zip" else a for a in args)
        code, out = run(course, *args, capsys=capsys)
        assert code != 0 and f"{name} was never released" in out and "nothing was done" in out, (args, out)
        assert ("Did you mean ps01_backprop?" in out) == (name == "ps01_backprp"), out
    assert tree(course.root) == before
    assert not (course.root / "submitted").exists()


# --- the guide's documented names are the ones parsed -----------------------------------------


def guide_rows() -> list[tuple[str, str, str, str]]:
    """The rows of the guide's "File names in the zip" table: (lms, file in the zip, student id, result)."""
    text = (REPO / "book" / "instructors.md").read_text()
    section = text.split("### File names in the zip", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ("canvas", "moodle", "blackboard"):
            rows.append(tuple(cells))
    return rows


def test_every_documented_file_name_is_parsed_as_documented():
    rows = guide_rows()
    assert {r[0] for r in rows} == {"canvas", "moodle", "blackboard"}, "the guide's table is missing"
    for lms in ("canvas", "moodle", "blackboard"):
        mine = [r for r in rows if r[0] == lms]
        zips = [Path(f"/tmp/_guide_{os.getpid()}_{lms}.zip")]
        with zipfile.ZipFile(zips[0], "w") as z:
            for _, member, _, _ in mine:
                z.writestr(member, "Name: Wei Zhang (wzhang)\n" if member.endswith(".txt") else "{}")
        try:
            result = lms_collect.plan(lms, zips, [NB], duedate=DUE)
        finally:
            zips[0].unlink()
        for _, member, sid, what in mine:
            entry = result.entries[sid]
            if what.startswith("collected"):
                assert member in entry.files, (member, entry)
                assert entry.late == ("late" in what), (member, entry)
            elif what.startswith("ignored"):
                reason = what[len("ignored (") : -1]
                assert f"{member}: {reason}" in entry.ignored, (member, entry)
            else:
                assert what == "receipt: the name" and entry.name == "Wei Zhang", (member, entry)


def test_the_guides_pattern_example_works(course, release, tmp_path, capsys):
    text = (REPO / "book" / "instructors.md").read_text()
    example = re.search(r"collect (\S+) --zip (\S+) --pattern '([^']+)'", text)
    assert example, "the guide's --pattern example is missing"
    zip_ = tmp_path / example[2]
    with zipfile.ZipFile(zip_, "w") as z:
        z.writestr(f"jdoe/{NB}", nbformat.writes(release))
    code, out = run(course, "collect", A, "--zip", str(zip_), "--pattern", example[3], capsys=capsys)
    assert code == 0 and submitted(course, "jdoe").exists(), out


# --- what the tool prints ---------------------------------------------------------------------


def test_progress_bar_counts_each_notebook_once(capsys):
    class Fake:
        def run(self, *args, on_line):
            for student in ("a", "b", "c"):
                on_line(f"[GenerateFeedback] Converting notebook autograded/{student}/ps01/ps01.ipynb\n")
                on_line(f"[GenerateFeedback] Writing 1234 bytes to feedback/{student}/ps01/ps01.html\n")
            return ""

    nbgrader(Fake(), "generate_feedback", "ps01", progress="feedback ps01", total=4)
    err = capsys.readouterr().err
    assert "3/3" in err and "6/" not in err and "/4" not in err.splitlines()[-1], err


def test_status_hint_runs_outside_the_venv(course, tmp_path, monkeypatch):
    bare = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}  # no venv on PATH, no VIRTUAL_ENV
    monkeypatch.delenv("COURSE_TOOLS_GRADE_PROG", raising=False)
    hint = invoked_as()
    proc = subprocess.run([*shlex.split(hint), "--help"], env=bare, capture_output=True, text=True)
    assert proc.returncode == 0 and "status" in proc.stdout, (hint, proc.stderr)
    fake_dev = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "dev.py", "grade"])
    try:  # started by `python3 dev.py grade ...`: the hint says so
        cmdline = Path(f"/proc/{fake_dev.pid}/cmdline")
        for _ in range(100):  # until the child has exec'd
            if b"grade" in cmdline.read_bytes():
                break
            time.sleep(0.05)
        monkeypatch.setattr(os, "getppid", lambda: fake_dev.pid)
        assert invoked_as() == f"python3 {Path('dev.py').resolve()} grade"
    finally:
        fake_dev.kill()
        fake_dev.wait()
