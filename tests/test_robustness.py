"""Broken and hostile submissions, graded in one run through the instructor tool (2 workers, sandboxed).

Each case in tests/robustness/submissions.py is a real ps01 submission in
submitted/<student>/ps01_backprop/. One `autograde --scheduler` on a Dask cluster of two
workers (warm kernels) grades them all; one `autograde --jobs 2` (two local workers, warm
kernels) grades again the cases where the executor's part could show: processes that die,
hang, time out, exhaust memory, flood output, snoop or reach for the network (the checker's
cases are decided by the same worker code on both executors, and the local pool grades
every pipeline test);
then each must have its expected state, lose exactly its expected test cells,
and have its reason in the status table; the gradebook must hold one row per
grade cell per student; nothing a submission did may reach solutions/, the
gradebook, another student or the network; feedback shows no hidden test (on the Dask run,
which holds every case); and grading again gives the same grades (on the local run: a regrade
runs on local workers whichever executor graded first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from robustness import submissions as S
from robustness.cluster import dask_cluster
from robustness.harness import (
    ASSIGNMENT,
    REPO,
    instructor,
    make_course,
    max_scores,
    outputs_text,
    scores,
    status,
    write_files,
)
from robustness.system import ensure_bubblewrap

from course_tools.grading.cells import hidden_lines
from course_tools.grading.course import Course
from course_tools.grading.gradebook import consistency_problems
from course_tools.grading.submissions import solution_answers

pytestmark = pytest.mark.slow
LIMITS = ("--cell-timeout", "30", "--timeout", "300", "--memory", "3")
# Graded twice to prove re-running changes nothing: the cases whose grading is least deterministic.
REGRADE = ("reference", "os-exit", "monkeypatch-torch", "duplicated-ids")
# Graded on the local pool as well as on Dask: where the executor's part (processes, timeouts,
# limits, the sandbox) could show, plus what the other tests below read.
LOCAL = (
    *REGRADE,
    *("partly-wrong", "infinite-loop", "loop-ignores-interrupt", "segfault", "memory-bomb"),
    *("not-json", "huge-output", "snoop", "network"),
)


@dataclass
class Run:
    course: Course
    cases: dict[str, S.Case]
    scores: dict[str, dict[str, float]]
    status: dict[str, dict]
    maxima: dict[str, float]
    autograde_output: str
    executor: str


@pytest.fixture(scope="module", params=["local", "dask"])
def run(request, tmp_path_factory) -> Run:
    """The cases graded in one run: all by a Dask cluster of two workers, LOCAL by two local workers."""
    why = ensure_bubblewrap()
    if why:
        pytest.fail(f"the grading sandbox cannot run here: {why}")
    course = make_course(tmp_path_factory.mktemp("robustness"))
    release = nbformat.read(course.root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = solution_answers(
        nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    )
    cases = {c.student: c for c in S.cases(str(course.root), str(REPO))}
    if request.param == "local":
        cases = {s: c for s, c in cases.items() if s in LOCAL}
    for case in cases.values():
        write_files(course, case.student, case.build(release, answers))
    if request.param == "local":
        proc = instructor(course, "autograde", ASSIGNMENT, "--jobs", "2", *LIMITS, check=False)
    else:
        with dask_cluster(tmp_path_factory.mktemp("dask")) as cluster:
            proc = instructor(
                course, "autograde", ASSIGNMENT, "--scheduler", cluster.address, *LIMITS, check=False
            )
    assert proc.returncode == 0, f"autograde reported failures:\n{proc.stdout}\n{proc.stderr[-3000:]}"

    return Run(course, cases, scores(course), status(course), max_scores(course), proc.stdout, request.param)


@pytest.mark.parametrize("student", [c.student for c in S.cases("", "")])
def test_case_is_graded_as_far_as_it_can_be(run: Run, student: str):
    if student not in run.cases:
        pytest.skip("graded on the Dask executor only: the executor plays no part in it")
    case, entry = run.cases[student], run.status[student]
    notes = "\n".join(entry["issues"] + entry["review"])
    assert entry["state"] == case.state, f"{student}: state {entry['state']}, expected {case.state}\n{notes}"
    got = run.scores[student]
    assert set(got) == set(S.TESTS), f"{student}: gradebook has cells {sorted(got)}"
    wrong = {
        t: (got[t], run.maxima[t]) for t in S.TESTS if got[t] != (0.0 if t in case.lost else run.maxima[t])
    }
    assert not wrong, (
        f"{student}: unexpected scores (score, max) {wrong}; expected zero on {sorted(case.lost)}\n{notes}"
    )
    for word in case.mentions:
        assert word in notes, f"{student}: status does not mention {word!r}:\n{notes}"


def test_status_table_shows_every_problem_and_why(run: Run):
    table = instructor(run.course, "status", ASSIGNMENT, "--problems").stdout
    for student, case in run.cases.items():
        if case.state != "graded" or case.mentions:
            assert student in table, f"{student} missing from `status --problems`:\n{table}"
    assert "not valid JSON" in table and "kernel died" in table and "timed out" in table
    assert "reference " not in table, "a clean submission is listed as a problem"


def test_gradebook_is_consistent(run: Run):
    problems = consistency_problems(run.course.db_url, run.course.course_id, ASSIGNMENT)
    assert not problems, problems
    assert set(run.scores) == set(run.cases)


def _autograded(run: Run, student: str) -> Path:
    return run.course.root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


def _hidden(run: Run) -> list[str]:
    """Hidden-test lines students never see (a line the release also shows is no secret)."""
    source = nbformat.read(run.course.root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    release = nbformat.read(run.course.root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    shown = {line.strip() for c in release.cells for line in c.source.split("\n")}
    return [h for c in source.cells for h in hidden_lines(c.source) if len(h) >= 25 and h not in shown]


def test_student_code_read_nothing_it_should_not(run: Run):
    text = outputs_text(_autograded(run, "snoop"))
    assert "SNOOP DENIED" in text, text[:2000]
    assert "SNOOP READ" not in text, [ln for ln in text.splitlines() if "SNOOP READ" in ln]
    root = re.search(r"SNOOP ROOT (\[.*\])", text)
    assert root and not {"'home'", "'srv'", "'mnt'"} & set(root.group(1)[1:-1].split(", ")), root
    # The kernel's own scratch folder lies inside the course's .grading/, so the course path exists
    # in the sandbox, but nothing else of it: no solutions, gradebook or submissions.
    assert "SNOOP COURSE False False False False" in text, (
        "the course's or the repository's files are visible"
    )
    leaked = [h for h in _hidden(run) if h in text]
    assert not leaked, f"hidden test code reached the snooping submission: {leaked[:3]}"


def test_student_code_cannot_reach_the_network(run: Run):
    text = outputs_text(_autograded(run, "network"))
    assert "NET REACHED" not in text, text
    assert text.count("NET BLOCKED") == 3, text


def test_other_students_unaffected(run: Run):
    """The clean submissions graded beside the hostile ones kept every point."""
    assert run.status["reference"]["state"] == "graded"
    assert sum(run.scores["reference"].values()) == sum(run.maxima.values())


def test_feedback_never_shows_hidden_tests(run: Run):
    if run.executor == "local":  # pages come from the gradebook and the notebooks, whoever graded them
        pytest.skip("checked on the Dask run, which grades every case")
    proc = instructor(run.course, "feedback", ASSIGNMENT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    html = {p.parts[-3]: p.read_text() for p in (run.course.root / "feedback").glob(f"*/{ASSIGNMENT}/*.html")}
    graded = {s for s, e in run.status.items() if e["state"] != "not-gradable"}
    assert graded <= set(html), f"no feedback for {sorted(graded - set(html))}"
    hidden = [re.sub(r"\s+", "", h) for h in _hidden(run)]
    for student, page in html.items():
        text = re.sub(r"\s+", "", re.sub(r"<[^>]+>", "", page)).replace("&#39;", "'").replace("&quot;", '"')
        assert not [h for h in hidden if h in text], f"{student}'s feedback shows hidden test code"
    assert "CheckFailed" in html["partly-wrong"]  # a failed test's message is shown


def test_regrading_gives_identical_grades(run: Run):
    if run.executor == "dask":  # the regrade below runs on local workers whichever graded first
        pytest.skip("checked on the local run; test_dask_grading compares Dask's grades with a local run's")
    unchanged = instructor(run.course, "autograde", ASSIGNMENT, "--jobs", "2", *LIMITS)
    assert f"{len(run.cases)} unchanged skipped" in unchanged.stdout, unchanged.stdout
    instructor(run.course, "autograde", ASSIGNMENT, "--jobs", "2", "--force", "--student", *REGRADE, *LIMITS)
    again = scores(run.course)
    assert again == run.scores, {s: (run.scores[s], again[s]) for s in again if again[s] != run.scores[s]}
    assert not consistency_problems(run.course.db_url, run.course.course_id, ASSIGNMENT)
