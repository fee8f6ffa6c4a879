"""nbgrader's Execute step, hardened: sandboxed kernels, guarded tests, and crashes that cost one cell.

`GuardedExecute` replaces nbgrader's `Execute` in the autograde preprocessors
(course_tools.grade_worker configures it). Compared with nbgrader's:

- the kernel starts inside course_tools.sandbox (bubblewrap, rlimits, uid nobody)
  and talks to the grader over unix sockets, as the network is gone;
- the notebook is rewritten by course_tools.guard_plan (guard cell, sealed test
  cells) and checked afterwards: a test that looks passed but has no seal fails;
- when the kernel dies (os._exit, a segfault, out of memory) or ignores an
  interrupt after a cell timeout, that cell gets an error, a fresh kernel replays
  the setup and student cells before it, and grading goes on from the next cell
  (nbgrader's own Execute gives up on the whole notebook);
- a cell's output is capped while it runs, so a print loop cannot fill the grader's memory.

What happened (crashes, timeouts, unsealed tests, the guard's notices) is written
as JSON to `report_path`, for the status table.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, Unicode

from . import sandbox
from .guard_plan import GuardPlan, install_source, is_test_cell, nbgrader_meta


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start in the sandbox and listen on ipc sockets in their own directory."""

    def __init__(self, *, workdir: Path, runtime_dir: Path, limits: sandbox.Limits, **kwargs):
        super().__init__(transport="ipc", ip=str(runtime_dir / "k"), **kwargs)
        self.workdir, self.runtime_dir, self.limits = workdir, runtime_dir, limits
        self.connection_file = str(runtime_dir / "connection.json")

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        os.chown(self.connection_file, sandbox.NOBODY, sandbox.NOBODY)
        return sandbox.wrap(cmd, workdir=self.workdir, runtime_dir=self.runtime_dir, limits=self.limits)

    async def _async_pre_start_kernel(self, **kw):
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        self.kernel_spec.interrupt_mode = "message"  # a signal to bwrap would not reach the kernel
        return cmd, kw


