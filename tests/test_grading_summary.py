"""Fast tests of the grading summary (course_tools.grading.summary): no kernel, no nbgrader command.

The pure parts (message normalisation, code tokens, similarity, histogram) on literals; the whole
summary, stale detection and the `summary` command on a small course directory made here: the
repository's nbgrader_config.py (Course.create), a real nbgrader gradebook (scores written by the
tool's own GradebookWriter), release, autograded, feedback and submitted folders written as the
pipeline writes them, file times set by hand. The summary of a class graded end to end through
the real pipeline is tested in tests/test_grading_pipeline.py.
"""

from __future__ import annotations

import json
import os
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from course_tools.grading import cli
from course_tools.grading.course import Course
from course_tools.grading.gradebook import GradebookWriter
from course_tools.grading.intake import fingerprint
from course_tools.grading.status import Entry, StatusStore
from course_tools.grading.summary import (
    code_key,
    compare_answers,
    error_message,
    find_stale,
    format_report,
    histogram,
    normalise_message,
    shape_tokens,
    similarity,
    stale_warnings,
    summarise,
)
from course_tools.paths import env_with_venv

# ----------------------------------------------------------------------------- pure parts


def test_numbers_are_normalised_so_that_one_kind_of_failure_is_one_message():
    a = normalise_message(
        "CheckFailed: loss is off: largest error 0.31 at index (5, 3) (got 0, expected -1.2e-3)"
    )
    b = normalise_message(
        "CheckFailed: loss is off: largest error 0.29 at index (2, 7) (got 4, expected +3.5E+02)"
    )
    assert a == b == "CheckFailed: loss is off: largest error # at index (#, #) (got #, expected #)"
    # names that hold digits are not numbers: float32 and float64 stay two messages
    assert (
        normalise_message("expected torch.float64, got torch.float32")
        == "expected torch.float64, got torch.float32"
    )
    assert normalise_message("ps01_backprop: 0.weight.grad") == "ps01_backprop: #.weight.grad"
    assert normalise_message("object at 0x7f3a2b1c") == normalise_message("object at 0x55aa")
    # a tensor's values, however many, are one message; layout does not matter
    assert normalise_message("got tensor([0.1, 0.2, 0.3,\n  0.4])") == normalise_message(
        "got tensor([1., 2., 3.])"
    )
    assert len(normalise_message("x" * 1000)) <= 301


def test_error_message_is_the_first_error_output():
    outs = [
        new_output("stream", name="stdout", text="[grader] ..."),
        new_output("error", ename="CheckFailed", evalue="got 3", traceback=[]),
        new_output("error", ename="Other", evalue="", traceback=[]),
    ]
    assert error_message(outs) == "CheckFailed: got 3"
    assert error_message(outs[2:]) == "Other"
    assert error_message(outs[:1]) is None and error_message([]) is None


def test_code_keys_ignore_layout_and_comments_and_shapes_ignore_names():
    a = "def f(x):\n    # the sigmoid\n    s = torch.sigmoid(x)\n    return s * (1 - s)\n"
    b = "def f(x):\n\n    s=torch.sigmoid( x )   # s\n    return s*(1-s)"
    c = "def f(z):\n    sig = torch.sigmoid(z)\n    return sig * (1 - sig)\n"
    assert code_key(a) == code_key(b) != code_key(c)
    assert shape_tokens(a) == shape_tokens(c)  # renamed, same shape
    assert ".sigmoid" not in shape_tokens(a) and "sigmoid" in shape_tokens(a)  # attributes kept
    assert code_key("def broken(:\n  'unterminated") == ("def", "broken(:", "'unterminated")


def test_similarity():
    x = shape_tokens("def f(x):\n    return torch.exp(x) / torch.exp(x).sum(dim=1, keepdim=True)\n")
    y = shape_tokens("def f(x):\n    return torch.exp(x) / torch.exp(x).sum(dim=0, keepdim=True)\n")
    assert similarity({"a": x}, {"a": x}) == 1.0
    assert 0.9 < similarity({"a": x}, {"a": y}) < 1.0
    assert similarity({"a": x}, {"b": x}) == 0.0  # the same code in another cell is not a match
    assert similarity({"a": x, "b": x}, {"a": x}) == pytest.approx(2 / 3)  # a cell one left blank
    assert similarity({}, {}) == 0.0


