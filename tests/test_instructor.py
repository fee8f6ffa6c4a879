"""The instructor command line itself: help, and clear errors on bad input that change nothing.

tests/test_lms_collect.py checks collect on each LMS's layout; tests/test_lms_export.py drives
zips from each LMS through collect, autograde, feedback and every export format; and
tests/test_instructor_docs.py runs the README's and the guide's commands as written.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from robustness.harness import ASSIGNMENT, REPO

from course_tools.grading.cli import build_parser, main
from course_tools.grading.course import Course

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
