"""Fast tests of intake (course_tools.grading.intake): the repairs and notes made before grading.

No kernel, no nbgrader command: each test builds a submission folder from ps01's committed
release notebook (the one students get, with nbgrader's checksums) and the reference answers,
breaks it the way tests/robustness/submissions.py does, and checks what intake makes of it.
The slow robustness suite proves the same cases end to end through nbgrader's autograde.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
import pytest

from course_tools.grading import intake
from course_tools.grading.intake import (
    _pick,
    compare_with_source,
    dedupe_grade_ids,
    fingerprint,
    read_notebook,
    review_notes,
    stage_submission,
)
from course_tools.grading.submissions import fill, grade_id, solution_answers
from course_tools.paths import REPO

NB = "ps01_backprop"
RELEASE = REPO / "exercises" / NB / f"{NB}.ipynb"
SOURCE = REPO / "solutions" / NB / f"{NB}.ipynb"
TIMESTAMP = b"2026-01-01 00:00:00.000000 UTC"


@pytest.fixture(scope="module")
def _loaded():
    release = nbformat.read(RELEASE, as_version=4)
    answers = solution_answers(nbformat.read(SOURCE, as_version=4))
    return release, answers


@pytest.fixture
def release(_loaded) -> nbformat.NotebookNode:
    return copy.deepcopy(_loaded[0])


@pytest.fixture
def reference(_loaded) -> nbformat.NotebookNode:
    """The release with every answer filled in: what a student who got everything right hands in."""
    return fill(_loaded[0], _loaded[1])


@pytest.fixture
def cells(_loaded) -> dict[str, dict[str, dict]]:
    """What executor.source_cells reads from the gradebook, built from the release's own metadata."""
    out = {}
    for c in _loaded[0].cells:
        meta = c.metadata["nbgrader"]
        out[meta["grade_id"]] = {
            "cell_type": c.cell_type,
            "checksum": meta["checksum"],
            "locked": meta["locked"],
            "grade": bool(meta.get("grade") or meta.get("task")),
        }
    return {NB: out}


def cell(nb, gid: str):
    return next(c for c in nb.cells if grade_id(c) == gid)