def test_histogram():
    lines = histogram([0, 1, 1, 3, 3, 3], 3)
    assert [ln.split("|")[0].strip() for ln in lines] == ["0", "1", "2", "3"]
    assert lines[3].endswith("#" * 40 + " 3") and lines[1].endswith(" 2") and lines[2].endswith("|")
    lines = histogram([0.0, 4.5, 19.9, 20.0, 20.0], 20)
    assert len(lines) == 11 and lines[-1].split("|")[0].strip() == "20" and lines[-1].endswith(" 2")
    assert sum(int(ln.rsplit(" ", 1)[1]) for ln in lines if ln.rstrip()[-1].isdigit()) == 5
    assert histogram([], 10) == ["  (no totals)"]
    assert histogram([0, 0], 0)[0].endswith(" 2")  # nothing to score: no division by zero


RELEASED = {"a": "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()", "b": "# YOUR CODE HERE"}
A = "def f(x):\n    m = x.max(dim=1, keepdim=True).values\n    return m + torch.log(torch.exp(x - m).sum(dim=1))\n"
B = "def g(w, x, y):\n    grad = (x @ w - y) / len(y)\n    return x.T @ grad\n"


def test_compare_answers_groups_copies_and_ignores_blanks():
    renamed = A.replace("m", "top").replace("x", "logits")
    answers = {
        "ann": {"a": A, "b": B},
        "bea": {"a": A.replace("    ", "  ") + "# mine\n", "b": B},  # same code, other layout
        "cid": {"a": A, "b": B},  # byte-identical to ann
        "dan": {"a": renamed, "b": B.replace("- y", "+ y")},  # renamed, one operator changed
        "eve": dict(RELEASED),  # untouched blank: no evidence of anything
        "fay": dict(RELEASED),
        "gus": {"a": "def f(x):\n    return x.sum()", "b": "# YOUR CODE HERE\n"},  # too little own code
        "hal": {"a": "def f(x):\n    return x.sum()", "b": "# YOUR CODE HERE"},
    }
    groups, pairs, reference = compare_answers(answers, RELEASED, reference={"a": A, "b": B})
    assert [g.students for g in groups] == [["ann", "bea", "cid"]]
    assert not groups[0].byte_identical and groups[0].reference and groups[0].answer_cells == 2
    assert [(p.a, p.b, p.also_a) for p in pairs] == [("ann", "dan", ["bea", "cid"])]
    assert 0.9 <= pairs[0].similarity < 1 and (pairs[0].same_cells, pairs[0].cells) == (0, 2)
    assert reference == ["ann", "bea", "cid"]
    groups, _, _ = compare_answers({k: answers[k] for k in ("ann", "cid")}, RELEASED)
    assert groups[0].byte_identical and not groups[0].reference
    assert compare_answers(answers, RELEASED, threshold=1.01)[1] == []


# ----------------------------------------------------------------------------- a small course

ASSIGNMENT = "hw"
PARTS = {"test_a": 2.0, "test_b": 1.0}


