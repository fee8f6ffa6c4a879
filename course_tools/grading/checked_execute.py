"""nbgrader's Execute step with the verdict taken out of the student's kernel.

`CheckedExecute` replaces nbgrader's `Execute` in the autograde preprocessors (the course's
nbgrader_config.py and course_tools.grading.worker configure it). For each cell:

- a locked, ungraded code cell (the setup) runs in the kernel as usual, and its source also
  runs in the grader's checker namespace (course_tools.grading.checker);
- a graded test cell runs its VISIBLE tests in the kernel, so the student's feedback shows
  the same messages they saw while working; then the whole cell (visible and hidden tests)
  runs in the checker, where the student's functions are proxies into the kernel (their calls
  go over a unix socket the kernel serves for the cell: course_tools.grading.link_session);
- the cell's outputs are then rewritten so that nbgrader's score is the checker's verdict:
  a failed check appends an error naming what failed; a passed one turns whatever the
  kernel raised or wrote to stderr (a warning, an error from a patched helper) into plain
  text, since a warning is not a wrong answer and nothing in the kernel decides a score.

Hidden tests never run in the kernel, so their inputs, references and source never reach it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute

from .cells import is_locked_setup, is_test_cell, nbgrader_meta, visible_part

if TYPE_CHECKING:
    from .link_session import KernelControl, LinkSession


class CheckedExecute(Execute):
    """Execute a submission; score every test cell by the out-of-kernel checker's verdict."""

    def preprocess(self, nb, resources=None, km=None):
        # The checker and the link are imported when a notebook runs, not at the top: every
        # nbgrader command reads the course's config, which names this class, and they import
        # torch and course_lib (~4 s of every command).
        self._start_checker()
        self._link_dir = Path(tempfile.mkdtemp(prefix="cgl-"))
        try:
            return super().preprocess(nb, resources, km)
        finally:
            shutil.rmtree(self._link_dir, ignore_errors=True)

    def _start_checker(self) -> None:
        """A fresh checker for this notebook, its verdicts, and no link session open yet."""
        from .checker import Checker

        self.checker = Checker(self._call_in_kernel)
        self.verdicts: dict[str, dict] = {}
        self._session: LinkSession | None = None
        self._links = 0

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
        try:
            passed, ename, message = self.checker.run_test(source, label)
        finally:
            session, self._session = self._session, None
            if session is not None:
                session.close()  # the kernel's serving cell ends; the next request queues behind it
        self.verdicts[label] = {"passed": passed, "error": f"{ename}: {message}" if ename else ""}
        cell.outputs = _verdict_outputs(cell.get("outputs", []), passed, ename, message)
        if session is not None and session.timed_out:
            self._link_timed_out(label, stuck=session.stuck)
        return cell, self.resources

    def _link_timed_out(self, label: str, stuck: bool) -> None:
        """A call of this cell ran past the timeout; when the interrupt did not free the kernel, stop."""
        if stuck:
            raise CellTimeoutError(f"{label}: a call did not stop when the kernel was interrupted")

    # -------------------------------------------------------------- the link into the kernel

    def _call_in_kernel(self, name: str, payload: str) -> dict:
        """One call of the student's function (the checker's proxies), over this cell's link session."""
        if self._session is None:
            from .link_session import LinkSession

            self._links += 1
            self._session = LinkSession(self._kernel_control(), self._link_path(self._links), self.timeout)
        return self._session.call(name, payload)

    def _link_path(self, n: int) -> Path:
        """Where the kernel listens for the n-th session: a folder the kernel can write (short: a socket path)."""
        return self._link_dir / f"l{n}"

    def _kernel_control(self) -> KernelControl:
        from .link_session import KernelControl

        kc, km = self.kc, self.km

        async def replied(msg_id: str) -> bool:
            while await kc.shell_channel.msg_ready():
                msg = await kc.shell_channel.get_msg(timeout=0)
                if msg["parent_header"].get("msg_id") == msg_id:
                    return True
            return False

        async def alive() -> bool:
            return bool(await ensure_async(kc.is_alive()))

        async def interrupt() -> None:
            await ensure_async(km.interrupt_kernel())

        return KernelControl(
            execute=lambda code: kc.execute(
                code, store_history=False, allow_stdin=False, stop_on_error=False
            ),
            replied=run_sync(replied),
            alive=run_sync(alive),
            interrupt=run_sync(interrupt),
        )


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