def submit(folder: Path, files: dict[str, bytes | str]) -> Path:
    """submitted/<student>/<assignment>/ holding `files` (relative paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return folder


def stage(tmp_path: Path, files: dict, cells=None, shipped: set[str] = frozenset()):
    src = submit(tmp_path / "submitted" / "alice" / NB, files)
    return stage_submission(src, "alice", [NB], set(shipped), tmp_path / "staging", cells)


# ------------------------------------------------------------------------- read_notebook


def test_a_clean_reference_reads_without_issues(tmp_path, reference):
    path = tmp_path / f"{NB}.ipynb"
    nbformat.write(reference, path)
    nb, issues = read_notebook(path)
    assert issues == []
    assert [c.id for c in nb.cells] == [c.id for c in reference.cells], "valid ids must be kept"
    assert cell(nb, "cross_entropy").source == cell(reference, "cross_entropy").source


def test_stored_outputs_and_execution_counts_are_dropped(tmp_path, reference):
    c = cell(reference, "two_layer_backward")
    c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="y" * 2_000_000)]
    c.execution_count = 7
    path = tmp_path / f"{NB}.ipynb"
    nbformat.write(reference, path)
    nb, issues = read_notebook(path)
    kept = cell(nb, "two_layer_backward")
    assert kept.outputs == [] and kept.execution_count is None
    assert issues == [], "dropping outputs is routine, not an issue"


def test_a_truncated_notebook_is_not_json(tmp_path, reference):
    text = nbformat.writes(reference)
    path = tmp_path / f"{NB}.ipynb"
    path.write_text(text[: len(text) // 2])
    nb, issues = read_notebook(path)
    assert nb is None
    assert len(issues) == 1 and issues[0].startswith(f"{NB}.ipynb is not valid JSON (")
    assert re.search(r"at line \d+, column \d+\)$", issues[0])


@pytest.mark.parametrize("text", ['[{"cells": []}]', '{"cells": 3}', '{"worksheets": []}'])
def test_json_that_is_not_a_notebook_is_refused(tmp_path, text):
    path = tmp_path / f"{NB}.ipynb"
    path.write_text(text)
    assert read_notebook(path) == (None, [f"{NB}.ipynb is JSON but not a notebook (no list of cells)"])


def test_a_notebook_over_the_size_limit_is_not_parsed(tmp_path, reference, monkeypatch):
    path = tmp_path / f"{NB}.ipynb"
    nbformat.write(reference, path)
    monkeypatch.setattr(intake, "MAX_NOTEBOOK_BYTES", 1 << 20)  # the release is a few hundred KiB
    path.write_bytes(path.read_bytes() + b" " * (2 << 20))  # still valid JSON, but too big
    nb, issues = read_notebook(path)
    assert nb is None
    assert issues == [f"{NB}.ipynb is 2 MiB, over the 1 MiB limit"]


def test_duplicated_cell_ids_are_renumbered_and_reported(tmp_path, reference):
    data = json.loads(nbformat.writes(reference))
    for c in data["cells"]:
        c["id"] = "same-id"
    path = tmp_path / f"{NB}.ipynb"
    path.write_text(json.dumps(data))
    nb, issues = read_notebook(path)
    n = len(data["cells"])
    assert issues == [f"{NB}.ipynb: {n - 1} duplicated cell id(s) renumbered"]
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == n
    nbformat.validate(nb)


def test_missing_and_malformed_cell_ids_are_renumbered(tmp_path, reference):
    data = json.loads(nbformat.writes(reference))
    del data["cells"][0]["id"]
    data["cells"][1]["id"] = "not a valid id!"
    data["cells"][2]["id"] = 42
    path = tmp_path / f"{NB}.ipynb"
    path.write_text(json.dumps(data))
    nb, issues = read_notebook(path)
    # nbformat itself gives the cell without an id one (silently); the two malformed ones are intake's
    assert issues == [f"{NB}.ipynb: 2 missing or duplicated cell id(s) renumbered"]
    assert all(re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", c.id) for c in nb.cells)
    assert len({c.id for c in nb.cells}) == len(nb.cells)
    assert nb.cells[3].id == data["cells"][3]["id"], "a valid id is kept"
    nbformat.validate(nb)


def test_an_older_notebook_without_ids_gets_them(tmp_path, reference):
    data = json.loads(nbformat.writes(reference))
    data["nbformat_minor"] = 4  # nbformat 4.4 (older Jupyter) has no cell ids at all
    for c in data["cells"]:
        del c["id"]
    path = tmp_path / f"{NB}.ipynb"
    path.write_text(json.dumps(data))
    nb, issues = read_notebook(path)
    assert nb.nbformat_minor == 5 and len({c.id for c in nb.cells}) == len(nb.cells)
    assert issues == [f"{NB}.ipynb: {len(nb.cells)} missing or duplicated cell id(s) renumbered"]
    nbformat.validate(nb)


def test_a_cell_source_of_the_wrong_type_is_emptied_not_fatal(tmp_path, reference):
    data = json.loads(nbformat.writes(reference))
    index = next(i for i, c in enumerate(data["cells"]) if c["metadata"]["nbgrader"]["grade_id"] == "setup")
    data["cells"][index]["source"] = 5
    path = tmp_path / f"{NB}.ipynb"
    path.write_text(json.dumps(data))
    nb, _ = read_notebook(path)
    assert nb is not None and nb.cells[index].source == ""
    assert cell(nb, "cross_entropy").source == cell(reference, "cross_entropy").source


def test_a_notebook_off_the_format_is_graded_anyway_and_said_so(tmp_path, reference):
    data = json.loads(nbformat.writes(reference))
    data["cells"][0]["outputs"] = []  # a markdown cell with outputs: not in the schema
    path = tmp_path / f"{NB}.ipynb"
    path.write_text(json.dumps(data))
    nb, issues = read_notebook(path)
    assert nb is not None and len(nb.cells) == len(data["cells"])
    assert issues == [
        f"{NB}.ipynb does not follow the notebook format (Additional properties are not allowed "
        "('outputs' was unexpected)); graded anyway"
    ]


def test_a_cell_metadata_of_the_wrong_type_is_repaired(tmp_path, reference):
    data = json.loads(nbformat.writes(reference))
    data["cells"][0]["metadata"] = []  # the title (markdown) cell
    path = tmp_path / f"{NB}.ipynb"
    path.write_text(json.dumps(data))
    nb, issues = read_notebook(path)
    assert nb is not None, issues
    assert cell(nb, "cross_entropy").source == cell(reference, "cross_entropy").source
    assert any("metadata had the wrong type" in i for i in issues), issues


# ------------------------------------------------------------------------- _pick


@pytest.mark.parametrize(
    "names, picked",
    [
        ([f"{NB} (1).ipynb"], f"{NB} (1).ipynb"),
        (["PS01-Backprop.ipynb"], "PS01-Backprop.ipynb"),
        (["Untitled.ipynb", f"{NB} (2).ipynb"], f"{NB} (2).ipynb"),
        (["Untitled.ipynb"], "Untitled.ipynb"),  # the only notebook handed in
        (["Untitled.ipynb", "scratch.ipynb"], None),  # two unrelated: no guess
        ([f"{NB} (1).ipynb", f"{NB} (2).ipynb"], None),  # two copies: ambiguous
        ([], None),
    ],
)
def test_pick_finds_the_renamed_notebook_only_when_unambiguous(tmp_path, names, picked):
    got = _pick(NB, [tmp_path / n for n in names])
    assert (got.name if got else None) == picked


# ------------------------------------------------------------------------- review_notes


def with_code(reference, part: str, code: str):
    nb = copy.deepcopy(reference)
    cell(nb, part).source = code + "\n" + cell(nb, part).source
    return nb


def test_the_reference_answers_raise_no_review_note(reference):
    assert review_notes(reference) == []


@pytest.mark.parametrize(
    "code, note",
    [
        ("ip = get_ipython()", "uses IPython internals (get_ipython)"),
        ("get_ipython().ast_transformers.append(None)", "rewrites the code of later cells"),
        ("import socket", "uses sockets"),
        ("import urllib.request", "uses urllib (network)"),
        ("import os\nos._exit(3)", "calls os._exit"),
        ("import ctypes", "imports ctypes"),
        ("import inspect", "inspects stack frames or source (inspect)"),
        ("import sys\nf = sys._getframe(1)", "inspects stack frames"),
        ("setattr(torch, 'allclose', lambda *a: True)", "calls setattr"),
        ("import subprocess", "starts processes"),
        ("x = torch._C._nn.log_softmax", "calls torch's private C bindings (torch._C)"),
        ("class T(torch.Tensor):\n    __torch_function__ = None", "overrides torch functions"),
    ],
)
def test_code_that_reaches_into_the_grader_is_noted(reference, code, note):
    notes = review_notes(with_code(reference, "relative_error", code))
    assert any(n.startswith("relative_error line ") and note in n for n in notes), notes


@pytest.mark.parametrize(
    "code, replaced",
    [
        ("import course_lib.checks\ncourse_lib.checks.check_close = None", "course_lib.checks.check_close"),
        ("torch.Tensor.__le__ = lambda s, o: True", "torch.Tensor.__le__"),
        ("F.cross_entropy = None", "F.cross_entropy"),
        ("np.allclose = lambda *a, **k: True", "np.allclose"),
        ("torch.nn.functional.cross_entropy += 0", "torch.nn.functional.cross_entropy"),
    ],
)
def test_monkeypatching_a_module_is_noted_with_what_it_replaces(reference, code, replaced):
    notes = review_notes(with_code(reference, "cross_entropy", code))
    line = code.count("\n") + 1
    assert f"cross_entropy line {line}: replaces {replaced}" in notes, notes


def test_own_names_and_attributes_are_not_monkeypatching(reference):
    code = "class Box:\n    pass\nbox = Box()\nbox.value = 3\nresult = {}\nresult['x'] = 1"
    assert review_notes(with_code(reference, "cross_entropy", code)) == []


def test_notes_give_the_line_skip_magics_and_are_not_repeated(reference):
    code = "%matplotlib inline\n!ls\nimport socket\nimport socket"
    notes = review_notes(with_code(reference, "relative_error", code))
    assert notes == ["relative_error line 3: uses sockets", "relative_error line 4: uses sockets"]
    twice = with_code(reference, "relative_error", "get_ipython()\nget_ipython()")
    assert review_notes(twice) == [
        "relative_error line 1: uses IPython internals (get_ipython)",
        "relative_error line 2: uses IPython internals (get_ipython)",
    ]
    same_line = with_code(reference, "relative_error", "a = get_ipython(); b = get_ipython()")
    assert review_notes(same_line) == ["relative_error line 1: uses IPython internals (get_ipython)"]


def test_locked_setup_cells_are_not_reviewed_but_added_cells_are(reference):
    nb = copy.deepcopy(reference)
    cell(nb, "setup").source += "\nimport inspect"  # the course's own code (nbgrader puts it back)
    added = nbformat.v4.new_code_cell("import socket", id="added1")
    nb.cells.insert(3, added)
    assert review_notes(nb) == ["cell added1 line 1: uses sockets"]


def test_a_cell_that_does_not_parse_is_skipped(reference):
    nb = with_code(reference, "relative_error", "def broken(:\n    get_ipython()")
    nb.cells.append(nbformat.v4.new_code_cell("import ctypes", id="after"))
    assert review_notes(nb) == ["cell after line 1: imports ctypes"]


def test_an_answer_cell_marked_locked_by_the_student_is_still_reviewed(reference, cells):
    """nbgrader keeps (and runs) the student's source of a cell the assignment does not lock."""
    nb = with_code(reference, "relative_error", "ip = get_ipython()")
    cell(nb, "relative_error").metadata["nbgrader"].update(locked=True, solution=False)
    locked = {gid for gid, c in cells[NB].items() if c["locked"]}
    assert any("get_ipython" in n for n in review_notes(nb, locked))
    assert not any("get_ipython" in n for n in review_notes(nb)), (
        "without the source, the metadata is trusted"
    )


