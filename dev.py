#!/usr/bin/env python3
"""The course's one entry point: set up the environment, build the book, run the tests.

    python3 dev.py book        build the HTML book into _build/html
    python3 dev.py test        run the whole test suite
    python3 dev.py exercises   regenerate exercises/ (student versions) from solutions/
    python3 dev.py bench       print the benchmark figures (book, chapters, ps01, autograde)
    python3 dev.py lint        ruff check and format check
    python3 dev.py bundle      the student archive: HTML book, exercises, course_lib, SETUP.md (no solutions)
    python3 dev.py grade ...   the instructor's grading tool (release, collect, autograde, feedback, export, status)

Every command first makes sure `.venv/` exists and holds exactly the pinned
dependencies of requirements.txt and pyproject.toml (it reinstalls when either
file changes), then runs inside it. Needs only Python 3.11 on the PATH.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
STAMP = VENV / ".course-installed"
PINS = [ROOT / "requirements.txt", ROOT / "pyproject.toml"]
# Debian packages the tests drive for real: the sandbox (bubblewrap), the PostgreSQL
# gradebook, and the browser the reader-facing tests use, with a CJK font for the book's
# Chinese terms. `dev.py test` installs the missing ones when it runs as root (CI, a fresh
# container); otherwise it says what to run.
SYSTEM_PACKAGES = ["bubblewrap", "postgresql", "chromium", "chromium-driver", "fonts-wqy-zenhei"]


def _pins_digest() -> str:
    h = hashlib.sha256()
    for path in PINS:
        h.update(path.read_bytes())
    return h.hexdigest()


def ensure_env() -> None:
    """Create .venv and install the pinned dependencies when missing or out of date."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"dev.py needs Python 3.11, this is {sys.version.split()[0]}")
    if not VENV_PY.exists():
        print("[dev] creating .venv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    digest = _pins_digest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    print("[dev] installing pinned dependencies into .venv (first run takes a few minutes)", flush=True)
    pip = [str(VENV_PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements.txt")], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(digest)


def _missing_debian_packages(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        probe = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False
        )
        if "install ok installed" not in probe.stdout:
            missing.append(name)
    return missing


def ensure_system_packages() -> None:
    """Install the Debian packages the tests need (apt-get, as root), or say how to."""
    if shutil.which("dpkg-query") is None:
        print(f"[dev] not a Debian system: make sure these are installed: {' '.join(SYSTEM_PACKAGES)}")
        return
    missing = _missing_debian_packages(SYSTEM_PACKAGES)
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"[dev] missing Debian packages: sudo apt-get install -y {' '.join(missing)}", flush=True)
        return
    print(f"[dev] installing Debian packages: {' '.join(missing)}", flush=True)
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=apt_env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=apt_env
    )


def venv_env() -> dict[str, str]:
    """Environment for child processes: the venv first on PATH, deterministic threads."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.pop("PYTHONHOME", None)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def run(cmd: list[str]) -> int:
    return subprocess.run(cmd, cwd=ROOT, env=venv_env()).returncode


def cmd_book(args: list[str]) -> int:
    """Build the book with warnings as errors; on failure, show which chapter and cell failed."""
    return run([str(VENV_PY), "-m", "course_tools.book.build", *args])


def cmd_test(args: list[str]) -> int:
    """pytest; with no arguments the whole suite, on two xdist workers (see tests/conftest.py)."""
    ensure_system_packages()
    if not args:  # much of the suite waits on kernels, browsers and subprocesses: two at a time
        args = ["-n", "2", "--durations=25"]  # shared out by work unit: tests/conftest.py
    return run([str(VENV_PY), "-m", "pytest", *args])


def cmd_exercises(args: list[str]) -> int:
    return run([str(VENV_PY), "-m", "course_tools.exercises", *args])


def cmd_bench(args: list[str]) -> int:
    return run([str(VENV_PY), str(ROOT / "benchmarks" / "bench.py"), *args])


def cmd_grade(args: list[str]) -> int:
    """The instructor's grading tool, run in the caller's directory (the course directory)."""
    cmd = [str(VENV_PY), "-m", "course_tools.grading", *args]
    return subprocess.run(cmd, cwd=os.getcwd(), env=venv_env()).returncode


def cmd_lint(args: list[str]) -> int:
    rc = run([str(VENV_PY), "-m", "ruff", "check", "."])
    return rc or run([str(VENV_PY), "-m", "ruff", "format", "--check", "."])


def cmd_bundle(args: list[str]) -> int:
    return run([str(VENV_PY), "-m", "course_tools.book.bundle", *args])


COMMANDS = {
    "book": cmd_book,
    "test": cmd_test,
    "exercises": cmd_exercises,
    "bench": cmd_bench,
    "lint": cmd_lint,
    "bundle": cmd_bundle,
    "grade": cmd_grade,
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        return 2
    ensure_env()
    if shutil.which("git") is None:
        print("[dev] warning: git not found; some tests compare against git-tracked files")
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
