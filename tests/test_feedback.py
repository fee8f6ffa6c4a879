"""The feedback preprocessor removes hidden tests and traceback context from test cells, and nothing else."""

from __future__ import annotations

import nbformat

from course_tools.grading.feedback import HIDDEN_NOTE, HideHiddenTests


def _cell(source: str, grade: bool, solution: bool, outputs=()):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": grade, "solution": solution, "grade_id": "x", "locked": grade}
    cell.outputs = list(outputs)
    return cell


def test_hidden_region_and_traceback_are_removed_from_test_cells():
    err = nbformat.v4.new_output(
        "error",
        ename="CheckFailed",
        evalue="dW1 is off",
        traceback=["secret_line = reference(x)", "CheckFailed: dW1 is off"],
    )
    test = _cell(
        "check_close('a', a, 1)\n    ### BEGIN HIDDEN TESTS\n    secret_line = reference(x)\n    ### END HIDDEN TESTS\nprint('done')",
        grade=True,
        solution=False,
        outputs=[err],
    )
    student = _cell(
        "def f():\n    return 1  # BEGIN HIDDEN TESTS is just text here", grade=False, solution=True
    )
    nb = nbformat.v4.new_notebook(cells=[student, test])
    pre = HideHiddenTests()
    assert pre.enabled, "nbconvert skips preprocessors that are not enabled"
    nb, _ = pre(nb, {})
    assert nb.cells[0].source.endswith("is just text here"), "a student cell was altered"
    out = nb.cells[1]
    assert "secret_line" not in out.source
    assert "check_close('a', a, 1)" in out.source and "print('done')" in out.source
    assert f"    {HIDDEN_NOTE}" in out.source
    assert out.outputs[0]["traceback"] == ["CheckFailed: dW1 is off"]


def test_student_cells_without_hidden_regions_are_untouched():
    src = "def f(x):\n    return x + 1"
    nb = nbformat.v4.new_notebook(cells=[_cell(src, grade=False, solution=True)])
    nb, _ = HideHiddenTests()(nb, {})
    assert nb.cells[0].source == src