# ------------------------------------------------------------------------- compare_with_source


def test_an_untouched_reference_matches_the_source(reference, cells):
    assert compare_with_source(reference, NB, cells[NB]) == []


def test_an_edited_test_cell_is_reported(reference, cells):
    cell(reference, "test_cross_entropy").source = 'print("cross_entropy: visible tests passed")'
    cell(
        reference, "cross_entropy"
    ).source = "def cross_entropy(logits, y):\n    return 0"  # answers are free
    issues = compare_with_source(reference, NB, cells[NB])
    assert issues == [f"{NB}: locked cell test_cross_entropy was edited (put back)"]


def test_deleted_cells_are_reported_with_what_nbgrader_does(reference, cells):
    reference.cells = [c for c in reference.cells if grade_id(c) not in ("test_relative_error", "setup")]
    issues = compare_with_source(reference, NB, cells[NB])
    assert f"{NB}: cell test_relative_error was deleted (put back)" in issues
    assert f"{NB}: cell setup was deleted (not restored by nbgrader)" in issues
    assert len(issues) == 2


def test_a_deleted_answer_cell_is_not_reported(reference, cells):
    reference.cells = [c for c in reference.cells if grade_id(c) != "relative_error"]
    assert compare_with_source(reference, NB, cells[NB]) == []


