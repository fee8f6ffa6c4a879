"""Run nbgrader commands in a course directory, with the course's configuration.

Every step of the grading pipeline goes through nbgrader's own command line, so
what the tests prove is what an instructor runs. A course directory is any
folder holding a copy of the repository's nbgrader_config.py; `solutions/` and
`exercises/` inside it play nbgrader's source and release roles.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBGRADER = str(Path(sys.executable).parent / "nbgrader")


class NbgraderError(RuntimeError):
    """An nbgrader command failed; the message carries the command and its output."""


@dataclass(frozen=True)
class Course:
    """A course directory on disk and where its gradebook and exchange live."""

    root: Path
    exchange: Path
    db_url: str
    course_id: str = "gradient-problems"

    @classmethod
    def create(cls, root: Path, *, exchange: Path | None = None, db_url: str | None = None) -> Course:
        """Make a course directory with the repository's nbgrader config and an empty exchange."""
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
        exchange = exchange or root.parent / "exchange"
        exchange.mkdir(parents=True, exist_ok=True)
        os.chmod(exchange, 0o777)
        return cls(root=root, exchange=exchange, db_url=db_url or f"sqlite:///{root / 'gradebook.db'}")

    def common_args(self) -> list[str]:
        return [
            f"--CourseDirectory.root={self.root}",
            f"--CourseDirectory.db_url={self.db_url}",
            f"--CourseDirectory.course_id={self.course_id}",
            f"--Exchange.root={self.exchange}",
        ]

    def run(self, *args: str, cwd: Path | None = None, user: str | None = None, timeout: float = 3600) -> str:
        """Run `nbgrader ARGS` for this course; return its combined output or raise NbgraderError."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", "")]
        )  # alembic, jupyter
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        if user:
            env["USER"] = env["LOGNAME"] = user
        cmd = [NBGRADER, *args, *self.common_args()]
        proc = subprocess.run(
            cmd, cwd=cwd or self.root, env=env, capture_output=True, text=True, timeout=timeout
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise NbgraderError(
                f"`nbgrader {' '.join(args)}` failed (exit {proc.returncode}):\n{output[-4000:]}"
            )
        return output
