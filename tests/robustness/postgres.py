"""A real, throwaway PostgreSQL server for the gradebook tests (Debian's package, run as a plain user).

PostgreSQL refuses to run as root, so when the tests run as root (CI) the
server runs as the `postgres` user the Debian package creates; otherwise as the
current user. Data and socket live in a temporary folder; the server listens on
its unix socket only and is stopped (and its folder removed) afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .system import postgres_bin


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@contextmanager
def postgres_server(database: str = "gradebook") -> Iterator[str]:
    """Start a server, create `database`, yield its SQLAlchemy URL; stop it on exit."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL's server binaries are missing and could not be installed")
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError as exc:
            raise RuntimeError("running as root, but there is no `postgres` user to run the server") from exc
    base = Path(tempfile.mkdtemp(prefix="pg-gradebook-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if user:
        entry = pwd.getpwnam(user)
        for path in (base, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    log = base / "server.log"

    def run(*cmd: str) -> None:
        proc = subprocess.run(_as_user(list(cmd), user), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            extra = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{cmd[0]} failed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}\n{extra}")

    run(f"{bindir}/initdb", "-D", str(data), "-U", "grader", "--auth=trust", "-E", "UTF8", "--no-sync")
    opts = f"-c listen_addresses='' -c unix_socket_directories={sock} -c fsync=off -c max_connections=60"
    run(f"{bindir}/pg_ctl", "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start")
    try:
        run(f"{bindir}/createdb", "-h", str(sock), "-U", "grader", database)
        yield f"postgresql://grader@/{database}?host={sock}"
    finally:
        subprocess.run(
            _as_user([f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"], user),
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(base, ignore_errors=True)