def _notebook(answers: dict[str, str], errors: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """A notebook as nbgrader lays it out: answer cell a, its test, answer cell b, its test."""
    cells = []
    for part in ("a", "b"):
        cells.append(
            new_code_cell(
                answers[part],
                metadata={"nbgrader": {"grade_id": part, "solution": True, "grade": False, "locked": False}},
            )
        )
        test = new_code_cell(
            f"check_{part}()",
            metadata={
                "nbgrader": {"grade_id": f"test_{part}", "grade": True, "solution": False, "locked": True}
            },
        )
        if errors and f"test_{part}" in errors:
            ename, _, evalue = errors[f"test_{part}"].partition(": ")
            test.outputs = [new_output("error", ename=ename, evalue=evalue, traceback=[])]
        cells.append(test)
    return new_notebook(cells=cells)


STUDENTS = {  # answers, scores, errors
    "ann": ({"a": A, "b": B}, {"test_a": 2, "test_b": 1}, {}),
    "bea": ({"a": A, "b": B}, {"test_a": 2, "test_b": 1}, {}),
    "cid": (
        {"a": A.replace("- m", "+ m"), "b": B},
        {"test_a": 0, "test_b": 1},
        {"test_a": "CheckFailed: f(x) is off: largest error 0.31 (got 1.2, expected 0.9)"},
    ),
    "dan": (
        {"a": A.replace("dim=1)", "dim=0)"), "b": B.replace("len(y)", "2")},
        {"test_a": 0, "test_b": 0},
        {
            "test_a": "CheckFailed: f(x) is off: largest error 0.29 (got 3, expected 2.71)",
            "test_b": "CheckFailed: g has shape (3, 1), expected (3,)",
        },
    ),
    "eve": (
        dict(RELEASED),
        {"test_a": 0, "test_b": 0},
        {"test_a": "NotImplementedError: ", "test_b": "NameError: name 'g' is not defined"},
    ),
    "fay": ({"a": A, "b": B}, {"test_a": 2, "test_b": 1}, {}),  # her autograded notebook is corrupt
}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    """Six graded students of `hw`; feedback for all but fay; ann's grade newer than her feedback;
    bea's submission changed since it was graded; gus submitted and was never graded."""
    from nbgrader.api import Gradebook

    course = Course.create(tmp_path_factory.mktemp("summary") / "course")
    with pytest.MonkeyPatch.context() as mp:
        # A new gradebook stamps its schema version, which nbgrader asks a fresh `alembic heads`
        # process for; read the same migration scripts in this process instead (seconds saved).
        from alembic.script import ScriptDirectory
        from nbgrader.dbutil import ALEMBIC_DIR

        head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
        mp.setattr("nbgrader.api.get_alembic_version", lambda: head)
        mp.setenv("PATH", env_with_venv()["PATH"])
        gb = Gradebook(course.db_url, course.course_id)
        gb.add_assignment(ASSIGNMENT)
        gb.add_notebook(ASSIGNMENT, ASSIGNMENT)
        for name, points in PARTS.items():
            gb.add_grade_cell(name, ASSIGNMENT, ASSIGNMENT, max_score=points, cell_type="code")
        gb.close()
    release = course.path("release", ASSIGNMENT)
    release.mkdir(parents=True)
    nbformat.write(_notebook(RELEASED), release / f"{ASSIGNMENT}.ipynb")
    source = course.path("source", ASSIGNMENT)
    source.mkdir(parents=True)
    nbformat.write(_notebook({"a": f"### BEGIN SOLUTION\n{A}### END SOLUTION", "b": B}), source / "hw.ipynb")
    store = StatusStore(course.root)
    hour_ago = time.time() - 3600
    with GradebookWriter(course.db_url, course.course_id) as writer:
        for student, (answers, scores, errors) in STUDENTS.items():
            grades = {k: {"auto_score": v, "needs_manual_grade": False} for k, v in scores.items()}
            writer.merge(ASSIGNMENT, student, {"notebooks": {ASSIGNMENT: {"grades": grades}}})
            submitted = course.path("submitted", student, ASSIGNMENT)
            submitted.mkdir(parents=True)
            nbformat.write(_notebook(answers), submitted / "hw.ipynb")
            graded = course.path("autograded", student, ASSIGNMENT)
            graded.mkdir(parents=True)
            nbformat.write(_notebook(answers, errors), graded / "hw.ipynb")
            os.utime(graded / "hw.ipynb", (hour_ago, hour_ago))
            entry = Entry("graded", sum(scores.values()), 3.0, fingerprint=fingerprint(submitted))
            entry.graded_at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(hour_ago))
            store.put(ASSIGNMENT, student, entry)
            if student != "fay":
                page = course.path("feedback", student, ASSIGNMENT, "hw.html")
                page.parent.mkdir(parents=True)
                page.write_text("<html>feedback</html>")
    # ann was regraded after her feedback was made; bea handed in again after she was graded
    os.utime(course.path("feedback", "ann", ASSIGNMENT, "hw.html"), (hour_ago - 60, hour_ago - 60))
    (course.path("submitted", "bea", ASSIGNMENT) / "extra.py").write_text("print('late')\n")
    course.path("submitted", "gus", ASSIGNMENT).mkdir(parents=True)
    nbformat.write(_notebook(RELEASED), course.path("submitted", "gus", ASSIGNMENT, "hw.ipynb"))
    course.path("autograded", "fay", ASSIGNMENT, "hw.ipynb").write_text('{"cells": [')  # truncated
    return course