def test_a_retyped_test_cell_is_reported(reference, cells):
    c = cell(reference, "test_cross_entropy_grad")
    c.cell_type = "markdown"
    issues = compare_with_source(reference, NB, cells[NB])
    assert issues == [f"{NB}: cell test_cross_entropy_grad changed from code to markdown (put back)"]


def test_a_cell_claiming_an_unknown_grade_id_is_not_compared(reference, cells):
    extra = nbformat.v4.new_code_cell("x = 1", id="extra1")
    extra.metadata["nbgrader"] = {"grade_id": "my_own", "locked": True}
    reference.cells.append(extra)
    assert compare_with_source(reference, NB, cells[NB]) == []


# ------------------------------------------------------------------------- dedupe_grade_ids


def test_a_pasted_copy_of_a_cell_keeps_metadata_only_on_the_last(reference):
    first = copy.deepcopy(cell(reference, "relative_error"))
    first.id = "pasted"
    first.source = "# my first attempt\n" + first.source
    reference.cells.insert(5, first)
    issues = dedupe_grade_ids(reference, NB)
    assert issues == [
        f"{NB}: cell relative_error appears 2 times (the last is graded, the others ran as ordinary cells)"
    ]
    copies = [c for c in reference.cells if c.source.endswith(first.source.split("\n", 1)[1])]
    assert len(copies) == 2
    assert "nbgrader" not in copies[0].metadata, "an empty nbgrader entry breaks add_missing_cells"
    assert copies[1].metadata["nbgrader"]["grade_id"] == "relative_error"
    assert [grade_id(c) for c in reference.cells].count("relative_error") == 1


