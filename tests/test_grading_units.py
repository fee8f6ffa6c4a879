"""Fast tests of the pure parts of course_tools.grading (seconds: no kernel, no nbgrader command, no sandbox run).

Intake has its own file (tests/test_grading_intake.py) and the checker is tested against a real
kernel in tests/test_checker.py; this file covers the status table, nbgrader cell metadata and
region scanning, answer fragments, the JSON records, the course directory, the executor's and
worker's pure steps, the command line's argument checks, the verdict outputs, and the sandbox's
command line (what bubblewrap is asked to bind, in which order, as which user).
"""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

from course_tools.grading import sandbox
from course_tools.grading.answer_code import (
    BEGIN,
    END,
    MIN_CHARS,
    answer_fragments,
    normalised_lines,
    regions,
    solution_regions,
)
from course_tools.grading.cells import (
    hidden_lines,
    is_locked_setup,
    is_test_cell,
    nbgrader_meta,
    visible_part,
)
from course_tools.grading.course import Course, course_config
from course_tools.grading.records import GradeJob, GradeResult
from course_tools.grading.status import STATES, Entry, StatusStore, format_table
from course_tools.grading.submissions import fill, grade_id, solution_answers, write_submission
from course_tools.paths import REPO

NB = "ps01_backprop"
RELEASE = REPO / "exercises" / NB / f"{NB}.ipynb"
SOURCE = REPO / "solutions" / NB / f"{NB}.ipynb"


@pytest.fixture(scope="module")
def notebooks():
    return nbformat.read(SOURCE, as_version=4), nbformat.read(RELEASE, as_version=4)


def by_id(nb) -> dict:
    return {grade_id(c): c for c in nb.cells}


# ------------------------------------------------------------------------- status


def test_an_entry_refuses_an_unknown_state():
    with pytest.raises(AssertionError, match="unknown state 'done'"):
        Entry("done")
    assert Entry("graded").graded_at, "the time it was graded is filled in"


def test_the_store_keeps_entries_across_instances(tmp_path):
    store = StatusStore(tmp_path)
    assert store.get(NB, "alice") is None and store.assignments() == []
    entry = Entry("graded-with-issues", 17.5, 20.0, ["renamed x"], ["line 1: uses sockets"], 9.2, "abc")
    store.put(NB, "alice", entry)
    again = StatusStore(tmp_path)
    assert again.get(NB, "alice") == entry
    assert json.loads((tmp_path / ".grading" / "status.json").read_text())[NB]["alice"]["score"] == 17.5
    assert not list((tmp_path / ".grading").glob("*.tmp")), "the atomic replace leaves no temporary file"


def test_two_runs_writing_one_course_lose_nothing(tmp_path):
    first, second = StatusStore(tmp_path), StatusStore(tmp_path)  # both read the file before either writes
    first.put(NB, "alice", Entry("graded", 20, 20))
    second.put(NB, "bob", Entry("failed"))
    first.put("ps02_exploding", "carol", Entry("graded", 1, 2))
    final = StatusStore(tmp_path)
    assert final.assignments() == [NB, "ps02_exploding"]
    assert list(final.entries(NB)) == ["alice", "bob"]
    assert final.entries(NB)["bob"].state == "failed"


def test_entries_come_sorted_by_student(tmp_path):
    store = StatusStore(tmp_path)
    for s in ["zoe", "adam", "mia"]:
        store.put(NB, s, Entry("graded"))
    assert list(store.entries(NB)) == ["adam", "mia", "zoe"]


def table_entries() -> dict[str, Entry]:
    return {
        "alice": Entry("graded", 20.0, 20.0, seconds=9.14),
        "bob-with-a-long-name": Entry(
            "graded-with-issues", 17.5, 20.0, ["renamed x to y"], ["cross_entropy line 1: uses sockets"], 10.0
        ),
        "carol": Entry("failed", None, None, ["ValueError: boom"]),
        "dan": Entry("not-gradable", 0.0, 20.0, ["missing notebook"], seconds=0.0),
        "eve": Entry("graded", 20.0, None, review=["relative_error line 2: calls setattr"]),
    }


