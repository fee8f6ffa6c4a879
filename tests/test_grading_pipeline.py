"""The grading pipeline, proven end to end through nbgrader's own command line and a real SQLite gradebook.

For every assignment that has a catalogue (tests/assignments/<name>_mistakes.py, and
optionally <name>_attacks.py): generate (solutions -> release), release through a
temporary exchange, fetch and submit as two students (one hands in the reference answers,
one the untouched release), collect, add the catalogue's submissions, autograde (the instructor tool: nbgrader's
Autograde and gradebook in two workers, sandboxed kernels forked warm, verdicts from the
checker outside the kernel), generate feedback, export. Then: the reference scores full marks, the blank release zero, every
wrong answer loses exactly its own part's points, every correct alternative keeps them,
every attack earns nothing on the part it attacks, and feedback shows no hidden test.

Wrong answers and alternatives to DIFFERENT parts are independent (each part is graded
by its own test cell, with stand-ins for the other parts it uses), so they are combined:
submission k holds the k-th wrong answer of every part, and must lose exactly those
parts. That keeps the number of notebooks to autograde near the longest list of one part
instead of the catalogue's size. Attacks can reach beyond their own cell (they patch
modules), so each is graded alone.

Regrading two students afterwards with plain `nbgrader autograde` (the course's
nbgrader_config.py, unsandboxed, cold kernels) must give the same grades.
"""

from __future__ import annotations

import csv
import importlib
import re
import shutil
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from robustness.harness import instructor
from robustness.system import ensure_bubblewrap

from course_tools.grading.cells import grade_id, is_test
from course_tools.grading.course import Course
from course_tools.grading.submissions import fill, solution_answers, write_submission

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CATALOGS = sorted(p.stem for p in (REPO / "tests" / "assignments").glob("*_mistakes.py"))


def load_catalog(module_name: str):
    return importlib.import_module(f"assignments.{module_name}")


def load_attacks(assignment_prefix: str) -> list:
    try:
        return list(importlib.import_module(f"assignments.{assignment_prefix}_attacks").ATTACKS)
    except ModuleNotFoundError:
        return []


def combined(entries: list) -> list[dict]:
    """Rounds of entries, at most one per part per round: [{part: entry}, ...]."""
    by_part: dict[str, list] = {}
    for e in entries:
        by_part.setdefault(e.part, []).append(e)
    rounds = max((len(v) for v in by_part.values()), default=0)
    return [{p: v[k] for p, v in by_part.items() if k < len(v)} for k in range(rounds)]


@dataclass
class GradedRun:
    """Scores per student: {student: {test grade_id: (score, max_score)}}, plus where things are."""

    assignment: str
    scores: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    feedback: dict[str, Path] = field(default_factory=dict)
    courses: list[Course] = field(default_factory=list)
    source_nb: nbformat.NotebookNode | None = None
    release_nb: nbformat.NotebookNode | None = None
    catalog: object = None
    mistake_rounds: dict[str, dict] = field(default_factory=dict)  # student -> {part: Mistake}
    alternative_rounds: dict[str, dict] = field(default_factory=dict)  # student -> {part: Alternative}
    attacks: dict[str, object] = field(default_factory=dict)  # student -> Attack


def read_scores(course: Course, assignment: str) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    with Gradebook(course.db_url) as gb:
        for sub in gb.assignment_submissions(assignment):
            per_cell = {}
            for nb in sub.notebooks:
                for grade in nb.grades:
                    per_cell[grade.name] = (float(grade.score), float(grade.max_score))
            out[sub.student_id] = per_cell
    return out


