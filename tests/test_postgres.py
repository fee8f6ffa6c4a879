"""Parallel autograding into a PostgreSQL gradebook, on a real server started for the test.

Two course directories stand for two grading machines: they share one
PostgreSQL gradebook (nbgrader's `db_url`) and each holds half the class. Both
run `autograde` at the same time, so two writers merge into one database while
each runs its own sandboxed workers. Afterwards every student has exactly one
submission with one grade per test cell and the right scores; a forced re-run
with two workers changes nothing.
"""

from __future__ import annotations

import shutil
import subprocess

import nbformat
import pytest
from assignments.ps01_mistakes import MISTAKES
from robustness.harness import (
    ASSIGNMENT,
    REPO,
    instructor,
    instructor_command,
    make_course,
    max_scores,
    scores,
)
from robustness.postgres import postgres_server
from robustness.system import ensure_bubblewrap

from course_tools.grading.course import Course
from course_tools.grading.gradebook import consistency_problems
from course_tools.grading.submissions import fill, solution_answers, write_submission

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def db_url():
    with postgres_server() as url:
        yield url


def _start(course: Course, *args: str) -> subprocess.Popen:
    """`instructor autograde` in the background (the harness's environment and course options)."""
    cmd, env = instructor_command(course, "autograde", ASSIGNMENT, *args)
    return subprocess.Popen(
        cmd, cwd=course.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_machines_grade_into_one_postgresql_gradebook(db_url, tmp_path):
    why = ensure_bubblewrap()
    if why:
        pytest.fail(f"the grading sandbox cannot run here: {why}")
    a = make_course(tmp_path / "a", db_url=db_url, release_args=("--no-exchange",))
    shutil.copytree(a.root, tmp_path / "b" / "course")
    b = Course(root=tmp_path / "b" / "course", exchange=a.exchange, db_url=db_url)

    release = nbformat.read(a.root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = solution_answers(
        nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    )
    named = {(m.part, m.name): m for m in MISTAKES}  # plain wrong answers: graded, nothing odd to report
    wrong = {
        "cross_entropy": named["cross_entropy", "sum_instead_of_mean"],
        "relative_error": named["relative_error", "absolute_error_only"],
    }
    class_ = {
        a: {
            "alice": fill(release, answers),
            "bob": fill(release, {**answers, "cross_entropy": wrong["cross_entropy"].source}),
        },
        b: {
            "carol": fill(release, {**answers, "relative_error": wrong["relative_error"].source}),
            "dave": release,
        },
    }
    for course, subs in class_.items():
        for student, nb in subs.items():
            write_submission(nb, course.root / "submitted", student, ASSIGNMENT, ASSIGNMENT)

    running = [_start(course, "--jobs", "1") for course in (a, b)]
    for proc in running:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{out}\n{err[-3000:]}"
        assert "2 graded" in out, out
    assert "postgresql" in db_url

    first = scores(a)
    maxima = max_scores(a)
    full = sum(maxima.values())
    assert sorted(first) == ["alice", "bob", "carol", "dave"]
    assert sum(first["alice"].values()) == full
    assert (
        first["bob"]["test_cross_entropy"] == 0
        and sum(first["bob"].values()) == full - maxima["test_cross_entropy"]
    )
    assert first["carol"]["test_relative_error"] == 0
    assert sum(first["dave"].values()) == 0
    assert not consistency_problems(db_url, a.course_id, ASSIGNMENT)

    instructor(a, "autograde", ASSIGNMENT, "--jobs", "2", "--force")
    assert scores(a) == first
    assert not consistency_problems(db_url, a.course_id, ASSIGNMENT)
