"""export: the files Canvas, Moodle and Blackboard import, and the plain CSV, from a real gradebook.

The class: a real nbgrader gradebook (the course released with --no-exchange), scores written
through nbgrader's Gradebook API, states through the status store and LMS records as collect
writes them. Each LMS file is checked against the layout its importer reads (see the sources in
course_tools/grading/export.py): header names and order, the id columns, the Points Possible row,
what is left out, the late flag and the states (graded / not gradable / missing) and names.
One slow test drives a Canvas fixture zip through collect, autograde and every format.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from robustness.harness import ASSIGNMENT, REPO, instructor, make_course

from course_tools.grading import export as ex
from course_tools.grading.cli import main
from course_tools.grading.course import Course
from course_tools.grading.lms_records import LmsSubmission, save_manifest
from course_tools.grading.status import Entry, StatusStore
from course_tools.paths import env_with_venv

# student: (first, last, email, score or None, status state or None, late, LMS ids per LMS)
CLASS = {
    "alice": ("Alice", "Ng", "alice@example.org", 20.0, "graded", False),
    "bob": ("Bob", "Li", "", 17.5, "graded-with-issues", True),
    "carol": ("", "", "", 0.0, "not-gradable", False),  # a corrupt notebook; name only in the LMS record
    "dave": ("Dave", "Ortiz", "", 0.0, "graded", False),  # a blank notebook: graded, 0
    "erin": ("Erin", "Park", "", None, None, None),  # in the gradebook, no submission: missing
    "frank": ("Frank", "Roe", "", None, "failed", False),  # the grader failed: nothing to upload
}
LMS_IDS = {
    "canvas": {"alice": "1001", "bob": "1002", "carol": "1003", "dave": "1004", "frank": "1006"},
    "moodle": {"alice": "7001", "bob": "7002", "carol": "7003", "dave": "7004", "frank": "7006"},
    "blackboard": {"alice": "ang", "bob": "bli", "carol": "cdiaz", "dave": "dortiz", "frank": "froe"},
}
GRADED_AT = "2026-10-06 09:30:00"


def released_gradebook(base: Path) -> Course:
    """A course whose gradebook holds ps01 as `release` puts it there: the assignment, its notebook and
    graded cells with their points, read from the solution notebook (release itself takes a minute of
    CPU here; the slow test below runs the real one)."""
    course = Course.create(base / "course", exchange=base / "exchange")
    nb = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        # A new gradebook stamps its schema version, which nbgrader asks a fresh `alembic heads`
        # process for; read the same migration scripts in this process instead (seconds saved).
        from alembic.script import ScriptDirectory
        from nbgrader.dbutil import ALEMBIC_DIR

        head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
        mp.setattr("nbgrader.api.get_alembic_version", lambda: head)
        mp.setenv("PATH", env_with_venv()["PATH"])
        with Gradebook(course.db_url, course.course_id) as gb:
            gb.update_or_create_assignment(ASSIGNMENT, duedate="2026-10-05 23:59:00")
            gb.update_or_create_notebook(ASSIGNMENT, ASSIGNMENT)
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                if meta.get("grade"):
                    gb.update_or_create_grade_cell(
                        meta["grade_id"],
                        ASSIGNMENT,
                        ASSIGNMENT,
                        max_score=float(meta["points"]),
                        cell_type=cell.cell_type,
                    )
    return course


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = released_gradebook(tmp_path_factory.mktemp("export"))
    with Gradebook(course.db_url, course.course_id) as gb:
        for sid, (first, last, email, score, _, _) in CLASS.items():
            gb.update_or_create_student(
                sid, first_name=first or None, last_name=last or None, email=email or None
            )
            if score is None:
                continue
            sub = gb.update_or_create_submission(ASSIGNMENT, sid, timestamp="2026-10-05 14:00:00")
            grades = [g for nb in sub.notebooks for g in nb.grades]
            left = score
            for g in grades:  # spread the score over the cells, as the autograder would
                g.auto_score = min(left, float(g.max_score))
                g.needs_manual_grade = False
                left -= g.auto_score
            gb.db.commit()
    store = StatusStore(course.root)
    for sid, (_, _, _, score, state, _) in CLASS.items():
        if state:
            issues = ["notebook is not valid JSON"] if state == "not-gradable" else []
            store.put(ASSIGNMENT, sid, Entry(state=state, score=score, issues=issues, graded_at=GRADED_AT))
    return course


def collected_from(course, lms: str) -> None:
    """The LMS record collect would write for this class downloaded from `lms`."""
    save_manifest(
        course.root,
        ASSIGNMENT,
        [
            LmsSubmission(
                student_id=sid,
                lms=lms,
                lms_user_id=uid,
                name="Carol Diaz" if sid == "carol" else f"{CLASS[sid][0]} {CLASS[sid][1]}",
                late=bool(CLASS[sid][5]),
                submitted_at="2026-10-05T14:00:00",
                files=[f"{uid}_{ASSIGNMENT}.ipynb"],
            )
            for sid, uid in LMS_IDS[lms].items()
        ],
    )


def read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def by(rows: list[list[str]], key: str) -> dict[str, dict[str, str]]:
    header = rows[0]
    return {r[header.index(key)]: dict(zip(header, r, strict=True)) for r in rows[1:]}


def test_plain_has_names_lms_ids_late_and_states(course, tmp_path):
    collected_from(course, "canvas")
    to = tmp_path / "grades.csv"
    assert main(["export", "--to", str(to), f"--course={course.root}"]) == 0
    rows = read(to)
    header = rows[0]
    assert header[:4] == ["student_id", "last_name", "first_name", "email"]
    assert header[4:7] == [f"{ASSIGNMENT} lms_user_id", f"{ASSIGNMENT} late", f"{ASSIGNMENT} state"]
    assert header[-2:] == [ASSIGNMENT, "total"]  # scores stay the last columns, as before
    table = by(rows, "student_id")
    assert set(table) == set(CLASS)
    a = table["alice"]
    assert (a["last_name"], a["first_name"], a["email"]) == ("Ng", "Alice", "alice@example.org")
    assert (a[f"{ASSIGNMENT} lms_user_id"], a[f"{ASSIGNMENT} late"], a[f"{ASSIGNMENT} state"]) == (
        "1001",
        "no",
        "graded",
    )
    assert a[ASSIGNMENT] == a["total"] == "20"
    assert table["bob"][ASSIGNMENT] == "17.5" and table["bob"][f"{ASSIGNMENT} late"] == "yes"
    # the gradebook has no name for carol: the LMS record's display name fills in
    assert (table["carol"]["first_name"], table["carol"]["last_name"]) == ("Carol", "Diaz")
    # a corrupt submission and a blank one both score 0, and the state tells them apart
    assert table["carol"][ASSIGNMENT] == table["dave"][ASSIGNMENT] == "0"
    assert table["carol"][f"{ASSIGNMENT} state"] == "not-gradable"
    assert table["dave"][f"{ASSIGNMENT} state"] == "graded"
    # no submission: no score (not a 0), state missing, late unknown
    e = table["erin"]
    assert (e[ASSIGNMENT], e["total"], e[f"{ASSIGNMENT} state"], e[f"{ASSIGNMENT} late"]) == (
        "",
        "",
        "missing",
        "",
    )
    assert table["frank"][f"{ASSIGNMENT} state"] == "failed"


def test_canvas_gradebook_import_layout(course, tmp_path):
    collected_from(course, "canvas")
    to = tmp_path / "canvas.csv"
    result = ex.export(course, "canvas", ASSIGNMENT, to, lms_id="4242", lms_name="Problem set 1")
    rows = read(to)
    # Canvas's importer: Student, ID, SIS User ID, SIS Login ID, Section, then assignments "Title (id)"
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Problem set 1 (4242)"]
    assert "Points Possible" in rows[1][0] and rows[1][1:5] == ["", "", "", ""] and rows[1][5] == "20"
    students = {r[1]: r for r in rows[2:]}
    # only students with a score; the user id in ID; names as Canvas sorts them
    assert set(students) == {"1001", "1002", "1003", "1004"}
    assert students["1001"] == ["Ng, Alice", "1001", "", "", "", "20"]
    assert students["1002"][5] == "17.5" and students["1003"][0] == "Diaz, Carol"
    assert students["1003"][5] == students["1004"][5] == "0"
    assert all(len(r) == 6 for r in rows)  # no column Canvas would take for a new assignment
    # late flag and state in the companion file, with the ones left out of the upload
    states = by(read(tmp_path / "canvas-states.csv"), "student_id")
    assert read(tmp_path / "canvas-states.csv")[0] == ex.STATES_HEADER
    assert (states["carol"]["state"], states["carol"]["in_upload"]) == ("not-gradable", "yes")
    assert "not valid JSON" in states["carol"]["note"]
    assert (states["dave"]["state"], states["bob"]["late"], states["alice"]["late"]) == (
        "graded",
        "yes",
        "no",
    )
    assert (states["erin"]["state"], states["erin"]["in_upload"], states["erin"]["lms_user_id"]) == (
        "missing",
        "no",
        "",
    )
    assert (states["frank"]["state"], states["frank"]["in_upload"]) == ("failed", "no")
    text = "\n".join(result.lines)
    assert "4 grade(s)" in text and "missing" in text and "erin" in text and "failed" in text, text
    assert result.files == [to, tmp_path / "canvas-states.csv"]


def test_canvas_without_an_assignment_id_says_what_canvas_will_do(course, tmp_path):
    collected_from(course, "canvas")
    result = ex.export(course, "canvas", ASSIGNMENT, tmp_path / "c.csv")
    assert read(tmp_path / "c.csv")[0][-1] == ASSIGNMENT
    assert any("--lms-id" in line for line in result.lines)


def test_moodle_offline_grading_worksheet(course, tmp_path):
    collected_from(course, "moodle")
    to = tmp_path / "moodle.csv"
    ex.export(course, "moodle", ASSIGNMENT, to)
    rows = read(to)
    assert rows[0] == [
        "Identifier",
        "Full name",
        "Email address",
        "Status",
        "Grade",
        "Maximum Grade",
        "Grade can be changed",
        "Last modified (submission)",
        "Last modified (grade)",
        "Late",
        "State",
        "nbgrader id",
    ]
    table = by(rows, "nbgrader id")
    a = table["alice"]
    assert (a["Identifier"], a["Full name"], a["Email address"]) == (
        "Participant 7001",
        "Alice Ng",
        "alice@example.org",
    )
    assert (a["Grade"], a["Maximum Grade"], a["Grade can be changed"]) == ("20", "20", "Yes")
    graded = datetime.fromisoformat(a["Last modified (grade)"])
    assert graded.tzinfo is not None and graded.replace(tzinfo=None) == datetime(2026, 10, 6, 9, 30)
    assert table["bob"]["Grade"] == "17.5" and table["bob"]["Late"] == "yes"
    assert (table["carol"]["Grade"], table["carol"]["State"], table["carol"]["Full name"]) == (
        "0",
        "not-gradable",
        "Carol Diaz",
    )
    assert (table["dave"]["Grade"], table["dave"]["State"]) == ("0", "graded")
    # an empty Grade changes nothing in Moodle; erin has no participant id for this assignment
    assert (table["frank"]["Grade"], table["frank"]["State"]) == ("", "failed")
    e = table["erin"]
    assert (e["Identifier"], e["Grade"], e["State"], e["Status"]) == ("", "", "missing", "No submission")
    assert not (tmp_path / "moodle-states.csv").exists()


def test_blackboard_grade_center_upload(course, tmp_path):
    collected_from(course, "blackboard")
    to = tmp_path / "bb.csv"
    ex.export(course, "blackboard", ASSIGNMENT, to, lms_id="1702852")
    rows = read(to)
    assert rows[0] == [
        "Last Name",
        "First Name",
        "Username",
        "Student ID",
        "Last Access",
        "Availability",
        f"{ASSIGNMENT} [Total Pts: 20 Score] |1702852",
    ]
    users = {r[2]: r for r in rows[1:]}
    assert set(users) == {"ang", "bli", "cdiaz", "dortiz"}
    assert users["ang"][:2] == ["Ng", "Alice"] and users["ang"][6] == "20"
    assert users["bli"][6] == "17.5" and users["cdiaz"][6] == users["dortiz"][6] == "0"
    first_line = to.read_text().splitlines()[1]
    assert first_line.startswith('"') and first_line.count('"') == 2 * 7  # every value quoted
    states = by(read(tmp_path / "bb-states.csv"), "student_id")
    assert states["carol"]["state"] == "not-gradable"
    assert states["erin"]["state"] == "missing" and states["bob"]["late"] == "yes"


def test_refusals_say_what_to_do_and_write_nothing(course, tmp_path, capsys):
    def refused(*args: str) -> str:
        with pytest.raises(SystemExit) as exc:
            main(["export", *args, f"--course={course.root}"])
        assert exc.value.code not in (0, None)
        return str(exc.value.code)

    to = str(tmp_path / "x.csv")
    collected_from(course, "canvas")
    assert "needs --assignment" in refused("--format", "canvas", "--to", to)
    msg = refused("--assignment", "ps99_nothing", "--to", to)
    assert "ps99_nothing" in msg and "releas" in msg, msg
    assert "collected from a canvas download" in refused(
        "--format", "moodle", "--assignment", ASSIGNMENT, "--to", to
    )
    assert "no folder" in refused("--to", str(tmp_path / "nowhere" / "x.csv"))
    (course.root / ".grading" / "lms" / f"{ASSIGNMENT}.json").unlink()
    assert "collect" in refused("--format", "canvas", "--assignment", ASSIGNMENT, "--to", to)
    assert not (tmp_path / "x.csv").exists()
    # outside a course: no gradebook is created, no CSV written
    elsewhere = tmp_path / "not_a_course"
    elsewhere.mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["export", f"--course={elsewhere}", "--to", str(elsewhere / "g.csv")])
    assert exc.value.code not in (0, None)
    assert sorted(p.name for p in elsewhere.iterdir()) == []


def test_a_submission_that_could_not_be_graded_gets_a_page_saying_why(course):
    """Before, a corrupt notebook got no feedback page at all (nbgrader renders only autograded ones)."""
    from course_tools.grading.feedback_unreadable import write_unreadable_pages

    pages = write_unreadable_pages(course, ASSIGNMENT)
    assert [p.relative_to(course.root).parts for p in pages] == [
        ("feedback", "carol", ASSIGNMENT, f"{ASSIGNMENT}.html")
    ]
    text = pages[0].read_text()
    assert "0 of 20" in text and "notebook is not valid JSON" in text and f"{ASSIGNMENT}.ipynb" in text
    assert write_unreadable_pages(course, ASSIGNMENT, ["bob"]) == []  # only the students asked for


def test_a_failed_write_leaves_the_previous_files(tmp_path, monkeypatch):
    old_main, old_states = tmp_path / "c.csv", tmp_path / "c-states.csv"
    old_main.write_text("previous upload\n")
    old_states.write_text("previous states\n")
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(ex.os, "replace", flaky)
    with pytest.raises(OSError):
        ex.write_atomically({old_main: "new,main\r\n", old_states: "new,states\r\n"})
    assert old_main.read_text() == "previous upload\n" and old_states.read_text() == "previous states\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c-states.csv", "c.csv"]  # no temporary left


def test_scores_are_written_as_the_gradebook_has_them():
    assert [ex.fmt_score(x) for x in (20.0, 17.5, 0.0, 0.1 + 0.2, None)] == [
        "20",
        "17.5",
        "0",
        repr(0.1 + 0.2),
        "",
    ]
    assert float(ex.fmt_score(1 / 3)) == 1 / 3


@pytest.mark.slow
def test_lms_zips_to_every_format(tmp_path):
    """Downloads from each LMS collected, autograded, fed back, exported in every format.

    Canvas brings a right answer (late) and one with a wrong part, Moodle a blank notebook beside a
    stray file, Blackboard a corrupt notebook: four submissions, one assignment, every path from zip
    to feedback page and import file (the README's and the guide's walk-throughs, end to end).
    """
    import sys

    from assignments.ps01_mistakes import MISTAKES
    from lms_fixtures import FixtureSubmission, build_zip

    from course_tools.grading.submissions import fill, solution_answers

    course = make_course(tmp_path, release_args=("--no-exchange",))
    release = nbformat.read(course.root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    source = nbformat.read(course.root / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = solution_answers(source)
    right = fill(release, answers)
    wrong = next(m for m in MISTAKES if m.part == "cross_entropy")  # worth 2 points
    zips = {
        "canvas": [
            FixtureSubmission("Wei Zhang", "4211", notebook=right, late=True),
            FixtureSubmission(
                "Bob Jones", "1002", notebook=fill(release, {**answers, wrong.part: wrong.source})
            ),
        ],
        "moodle": [FixtureSubmission("Ana Lima", "77", notebook=release, extra_files={"readme.md": "hi"})],
        "blackboard": [
            FixtureSubmission("Sam Cole", "scole", extra_files={f"{ASSIGNMENT}.ipynb": "{ not json"})
        ],
    }
    for lms, subs in zips.items():
        zip_path = build_zip(lms, tmp_path / f"{lms}.zip", subs)
        out = instructor(course, "collect", ASSIGNMENT, "--zip", str(zip_path), "--lms", lms).stdout
        if lms == "moodle":
            assert "ignored, not a notebook" in out and "readme.md" in out, out
    out = instructor(course, "autograde", ASSIGNMENT, "--jobs", "2").stdout
    assert "3 graded, 1 not-gradable" in out, out  # right, wrong, blank; the corrupt one
    hint = next(line for line in out.splitlines() if line.startswith("details: "))
    assert hint == (  # a command that works as printed, outside the venv too
        f"details: {sys.executable} -m course_tools.grading status {ASSIGNMENT} --problems --course {course.root}"
    )
    proc = instructor(course, "feedback", ASSIGNMENT)
    assert "3/3" in proc.stderr and "6/" not in proc.stderr, proc.stderr  # the progress bar counts each once
    for student in ("4211", "1002", "77"):
        assert (course.root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").exists()
    unreadable = (course.root / "feedback" / "scole" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "could not be graded" in unreadable and "0 of 20" in unreadable, unreadable
    files = {}
    for fmt in ex.FORMATS:
        to = tmp_path / f"{fmt}.csv"
        args = [] if fmt == "plain" else ["--format", fmt, "--assignment", ASSIGNMENT, "--lms-id", "55"]
        instructor(course, "export", "--to", str(to), *args)
        files[fmt] = read(to)

    canvas = files["canvas"]
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", f"{ASSIGNMENT} (55)"]
    assert canvas[1][0].strip() == "Points Possible" and canvas[1][5] == "20"
    # only the student with a Canvas id; Student is the name Canvas's file names carry (squashed)
    assert sorted(canvas[2:]) == [
        ["jonesbob", "1002", "", "", "", "18"],
        ["zhangwei", "4211", "", "", "", "20"],
    ]
    states = by(read(tmp_path / "canvas-states.csv"), "student_id")
    assert (states["4211"]["late"], states["4211"]["in_upload"]) == ("yes", "yes")
    assert states["4211"]["state"] in ("graded", "graded-with-issues")
    assert states["scole"]["state"] == "not-gradable" and states["scole"]["in_upload"] == "no"

    moodle = by(files["moodle"], "nbgrader id")
    assert moodle["77"]["Identifier"] == "Participant 77" and moodle["77"]["Full name"] == "Ana Lima"
    assert moodle["77"]["Grade"] == "0" and moodle["77"]["State"] in (
        "graded",
        "graded-with-issues",
    )  # blank notebook: 0
    assert moodle["4211"]["Identifier"] == "" and moodle["4211"]["Grade"] == ""  # no Moodle id: skipped

    bb = files["blackboard"]
    assert bb[0][-1] == f"{ASSIGNMENT} [Total Pts: 20 Score] |55"
    assert bb[1:] == [["Cole", "Sam", "scole", "", "", "", "0"]]
    bb_states = by(read(tmp_path / "blackboard-states.csv"), "student_id")
    assert bb_states["scole"]["state"] == "not-gradable"  # the corrupt one, told apart from Ana's blank

    plain = by(files["plain"], "student_id")
    assert (plain["77"]["first_name"], plain["77"]["last_name"]) == ("Ana", "Lima")  # Moodle's folder name
    assert (plain["scole"]["first_name"], plain["scole"]["last_name"]) == (
        "Sam",
        "Cole",
    )  # Blackboard's receipt
    assert plain["4211"][ASSIGNMENT] == "20" and plain["4211"][f"{ASSIGNMENT} late"] == "yes"
    assert plain["1002"][ASSIGNMENT] == "18" and plain["1002"][f"{ASSIGNMENT} late"] == "no"  # lost its 2
    assert plain["77"][f"{ASSIGNMENT} state"] in ("graded", "graded-with-issues")
    assert plain["scole"][f"{ASSIGNMENT} state"] == "not-gradable"
    assert plain["77"][ASSIGNMENT] == plain["scole"][ASSIGNMENT] == "0"
