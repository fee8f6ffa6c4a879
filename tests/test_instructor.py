"""The instructor command, as the README walks it: an LMS zip download to a CSV of grades.

The fast tests check the command line itself (help, clear errors on bad input
that change nothing). The slow one is the README's path end to end: release
(no exchange), `collect --zip` of a Canvas-style download plus a second zip with
a custom file-name pattern, parallel autograde, feedback, export.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from assignments.ps01_mistakes import MISTAKES
from robustness.harness import ASSIGNMENT, REPO, instructor, make_course, scores

from course_tools.grading.cli import build_parser, main
from course_tools.grading.course import Course
from course_tools.grading.submissions import fill, solution_answers

SUBCOMMANDS = ("release", "collect", "autograde", "feedback", "export", "status")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "course_tools.grading", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_subcommand():
    proc = _cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert all(sub in proc.stdout for sub in SUBCOMMANDS)
    parser = build_parser()
    for sub in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([sub, "--help"])
        assert exit_.value.code == 0


def test_dev_py_exposes_the_command():
    proc = subprocess.run(
        [sys.executable, str(REPO / "dev.py"), "grade", "--help"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(sub in proc.stdout for sub in SUBCOMMANDS)


@pytest.fixture
def empty_course(tmp_path) -> Course:
    course = Course.create(tmp_path / "course", exchange=tmp_path / "exchange")
    (course.root / "solutions").mkdir()
    return course


def test_bad_input_gets_a_clear_error_and_changes_nothing(empty_course: Course, tmp_path):
    root = str(empty_course.root)
    not_zip = tmp_path / "download.zip"
    not_zip.write_text("not a zip")
    ok_zip = tmp_path / "ok.zip"
    with zipfile.ZipFile(ok_zip, "w") as z:
        z.writestr("alice_1_2_ps01_backprop.ipynb", "{}")
    cases = [
        (("release", "ps99_nothing"), "no assignment"),
        (("collect", ASSIGNMENT, "--zip", str(tmp_path / "missing.zip")), "no such file"),
        (("collect", ASSIGNMENT, "--zip", str(not_zip)), "not a zip archive"),
        (("collect", ASSIGNMENT, "--zip", str(ok_zip), "--pattern", "(unclosed"), "not a valid regular"),
        (
            ("collect", ASSIGNMENT, "--zip", str(ok_zip), "--pattern", r".*/(?P<student_id>\w+)\.ipynb"),
            "file_id",
        ),
        (("autograde", ASSIGNMENT, "--no-sandbox"), "not in the gradebook"),
    ]
    before = sorted(p.relative_to(root) for p in empty_course.root.rglob("*") if "gradebook" not in p.name)
    for args, message in cases:  # in-process: the same code path as the command, without a Python start each
        with pytest.raises(SystemExit) as exit_:
            main([*args, f"--course={root}"])
        assert exit_.value.code not in (0, None), f"{args} succeeded"
        assert message in str(exit_.value.code), f"{args}: {exit_.value.code}"
    after = sorted(p.relative_to(root) for p in empty_course.root.rglob("*") if "gradebook" not in p.name)
    assert after == before


def _canvas_zip(path: Path, notebooks: dict[str, tuple[str, nbformat.NotebookNode]]) -> Path:
    """A download as Canvas names it: <login>_[LATE_]<user id>_<submission id>_<file name>[-<n>].ipynb."""
    with zipfile.ZipFile(path, "w") as z:
        for i, (login, (suffix, nb)) in enumerate(notebooks.items()):
            z.writestr(
                f"{login}_{suffix}{1000 + i}_{5000 + i}_{ASSIGNMENT}{'-1' if suffix else ''}.ipynb",
                nbformat.writes(nb),
            )
    return path


@pytest.mark.slow
def test_lms_zip_to_csv_of_grades(tmp_path):
    course = make_course(tmp_path, release_args=("--no-exchange",))
    release = nbformat.read(course.root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = solution_answers(
        nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    )
    wrong = next(m for m in MISTAKES if m.part == "cross_entropy")
    canvas = _canvas_zip(
        tmp_path / "submissions.zip",
        {
            "alice": ("", fill(release, answers)),
            "bob": ("LATE_", fill(release, {**answers, wrong.part: wrong.source})),
        },
    )
    out = instructor(course, "collect", ASSIGNMENT, "--zip", str(canvas)).stdout
    assert "2 submission(s)" in out, out
    moodle = tmp_path / "moodle.zip"  # another LMS's layout: one folder per student
    with zipfile.ZipFile(moodle, "w") as z:
        z.writestr(f"carol_assignsubmission_file/{ASSIGNMENT}.ipynb", nbformat.writes(release))
        z.writestr("notes_assignsubmission_file/readme.ipynb", "{}")
    pattern = r".*/(?P<student_id>[^/_]+)_assignsubmission_file/(?P<file_id>ps01_backprop)\.ipynb$"
    out = instructor(course, "collect", ASSIGNMENT, "--zip", str(moodle), "--pattern", pattern).stdout
    assert "3 submission(s)" in out and "did not match" in out and "readme.ipynb" in out, out

    out = instructor(course, "autograde", ASSIGNMENT, "--jobs", "2").stdout
    assert "3 graded" in out, out
    instructor(course, "feedback", ASSIGNMENT)
    for student in ("alice", "bob", "carol"):
        assert (course.root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").exists()

    instructor(course, "export", "--to", str(tmp_path / "grades.csv"))
    with open(tmp_path / "grades.csv", newline="") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    graded = scores(course)
    full = sum(graded["alice"].values())
    assert full == 20
    assert list(next(iter(rows.values())))[-2:] == [ASSIGNMENT, "total"]
    assert float(rows["alice"][ASSIGNMENT]) == float(rows["alice"]["total"]) == full
    assert float(rows["bob"][ASSIGNMENT]) == full - 2  # the wrong cross_entropy costs its 2 points
    assert float(rows["carol"]["total"]) == 0
    status = instructor(course, "status", ASSIGNMENT).stdout
    assert "3 graded" in status and "alice" in status, status