def test_the_status_table_shows_counts_scores_times_issues_and_notes():
    lines = format_table(NB, table_entries()).split("\n")
    assert lines[0] == f"{NB}: 5 submission(s)"
    assert lines[1] == "  2 graded, 1 graded-with-issues, 1 not-gradable, 1 failed"  # in STATES' order
    rows = {ln.split()[0]: ln for ln in lines[2:] if not ln.startswith("  " + " " * 20)}
    assert rows["alice"].split() == ["alice", "graded", "20/20", "9.1s"]
    assert rows["bob-with-a-long-name"].split() == [
        "bob-with-a-long-name",
        "graded-with-issues",
        "17.5/20",
        "10.0s",
    ]
    assert rows["carol"].split() == ["carol", "failed"], "no score and no time for a failed run"
    assert rows["dan"].split() == ["dan", "not-gradable", "0/20", "0.0s"]
    assert rows["eve"].split() == ["eve", "graded", "20"], "a score without a maximum"
    columns = {ln.index(ln.split()[1]) for ln in rows.values()}
    assert columns == {len("  bob-with-a-long-name  ")}, "the state column is aligned to the longest name"
    bob = lines.index(rows["bob-with-a-long-name"])
    assert lines[bob + 1].strip() == "- renamed x to y"
    assert lines[bob + 2].strip() == "? review: cross_entropy line 1: uses sockets"


def test_problems_only_hides_clean_submissions_but_not_review_notes():
    text = format_table(NB, table_entries(), only_problems=True)
    students = [ln.split()[0] for ln in text.split("\n")[2:] if not ln.lstrip().startswith(("-", "?"))]
    assert students == ["bob-with-a-long-name", "carol", "dan", "eve"]
    assert text.split("\n")[0] == f"{NB}: 5 submission(s)", "the counts still cover everyone"


def test_every_state_has_a_count_label():
    entries = {f"s{i}": Entry(state) for i, state in enumerate(STATES)}
    assert format_table(NB, entries).split("\n")[1] == "  " + ", ".join(f"1 {s}" for s in STATES)


# ------------------------------------------------------------------------- cells


def test_cell_kinds_on_the_released_notebook(notebooks):
    _, release = notebooks
    cells = by_id(release)
    assert is_test_cell(cells["test_cross_entropy"]) and not is_locked_setup(cells["test_cross_entropy"])
    assert is_locked_setup(cells["setup"]) and not is_test_cell(cells["setup"])
    assert not is_test_cell(cells["cross_entropy"]) and not is_locked_setup(cells["cross_entropy"])
    assert not is_locked_setup(cells["title"]), "a locked markdown cell is not setup code"
    tests = sorted(g for g, c in cells.items() if is_test_cell(c))
    assert tests == sorted(g for g in cells if g.startswith("test_")) and len(tests) == 9


def test_a_graded_markdown_answer_is_not_a_test_cell():
    cell = nbformat.v4.new_markdown_cell("Explain why.")
    cell.metadata["nbgrader"] = {"grade": True, "solution": True, "grade_id": "explain", "points": 2}
    assert not is_test_cell(cell)
    plain = nbformat.v4.new_code_cell("x = 1")
    assert nbgrader_meta(plain) == {} and not is_test_cell(plain) and not is_locked_setup(plain)


def test_the_visible_part_of_each_source_test_cell_is_what_the_release_shows(notebooks):
    source, release = notebooks
    released = by_id(release)
    tests = [c for c in source.cells if is_test_cell(c)]
    assert tests
    for c in tests:
        assert visible_part(c.source) == released[grade_id(c)].source, grade_id(c)


def test_hidden_lines_never_reach_the_release(notebooks):
    source, release = notebooks
    shown = {line.strip() for c in release.cells for line in c.source.split("\n")}
    hidden = [line for c in source.cells if is_test_cell(c) for line in hidden_lines(c.source)]
    assert len(hidden) > 50
    # only openings of calls the visible tests make too ("check_close(") are also shown
    assert {line for line in hidden if line in shown} <= {"check_close(", "run_find_wrong_gradients("}
    assert not any("HIDDEN TESTS" in line for line in shown)
    assert all(len(line) >= 12 and not line.startswith("#") for line in hidden)


def test_hidden_regions_are_cut_line_by_line():
    src = "a = 1\n    ### BEGIN HIDDEN TESTS\n    # a comment\n    x\n    check_close('y', y, 1.0)\n    ### END HIDDEN TESTS\nb = 2"
    assert visible_part(src) == "a = 1\nb = 2"
    assert hidden_lines(src) == ["check_close('y', y, 1.0)"], "comments and short lines are not distinctive"
    assert visible_part("### BEGIN HIDDEN TESTS\nsecret_reference_value()") == "", "unterminated: all hidden"


# ------------------------------------------------------------------------- answer_code


def test_regions_are_the_code_between_markers():
    src = f"def f():\n    {BEGIN}\n    return 1\n    {END}\n\ndef g():\n    {BEGIN}\n    a = 2\n    return a\n    {END}"
    assert regions(src) == ["    return 1", "    a = 2\n    return a"]
    assert regions(f"{BEGIN}\nnever closed") == []
    assert regions("no markers") == []


