"""Debian packages the grading tests need, installed on the spot when the machine lacks them.

CI runs on a fresh machine as root: when `bwrap` or PostgreSQL's server binaries
are missing, the tests install Debian's packages with apt-get (once per run)
rather than skip. Elsewhere (not root, no apt-get) they report exactly what is
missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

_updated = False


def apt_install(*packages: str) -> str | None:
    """Install Debian packages; None on success, else why not."""
    global _updated
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"cannot install {' '.join(packages)}: needs root and apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        _updated = True
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        return f"apt-get install {' '.join(packages)} failed: {proc.stderr.strip()[-500:]}"
    return None


def ensure_bubblewrap() -> str | None:
    """None when the grading sandbox can run here (installing bubblewrap if needed), else why not."""
    from course_tools.grading.sandbox import unavailable_reason

    if shutil.which("bwrap") is None:
        failure = apt_install("bubblewrap")
        if failure:
            return failure
    return unavailable_reason()


def postgres_bin() -> str | None:
    """The directory holding initdb/pg_ctl (Debian keeps them out of PATH), installing if needed."""

    def find() -> str | None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if found:
            return os.path.dirname(found[-1])
        tools = [shutil.which(name) for name in ("initdb", "pg_ctl", "createdb")]
        return os.path.dirname(tools[0]) if all(tools) else None

    if find() is None:
        apt_install("postgresql")
    return find()
