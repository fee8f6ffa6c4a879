"""nbgrader's Execute step with the verdict taken out of the student's kernel.

`CheckedExecute` replaces nbgrader's `Execute` in the autograde preprocessors (the course's
nbgrader_config.py and course_tools.grading.worker configure it). For each cell:

- a locked, ungraded code cell (the setup) runs in the kernel as usual, and its source also
  runs in the grader's checker namespace (course_tools.grading.checker);
- a graded test cell runs its VISIBLE tests in the kernel, so the student's feedback shows
  the same messages they saw while working; then the whole cell (visible and hidden tests)
  runs in the checker, where the student's functions are proxies into the kernel;
- the cell's outputs are then rewritten so that nbgrader's score is the checker's verdict:
  a failed check appends an error naming what failed; a passed one turns whatever the
  kernel raised or wrote to stderr (a warning, an error from a patched helper) into plain
  text, since a warning is not a wrong answer and nothing in the kernel decides a score.

Hidden tests never run in the kernel, so their inputs, references and source never reach it.
"""

from __future__ import annotations

import copy

from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute

from .cells import is_locked_setup, is_test_cell, nbgrader_meta, visible_part


class CheckedExecute(Execute):
    """Execute a submission; score every test cell by the out-of-kernel checker's verdict."""

    link_running = False  # True while a proxied call runs (its outputs are the grader's, not the cell's)
    _current_index = 0

    def preprocess(self, nb, resources=None, km=None):
        # Imported here, not at the top: every nbgrader command reads the course's config, which
        # names this class, and the checker imports torch and course_lib (~4 s of every command).
        from .checker import Checker

        self.checker = Checker(self._run_in_kernel)
        self.verdicts: dict[str, dict] = {}
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if is_test_cell(cell):
            return self._run_test_cell(cell, resources, index)
        result = super().preprocess_cell(cell, resources, index)
        if is_locked_setup(cell):
            try:
                self.checker.run_setup(cell.source)
            except Exception as exc:  # noqa: BLE001 - a broken setup fails the tests that need it, with a reason
                self.verdicts[f"setup cell {index}"] = {
                    "passed": False,
                    "error": f"{type(exc).__name__}: {exc}",
                }
        return result

    def _run_test_cell(self, cell, resources, index):
        source = cell.source
        cell.source = visible_part(source)
        try:
            super().preprocess_cell(cell, resources, index)
        finally:
            cell.source = source
        label = nbgrader_meta(cell).get("grade_id") or f"cell {index}"
        self._current_index = index
        passed, ename, message = self.checker.run_test(source, label)
        self.verdicts[label] = {"passed": passed, "error": f"{ename}: {message}" if ename else ""}
        cell.outputs = _verdict_outputs(cell.get("outputs", []), passed, ename, message)
        return cell, self.resources

    def _run_in_kernel(self, code: str) -> list:
        """Run grader code in the student's kernel (one proxied call); its outputs, never shown."""
        index = self._current_index
        original = self.nb.cells[index]
        # Built directly: new_code_cell validates against the notebook schema, ~3 ms a call.
        scratch = NotebookNode(cell_type="code", source=code, metadata={}, outputs=[], execution_count=None)
        self.link_running = True
        try:
            self.execute_cell(scratch, index, store_history=False)
        finally:
            self.link_running = False
            self.nb.cells[index] = original  # nbclient stores the executed cell at its index
        return copy.deepcopy(scratch.get("outputs", []))


def _verdict_outputs(outputs: list, passed: bool, ename: str, message: str) -> list:
    """The kernel's outputs as plain text, then the checker's verdict (an error when failed)."""
    kept = []
    for out in outputs:
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            kept.append(
                new_output("stream", name="stdout", text=f"[warning, not graded] {out.get('text', '')}")
            )
        elif out.get("output_type") == "error":
            text = f"[in your kernel the visible tests raised {out.get('ename')}: {out.get('evalue')}]\n"
            kept.append(new_output("stream", name="stdout", text=text))
        else:
            kept.append(out)
    if passed:
        kept.append(new_output("stream", name="stdout", text="[grader] every check of this part passed\n"))
        return kept
    kind = ename if ename in ("CheckFailed", "ForbiddenCall", "NotImplementedError") else "CheckFailed"
    evalue = message if kind == ename else f"{ename}: {message}"
    kept.append(new_output("error", ename=kind, evalue=evalue, traceback=[f"{kind}: {evalue}"]))
    return kept


def autograde_preprocessors(execute: type = CheckedExecute) -> list[type]:
    """nbgrader's autograde steps with `execute` in place of its Execute (the course config's and the worker's)."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )

    return [
        execute,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
