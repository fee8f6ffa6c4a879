"""Where things are: the repository root, and the virtual environment's programs (nbgrader, jupyter-book).

One place for both, so that every tool finds nbgrader's helpers (alembic, jupyter) the same way
whether it was started from the venv's python, `dev.py`, or a shell where the venv is not active.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # the running interpreter's bin/: nbgrader, jupyter-book, alembic


def venv_program(name: str) -> str:
    """The full path of a program installed beside the running Python (nbgrader, jupyter-book)."""
    return str(VENV_BIN / name)


def env_with_venv(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `env` (default: this process's) with the venv's bin/ first on PATH."""
    out = dict(os.environ if env is None else env)
    out["PATH"] = os.pathsep.join(filter(None, [str(VENV_BIN), out.get("PATH", "")]))
    return out
