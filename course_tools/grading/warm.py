"""Warm kernels: one pre-imported kernel parent per grading worker, a fresh isolated kernel per request.

`KernelParent` starts course_tools.grading.kernel.zygote inside the grading sandbox
(course_tools.grading.sandbox: bubblewrap, rlimits, uid nobody) once per worker, with the
worker's whole work folder bound in. Asked for a kernel, the zygote forks one that sees
only its own submission's folder, a fresh /tmp and no other process (see the zygote's
docstring), so a submission pays the notebook's own run time, not kernel start and
`import torch`. `WarmProvisioner` plugs that into jupyter_client: nbclient and nbgrader
see an ordinary kernel whose process they can poll, signal and kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from . import sandbox

READY_TIMEOUT = 180.0  # seconds for the zygote to import torch & co. on a loaded machine
EXIT_POLL_SECONDS = 0.005  # how often a stopping kernel is checked (jupyter_client's default: 0.1)


class KernelParentError(RuntimeError):
    """The warm kernel parent could not start, or could not start a kernel."""


class KernelProcess:
    """A forked kernel as jupyter_client's provisioner sees a process: poll, wait, signal, kill."""

    stdin = stdout = stderr = None

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.returncode: int | None = None
        self.pid = -1  # it lives in another PID namespace; only its supervisor knows its pid
        self._buffer = b""

    def _read(self, timeout: float) -> None:
        if self.returncode is not None:
            return
        ready, _, _ = select.select([self.conn], [], [], timeout)
        if not ready:
            return
        chunk = self.conn.recv(4096)
        if not chunk:  # the supervisor is gone (the worker's sandbox was killed)
            self.returncode = -9
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = json.loads(line)
            if "exit" in message:
                self.returncode = int(message["exit"])

    def poll(self) -> int | None:
        self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired("kernel", timeout)
            self._read(min(left, 1.0))
        self.conn.close()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                self.conn.sendall((json.dumps({"signal": int(signum)}) + "\n").encode())
            except OSError:
                self.returncode = -9

    def kill(self) -> None:
        self.send_signal(9)

    def terminate(self) -> None:
        self.send_signal(15)


class KernelParent:
    """The zygote of one grading worker, in its sandbox, with the worker's work folder bound in."""

    def __init__(self, work_root: Path, limits: sandbox.Limits):
        self.work_root, self.limits = Path(work_root).resolve(), limits
        self.work_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work_root, 0o711)
        sweep_stale_runtime_roots()
        self.runtime_root = Path(tempfile.mkdtemp(prefix=f"cgw-{os.getpid()}-", dir="/tmp"))
        sandbox.prepare_dirs(self.work_root, self.runtime_root)
        os.chmod(self.work_root, 0o711)  # prepare_dirs opened it to all: the kernels only need to pass
        self.socket = self.runtime_root / "zygote.sock"
        cmd = [sys.executable, "-m", "course_tools.grading.kernel.zygote", str(self.socket)]
        wrapped = sandbox.wrap(cmd, workdir=self.work_root, runtime_dir=self.runtime_root, limits=limits)
        self.proc = subprocess.Popen(wrapped, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.close()
            raise KernelParentError(f"the warm kernel parent did not start (exit {self.proc.poll()})")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def new_runtime_dir(self) -> Path:
        """A socket folder for one kernel, inside the folder the zygote can see."""
        path = Path(tempfile.mkdtemp(prefix="k-", dir=self.runtime_root))
        sandbox.prepare_runtime_dir(path)
        return path

    def spawn(self, argv: list[str], workdir: Path, runtime_dir: Path) -> KernelProcess:
        """A new kernel running `ipykernel_launcher ARGV` in workdir; see the zygote for its isolation."""
        request = {
            "argv": argv,
            "workdir": str(Path(workdir).resolve()),
            "runtime_dir": str(runtime_dir),
            "work_root": str(self.work_root),
            "tmp_bytes": self.limits.tmp_bytes,
            # what the sandbox shows read-only under /tmp (a checkout or venv there): the kernel's
            # fresh /tmp must show it too
            "keep_readonly": [str(p) for p in sandbox.readonly_paths() if Path("/tmp") in p.parents],
        }
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self.socket))
            conn.sendall((json.dumps(request) + "\n").encode())
            conn.settimeout(60)
            first = conn.makefile("rb").readline()
            conn.settimeout(None)
        except OSError as exc:
            conn.close()
            raise KernelParentError(f"the warm kernel parent did not answer: {exc}") from exc
        answer = json.loads(first or b'{"error": "no answer"}')
        if not answer.get("started"):
            conn.close()
            raise KernelParentError(f"could not start a kernel: {answer.get('error')}")
        return KernelProcess(conn)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.runtime_root, ignore_errors=True)


def sweep_stale_runtime_roots(tmp: Path = Path("/tmp")) -> list[Path]:
    """Remove the socket folders (`cgw-<pid>-*`) of this user's workers that are gone.

    A worker killed for a submission's timeout never runs `close`, so its folder stays behind;
    the next kernel parent started on the machine removes it. Returns what it removed.
    """
    removed = []
    for path in tmp.glob("cgw-*-*"):
        pid = path.name.split("-")[1]
        try:
            mine = path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.geteuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        pass
    return True


_parents: dict[tuple, KernelParent] = {}


def kernel_parent(work_root: Path, limits: sandbox.Limits) -> KernelParent:
    """This worker's kernel parent for work_root and limits: started on first use, then reused."""
    key = (str(Path(work_root).resolve()), limits)
    parent = _parents.get(key)
    if parent is not None and parent.alive():
        return parent
    for old in _parents.values():
        old.close()
    _parents.clear()
    _parents[key] = KernelParent(work_root, limits)
    return _parents[key]


class WarmProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, with the process forked by the kernel parent instead of exec'd."""

    kernel_parent: KernelParent | None = None
    workdir: Path | None = None
    runtime_dir: Path | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        argv = cmd[cmd.index("ipykernel_launcher") + 1 :]
        self.process = self.kernel_parent.spawn(argv, self.workdir, self.runtime_dir)
        self.pid, self.pgid = self.process.pid, None
        self.cwd = str(self.workdir)
        return self.connection_info

    async def wait(self) -> int | None:
        """As the local provisioner's, polling every 5 ms instead of 100 (the supervisor reports the exit at once)."""
        while self.process is not None and await self.poll() is None:
            await asyncio.sleep(EXIT_POLL_SECONDS)
        return await super().wait()