def test_solution_regions_of_ps01_are_its_answer_cells(notebooks):
    source, _ = notebooks
    found = solution_regions(SOURCE)
    answers = {
        grade_id(c) for c in source.cells if nbgrader_meta(c).get("solution") and c.cell_type == "code"
    }
    assert {gid for gid, _ in found} == answers
    for gid, code in found:
        assert BEGIN not in code and END not in code, gid
        assert not code.startswith((" ", "\t")), "regions are dedented"


def test_normalised_lines_see_through_names_layout_comments_and_strings():
    a = "s = torch.sigmoid(z)  # the activation\nreturn s * (1 - s)"
    b = 'sig = torch.sigmoid(x)\n\n"""a docstring"""\nreturn sig*(1-sig)'
    assert normalised_lines(a) == normalised_lines(b) == ["_=_.sigmoid(_)", "return_*(1-_)"]
    assert normalised_lines("x.sum(dim=1)") == ["_.sum(_=1)"], (
        "attribute names are kept, keywords args renamed"
    )
    assert normalised_lines("for i in range(3):\n    pass") == ["for_in_(3):", "pass"], "keywords are kept"
    assert normalised_lines("x = (1,") == [], "code that does not tokenize gives nothing"
    assert normalised_lines("a = 1\nx = (1,") == ["_=1"], "the lines before a tokenize error are kept"


def test_answer_fragments_skip_generic_code():
    long = "probs = torch.softmax(logits, dim=1)\nprobs[torch.arange(len(y)), y] -= 1\nreturn probs / len(y)"
    fragments = answer_fragments(long)
    assert fragments and all(len(f) >= MIN_CHARS for f in fragments)
    assert "_=_.softmax(_,_=1)\n_[_.arange(_(_)),_]-=1" in fragments
    assert answer_fragments("return a * b") == []


# ------------------------------------------------------------------------- records


def job(**over) -> GradeJob:
    fields = dict(
        course_root="/srv/course",
        course_id="gradient-problems",
        assignment=NB,
        student="alice",
        staged="/srv/course/.grading/staging/ps01_backprop/alice",
        template_db="/srv/course/.grading/template-ps01_backprop.db",
    )
    return GradeJob(**{**fields, **over})


def test_a_job_crosses_as_json_and_back():
    j = job(cell_timeout=30, sandbox=False, work_dir="/tmp/w")
    assert GradeJob.from_json(j.to_json()) == j
    data = json.loads(j.to_json())
    assert data["memory_bytes"] == 4 << 30 and data["cell_timeout"] == 30
    newer = {**data, "gpu": "none"}  # a newer instructor tool's extra field
    assert GradeJob.from_json(json.dumps(newer)) == j
    with pytest.raises(TypeError):
        GradeJob.from_json(json.dumps({k: v for k, v in data.items() if k != "student"}))
    with pytest.raises(AttributeError):
        j.student = "mallory"  # frozen: a job is not edited on the way


def test_a_result_crosses_as_json_and_a_failure_says_why():
    r = GradeResult(
        "alice", NB, ok=True, scores={"notebooks": {NB: {"grades": {}}}}, report={"crashes": []}, seconds=3.5
    )
    assert GradeResult.from_json(r.to_json()) == r
    failed = GradeResult.failure(job(), "worker died", worker_lost=True)
    assert (failed.student, failed.assignment, failed.ok) == ("alice", NB, False)
    assert failed.error == "worker died" and failed.worker_lost and failed.scores == {}
    assert GradeResult.from_json(json.dumps({**json.loads(failed.to_json()), "extra": 1})) == failed


# ------------------------------------------------------------------------- course


def test_a_course_directory_reads_the_repositorys_config(tmp_path):
    course = Course.create(tmp_path / "course")
    assert (course.root / "nbgrader_config.py").read_text() == (REPO / "nbgrader_config.py").read_text()
    assert course.exchange == tmp_path / "exchange" and stat.S_IMODE(course.exchange.stat().st_mode) == 0o777
    assert course.course_id == "gradient-problems"
    assert (course.source_directory, course.release_directory) == ("solutions", "exercises")
    assert course.submitted_directory == "submitted"
    assert course.db_url == f"sqlite:///{course.root / 'gradebook.db'}"
    assert course.path("autograded", "alice", NB) == course.root / "autograded" / "alice" / NB
    assert course.path("release", NB) == course.root / "exercises" / NB
    assert f"--Exchange.root={course.exchange}" in course.common_args()
    assert f"--CourseDirectory.db_url={course.db_url}" in course.common_args()