class GuardedExecute(Execute):
    """Execute a submission the way nbgrader does, but sandboxed, guarded and crash tolerant."""

    use_sandbox = Bool(True, help="Start kernels inside the bubblewrap sandbox.").tag(config=True)
    use_guard = Bool(True, help="Seal test cells (course_tools.guard).").tag(config=True)
    report_path = Unicode("", help="Where to write the JSON report of this notebook.").tag(config=True)
    runtime_root = Unicode("", help="Directory for kernels' socket directories (short path).").tag(
        config=True
    )
    max_restarts = Integer(3, help="Kernel restarts allowed per notebook.").tag(config=True)
    max_output_bytes = Integer(2_000_000, help="Output kept per cell while it runs.").tag(config=True)
    memory_bytes = Integer(sandbox.Limits.memory_bytes).tag(config=True)
    cpu_seconds = Integer(sandbox.Limits.cpu_seconds).tag(config=True)

    def create_kernel_manager(self):
        if not self.use_sandbox:
            return super().create_kernel_manager()
        workdir = Path(self.resources.get("metadata", {}).get("path") or ".").resolve()
        sandbox.prepare_dirs(workdir, self._runtime)
        for path in workdir.iterdir():  # the sanitized notebook there holds the hidden tests
            if path.is_file():
                os.chmod(path, 0o600)
        limits = sandbox.Limits(memory_bytes=self.memory_bytes, cpu_seconds=self.cpu_seconds)
        self.km = SandboxedKernelManager(
            kernel_name=self.kernel_name or "python3",
            config=self.config,
            workdir=workdir,
            runtime_dir=self._runtime,
            limits=limits,
        )
        return self.km

    setup_timeout = Integer(300, help="Seconds for the grader's own guard cell (imports torch).").tag(
        config=True
    )

    def _get_timeout(self, cell: NotebookNode | None) -> int | None:
        """The guard cell is the grader's, not the student's: it gets the longer setup timeout."""
        if cell is not None and cell.get("metadata", {}).get("course_guard"):
            return max(self.setup_timeout, self.timeout or 0)
        return super()._get_timeout(cell)

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        cell = kwargs["cell"]
        label = nbgrader_meta(cell).get("grade_id") or f"cell {kwargs.get('cell_index')}"
        content = kwargs["execute_reply"]["content"]
        if content.get("status") == "error" and content.get("ename") == "CellTimeoutError":
            self._events["timeouts"].append(label)
        if any(o.output_type == "error" and o.get("ename") == "MemoryError" for o in cell.outputs):
            self._events["memory"].append(label)

    def output(self, outs, msg, display_id, cell_index):
        size = len(str(msg.get("content", "")))
        used = self._output_bytes.get(cell_index, 0)
        self._output_bytes[cell_index] = used + size
        if used + size <= self.max_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if used <= self.max_output_bytes:
            note = f"\n[output cut by the grader: more than {self.max_output_bytes} bytes]\n"
            outs.append(new_output("stream", name="stdout", text=note))
            self._events["truncated"].append(cell_index)
        return None

    def preprocess(self, nb: NotebookNode, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        if "--HistoryManager.enabled=False" not in self.extra_arguments:
            self.extra_arguments = [*self.extra_arguments, "--HistoryManager.enabled=False"]
        self._output_bytes: dict[int, int] = {}
        self._events: dict[str, list] = {"crashes": [], "truncated": [], "timeouts": [], "memory": []}
        plan = GuardPlan(spec_path="") if self.use_guard else None
        if plan is not None:
            plan.apply(nb)
        report: dict = {}
        try:
            self._run_cells(nb, resources, plan)
        finally:
            if plan is not None:
                report = plan.settle(nb)
            report.update(self._events)
            if self.report_path:
                Path(self.report_path).write_text(json.dumps(report, indent=1))
        if report.get("guard_error"):
            raise RuntimeError(f"the grading guard did not start: {report['guard_error']}")
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _run_cells(self, nb: NotebookNode, resources, plan: GuardPlan | None) -> None:
        cells = nb.cells
        index, replay, restarts = 0, [], 0
        while index < len(cells):
            with self._kernel(plan):
                self._replay(cells, replay)
                while index < len(cells):
                    cell = cells[index]
                    try:
                        self.preprocess_cell(cell, resources, index)
                    except (DeadKernelError, CellTimeoutError, RuntimeError, TimeoutError) as exc:
                        if plan is not None and cell is plan.guard_cell:
                            raise RuntimeError(f"the grading guard did not start: {exc}") from exc
                        self._mark_crash(cell, index, exc)
                        index += 1
                        restarts += 1
                        break
                    if plan is not None and cell is plan.guard_cell:
                        _check_guard_started(cell)
                    if cell.cell_type == "code" and not is_test_cell(cell):
                        replay.append(index)
                    index += 1
            if restarts > self.max_restarts and index < len(cells):
                for cell in cells[index:]:
                    if is_test_cell(cell):
                        cell.outputs = [_error("NotRun", "not run: the kernel crashed too many times")]
                break

    @contextlib.contextmanager
    def _kernel(self, plan: GuardPlan | None):
        """A fresh kernel (sandboxed if configured) with the guard's spec where it can read it once."""
        self.km, self.kc = None, None
        self._runtime = Path(tempfile.mkdtemp(prefix="cg-", dir=self.runtime_root or None))
        try:
            self.km = self.create_kernel_manager()
            if plan is not None:
                plan.spec_path = str(self._runtime / "guard.json")
                plan.guard_cell.source = install_source(plan.spec_path)
                Path(plan.spec_path).write_text(json.dumps(plan.spec()))
                os.chmod(plan.spec_path, 0o600)
                if self.use_sandbox:
                    os.chown(plan.spec_path, sandbox.NOBODY, sandbox.NOBODY)
            with self.setup_kernel():
                info = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info["content"]["language_info"]
                yield
        finally:
            shutil.rmtree(self._runtime, ignore_errors=True)

    def _replay(self, cells, replay: list[int]) -> None:
        """Re-run, in a fresh kernel, the non-test cells that ran before a crash (outputs kept as they were).

        A replayed cell that fails or times out again is noted and skipped: the tests that
        need it then fail on their own, and the notebook is still graded to the end.
        """
        for j in replay:
            original = cells[j]
            scratch = copy.deepcopy(original)
            try:
                self.execute_cell(scratch, j, store_history=True)
            except (CellTimeoutError, TimeoutError, RuntimeError) as exc:
                label = nbgrader_meta(original).get("grade_id") or f"cell {j}"
                self._events["crashes"].append(
                    {"cell": label, "kind": "replay failed", "detail": str(exc)[:200]}
                )
            finally:
                self.nb.cells[j] = original

    def _mark_crash(self, cell: NotebookNode, index: int, exc: Exception) -> None:
        timeout = isinstance(exc, CellTimeoutError | TimeoutError)
        kind = "timeout" if timeout else "kernel died"
        detail = (
            f"the cell ran longer than {self.timeout} s and did not stop when interrupted"
            if timeout
            else "the kernel died while running this cell (os._exit, a crash, or running out of memory)"
        )
        label = nbgrader_meta(cell).get("grade_id") or f"cell {index}"
        self._events["crashes"].append({"cell": label, "kind": kind, "detail": str(exc)[:200]})
        cell.outputs = [
            *cell.get("outputs", []),
            _error("KernelDied" if not timeout else "CellTimeoutError", f"{detail}; grading went on"),
        ]


def _check_guard_started(cell: NotebookNode) -> None:
    """Grading without the guard would be unsafe: stop this notebook (the worker reports the failure)."""
    errors = [f"{o.ename}: {o.evalue}" for o in cell.get("outputs", []) if o.output_type == "error"]
    if errors:
        raise GuardFailed(f"the grading guard did not start: {errors}")


class GuardFailed(Exception):
    """The guard cell failed: an error in the grader's setup, not in the submission."""


def _error(ename: str, evalue: str) -> NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])
