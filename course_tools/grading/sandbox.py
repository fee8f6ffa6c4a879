"""Operating-system isolation for student code at grading time: bubblewrap, rlimits and a separate user.

Every kernel that runs a student's notebook runs under

    bwrap (new mount, PID, network, IPC and UTS namespaces; only the paths below exist)
      prlimit (address space, CPU seconds, processes, file size)
        setpriv (uid/gid 65534 "nobody", no capabilities, no_new_privs)
          python -m course_tools.grading.kernel.zygote   (warm: one per worker, forks a kernel
                                                          per request, see course_tools.grading.warm)
          or python -m ipykernel_launcher -f <connection file>   (cold: one sandbox per kernel)

Inside, the filesystem holds the system directories and the Python installation
read-only, the course library read-only, the student's own grading directory
and the kernel's socket directory, a small private /tmp, and nothing else: no
solutions/, no gradebook, no other student's work. The network namespace has
only a loopback interface, so nothing outside can be reached; the kernel talks
to the grader over unix sockets (ZeroMQ's ipc transport) in its own directory.
Running as another user keeps the kernel away from files the grader writes with
mode 0600 (the scratch gradebook, the notebook with hidden tests) even inside.

Needs `bwrap` (Debian package bubblewrap) and util-linux's `prlimit` and
`setpriv`, no Docker engine. As root, cold kernels need no user namespaces; warm
kernels, and grading as an ordinary user (rootless: bubblewrap enters a user
namespace and the kernel keeps the instructor's uid, with the notebooks holding
hidden tests covered), need unprivileged user namespaces, the Debian and Ubuntu default.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ..paths import REPO, VENV_BIN

NOBODY = 65534
GiB = 1 << 30
MiB = 1 << 20

# System paths made visible read-only (those that exist on the machine).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class Limits:
    """Resource limits for one kernel; the defaults suit a PyTorch assignment on a laptop-sized problem."""

    memory_bytes: int = 4 * GiB  # address space (RLIMIT_AS): torch alone maps ~1 GiB
    cpu_seconds: int = 900  # CPU time of the kernel (RLIMIT_CPU): a backstop behind the wall clock
    max_processes: int = 512  # threads and processes of uid nobody (RLIMIT_NPROC): stops fork bombs
    max_file_bytes: int = 256 * MiB  # largest file the kernel may write (RLIMIT_FSIZE)
    tmp_bytes: int = 256 * MiB  # size of the private /tmp (a tmpfs, held in memory)


def missing_tools() -> list[str]:
    """The command-line tools the sandbox needs that are not on PATH."""
    return [tool for tool in ("bwrap", "prlimit", "setpriv") if shutil.which(tool) is None]


def unavailable_reason() -> str | None:
    """None when sandboxed kernels can start here, else a sentence saying why not and what to do.

    As root, bubblewrap needs nothing more; as another user it needs unprivileged user
    namespaces (the default on Debian and Ubuntu).
    """
    missing = missing_tools()
    if missing:
        return f"missing {', '.join(missing)} (Debian: apt-get install -y bubblewrap util-linux)"
    rootless = os.geteuid() != 0
    return _probe(["--unshare-user"] if rootless else [], [], "run the grader as root" if rootless else "")


@functools.cache
def warm_unavailable_reason() -> str | None:
    """None when warm kernels can be forked here (each enters a user namespace of its own, unprivileged)."""
    reason = unavailable_reason()
    if reason:
        return reason
    rootless = os.geteuid() != 0
    as_nobody = [] if rootless else ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return _probe(["--unshare-user"] if rootless else [], [*as_nobody, "unshare", "--user", "true"], "")


def _probe(bwrap_options: list[str], inner: list[str], otherwise: str) -> str | None:
    probe = [
        "bwrap",
        *bwrap_options,
        "--ro-bind",
        "/",
        "/",
        "--unshare-net",
        "--unshare-pid",
        "--proc",
        "/proc",
    ]
    probe += ["--", *(inner or ["true"])]
    try:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not run: {exc}"
    if proc.returncode == 0:
        return None
    fix = (
        "unprivileged user namespaces are off on this system: enable them (sysctl "
        "kernel.unprivileged_userns_clone=1; on Ubuntu 24.04+ kernel.apparmor_restrict_unprivileged_userns=0)"
    )
    return f"the sandbox's namespaces cannot be created here ({proc.stderr.strip()[:200]}); {fix}" + (
        f", or {otherwise}" if otherwise else ""
    )


def readonly_paths() -> list[Path]:
    """Everything a kernel needs to read: system, Python, the virtual environment, course_lib/course_tools."""
    paths = {Path(p) for p in SYSTEM_PATHS if Path(p).exists() and not Path(p).is_symlink()}
    for key in ("stdlib", "platstdlib", "purelib", "platlib", "data"):
        paths.add(Path(sysconfig.get_paths()[key]))
    paths.add(Path(sys.prefix))
    paths.add(Path(sys.base_prefix))
    paths.add(Path(os.path.realpath(sys.executable)).parent.parent)
    # The course packages, never the repository root: solutions/ lives there.
    for pkg in ("course_lib", "course_tools"):
        paths.add(REPO / pkg)
    # Keep only outermost paths, so one bind covers its subdirectories.
    ordered = sorted((p for p in paths if p.exists()), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in ordered:
        if not any(p == k or k in p.parents for k in kept):
            kept.append(p)
    return kept


def symlinked_system_paths() -> list[tuple[str, str]]:
    """(link, target) for merged-/usr systems where /bin, /lib... are symlinks into /usr."""
    return [(os.readlink(p), p) for p in SYSTEM_PATHS if Path(p).is_symlink()]


def kernel_environment(home: str = "/tmp/home") -> dict[str, str]:
    """The whole environment a sandboxed kernel sees: nothing is inherited from the grader."""
    return {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "IPYTHONDIR": f"{home}/.ipython",
        "MPLCONFIGDIR": f"{home}/.matplotlib",
        "MPLBACKEND": "Agg",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "NBGRADER_EXECUTION": os.environ.get("NBGRADER_EXECUTION", "autograde"),
    }


def wrap(
    cmd: list[str],
    *,
    workdir: Path,
    runtime_dir: Path,
    limits: Limits = Limits(),
    uid: int = NOBODY,
) -> list[str]:
    """The command line that runs `cmd` (a kernel) in the sandbox.

    workdir: the student's grading directory (the kernel's working directory), read-write.
    runtime_dir: the kernel's connection file and ipc sockets, read-write.
    """
    args = [
        "bwrap",
        "--die-with-parent",  # the kernel never outlives its grader
        "--unshare-pid",
        "--unshare-net",  # loopback only
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "grading",
        "--clearenv",
    ]
    for name, value in kernel_environment().items():
        args += ["--setenv", name, value]
    # The private /tmp first: binds below may lie under /tmp (a checkout or venv in /tmp), and a
    # tmpfs mounted after them would hide them.
    args += ["--size", str(limits.tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
    made: set[Path] = {Path("/tmp")}

    def bind(option: str, path: Path) -> list[str]:
        # bwrap would create missing parents with mode 0700, closed to the kernel's user.
        out = []
        for parent in reversed(path.parents):
            if parent not in made and parent != Path("/"):
                out += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        return [*out, option, str(path), str(path)]

    for path in readonly_paths():
        args += bind("--ro-bind", path)
    for target, link in symlinked_system_paths():
        args += ["--symlink", target, link]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "0777", "--dir", kernel_environment()["HOME"]]  # IPython and matplotlib write here
    args += bind("--bind", workdir) + bind("--bind", runtime_dir)
    if os.geteuid() != 0:  # the kernel keeps our uid: cover the notebooks (hidden tests) it could read
        for notebook in sorted(workdir.glob("*.ipynb")):
            args += ["--ro-bind", "/dev/null", str(notebook)]
    if os.geteuid() != 0:  # rootless: bubblewrap needs a user namespace, and the kernel keeps our uid
        args.insert(1, "--unshare-user")
    args += ["--chdir", str(workdir), "--"]
    args += [
        "prlimit",
        f"--as={limits.memory_bytes}",
        f"--cpu={limits.cpu_seconds}",
        f"--nproc={limits.max_processes}",
        f"--fsize={limits.max_file_bytes}",
        "--core=0",
        "--",
        "setpriv",
        *([f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if os.geteuid() == 0 else []),
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]
    return args + cmd


def prepare_dirs(workdir: Path, runtime_dir: Path, uid: int | None = None) -> None:
    """Let the kernel's user write where it must: its socket directory, and new files in its workdir.

    The workdir gets the sticky bit (like /tmp): the kernel can add files but not
    replace or read the grader's own 0600 files in it.
    """
    prepare_runtime_dir(runtime_dir, uid)
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o1777)


def prepare_runtime_dir(runtime_dir: Path, uid: int | None = None) -> None:
    """A socket directory only the kernel's user (and the grader) can enter."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(runtime_dir, NOBODY if uid is None else uid, NOBODY if uid is None else uid)
    os.chmod(runtime_dir, 0o700)
