"""Warm kernels leave nothing behind: a later submission sees nothing an earlier one did.

Submissions are graded by kernels forked from one pre-imported parent per worker
(course_tools.grading.warm). With one worker, a "leaver" submission is graded first:
it writes to /tmp, the home directory, /dev/shm and its working directory, patches
torch and course_lib, sets an environment variable, listens on an abstract unix
socket and leaves daemon processes running. A "looker" graded next, by a kernel
forked from the same parent, reports everything of that it can find, and the test
asserts it found nothing, that no process the leaver started outlived its kernel,
and that both still score full marks. A third run does the same as a user without
root (a user namespace), the way an instructor without root grades.
"""

from __future__ import annotations

import json
import subprocess

import nbformat
import psutil
import pytest
from robustness.harness import ASSIGNMENT, REPO, instructor_command, make_course, scores, write_files
from robustness.system import ensure_bubblewrap

from course_tools.grading.submissions import fill, solution_answers

pytestmark = pytest.mark.slow
MARK = "course-warm-isolation-mark"

LEAVE = f'''
import os as _os, socket as _socket, subprocess as _sp, torch as _torch, course_lib as _cl
for _where in ("/tmp", _os.path.expanduser("~"), "/dev/shm", "."):
    try:
        with open(_os.path.join(_where, "{MARK}"), "w") as _f:
            _f.write("left by the leaver")
    except OSError:
        pass
_torch.{MARK.replace("-", "_")} = True
_cl.{MARK.replace("-", "_")} = True
_os.environ["{MARK.replace("-", "_").upper()}"] = "1"
_LEFT_SOCKET = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
_LEFT_SOCKET.bind("\\0{MARK}")
_LEFT_SOCKET.listen(1)
_sp.Popen(["sleep", "4242"], start_new_session=True)
_sp.Popen(["sh", "-c", "(sleep 4243 &) ; exit 0"])
'''

LOOK = f'''
import os as _os, socket as _socket, sys as _sys, torch as _torch, course_lib as _cl
_found = []
for _where in ("/tmp", _os.path.expanduser("~"), "/dev/shm", "."):
    if _os.path.exists(_os.path.join(_where, "{MARK}")):
        _found.append("file in " + _where)
for _where in ("/tmp", "/dev/shm"):
    for _dir, _subdirs, _files in _os.walk(_where):
        _found += [_dir + "/" + _n for _n in _files if "{MARK}" in _n]
if hasattr(_torch, "{MARK.replace("-", "_")}"):
    _found.append("torch patched")
if hasattr(_cl, "{MARK.replace("-", "_")}"):
    _found.append("course_lib patched")
if "{MARK.replace("-", "_").upper()}" in _os.environ:
    _found.append("environment variable")
_probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
try:
    _probe.connect("\\0{MARK}")
    _found.append("abstract socket")
except OSError:
    pass
_me = _os.path.basename(_os.path.abspath("../../.."))  # work root/<student>/autograded/<student>/<assignment>
_others = [_n for _n in _os.listdir("../../../..") if _n != _me]
if _others:
    _found.append("other folders beside mine: " + ",".join(_others))
print("ISOLATION-REPORT " + __import__("json").dumps(_found))
'''


def _build(release, answers, first_part: str, prefix: str):
    return {
        f"{ASSIGNMENT}.ipynb": nbformat.writes(
            fill(release, {**answers, first_part: prefix + answers[first_part]})
        ).encode()
    }


def _report(course, student: str) -> list[str]:
    nb = nbformat.read(
        course.root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4
    )
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in str(out.get("text", "")).splitlines():
                if line.startswith("ISOLATION-REPORT "):
                    return json.loads(line.removeprefix("ISOLATION-REPORT "))
    raise AssertionError(f"{student}: the looker's report is missing from its autograded notebook")


def _leftover_processes() -> list[str]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("sleep 424"):
            out.append(f"{proc.pid}: {cmd}")
    return out


@pytest.mark.parametrize("user", ["root", "unprivileged"])
def test_a_later_submission_sees_nothing_an_earlier_one_left(tmp_path, user):
    why = ensure_bubblewrap()
    if why:
        pytest.fail(f"the grading sandbox cannot run here: {why}")
    course = make_course(tmp_path, release_args=("--no-exchange",))
    release = nbformat.read(course.root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    source = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = solution_answers(source)
    first_part = next(iter(answers))
    write_files(course, "a-leaver", _build(release, answers, first_part, LEAVE))
    write_files(course, "b-looker", _build(release, answers, first_part, LOOK))
    write_files(course, "c-looker", _build(release, answers, first_part, LOOK))
    cmd, env = instructor_command(course, "autograde", ASSIGNMENT, "--jobs", "1", "--cell-timeout", "60")
    if user == "unprivileged":  # uid 1000 in a user namespace: the grader takes its rootless path
        cmd = ["unshare", "--user", "--map-user=1000", "--map-group=1000", "--", *cmd]
    proc = subprocess.run(cmd, cwd=course.root, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"autograde failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    for looker in ("b-looker", "c-looker"):
        assert _report(course, looker) == [], (
            f"{looker} found what the leaver left: {_report(course, looker)}"
        )
    assert _leftover_processes() == [], "processes the leaver started outlived its kernel"
    got = scores(course)
    full = got["b-looker"]
    assert got["a-leaver"] == full == got["c-looker"], f"scores differ: {got}"
    assert sum(full.values()) > 0