def test_summary_of_a_small_course(course: Course):
    report = summarise(course, ASSIGNMENT)
    assert report.max_score == 3.0
    assert report.totals == {"ann": 3, "bea": 3, "cid": 1, "dan": 0, "eve": 0, "fay": 3}
    a, b = report.parts
    assert (a.grade_id, a.graded, a.failed, a.mean) == ("test_a", 6, 3, pytest.approx(1.0))
    assert (b.grade_id, b.graded, b.failed, b.mean) == ("test_b", 6, 2, pytest.approx(4 / 6))
    assert a.failure_rate == 0.5
    # "got 1.2" and "got 3": one message, counted twice
    assert a.messages == [
        ("CheckFailed: f(x) is off: largest error # (got #, expected #)", 2),
        ("NotImplementedError", 1),
    ]
    assert dict(b.messages) == {
        "CheckFailed: g has shape (#, #), expected (#,)": 1,
        "NameError: name 'g' is not defined": 1,
    }
    # ann and bea hand in the reference's code; fay's notebook cannot be read, so she is not compared
    assert [g.students for g in report.identical] == [["ann", "bea"]]
    assert report.identical[0].byte_identical and report.identical[0].reference
    assert report.reference_copies == ["ann", "bea"]
    assert {(p.a, p.b) for p in report.similar} >= {("ann", "cid")}
    assert "eve" not in {s for p in report.similar for s in (p.a, p.b)}  # a blank copies nothing
    assert report.stale.feedback == ["ann"]
    assert report.stale.changed == ["bea"]
    assert report.stale.ungraded == ["gus"]
    assert report.stale.no_feedback == ["fay"]
    assert len(report.problems) == 1 and "autograded/fay/hw/hw.ipynb could not be read" in report.problems[0]
    json.dumps(report.to_json())  # plain data all through

    text = format_report(report, prog="grade")
    assert "2x CheckFailed: f(x) is off" in text
    assert "grade feedback hw --student ann" in text
    assert "grade autograde hw --student bea" in text
    assert "gus" in text and "could not read" in text
    assert "2 submissions, byte-identical, the reference solution" in text


def test_feedback_refreshed_after_the_grade_is_not_stale(course: Course, tmp_path):
    page = course.path("feedback", "ann", ASSIGNMENT, "hw.html")
    before = page.stat().st_mtime
    try:
        os.utime(page)  # as `feedback hw --student ann` would: a page newer than the grade
        assert "ann" not in find_stale(course, ASSIGNMENT, ["ann"]).feedback
    finally:
        os.utime(page, (before, before))


def test_missing_feedback_folder_and_unknown_assignment_are_reported_not_raised(course: Course, tmp_path):
    bare = Course.create(tmp_path / "bare")
    report = summarise(bare, ASSIGNMENT)
    assert report.problems == ["hw is not in the gradebook (release it first)"] and not report.totals
    assert "hw is not in the gradebook" in format_report(report)
    stale = find_stale(course, "other", ["ann"])  # graded, and no feedback folder at all
    assert not stale.feedback_folder and stale.no_feedback == ["ann"]
    assert stale_warnings(bare, ASSIGNMENT) == []


def test_status_warnings_name_the_stale_feedback(course: Course):
    lines = stale_warnings(course, ASSIGNMENT, prog="grade")
    assert any("1 feedback page(s) older than the grade: ann" in ln for ln in lines)
    assert any("grade autograde hw --student bea" in ln for ln in lines)


def test_summary_command(course: Course, capsys):
    common = [f"--course={course.root}", f"--db-url={course.db_url}", f"--course-id={course.course_id}"]
    assert cli.main(["summary", ASSIGNMENT, "--json", *common]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parts"][0]["failure_rate"] == 0.5 and data["stale"]["feedback"] == ["ann"]
    assert cli.main(["summary", ASSIGNMENT, *common]) == 0
    assert "score distribution" in capsys.readouterr().out