def test_arguments_win_over_the_config(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'from-config'\nc.Exchange.root = '/srv/x'\n"
        "c.CourseDirectory.db_url = 'sqlite:////srv/gb.db'\n"
    )
    plain = Course.load(root)
    assert (plain.course_id, plain.exchange, plain.db_url) == (
        "from-config",
        Path("/srv/x"),
        "sqlite:////srv/gb.db",
    )
    given = Course.load(root, db_url="postgresql://db/x", course_id="cli", exchange="/srv/y")
    assert (given.course_id, given.exchange, given.db_url) == ("cli", Path("/srv/y"), "postgresql://db/x")


def test_a_folder_without_config_is_a_default_course(tmp_path):
    assert len(course_config(tmp_path)) == 0
    course = Course.load(tmp_path)
    assert course.course_id == "default_course" and course.source_directory == "source"
    assert course.exchange == Path("/srv/nbgrader/exchange")


# ------------------------------------------------------------------------- submissions


def test_solution_answers_are_the_answer_cells_without_markers(notebooks):
    source, _ = notebooks
    answers = solution_answers(source)
    assert set(answers) == {grade_id(c) for c in source.cells if nbgrader_meta(c).get("solution")}
    assert all(BEGIN not in a and END not in a for a in answers.values())
    assert answers["cross_entropy"].startswith("def cross_entropy(logits, y):")


def test_fill_replaces_only_the_given_answers_in_a_copy(notebooks):
    _, release = notebooks
    before = copy.deepcopy(release)
    filled = fill(release, {"relative_error": "def relative_error(a, b):\n    return 0.0"})
    assert release == before, "the released notebook is not changed"
    assert by_id(filled)["relative_error"].source.endswith("return 0.0")
    assert by_id(filled)["cross_entropy"].source == by_id(release)["cross_entropy"].source
    with pytest.raises(KeyError, match="test_cross_entropy"):
        fill(release, {"test_cross_entropy": "pass"})  # a test cell is not an answer


def test_write_submission_places_files_as_collect_would(tmp_path, notebooks):
    _, release = notebooks
    path = write_submission(release, tmp_path / "submitted", "alice", NB, NB)
    assert path == tmp_path / "submitted" / "alice" / NB / f"{NB}.ipynb"
    assert (path.parent / "timestamp.txt").read_text().startswith("2026-01-01")
    assert nbformat.read(path, as_version=4) == release


# ------------------------------------------------------------------------- executor


def test_a_grading_report_becomes_status_issues():
    from course_tools.grading.executor import _issues_from

    report = {
        "crashes": [{"cell": "relative_error", "kind": "kernel died", "detail": "Kernel died" + "." * 200}],
        "timeouts": ["test_relative_error"],
        "memory": ["cross_entropy_grad"],
        "truncated": [12, 14],
        "verdicts": {
            "test_cross_entropy": {"passed": False, "error": "CheckFailed: the loss is off by 3%"},
            "test_cross_entropy_grad": {"passed": False, "error": "ForbiddenCall: must not call autograd"},
            "test_relative_error": {"passed": False, "error": "CheckFailed: the function gave no answer"},
            "test_train_step": {"passed": True, "error": ""},
        },
        "calls": 40,
    }
    issues = _issues_from(GradeResult("alice", NB, ok=True, report=report))
    assert issues == [
        f"relative_error: kernel died ({'Kernel died' + '.' * 109}); graded on from the next cell",
        "test_relative_error: cell timed out and was interrupted",
        "cross_entropy_grad: memory limit reached (MemoryError)",
        "test_cross_entropy_grad: ForbiddenCall: must not call autograd",
        "test_relative_error: CheckFailed: the function gave no answer",
        "output cut in 2 cell(s)",
    ], "a plain wrong answer is a score, not an issue"
    assert _issues_from(GradeResult("alice", NB, ok=True, report={})) == []


def test_a_failed_result_keeps_intakes_issues_and_the_last_line_of_the_error():
    from course_tools.grading.executor import _take_result
    from course_tools.grading.intake import Staged

    staged = Staged("alice", None, ["renamed a to b"], ["line 1: uses sockets"], "f00d")
    error = "Traceback (most recent call last):\n  File x\nValueError: the scratch gradebook is locked\n"
    result = GradeResult("alice", NB, ok=False, error=error, seconds=4.0)
    entry = _take_result(None, None, result, staged)  # a failure touches neither course nor gradebook
    assert entry.state == "failed" and entry.score is None
    assert entry.issues == ["renamed a to b", "ValueError: the scratch gradebook is locked"]
    assert (entry.review, entry.fingerprint, entry.seconds) == (["line 1: uses sockets"], "f00d", 4.0)
    bare = _take_result(None, None, GradeResult("alice", NB, ok=False), staged)
    assert bare.issues[-1] == "unknown error"