def test_no_duplicates_no_change(reference):
    before = copy.deepcopy(reference)
    assert dedupe_grade_ids(reference, NB) == []
    assert reference == before


# ------------------------------------------------------------------------- stage_submission


def as_files(nb, name: str = f"{NB}.ipynb") -> dict[str, bytes]:
    return {name: nbformat.writes(nb).encode(), "timestamp.txt": TIMESTAMP}


def test_a_reference_submission_is_staged_as_it_came(tmp_path, reference, cells):
    out = stage(tmp_path, as_files(reference), cells)
    assert out.issues == [] and out.review == []
    assert out.staged == tmp_path / "staging" / "alice"
    assert sorted(p.name for p in out.staged.iterdir()) == [f"{NB}.ipynb", "timestamp.txt"]
    assert out.timestamp == TIMESTAMP.decode()
    staged = nbformat.read(out.staged / f"{NB}.ipynb", as_version=4)
    nbformat.validate(staged)
    assert cell(staged, "cross_entropy").source == cell(reference, "cross_entropy").source
    assert out.fingerprint == fingerprint(tmp_path / "submitted" / "alice" / NB)


def test_a_renamed_notebook_is_renamed_back_and_strays_are_left_out(tmp_path, reference, cells):
    files = as_files(reference, name=f"{NB} (1).ipynb")
    files["torch.py"] = "raise SystemExit('shadowed torch')\n"
    files["notes.txt"] = "my notes"
    out = stage(tmp_path, files, cells)
    assert out.issues == [
        f"renamed {NB} (1).ipynb to {NB}.ipynb",
        "ignored file(s) the assignment does not ship: notes.txt, torch.py",
    ]
    assert sorted(p.name for p in out.staged.iterdir()) == [f"{NB}.ipynb", "timestamp.txt"]


def test_files_the_release_ships_are_kept_in_their_folders(tmp_path, reference):
    files = as_files(reference)
    files["data/points.csv"] = "x,y\n1,2\n"
    out = stage(tmp_path, files, shipped={"data/points.csv"})
    assert out.issues == []
    assert (out.staged / "data" / "points.csv").read_text() == "x,y\n1,2\n"


def test_many_ignored_files_are_summarised(tmp_path, reference):
    files = as_files(reference)
    files.update({f"extra{i}.py": "" for i in range(7)})
    out = stage(tmp_path, files)
    assert out.issues == [
        "ignored file(s) the assignment does not ship: "
        "extra0.py, extra1.py, extra2.py, extra3.py, extra4.py and 2 more"
    ]


def test_checkpoints_and_caches_are_neither_graded_nor_reported(tmp_path, reference):
    files = {
        f".ipynb_checkpoints/{NB}-checkpoint.ipynb": nbformat.writes(reference),
        "__pycache__/x.cpython-311.pyc": b"\0",
        "__MACOSX/._ps01_backprop.ipynb": b"\0",
    }
    out = stage(tmp_path, files)
    assert out.staged is None
    assert out.issues == [f"missing notebook {NB}.ipynb (scored zero)"]