def grade_course(course: Course, assignment: str, submissions: dict[str, nbformat.NotebookNode]) -> None:
    """Generate, go through the exchange with two students, add direct submissions, autograde.

    Autograde is the instructor tool's (`python -m course_tools.grading autograde --jobs 2`):
    nbgrader's own Autograde converter and gradebook, in two workers whose sandboxed kernels
    are forked warm from a pre-imported parent. Feedback and export are nbgrader's commands.
    """
    shutil.copytree(REPO / "solutions" / assignment, course.root / "solutions" / assignment)
    course.run("generate_assignment", assignment, "--force")
    nb_name = assignment
    course.run("release_assignment", assignment, "--force")
    for student in ("alice", "bob"):
        home = course.root.parent / "students" / student
        home.mkdir(parents=True, exist_ok=True)
        course.run("fetch_assignment", assignment, cwd=home, user=student)
        fetched = home / assignment / f"{nb_name}.ipynb"
        assert fetched.exists(), f"fetch_assignment did not deliver {fetched}"
        if student == "alice":
            source = nbformat.read(course.root / "solutions" / assignment / f"{nb_name}.ipynb", as_version=4)
            nbformat.write(fill(nbformat.read(fetched, as_version=4), solution_answers(source)), fetched)
        course.run("submit", assignment, f"--student={student}", cwd=home, user=student)
    course.run("collect", assignment)
    for student, nb in submissions.items():
        write_submission(nb, course.root / "submitted", student, assignment, nb_name)
    instructor(course, "autograde", assignment, "--jobs", "2", "--force", "--cell-timeout", "120")
    course.run("generate_feedback", assignment, "--force")
    course.run("export", f"--to={course.root / 'grades.csv'}")