def test_shipped_files_and_submitted_students(tmp_path):
    from course_tools.grading.executor import shipped_files, submitted_students

    course = Course.create(tmp_path / "course")
    release = course.path("release", NB)
    (release / "data").mkdir(parents=True)
    (release / f"{NB}.ipynb").write_text("{}")
    (release / "data" / "points.csv").write_text("1")
    assert shipped_files(course, NB) == {"data/points.csv"}
    assert shipped_files(course, "ps09_missing") == set()
    for student in ["bob", "alice"]:
        course.path("submitted", student, NB).mkdir(parents=True)
    course.path("submitted", "carol", "ps02_exploding").mkdir(parents=True)
    assert submitted_students(course, NB) == ["alice", "bob"]


def test_installing_an_autograded_folder_replaces_the_old_one_readably(tmp_path):
    from course_tools.grading.executor import _install_autograded

    src = tmp_path / "worker" / "autograded"
    (src / "sub").mkdir(parents=True)
    (src / f"{NB}.ipynb").write_text("new")
    (src / "sub" / "x.txt").write_text("x")
    os.chmod(src / f"{NB}.ipynb", 0o600)  # the worker writes 0600 files
    dest = tmp_path / "course" / "autograded" / "alice" / NB
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("from the last run")
    _install_autograded(src, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        f"{NB}.ipynb",
        "sub",
        "sub/x.txt",
    ]
    assert (dest / f"{NB}.ipynb").read_text() == "new"
    assert stat.S_IMODE((dest / f"{NB}.ipynb").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "sub").stat().st_mode) == 0o755
    assert not list(dest.parent.glob("*.incoming"))


# ------------------------------------------------------------------------- worker


def test_a_jobs_config_is_the_courses_with_the_workers_settings_on_top(tmp_path):
    from course_tools.grading.guarded_execute import GuardedExecute
    from course_tools.grading.worker import job_config

    course = Course.create(tmp_path / "course")
    j = job(course_root=str(course.root), cell_timeout=45, memory_bytes=1 << 30, sandbox=False, work_dir="/w")
    jobdir = tmp_path / "w" / "alice"
    config = job_config(j, jobdir)
    assert config.CourseDirectory.root == str(jobdir)
    assert config.CourseDirectory.db_url == f"sqlite:///{jobdir / 'gradebook.db'}"
    assert config.CourseDirectory.source_directory == "solutions", "the course's own settings stay"
    assert config.Execute.interrupt_on_timeout is True
    assert config.Execute.timeout == 45
    assert config.Autograde.autograde_preprocessors[0] is GuardedExecute
    assert config.GuardedExecute.use_sandbox is False and config.GuardedExecute.memory_bytes == 1 << 30
    assert config.GuardedExecute.report_path == str(jobdir / "report.json")
    assert config.GuardedExecute.work_root == "/w"
    assert config.OverwriteCells.add_missing_cells is True


