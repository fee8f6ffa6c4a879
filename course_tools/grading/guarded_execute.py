"""nbgrader's Execute step, hardened: sandboxed kernels, out-of-kernel verdicts, crashes that cost one cell.

`GuardedExecute` replaces nbgrader's `Execute` in the autograde preprocessors
(course_tools.grading.worker configures it). Compared with nbgrader's:

- every test cell is scored by the checker outside the kernel
  (course_tools.grading.checked_execute.CheckedExecute, which it extends);
- the kernel starts inside course_tools.grading.sandbox (bubblewrap, rlimits, uid nobody)
  and talks to the grader over unix sockets, as the network is gone;
- when the kernel dies (os._exit, a segfault, out of memory) or ignores an
  interrupt after a cell timeout, that cell gets an error, a fresh kernel replays
  the setup and student cells before it, and grading goes on from the next cell
  (nbgrader's own Execute gives up on the whole notebook);
- a cell's output is capped while it runs, so a print loop cannot fill the grader's memory.

What happened (crashes, timeouts, the checker's verdicts) is written
as JSON to `report_path`, for the status table.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output
from traitlets import Bool, Enum, Integer, Unicode

from . import sandbox, warm
from .cells import is_test_cell, nbgrader_meta
from .checked_execute import CheckedExecute


class PromptClient(AsyncKernelClient):
    """jupyter_client's async client, ready as soon as the kernel has answered on both channels.

    jupyter_client's `wait_for_ready` ends by draining IOPub until it has been quiet for 0.2 s,
    a fixed fifth of a second per kernel; a warm kernel starts in about that time. Here the
    leftovers of the readiness check (the kernel_info's busy and idle) are drained without
    waiting: nbclient ignores IOPub messages of other requests anyway.
    """

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:  # IOPub is connected once it carries the kernel_info's status
                    await self.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(reply)
                    break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
        while await self.iopub_channel.msg_ready():
            await self.iopub_channel.get_msg(timeout=0)


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start in the sandbox and listen on ipc sockets in their own directory.

    With a kernel parent (course_tools.grading.warm) the kernel is forked from it, warm;
    without one, each kernel starts its own sandbox (cold).
    """

    def __init__(
        self,
        *,
        workdir: Path,
        runtime_dir: Path,
        limits: sandbox.Limits,
        kernel_parent: warm.KernelParent | None = None,
        **kwargs,
    ):
        super().__init__(transport="ipc", ip=str(runtime_dir / "k"), **kwargs)
        self.workdir, self.runtime_dir, self.limits = workdir, runtime_dir, limits
        self.kernel_parent = kernel_parent
        self.connection_file = str(runtime_dir / "connection.json")
        self.client_factory = PromptClient

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if os.geteuid() == 0:
            os.chown(self.connection_file, sandbox.NOBODY, sandbox.NOBODY)
        if self.kernel_parent is not None:
            return cmd
        return sandbox.wrap(cmd, workdir=self.workdir, runtime_dir=self.runtime_dir, limits=self.limits)

    async def _async_pre_start_kernel(self, **kw):
        if self.kernel_parent is not None and self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", None) or str(uuid.uuid4())
            self.provisioner = warm.WarmProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
            )
            self.provisioner.kernel_parent = self.kernel_parent
            self.provisioner.workdir, self.provisioner.runtime_dir = self.workdir, self.runtime_dir
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        self.kernel_spec.interrupt_mode = "message"  # a signal to bwrap would not reach the kernel
        return cmd, kw

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        if self.kernel_parent is not None:  # a forked kernel's end is reported at once: look often
            pollinterval = warm.EXIT_POLL_SECONDS
        await super()._async_wait(pollinterval=pollinterval)


class GuardedExecute(CheckedExecute):
    """Execute a submission the way nbgrader does, but sandboxed, checked outside the kernel and crash tolerant."""

    use_sandbox = Bool(True, help="Start kernels inside the bubblewrap sandbox.").tag(config=True)
    warm = Bool(True, help="Fork sandboxed kernels from a pre-imported parent (one per worker).").tag(
        config=True
    )
    work_root = Unicode("", help="The worker's work folder, bound into the warm kernel parent.").tag(
        config=True
    )
    report_path = Unicode("", help="Where to write the JSON report of this notebook.").tag(config=True)
    runtime_root = Unicode("", help="Directory for kernels' socket directories (short path).").tag(
        config=True
    )
    shutdown_kernel = Enum(
        ["graceful", "immediate"],
        default_value="immediate",
        help="Stop a graded kernel at once: its atexit hooks are the student's code and change no score.",
    ).tag(config=True)
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
        parent = self._parent(limits, workdir)
        if parent is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = parent.new_runtime_dir()
        self.km = SandboxedKernelManager(
            kernel_name=self.kernel_name or "python3",
            config=self.config,
            workdir=workdir,
            runtime_dir=self._runtime,
            limits=limits,
            kernel_parent=parent,
        )
        return self.km

    def _parent(self, limits: sandbox.Limits, workdir: Path) -> warm.KernelParent | None:
        """The worker's warm kernel parent, when configured and the workdir lies in its work folder."""
        if not self.warm or not self.work_root or sandbox.warm_unavailable_reason():
            return None
        root = Path(self.work_root).resolve()
        if root not in workdir.parents:
            return None
        return warm.kernel_parent(root, limits)

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
        # Where the time went: starting kernels (a fork when warm) and running the cells with their checks.
        self._timing = {"kernel_start_seconds": 0.0, "cells_seconds": 0.0}
        self._start_checker()
        try:
            self._run_cells(nb, resources)
        finally:
            timing = {k: round(v, 3) for k, v in self._timing.items()}
            report = {**self._events, "verdicts": self.verdicts, "calls": self.checker.calls, **timing}
            if self.report_path:
                Path(self.report_path).write_text(json.dumps(report, indent=1))
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _link_path(self, n: int) -> Path:
        return self._runtime / f"l{n}"  # the kernel's own socket folder, which the sandbox lets it write

    def _link_timed_out(self, label: str, stuck: bool) -> None:
        self._events["timeouts"].append(label)
        super()._link_timed_out(label, stuck)

    def _run_cells(self, nb: NotebookNode, resources) -> None:
        cells = nb.cells
        index, replay, restarts = 0, [], 0
        while index < len(cells):
            with self._kernel():
                self._replay(cells, replay)
                while index < len(cells):
                    cell = cells[index]
                    started = time.monotonic()
                    try:
                        self.preprocess_cell(cell, resources, index)
                    except (DeadKernelError, CellTimeoutError, RuntimeError, TimeoutError) as exc:
                        self._mark_crash(cell, index, exc)
                        index += 1
                        restarts += 1
                        break
                    finally:
                        self._timing["cells_seconds"] += time.monotonic() - started
                    if cell.cell_type == "code" and not is_test_cell(cell):
                        replay.append(index)
                    index += 1
            if restarts > self.max_restarts and index < len(cells):
                for cell in cells[index:]:
                    if is_test_cell(cell):
                        cell.outputs = [_error("NotRun", "not run: the kernel crashed too many times")]
                break

    @contextlib.contextmanager
    def _kernel(self):
        """A fresh kernel (sandboxed if configured) with its own socket directory."""
        self.km, self.kc = None, None
        self._runtime = Path(tempfile.mkdtemp(prefix="cg-", dir=self.runtime_root or None))
        started = time.monotonic()
        try:
            self.km = self.create_kernel_manager()
            with self.setup_kernel():
                info = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info["content"]["language_info"]
                self._timing["kernel_start_seconds"] += time.monotonic() - started
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


def _error(ename: str, evalue: str) -> NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])
