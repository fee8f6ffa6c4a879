"""The grader's end of the grading link for one test cell: calls over a unix socket the kernel serves.

At a test cell's first call of a student's function, the session asks the kernel to run
`course_tools.grading.kernel.link.serve` as a cell of its own (an execute request), then
connects to the socket that cell listens on, in the kernel's own folder, and sends the cell's
calls one after another. Closing the session hangs up, which ends that cell.

What running each call as a cell gave, the session keeps: a call has the cell timeout, after
which the kernel is interrupted (`LinkTimeout`; when the interrupt does not free the kernel,
`stuck` is set and the caller restarts it); a kernel that dies mid-call raises
DeadKernelError; nothing the call prints reaches the feedback (nobody reads that cell's
output). The reply is plain JSON, decoded by the checker as before.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nbclient.exceptions import CellTimeoutError, DeadKernelError

from course_lib.checks import CheckFailed

from .kernel.link import read_frame, write_frame

CONNECT_POLL_SECONDS = 0.001  # between attempts to reach the socket while the kernel opens it
ALIVE_POLL_SECONDS = 1.0  # how often a long call checks that the kernel still lives
INTERRUPT_GRACE_SECONDS = 10.0  # how long an interrupted call may take to give up


class LinkTimeout(CellTimeoutError):
    """A call ran longer than the cell timeout; the kernel was interrupted."""


@dataclass
class KernelControl:
    """What the session needs of the kernel, from whichever client drives it.

    execute(code) sends an execute request and returns its msg_id; replied(msg_id) says
    (without waiting) whether that request's reply has come; alive() and interrupt() as named.
    """

    execute: Callable[[str], str]
    replied: Callable[[str], bool]
    alive: Callable[[], bool]
    interrupt: Callable[[], None]


class LinkSession:
    """One test cell's calls into the kernel; open at the first call, closed at the end of the cell."""

    def __init__(self, kernel: KernelControl, path: Path, timeout: float | None):
        self.kernel, self.path = kernel, path
        self.timeout = timeout if timeout and timeout > 0 else None
        self.conn: socket.socket | None = None
        self.msg_id: str | None = None
        self.timed_out = False  # a call ran past the timeout and the kernel was interrupted
        self.stuck = False  # ... and the interrupt did not free it: the kernel must be replaced
        self.ended = False  # the serving cell's reply has come (read while checking on the kernel)

    def call(self, name: str, payload: str) -> dict:
        """The kernel's reply to one call of the student's `name` (CheckFailed when there is none)."""
        if self.conn is None:
            self._open(name)
        assert self.conn is not None
        try:
            write_frame(self.conn, json.dumps({"name": name, "payload": payload}).encode())
        except OSError:
            self._hung_up(name)
        frame = self._reply(name)
        try:
            reply = json.loads(frame)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise CheckFailed(f"calling {name} gave no answer: the reply could not be read")
        return reply

    def close(self) -> None:
        """Hang up; the kernel's serving cell then ends, and the next request queues behind it."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _serving_ended(self) -> bool:
        if not self.ended and self.msg_id is not None:
            self.ended = self.kernel.replied(self.msg_id)
        return self.ended

    # -------------------------------------------------------------- the parts of a call

    def _open(self, name: str) -> None:
        code = (
            "import course_tools.grading.kernel.link as _course_link_\n"
            f"_course_link_.serve(globals(), {str(self.path)!r})"
        )
        self.msg_id = self.kernel.execute(code)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        next_check = time.monotonic()
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(str(self.path))
            except OSError:
                conn.close()
            else:
                self.conn = conn
                return
            now = time.monotonic()
            if now >= next_check:  # not listening yet: has the serving cell ended, or the kernel died?
                if self._serving_ended():
                    raise CheckFailed(f"calling {name} gave no answer: the grading link did not start")
                if not self.kernel.alive():
                    raise DeadKernelError("Kernel died")
                next_check = now + 0.05
            if deadline is not None and now > deadline:
                self._interrupt(name)
            time.sleep(CONNECT_POLL_SECONDS)

    def _reply(self, name: str) -> bytes:
        """Wait for the reply frame; the kernel is checked on while a call runs long."""
        assert self.conn is not None
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            wait = (
                ALIVE_POLL_SECONDS
                if deadline is None
                else min(ALIVE_POLL_SECONDS, deadline - time.monotonic())
            )
            ready, _, _ = select.select([self.conn], [], [], max(wait, 0))
            if ready:
                try:
                    frame = read_frame(self.conn)
                except ValueError as exc:
                    self.close()
                    raise CheckFailed(f"calling {name} gave no answer: {exc}") from None
                except OSError:
                    frame = None
                if frame is None:
                    self._hung_up(name)
                return frame
            if not self.kernel.alive():
                raise DeadKernelError("Kernel died")
            if deadline is not None and time.monotonic() >= deadline:
                self._interrupt(name)

    def _hung_up(self, name: str) -> None:
        """The kernel closed the link: it died (DeadKernelError), or its serving cell ended."""
        self.close()
        until = time.monotonic() + 2.0  # a dead kernel is reported within milliseconds
        while time.monotonic() < until:
            if not self.kernel.alive():
                raise DeadKernelError("Kernel died")
            if self._serving_ended():
                break
            time.sleep(0.005)
        raise CheckFailed(f"calling {name} gave no answer: the grading link was closed in the kernel")

    def _interrupt(self, name: str) -> None:
        """Past the timeout: interrupt the kernel; raise LinkTimeout (stuck when that did not free it)."""
        self.timed_out = True
        self.kernel.interrupt()
        freed = False
        until = time.monotonic() + min(INTERRUPT_GRACE_SECONDS, self.timeout or INTERRUPT_GRACE_SECONDS)
        while time.monotonic() < until and not freed:
            if self.conn is not None:  # the interrupted call's (error) reply, or the cell's end
                ready, _, _ = select.select([self.conn], [], [], 0.05)
                freed = bool(ready)
            else:
                time.sleep(0.05)
            freed = freed or self._serving_ended()
            if not self.kernel.alive():
                raise DeadKernelError("Kernel died")
        self.stuck = not freed
        self.close()
        raise LinkTimeout(f"calling {name} ran longer than {self.timeout:.0f} s and was interrupted")
