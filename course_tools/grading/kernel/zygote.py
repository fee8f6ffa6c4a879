"""The warm kernel parent: imports torch & co. once, then forks a fresh, isolated kernel per request.

    python -m course_tools.grading.kernel.zygote SOCKET      (started by course_tools.grading.warm,
                                                               inside the grading sandbox, as uid nobody)

Starting a kernel and importing torch, NumPy, matplotlib and course_lib costs seconds;
this process pays it once per grading worker. For each kernel the grader asks for (a
JSON line on SOCKET) it forks a *supervisor*, which

1. enters a new user namespace (its own uid mapped to 65534 inside: no root inside, and
   nothing to regain on exec) and new mount, PID, network, IPC and UTS namespaces;
2. forks an init (PID 1 of the new PID namespace) that forks the kernel (PID 2) and exits
   with it, so every process the kernel leaves behind dies with it;
3. relays the grader's signals to the kernel and reports its exit status, then exits.

Before the kernel runs ipykernel, its init and then the kernel replace what a previous kernel could have
touched: a new /tmp (the home directory lies in it) and /dev/shm, the grading work folder
covered by an empty one with only this submission's folder bound back (the notebooks in
it, which hold the hidden tests, covered by a file no one may read), its own socket folder, /proc
covered (a new PID namespace's /proc cannot be mounted under the sandbox's, and the
kernel needs none), no more user namespaces, all capabilities dropped, no_new_privs.
Module state, variables and environment are the zygote's untouched copy (fork), which
never ran student code. Nothing here decides a score.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import sys
import traceback

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS = 0x40000000, 0x08000000, 0x04000000
MS_BIND, MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV, MS_MOVE = 4096, 0x4000, 1 << 18, 2, 4, 8192
MS_RDONLY, MS_REMOUNT = 1, 32
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 4, 38, 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
INSIDE_ID = 65534  # the kernel's uid and gid inside its user namespace: never 0

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data and data.encode(),
        ),
        f"mount {target}",
    )


def preload() -> None:
    """Import what every assignment's kernel imports, so each forked kernel starts warm.

    Besides the libraries (and the parts of torch they load on first use), what
    IPKernelApp.initialize imports (the kernel class, its shell, its debugger with debugpy,
    IPython's completer and magics): ~0.2 s of every kernel's start.
    """
    import ipykernel.debugger  # noqa: F401
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401
    import IPython.core.completerlib  # noqa: F401
    import IPython.core.debugger  # noqa: F401
    import IPython.core.oinspect  # noqa: F401
    import IPython.extensions.storemagic  # noqa: F401
    import IPython.utils.wildcard  # noqa: F401
    import matplotlib
    import tornado.platform.asyncio  # noqa: F401
    import tornado.queues  # noqa: F401

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401

    torch.backends.cpu.get_cpu_capability()  # reads /proc/cpuinfo once, here, for every kernel
    # A notebook's first optimizer imports torch._dynamo (torch.optim's add_param_group is wrapped
    # to keep the compiler out), and seed_everything's use_deterministic_algorithms imports
    # torch._inductor.config: together ~2.3 s of each kernel's run, paid here once instead.
    import torch._dynamo  # noqa: F401
    import torch._inductor.config  # noqa: F401

    import course_lib  # noqa: F401
    import course_tools.grading.kernel.link  # noqa: F401


def enter_namespaces() -> None:
    """New user namespace (uid/gid INSIDE_ID), then new mount, PID, network, IPC and UTS namespaces."""
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{INSIDE_ID} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{INSIDE_ID} {gid} 1")
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    _check(_libc.unshare(flags), "unshare(mount, pid, net, ipc, uts)")


def isolate_files(req: dict) -> None:
    """Fresh /tmp, /dev/shm and home; only this submission's folder of the work root (its notebooks closed)."""
    workdir, runtime, work_root = req["workdir"], req["runtime_dir"], req["work_root"]
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    keep_work = os.open(workdir, os.O_PATH)
    keep_runtime = os.open(runtime, os.O_PATH)
    keep_readonly = [(path, os.open(path, os.O_PATH)) for path in req.get("keep_readonly", [])]
    with open("/proc/sys/user/max_user_namespaces", "w") as f:  # the kernel cannot nest another sandbox
        f.write("0")
    tmp_opts = f"size={int(req.get('tmp_bytes', 256 << 20))},mode=1777"
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, tmp_opts)
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    if os.path.isdir(work_root):  # (a work root under /tmp is gone already)
        _mount("tmpfs", work_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path, fd in keep_readonly:  # the Python installation or checkout, when it lies under /tmp
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for path, fd in ((workdir, keep_work), (runtime, keep_runtime)):
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
        os.close(fd)
    closed = "/tmp/.closed"  # a file no one may read (mode 000, and the kernel keeps no capability)
    os.close(os.open(closed, os.O_CREAT | os.O_WRONLY, 0))
    os.chmod(closed, 0)
    for name in os.listdir(workdir):
        path = os.path.join(workdir, name)
        if name.endswith(".ipynb") and os.path.isfile(path):
            _mount(closed, path, None, MS_BIND)
    os.unlink(closed)
    os.makedirs(os.environ.get("HOME", "/tmp/home"), exist_ok=True)


PROC_FILES = ("cpuinfo", "meminfo", "stat", "uptime", "loadavg", "filesystems", "mounts")


def cover_proc() -> None:
    """Replace /proc by a few machine-wide files and this process's own entry, as /proc/<pid> and /proc/self.

    A new PID namespace's /proc cannot be mounted under the sandbox's (bubblewrap covers parts
    of it), and the sandbox's lists the zygote. Libraries read the machine files (torch's
    cpuinfo, psutil), and ipykernel looks itself up as /proc/<its pid>.
    """
    own = os.readlink("/proc/self")  # this process's pid in the sandbox's /proc
    pid = str(os.getpid())  # and in its own namespace
    new = "/tmp/.proc"  # built beside, then moved over /proc (the binds need the old /proc/self/fd)
    os.mkdir(new)
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    for name in PROC_FILES:
        if os.path.exists(f"/proc/{name}"):
            open(f"{new}/{name}", "w").close()
            _mount(f"/proc/{name}", f"{new}/{name}", None, MS_BIND)
    os.mkdir(f"{new}/{pid}")
    _mount(f"/proc/{own}", f"{new}/{pid}", None, MS_BIND)
    os.symlink(pid, f"{new}/self")
    os.symlink(f"{pid}/task/{pid}", f"{new}/thread-self")
    _mount(new, "/proc", None, MS_MOVE)
    os.rmdir(new)


def drop_privileges() -> None:
    """No capabilities in any set, none to gain by exec; fail closed if any remain."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    for cap in range(64):
        if (
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22
        ):  # EINVAL: no such cap
            _check(-1, f"drop capability {cap} from the bounding set")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two words each): all zero
    _check(_libc.capset(header, data), "capset")
    check = (ctypes.c_uint32 * 6)()
    _check(_libc.capget(header, check), "capget")
    if any(check):
        raise RuntimeError("capabilities remain after dropping them")


def become_kernel(req: dict) -> None:
    """In the kernel process (PID 2 of its namespace): its /proc, no privileges, then ipykernel."""
    cover_proc()
    drop_privileges()
    os.chdir(req["workdir"])
    sys.argv = ["ipykernel_launcher", *req["argv"]]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def be_init(req: dict) -> None:
    """PID 1 of the kernel's namespace: isolate the files, start the kernel, reap, exit with it.

    The kernel is not PID 1 itself, so signals and crashes work on it as on any process
    (PID 1 ignores signals it has no handler for, its own SIGSEGV included). When the kernel
    ends, this process exits with its status, and with it every process left in the namespace.
    """
    isolate_files(req)
    kernel = os.fork()
    if kernel == 0:
        try:
            become_kernel(req)
            os._exit(0)
        except BaseException:  # noqa: BLE001 - say why on the worker's log, never fall back into init
            traceback.print_exc()
            os._exit(70)
    for signum in FORWARDED:
        signal.signal(signum, lambda s, _frame: _forward(kernel, s))
    drop_privileges()
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == kernel:
            os._exit(
                os.waitstatus_to_exitcode(status) & 0xFF
                if os.WIFEXITED(status)
                else 128 + os.WTERMSIG(status)
            )


def _forward(pid: int, signum: int) -> None:
    with _ignore_missing():
        os.kill(pid, signum)


def supervise(conn: socket.socket, req: dict) -> None:
    """The supervisor: make the namespaces, fork the kernel, relay signals, report its exit."""
    try:
        _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # its /proc/self files must be its own to write the id maps
        enter_namespaces()
        kernel = os.fork()
    except OSError as exc:
        conn.sendall((json.dumps({"error": str(exc)}) + "\n").encode())
        os._exit(1)
    if kernel == 0:
        conn.close()
        try:
            be_init(req)
        except BaseException:  # noqa: BLE001 - say why on the worker's log, never fall back into the zygote
            traceback.print_exc()
        os._exit(70)
    conn.sendall((json.dumps({"started": True}) + "\n").encode())
    woken, wake = os.pipe()  # SIGCHLD writes here: the kernel's end is reported at once, not on a poll
    os.set_blocking(wake, False)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    signal.set_wakeup_fd(wake)
    buffer = b""
    while True:
        done, status = os.waitpid(kernel, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            conn.sendall((json.dumps({"exit": code}) + "\n").encode())
            os._exit(0)
        ready, _, _ = select.select([conn, woken], [], [], 1.0)
        if woken in ready:
            os.read(woken, 512)
        if conn not in ready:
            continue
        chunk = conn.recv(4096)
        if not chunk:  # the grader is gone: so is the kernel
            os.kill(kernel, signal.SIGKILL)
            os.waitpid(kernel, 0)
            os._exit(0)
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            with _ignore_missing():
                os.kill(kernel, int(json.loads(line)["signal"]))


class _ignore_missing:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is ProcessLookupError


def serve(sock_path: str) -> None:
    """Accept kernel requests until the grader closes our stdin."""
    preload()
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # a kernel cannot read or write this process's memory
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(16)
    print("ready", flush=True)
    os.dup2(2, 1)  # from now on the kernels' output goes to the worker's log, never into the pipe
    while True:
        ready, _, _ = select.select([server, sys.stdin], [], [], 1.0)
        _reap()
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1024):
            return
        if server in ready:
            conn, _ = server.accept()
            req = json.loads(conn.makefile("rb").readline())
            if os.fork() == 0:
                server.close()
                supervise(conn, req)
            conn.close()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    serve(sys.argv[1])