@pytest.fixture(scope="module", params=CATALOGS)
def graded(request, tmp_path_factory) -> GradedRun:
    catalog = load_catalog(request.param)
    assignment = catalog.ASSIGNMENT
    source = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    release = nbformat.read(REPO / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = solution_answers(source)
    direct = {}
    mistake_rounds, alternative_rounds, attacks = {}, {}, {}
    for k, chosen in enumerate(combined(catalog.MISTAKES)):
        mistake_rounds[f"mistakes-{k}"] = chosen
    for k, chosen in enumerate(combined(getattr(catalog, "ALTERNATIVES", []))):
        alternative_rounds[f"alternatives-{k}"] = chosen
    for a in load_attacks(assignment.split("_")[0]):
        attacks[f"attack-{a.part}-{a.name}".replace("_", "-")] = a
    for student, chosen in {**mistake_rounds, **alternative_rounds}.items():
        direct[student] = fill(release, {**answers, **{p: e.source for p, e in chosen.items()}})
    for student, a in attacks.items():
        direct[student] = fill(release, {**answers, a.part: a.source})
    why = ensure_bubblewrap()
    if why:
        pytest.fail(f"the grading sandbox cannot run here: {why}")
    base = tmp_path_factory.mktemp(f"grading-{assignment}")
    courses = [Course.create(base / "course")]
    grade_course(courses[0], assignment, direct)
    run = GradedRun(
        assignment,
        courses=courses,
        source_nb=source,
        release_nb=release,
        catalog=catalog,
        mistake_rounds=mistake_rounds,
        alternative_rounds=alternative_rounds,
        attacks=attacks,
    )
    for course in courses:
        run.scores.update(read_scores(course, assignment))
        for html in (course.root / "feedback").rglob("*.html"):
            run.feedback[html.parts[-3]] = html
    return run


def test_reference_solution_scores_full_marks(graded: GradedRun):
    scores = graded.scores["alice"]
    lost = {k: v for k, v in scores.items() if v[0] != v[1]}
    assert not lost, f"the reference solution lost points on {lost}"
    assert sum(v[1] for v in scores.values()) > 0


def test_untouched_release_scores_zero(graded: GradedRun):
    scores = graded.scores["bob"]
    earned = {k: v for k, v in scores.items() if v[0] != 0}
    assert not earned, f"the blank release earned points on {earned}"
    assert len(scores) == sum(1 for c in graded.source_nb.cells if is_test(c))


def test_every_wrong_answer_loses_exactly_its_part(graded: GradedRun):
    failures = []
    for student, chosen in graded.mistake_rounds.items():
        scores = graded.scores[student]
        for part, m in chosen.items():
            target = f"test_{part}"
            assert target in scores, f"no test cell {target} for mistake {m.name}"
            if scores[target][0] != 0:
                failures.append(f"{part}/{m.name}: kept {scores[target][0]} of {scores[target][1]} points")
        targets = {f"test_{p}" for p in chosen}
        others = sorted(k for k, v in scores.items() if k not in targets and v[0] != v[1])
        if others:
            names = ", ".join(f"{p}/{m.name}" for p, m in chosen.items())
            failures.append(f"{student} ({names}): also lost points on {others}")
    assert not failures, "\n".join(failures)


def test_every_correct_alternative_keeps_full_marks(graded: GradedRun):
    parts = [grade_id(c)[len("test_") :] for c in graded.source_nb.cells if is_test(c)]
    covered = {p for chosen in graded.alternative_rounds.values() for p in chosen}
    assert set(parts) <= covered, f"parts without a correct alternative: {sorted(set(parts) - covered)}"
    failures = []
    for student, chosen in graded.alternative_rounds.items():
        for part, alt in chosen.items():
            got, full = graded.scores[student][f"test_{part}"]
            if got != full:
                failures.append(f"{part}/{alt.name}: {got} of {full} points ({alt.description})")
    assert not failures, "correct answers lost points:\n" + "\n".join(failures)


def test_every_attack_earns_nothing(graded: GradedRun):
    earned = []
    for student, attack in graded.attacks.items():
        got, full = graded.scores[student][f"test_{attack.part}"]
        if got != 0:
            earned.append(f"{attack.part}/{attack.name}: {got} of {full} points ({attack.description})")
    assert not earned, "attacks that earned points:\n" + "\n".join(earned)


def test_catalog_covers_every_part_twice(graded: GradedRun):
    parts = [grade_id(c)[len("test_") :] for c in graded.source_nb.cells if is_test(c)]
    counts = {p: sum(1 for m in graded.catalog.MISTAKES if m.part == p) for p in parts}
    thin = {p: n for p, n in counts.items() if n < 2}
    assert not thin, f"parts with fewer than two realistic wrong answers: {thin}"


def _text(html_path: Path) -> str:
    """Visible text of an HTML file with whitespace collapsed (code is split into spans by highlighting)."""
    from bs4 import BeautifulSoup

    text = BeautifulSoup(html_path.read_text(), "html.parser").get_text(" ")
    return re.sub(r"\s+", "", unescape(text))


def _region_lines(nb: nbformat.NotebookNode, begin: str, end: str) -> list[str]:
    """Distinctive lines inside begin/end regions of a notebook, whitespace removed."""
    lines = []
    for cell in nb.cells:
        inside = False
        for line in cell.source.split("\n"):
            if begin in line:
                inside = True
            elif end in line:
                inside = False
            elif inside and len(line.strip()) >= 25 and not line.strip().startswith("#"):
                lines.append(re.sub(r"\s+", "", line))
    return lines


def test_feedback_never_shows_hidden_tests(graded: GradedRun):
    released = {re.sub(r"\s+", "", ln) for c in graded.release_nb.cells for ln in c.source.split("\n")}
    hidden = [
        ln
        for ln in _region_lines(graded.source_nb, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
        if ln not in released  # a line students can already see in the release is no leak
    ]
    assert hidden, "the source notebook has no hidden tests"
    assert {"alice", "bob"} <= set(graded.feedback), f"feedback missing: {sorted(graded.feedback)}"
    for student, html in graded.feedback.items():
        text = _text(html)
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{student}'s feedback shows hidden test code: {leaked[:3]}"
        assert "BEGINHIDDENTESTS" not in text


def test_feedback_of_blank_release_shows_no_solution(graded: GradedRun):
    released = {re.sub(r"\s+", "", ln) for c in graded.release_nb.cells for ln in c.source.split("\n")}
    solution = [
        ln
        for ln in _region_lines(graded.source_nb, "### BEGIN SOLUTION", "### END SOLUTION")
        if ln not in released
    ]
    assert solution
    text = _text(graded.feedback["bob"])
    leaked = [line for line in solution if line in text]
    assert not leaked, f"the blank submission's feedback shows solution code: {leaked[:3]}"


def test_feedback_says_what_failed(graded: GradedRun):
    """A failed part's feedback carries the check's message, not a bare AssertionError."""
    assert "NotImplementedError" in _text(graded.feedback["bob"])
    bare = []
    for student, chosen in graded.mistake_rounds.items():
        text = _text(graded.feedback[student])
        if text.count("CheckFailed:") + text.count("ForbiddenCall:") < len(chosen):
            bare.append(f"{student}: {sorted(chosen)}")
    assert not bare, f"feedback without a check message (bare assert or crash): {bare}"


def test_export_csv_has_the_grades(graded: GradedRun):
    rows = {}
    for course in graded.courses:
        with open(course.root / "grades.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                rows[row["student_id"]] = row
    total = sum(v[1] for v in graded.scores["alice"].values())
    assert float(rows["alice"]["score"]) == total
    assert float(rows["alice"]["max_score"]) == total
    assert float(rows["bob"]["score"]) == 0


def test_regrading_is_idempotent(graded: GradedRun):
    """Autograding alice and bob again, with plain `nbgrader autograde`, gives the same grades."""
    course = graded.courses[0]
    before = read_scores(course, graded.assignment)
    others = sorted(p.name for p in course.path("submitted").iterdir() if p.name not in ("alice", "bob"))
    # alice and bob in one nbgrader command: it starts once and imports the checker once
    out = course.run(
        "autograde", graded.assignment, "--force", f"--CourseDirectory.student_id_exclude={','.join(others)}"
    )
    regraded = sorted(set(re.findall(r"Autograding \S*/autograded/([^/\s]+)/", out)))
    assert regraded == ["alice", "bob"], out[-2000:]
    assert read_scores(course, graded.assignment) == before


# ------------------------------------------------------------------ the summary an instructor reads first


def _answer_keys(graded: GradedRun) -> dict[str, tuple]:
    """{student: the code of each answer cell, layout aside} as the catalogue handed it in (bob: blank)."""
    from course_tools.grading.summary import code_key

    answers = solution_answers(graded.source_nb)
    chosen = {"alice": {}, **graded.mistake_rounds, **graded.alternative_rounds}
    chosen.update({s: {a.part: a} for s, a in graded.attacks.items()})
    return {
        s: tuple(code_key({**answers, **{p: e.source for p, e in c.items()}}[g]) for g in sorted(answers))
        for s, c in chosen.items()
    }


def test_summary_per_part_matches_the_catalogue(graded: GradedRun):
    """Each part's failures are exactly the catalogue's wrong answers, attacks and the blank, each
    with the message its test cell showed; the totals and means are the gradebook's."""
    from course_tools.grading.summary import summarise

    report = summarise(graded.courses[0], graded.assignment)
    parts = [grade_id(c) for c in graded.source_nb.cells if is_test(c)]
    assert [p.grade_id for p in report.parts] == parts, "parts not in the notebook's order"
    expected = {p: {"bob"} for p in parts}
    for student, chosen in graded.mistake_rounds.items():
        for part in chosen:
            expected[f"test_{part}"].add(student)
    for student, attack in graded.attacks.items():
        expected[f"test_{attack.part}"].add(student)
    n = len(graded.scores)
    assert report.totals == pytest.approx(
        {s: sum(v[0] for v in c.values()) for s, c in graded.scores.items()}
    )
    for p in report.parts:
        assert (p.graded, p.failed) == (n, len(expected[p.grade_id])), p.grade_id
        assert p.mean == pytest.approx(sum(graded.scores[s][p.grade_id][0] for s in graded.scores) / n)
        assert sum(count for _, count in p.messages) == p.failed
        shown = [m for m, _ in p.messages]
        assert not [m for m in shown if m.startswith("(")], f"{p.grade_id}: failures without a message"
        assert any(m.startswith("NotImplementedError") for m in shown), f"{p.grade_id}: {shown}"
    assert not report.problems


def test_summary_finds_the_identical_answer_code(graded: GradedRun):
    """Groups are exactly the submissions the catalogue made alike; alice hands in the reference;
    the blank release is in no group and no pair."""
    from course_tools.grading.summary import summarise

    report = summarise(graded.courses[0], graded.assignment)
    keys = _answer_keys(graded)
    alike: dict[tuple, list[str]] = {}
    for student in sorted(keys):
        alike.setdefault(keys[student], []).append(student)
    expected = sorted(sorted(v) for v in alike.values() if len(v) > 1)
    assert sorted(g.students for g in report.identical) == expected
    assert report.reference_copies == sorted(s for s, k in keys.items() if k == keys["alice"])
    assert "bob" not in {s for p in report.similar for s in (p.a, p.b, *p.also_a, *p.also_b)}


def test_regrade_one_student_and_refresh_their_feedback(graded: GradedRun):
    """The guide's way (autograde --student S --force, then feedback --student S): the summary
    autograde prints shows S's feedback as stale, and a byte copy of S's submission handed in by
    another student (graded in the same call) as identical; feedback --student S rewrites S's page
    and no other, and the summary no longer lists it. (One assignment only: it grades again.)"""
    if graded.assignment != load_catalog(CATALOGS[0]).ASSIGNMENT:
        pytest.skip("run for the first catalogue's assignment only")
    import time

    from course_tools.grading.summary import summarise

    course, a = graded.courses[0], graded.assignment
    student = sorted(graded.mistake_rounds)[0]
    shutil.copytree(course.path("submitted", student, a), course.path("submitted", "copycat", a))
    pages = {p: p.stat().st_mtime for p in course.path("feedback").glob(f"*/{a}/*.html")}
    stale_before = summarise(course, a).stale.feedback  # test_regrading_is_idempotent regrades two
    time.sleep(1.1)  # the status store's graded_at counts whole seconds
    out = instructor(course, "autograde", a, "--student", student, "copycat", "--force", "--jobs", "2").stdout
    stale_line = rf"feedback page\(s\) older than the grade: [^\n]*\b{student}\b"
    assert re.search(stale_line, out), out
    if not stale_before:  # one stale page: the hint refreshes just that one
        assert f"feedback {a} --student {student}" in out
    else:  # several: it refreshes every page
        assert f"feedback {a}  (every page)" in out, out
    assert "graded submission(s) without a feedback page: copycat" in out
    assert re.search(rf"2 submissions, byte-identical, .*: (copycat, {student}|{student}, copycat)", out), out

    status = instructor(course, "status", a).stdout  # status warns of the same stale pages
    assert re.search(stale_line, status), status

    instructor(course, "feedback", a, "--student", student)
    after = {p: p.stat().st_mtime for p in course.path("feedback").glob(f"*/{a}/*.html")}
    assert sorted(p.parts[-3] for p in after if after[p] != pages.get(p)) == [student]
    report = summarise(course, a)
    assert student not in report.stale.feedback and report.stale.no_feedback == ["copycat"]
    total = sum(v[0] for v in graded.scores[student].values())
    assert report.totals["copycat"] == report.totals[student] == total

    time.sleep(1.1)
    instructor(course, "feedback", a, "--student", student, "copycat")  # several at once
    again = {p: p.stat().st_mtime for p in course.path("feedback").glob(f"*/{a}/*.html")}
    assert sorted(p.parts[-3] for p in again if again[p] != after.get(p)) == sorted([student, "copycat"])
    assert not summarise(course, a).stale.no_feedback