def test_a_notebook_that_is_not_json_scores_zero(tmp_path, reference):
    text = nbformat.writes(reference)
    out = stage(tmp_path, {f"{NB}.ipynb": text[: len(text) // 2]})
    assert out.staged is None
    assert out.issues[0].startswith(f"{NB}.ipynb is not valid JSON")
    assert out.issues[1:] == [f"{NB}.ipynb could not be graded (scored zero)"]
    assert out.fingerprint, "an unreadable submission still has a fingerprint (it is not regraded)"


def test_a_missing_notebook_scores_zero_and_the_rest_is_listed(tmp_path):
    out = stage(tmp_path, {"README.txt": "I could not finish, sorry"})
    assert out.staged is None
    assert out.issues == [
        f"missing notebook {NB}.ipynb (scored zero)",
        "ignored file(s) the assignment does not ship: README.txt",
    ]


def test_no_submission_folder(tmp_path):
    out = stage_submission(tmp_path / "nobody" / NB, "nobody", [NB], set(), tmp_path / "staging")
    assert out.staged is None and out.issues == ["no submission"]
    assert not (tmp_path / "staging" / "nobody").exists()


def test_every_repair_and_note_of_one_submission_is_collected(tmp_path, reference, cells):
    nb = copy.deepcopy(reference)
    pasted = copy.deepcopy(cell(nb, "relative_error"))
    pasted.id = "pasted"
    nb.cells.insert(5, pasted)
    cell(nb, "cross_entropy").source = "ip = get_ipython()\n" + cell(nb, "cross_entropy").source
    nb.cells = [c for c in nb.cells if grade_id(c) != "test_train_step"]
    data = json.loads(nbformat.writes(nb))
    for c in data["cells"]:
        c["id"] = "same-id"
    out = stage(tmp_path, {f"{NB}.ipynb": json.dumps(data)}, cells)
    n = len(data["cells"])
    assert out.issues == [
        f"{NB}.ipynb: {n - 1} duplicated cell id(s) renumbered",
        f"{NB}: cell test_train_step was deleted (put back)",
        f"{NB}: cell relative_error appears 2 times (the last is graded, the others ran as ordinary cells)",
    ]
    assert out.review == ["cross_entropy line 1: uses IPython internals (get_ipython)"]
    staged = nbformat.read(out.staged / f"{NB}.ipynb", as_version=4)
    assert len({c.id for c in staged.cells}) == n
    assert [grade_id(c) for c in staged.cells].count("relative_error") == 1


def test_staging_again_leaves_nothing_of_the_last_time(tmp_path, reference):
    stale = tmp_path / "staging" / "alice" / "torch.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("left from an earlier submission")
    out = stage(tmp_path, as_files(reference))
    assert not stale.exists()
    assert sorted(p.name for p in out.staged.iterdir()) == [f"{NB}.ipynb", "timestamp.txt"]


def test_each_expected_notebook_takes_its_own_renamed_file(tmp_path, reference):
    src = submit(
        tmp_path / "s" / "a",
        {"part_a (1).ipynb": nbformat.writes(reference), "part_b copy.ipynb": nbformat.writes(reference)},
    )
    out = stage_submission(src, "bob", ["part_a", "part_b"], set(), tmp_path / "staging")
    assert out.issues == [
        "renamed part_a (1).ipynb to part_a.ipynb",
        "renamed part_b copy.ipynb to part_b.ipynb",
    ]
    assert sorted(p.name for p in out.staged.iterdir()) == ["part_a.ipynb", "part_b.ipynb"]


def test_a_notebook_in_a_subfolder_is_found_or_at_least_named(tmp_path, reference):
    out = stage(tmp_path, {f"{NB}/{NB}.ipynb": nbformat.writes(reference)})
    assert out.staged is not None or any(f"{NB}/{NB}.ipynb" in issue for issue in out.issues), out.issues


# ------------------------------------------------------------------------- fingerprint


def test_fingerprint_follows_names_and_contents(tmp_path):
    a = submit(tmp_path / "a", {"x.ipynb": "1", "sub/y.txt": "2"})
    b = submit(tmp_path / "b", {"sub/y.txt": "2", "x.ipynb": "1"})
    assert fingerprint(a) == fingerprint(b) and len(fingerprint(a)) == 16
    (b / "x.ipynb").write_text("1 ")
    assert fingerprint(a) != fingerprint(b)
    c = submit(tmp_path / "c", {"z.ipynb": "1", "sub/y.txt": "2"})
    assert fingerprint(a) != fingerprint(c), "a renamed file is a changed submission"
    assert fingerprint(tmp_path / "missing") == fingerprint(tmp_path / "also-missing")
    assert fingerprint(tmp_path / "missing") != fingerprint(a)