def test_a_jobs_scratch_course_holds_data_files_and_the_submission_but_no_notebook_of_the_source(tmp_path):
    from course_tools.grading.worker import build_job_dir

    course = tmp_path / "course"
    source = course / "source" / NB
    (source / ".ipynb_checkpoints").mkdir(parents=True)
    (source / f"{NB}.ipynb").write_text("the solutions, with hidden tests")
    (source / "weights.pt").write_text("data")
    (source / ".ipynb_checkpoints" / "weights.pt").write_text("old")
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    staged = tmp_path / "staging" / "alice"
    staged.mkdir(parents=True)
    (staged / f"{NB}.ipynb").write_text("the student's")
    (tmp_path / "template.db").write_bytes(b"sqlite")
    work = tmp_path / "work"
    (work / "alice").mkdir(parents=True)
    (work / "alice" / "left-over").write_text("from the last job")
    j = job(
        course_root=str(course),
        staged=str(staged),
        template_db=str(tmp_path / "template.db"),
        work_dir=str(work),
    )
    jobdir = build_job_dir(j)
    files = sorted(p.relative_to(jobdir).as_posix() for p in jobdir.rglob("*") if p.is_file())
    assert files == [
        "gradebook.db",
        "nbgrader_config.py",
        f"source/{NB}/weights.pt",
        f"submitted/alice/{NB}/{NB}.ipynb",
    ]
    assert stat.S_IMODE((jobdir / "gradebook.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(jobdir.stat().st_mode) == 0o711


def test_a_failed_autograde_is_summed_up_in_one_line():
    from course_tools.grading.worker import _failure_reason

    log = "[AutogradeApp] Converting notebook x\nTraceback (most recent call last):\nKeyError: 'grade_id'\n"
    assert _failure_reason({"error": "", "log": log}) == "KeyError: 'grade_id'"
    assert (
        _failure_reason({"error": None, "log": "ok\nValidationError: bad metadata"})
        == "ValidationError: bad metadata"
    )
    assert _failure_reason({"error": "", "log": ""}) == "nbgrader autograde failed"
    assert _failure_reason({"log": "no marker here"}) == "no marker here"


# ------------------------------------------------------------------------- command line


def test_zip_arguments_are_checked_before_anything_is_copied(tmp_path):
    from course_tools.grading.cli import check_zip_args

    good = tmp_path / "canvas.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("zhangwei_1234_5678_ps01_backprop.ipynb", "{}")
    (tmp_path / "not.zip").write_text("plain text")
    with pytest.raises(SystemExit, match="no such file"):
        check_zip_args([str(tmp_path / "missing.zip")], None)
    with pytest.raises(SystemExit, match="not a zip archive"):
        check_zip_args([str(tmp_path / "not.zip")], None)
    with pytest.raises(SystemExit, match="not a valid regular expression"):
        check_zip_args([str(good)], "(?P<student_id>")
    with pytest.raises(SystemExit, match=re.escape("named groups ['file_id']")):
        check_zip_args([str(good)], r"(?P<student_id>\w+)\.ipynb")
    assert check_zip_args([str(good)], None) is None  # the --lms layout's own pattern applies


# ------------------------------------------------------------------------- verdicts


def test_a_passed_check_turns_kernel_errors_and_warnings_into_plain_text():
    from nbformat.v4 import new_output

    from course_tools.grading.checked_execute import _verdict_outputs

    outs = [
        new_output("stream", name="stdout", text="loss 0.3\n"),
        new_output("stream", name="stderr", text="UserWarning: x\n"),
        new_output("error", ename="AssertionError", evalue="patched helper", traceback=[]),
    ]
    kept = _verdict_outputs(outs, True, "", "")
    assert [o.output_type for o in kept] == ["stream"] * 4, "no error output: nbgrader gives full marks"
    assert kept[1].text == "[warning, not graded] UserWarning: x\n"
    assert kept[2].text == "[in your kernel the visible tests raised AssertionError: patched helper]\n"
    assert kept[3].text == "[grader] every check of this part passed\n"


@pytest.mark.parametrize(
    "ename, message, kind, evalue",
    [
        ("CheckFailed", "dW1 is off", "CheckFailed", "dW1 is off"),
        ("ForbiddenCall", "must not call autograd", "ForbiddenCall", "must not call autograd"),
        ("NotImplementedError", "not written yet", "NotImplementedError", "not written yet"),
        ("ValueError", "shapes differ", "CheckFailed", "ValueError: shapes differ"),
    ],
)
def test_a_failed_check_ends_in_one_error_naming_it(ename, message, kind, evalue):
    from nbformat.v4 import new_output

    from course_tools.grading.checked_execute import _verdict_outputs

    printed = new_output("stream", name="stdout", text="visible tests passed\n")  # a fake claim in the kernel
    kept = _verdict_outputs([printed], False, ename, message)
    assert kept[0] == printed
    assert [o.output_type for o in kept] == ["stream", "error"]
    assert (kept[-1].ename, kept[-1].evalue) == (kind, evalue)


def test_a_forbidden_builtin_is_betrayed_by_its_aten_ops():
    from course_tools.grading.checker import _betrayed

    assert _betrayed("torch.nn.functional.cross_entropy", {"aten.exp", "aten._log_softmax"})
    assert not _betrayed("torch.nn.functional.cross_entropy", {"aten.exp", "aten.sum", "aten.log"})
    assert _betrayed("torch.autograd.grad", {"aten.mm", "aten.threshold_backward"})
    assert not _betrayed("torch.autograd.grad", {"aten.mm", "aten.relu"})
    assert not _betrayed("torch.some.unknown", {"aten._log_softmax"})


# ------------------------------------------------------------------------- sandbox command line


def binds(args: list[str]) -> list[tuple[str, str, str]]:
    """(option, source, destination) of every bind in a bubblewrap command line, in order."""
    out = []
    for i, a in enumerate(args):
        if a in ("--bind", "--ro-bind") and i + 2 < len(args):
            out.append((a, args[i + 1], args[i + 2]))
        if a == "--":
            break
    return out


@pytest.fixture
def dirs(tmp_path):
    work = tmp_path / "work" / "alice"
    work.mkdir(parents=True)
    (work / f"{NB}.ipynb").write_text("{}")  # the notebook with hidden tests
    runtime = tmp_path / "rt"
    runtime.mkdir()
    return work, runtime


def wrapped(dirs, monkeypatch, euid: int, **kw) -> list[str]:
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: euid)
    work, runtime = dirs
    return sandbox.wrap(
        ["python", "-m", "ipykernel_launcher", "-f", "c.json"], workdir=work, runtime_dir=runtime, **kw
    )


@pytest.mark.parametrize("euid", [0, 1000])
def test_the_sandbox_never_binds_the_solutions_or_the_repository(dirs, monkeypatch, euid):
    args = wrapped(dirs, monkeypatch, euid)
    solutions = REPO / "solutions"
    for _, src, dest in binds(args):
        for path in map(Path, (src, dest)):
            assert path != solutions and path not in solutions.parents, f"{path} exposes solutions/"
    sources = {Path(src) for _, src, _ in binds(args)}
    assert REPO / "course_lib" in sources and REPO / "course_tools" in sources
    assert (REPO / "gradebook.db") not in sources


@pytest.mark.parametrize("euid", [0, 1000])
def test_the_private_tmp_comes_before_every_bind_under_tmp(dirs, monkeypatch, euid):
    args = wrapped(dirs, monkeypatch, euid)
    work, runtime = dirs
    assert str(work).startswith("/tmp/"), "the test needs a workdir under /tmp"
    tmpfs = args.index("--tmpfs")
    assert args[tmpfs + 1] == "/tmp"
    assert args[tmpfs - 4 : tmpfs] == ["--size", str(sandbox.Limits().tmp_bytes), "--perms", "1777"]
    for i, a in enumerate(args):
        if a in ("--bind", "--ro-bind") and args[i + 2].startswith("/tmp/"):
            assert i > tmpfs, f"{args[i + 2]} is bound before /tmp is mounted, so the tmpfs would hide it"
    rw = [(src, dest) for opt, src, dest in binds(args) if opt == "--bind"]
    assert rw == [(str(work), str(work)), (str(runtime), str(runtime))], "only these two are writable"


def test_missing_parents_of_a_bind_are_made_open_and_outermost_first(dirs, monkeypatch):
    args = wrapped(dirs, monkeypatch, 0)
    work, _ = dirs
    at_bind = args.index(str(work)) - 1
    assert args[at_bind] == "--bind"
    made = [args[i + 1] for i in range(at_bind) if args[i] == "--dir"]
    wanted = [str(p) for p in reversed(work.parents) if p != Path("/") and p != Path("/tmp")]
    assert [d for d in made if d in wanted] == wanted, "each parent once, from the outside in"
    for d in wanted:
        i = args.index(d)
        assert args[i - 3 : i] == ["--perms", "0755", "--dir"], f"{d} must be open to the kernel's user"


def test_as_root_the_kernel_drops_to_nobody(dirs, monkeypatch):
    args = wrapped(dirs, monkeypatch, 0)
    assert "--unshare-user" not in args
    setpriv = args.index("setpriv")
    assert args[setpriv + 1 : setpriv + 4] == ["--reuid=65534", "--regid=65534", "--clear-groups"]
    assert ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"] == args[setpriv + 4 : setpriv + 7]
    assert ("--ro-bind", "/dev/null", str(dirs[0] / f"{NB}.ipynb")) not in binds(args), (
        "as nobody the 0600 notebook is closed anyway"
    )


def test_without_root_bubblewrap_enters_a_user_namespace_and_covers_the_notebooks(dirs, monkeypatch):
    args = wrapped(dirs, monkeypatch, 1000)
    assert args[:2] == ["bwrap", "--unshare-user"]
    assert not [a for a in args if a.startswith(("--reuid", "--regid"))]
    notebook = str(dirs[0] / f"{NB}.ipynb")
    assert ("--ro-bind", "/dev/null", notebook) in binds(args)
    cover = args.index(notebook)
    assert cover > args.index(str(dirs[0])), "the cover is mounted after the workdir bind, or it is hidden"


def test_limits_environment_and_the_kernel_command(dirs, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET", "s3cret")
    limits = sandbox.Limits(memory_bytes=3 << 30, cpu_seconds=60, max_processes=64, max_file_bytes=1 << 20)
    args = wrapped(dirs, monkeypatch, 0, limits=limits)
    cmd = ["python", "-m", "ipykernel_launcher", "-f", "c.json"]
    assert args[-len(cmd) :] == cmd and args[-len(cmd) - 1] == "--"
    prlimit = args.index("prlimit")
    assert args[prlimit + 1 : prlimit + 6] == [
        f"--as={3 << 30}",
        "--cpu=60",
        "--nproc=64",
        f"--fsize={1 << 20}",
        "--core=0",
    ]
    assert prlimit < args.index("setpriv")
    for flag in ("--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--clearenv"):
        assert flag in args[: args.index("--")]
    assert args.index("--clearenv") < args.index("--setenv")
    env = {args[i + 1]: args[i + 2] for i, a in enumerate(args) if a == "--setenv"}
    assert env == sandbox.kernel_environment()
    assert "s3cret" not in " ".join(args) and "GRADER_SECRET" not in env
    assert env["HOME"].startswith("/tmp/") and env["OMP_NUM_THREADS"] == "1"
    assert args[args.index("--chdir") + 1] == str(dirs[0])


def test_the_default_limits():
    limits = sandbox.Limits()
    assert limits.memory_bytes == 4 * sandbox.GiB and limits.cpu_seconds == 900
    assert limits.max_processes == 512 and limits.tmp_bytes == limits.max_file_bytes == 256 * sandbox.MiB


# ------------------------------------------------------------------------- the forbidden-call watch (in process)


def test_the_watch_blocks_a_builtin_and_its_aliases_then_puts_everything_back():
    import torch
    import torch.nn.functional as F

    from course_tools.grading.kernel.link import ForbiddenCall, _Watch

    original = F.cross_entropy
    namespace = {"ce": F.cross_entropy, "softmax": torch.softmax, "__ce__": F.cross_entropy}
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    watch = _Watch(namespace, ["torch.nn.functional.cross_entropy", "torch.no.such.thing"])
    with pytest.raises(ForbiddenCall, match="must not call torch.nn.functional.cross_entropy"), watch:
        assert namespace["softmax"] is torch.softmax, "other names are left alone"
        assert namespace["__ce__"] is original, "dunder names are not rebound"
        namespace["ce"](logits, y)  # an alias bound before the call
    with pytest.raises(ForbiddenCall), _Watch({}, ["torch.nn.functional.cross_entropy"]) as second:
        F.cross_entropy(logits, y)
    assert watch.hits == ["torch.nn.functional.cross_entropy"] == second.hits
    assert F.cross_entropy is original and namespace["ce"] is original, "restored after a failed call"
    assert issubclass(ForbiddenCall, AssertionError), "a blocked call fails the check like an assert"


def test_the_watch_records_aten_ops_and_blocks_autograd_under_any_name():
    import torch

    from course_tools.grading.kernel.link import ForbiddenCall, _Watch

    x = torch.randn(3, requires_grad=True)
    with _Watch({}, ["torch.autograd.grad"]) as watch:
        (x * 2).sum()
        with pytest.raises(ForbiddenCall, match="autograd"):
            (x * 2).sum().backward()  # Tensor.backward reaches the same engine
    assert "autograd" in watch.hits
    assert {"aten.mul", "aten.sum"} <= watch.ops
    (x * 2).sum().backward()  # the engine is back
    assert torch.equal(x.grad, torch.full((3,), 2.0))
    with _Watch({}, []) as idle:
        (x * 2).sum()
    assert idle.ops == set() and idle.hits == [], "no targets: nothing is patched or recorded"


def test_what_comes_back_from_a_call_is_chosen_one_level_deep():
    import torch

    from course_tools.grading.kernel.link import functions, grad_holders

    leaf = torch.zeros(2, requires_grad=True)
    layer = torch.nn.Linear(2, 1)
    plain, derived = torch.zeros(2), leaf * 2

    def helper():
        return 1

    held = grad_holders([leaf, plain, derived, [layer], {"w": leaf}, [[leaf]]])
    assert [id(t) for t in held] == [id(leaf), *map(id, layer.parameters()), id(leaf)]
    assert functions([helper, len, [helper], {"f": helper}, [[helper]], lambda: 0])[:3] == [helper] * 3
    assert len(functions([helper, len, [helper], {"f": helper}, [[helper]]])) == 3


def test_stale_kernel_parent_folders_of_dead_workers_are_swept(tmp_path):
    """A worker killed mid-submission leaves its socket folder; the next kernel parent removes it."""
    import subprocess
    import sys

    from course_tools.grading.warm import sweep_stale_runtime_roots

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"cgw-{gone.pid}-abc"
    (dead / "k-1").mkdir(parents=True)
    (dead / "k-1" / "connection.json").write_text("{}")
    alive = tmp_path / f"cgw-{os.getpid()}-def"
    alive.mkdir()
    unnamed = tmp_path / "cgw-xyz"  # not this scheme: left alone
    unnamed.mkdir()
    assert sweep_stale_runtime_roots(tmp_path) == [dead]
    assert not dead.exists() and alive.is_dir() and unnamed.is_dir()
