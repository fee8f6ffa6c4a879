"""The instructor command, as the README walks it: an LMS zip download to a CSV of grades.

The fast tests check the command line itself (help, clear errors on bad input
that change nothing; tests/test_lms_collect.py checks collect on each LMS's layout).
The slow one is the README's path end to end: release (no exchange), `collect --zip`
of a Canvas download plus a Moodle one (tests/lms_fixtures.py, their real layouts),
parallel autograde, feedback, export.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from assignments.ps01_mistakes import MISTAKES
from lms_fixtures import FixtureSubmission, build_zip
from robustness.harness import ASSIGNMENT, REPO, instructor, make_course, scores

from course_tools.grading.cli import build_parser, main
from course_tools.grading.course import Course
from course_tools.grading.submissions import fill, solution_answers

SUBCOMMANDS = ("release", "collect", "autograde", "feedback", "export", "status", "summary")


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
    """A course with ps01's release folder (the repository's, copied) but nothing in a gradebook."""
    course = Course.create(tmp_path / "course", exchange=tmp_path / "exchange")
    (course.root / "solutions").mkdir()
    shutil.copytree(REPO / "exercises" / ASSIGNMENT, course.root / "exercises" / ASSIGNMENT)
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
    before = sorted(p.relative_to(root) for p in empty_course.root.rglob("*"))
    for args, message in cases:  # in-process: the same code path as the command, without a Python start each
        with pytest.raises(SystemExit) as exit_:
            main([*args, f"--course={root}"])
        assert exit_.value.code not in (0, None), f"{args} succeeded"
        assert message in str(exit_.value.code), f"{args}: {exit_.value.code}"
    after = sorted(p.relative_to(root) for p in empty_course.root.rglob("*"))  # not even a gradebook
    assert after == before


@pytest.mark.slow
def test_lms_zip_to_csv_of_grades(tmp_path):
    course = make_course(tmp_path, release_args=("--no-exchange",))
    release = nbformat.read(course.root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = solution_answers(
        nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    )
    wrong = next(m for m in MISTAKES if m.part == "cross_entropy")
    canvas = build_zip(
        "canvas",
        tmp_path / "submissions.zip",
        [
            FixtureSubmission("Alice Smith", "1001", fill(release, answers)),
            FixtureSubmission(
                "Bob Jones", "1002", fill(release, {**answers, wrong.part: wrong.source}), late=True
            ),
        ],
    )
    out = instructor(course, "collect", ASSIGNMENT, "--zip", str(canvas)).stdout
    assert "2 submission(s)" in out, out
    moodle = build_zip(  # another LMS's layout: a folder per student; a blank notebook and a stray file
        "moodle",
        tmp_path / "moodle.zip",
        [FixtureSubmission("Carol Diaz", "77", release, extra_files={"readme.md": "hi"})],
    )
    out = instructor(course, "collect", ASSIGNMENT, "--zip", str(moodle), "--lms", "moodle").stdout
    assert "3 submission(s)" in out and "ignored, not a notebook" in out and "readme.md" in out, out

    proc = instructor(course, "autograde", ASSIGNMENT, "--jobs", "2")
    assert "3 graded" in proc.stdout, proc.stdout
    hint = next(line for line in proc.stdout.splitlines() if line.startswith("details: "))
    assert (
        hint
        == f"details: {sys.executable} -m course_tools.grading status {ASSIGNMENT} --problems --course {course.root}"
    )
    proc = instructor(course, "feedback", ASSIGNMENT)
    assert "3/3" in proc.stderr and "6/" not in proc.stderr, proc.stderr  # the progress bar counts each once
    for student in ("1001", "1002", "77"):
        assert (course.root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").exists()

    instructor(course, "export", "--to", str(tmp_path / "grades.csv"))
    with open(tmp_path / "grades.csv", newline="") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    graded = scores(course)
    full = sum(graded["1001"].values())
    assert full == 20
    assert list(next(iter(rows.values())))[-2:] == [ASSIGNMENT, "total"]
    assert float(rows["1001"][ASSIGNMENT]) == float(rows["1001"]["total"]) == full
    assert float(rows["1002"][ASSIGNMENT]) == full - 2  # the wrong cross_entropy costs its 2 points
    assert float(rows["77"]["total"]) == 0
    status = instructor(course, "status", ASSIGNMENT).stdout
    assert "3 graded" in status and "1001" in status, status
