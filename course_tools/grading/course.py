"""A course directory and the one way the course runs nbgrader's commands in it.

A course directory is any folder holding a copy of the repository's nbgrader_config.py
(in this repository `solutions/` and `exercises/` play nbgrader's source and release
roles). Every step of the grading pipeline goes through nbgrader's own command line,
so what the tests prove is what an instructor runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

from ..paths import REPO, env_with_venv, venv_program


class NbgraderError(RuntimeError):
    """An nbgrader command failed; the message carries the command and its output."""


def course_config(course_root: Path) -> Config:
    """The course's own nbgrader_config.py, as nbgrader would load it (empty when there is none)."""
    path = Path(course_root) / "nbgrader_config.py"
    if not path.exists():
        return Config()
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


@dataclass(frozen=True)
class Course:
    """A course directory on disk: where its files, gradebook and exchange are."""

    root: Path
    exchange: Path
    db_url: str
    course_id: str = "gradient-problems"
    source_directory: str = "source"
    release_directory: str = "release"
    submitted_directory: str = "submitted"
    autograded_directory: str = "autograded"
    feedback_directory: str = "feedback"

    @classmethod
    def create(cls, root: Path, *, exchange: Path | None = None, db_url: str | None = None) -> Course:
        """Make a course directory with the repository's nbgrader config and an empty exchange."""
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
        exchange = exchange or root.parent / "exchange"
        exchange.mkdir(parents=True, exist_ok=True)
        os.chmod(exchange, 0o777)
        return cls.load(root, exchange=str(exchange), db_url=db_url)

    @classmethod
    def load(
        cls,
        root: Path,
        *,
        db_url: str | None = None,
        course_id: str | None = None,
        exchange: str | None = None,
    ) -> Course:
        """The course at `root` as its nbgrader_config.py describes it; the arguments given win."""
        root = Path(root).resolve()
        cfg = course_config(root)
        cd, ex = cfg.CourseDirectory, cfg.Exchange

        def get(section, name: str, default: str) -> str:
            return str(section[name]) if name in section else default

        return cls(
            root=root,
            exchange=Path(exchange or get(ex, "root", "/srv/nbgrader/exchange")),
            db_url=db_url or get(cd, "db_url", f"sqlite:///{root / 'gradebook.db'}"),
            course_id=course_id or get(cd, "course_id", "default_course"),
            source_directory=get(cd, "source_directory", "source"),
            release_directory=get(cd, "release_directory", "release"),
            submitted_directory=get(cd, "submitted_directory", "submitted"),
            autograded_directory=get(cd, "autograded_directory", "autograded"),
            feedback_directory=get(cd, "feedback_directory", "feedback"),
        )

    def path(self, kind: str, *parts: str) -> Path:
        """A folder of the course: kind is source, release, submitted, autograded or feedback."""
        return self.root / getattr(self, f"{kind}_directory") / Path(*parts)

    def common_args(self) -> list[str]:
        return [
            f"--CourseDirectory.root={self.root}",
            f"--CourseDirectory.db_url={self.db_url}",
            f"--CourseDirectory.course_id={self.course_id}",
            f"--Exchange.root={self.exchange}",
        ]

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        user: str | None = None,
        timeout: float = 3600,
        on_line: Callable[[str], None] | None = None,
    ) -> str:
        """Run `nbgrader ARGS` for this course; return its combined output or raise NbgraderError.

        on_line sees each line of output as it comes (the instructor tool's progress bars).
        """
        env = env_with_venv()  # nbgrader runs alembic and jupyter from the venv
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        if user:
            env["USER"] = env["LOGNAME"] = user
        # nbgrader's own entry point, with course_tools' import savings (course_tools/nbgrader_command.py)
        cmd = [venv_program("python"), "-m", "course_tools.nbgrader_command", *args, *self.common_args()]
        proc = subprocess.Popen(
            cmd, cwd=cwd or self.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines: list[str] = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if on_line is not None:
                    on_line(line)
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise NbgraderError(f"`nbgrader {' '.join(args)}` ran longer than {timeout:.0f} s") from None
        output = "".join(lines)
        if code != 0:
            raise NbgraderError(f"`nbgrader {' '.join(args)}` failed (exit {code}):\n{output[-4000:]}")
        return output
