"""`collect --zip`: an LMS's "download all submissions" zip into nbgrader's submitted/ folders.

Each LMS names the files of its download its own way; the names below come from the LMS's own code:

canvas      `<name>[_late]_<user id>_<file id>_<file name>[-<n>].<ext>` (Canvas's ContentZipper:
            the sortable name "Zhang, Wei" with all but word characters removed and lower-cased,
            "late" when Canvas marked the submission late, the user id, the attachment's id; a file
            uploaded again under the same name is renamed `<stem>-<n>`). Only the current attempt's
            files are in the zip. Key: the user id (what Canvas's gradebook import matches on).
moodle      `<Full Name>_<participant id>_assignsubmission_file/<file>` (Moodle >= 3.1, "download
            submissions in folders", the default; Moodle 3.x ends the folder with `_`), or
            `<Full Name>_<participant id>_assignsubmission_file_<file>` without folders. Only the
            current attempt; online text comes as `..._assignsubmission_onlinetext/onlinetext.html`.
            Key: the participant id, which Moodle allocates per assignment (assign_user_mapping), so
            the same student has a different id in each Moodle assignment; no late flag in the names.
blackboard  `<assignment title>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<file name>]` for every
            attempt, plus a receipt `<...>_attempt_<stamp>.txt` ("Name: Full Name (username)",
            "Date Submitted: ..."). Key: the username (Grade Center's upload matches on it). Late
            when the attempt's time is after the assignment's due date in the gradebook.

Why not nbgrader's zip_collect: it copies as it goes (a half-collected download when a later file
fails), aborts on two files for one student with "Duplicate submission file", keeps no late flag,
user id or name, and silently drops files its pattern does not match. Here the whole download is
read and checked first (`plan`), unpacked into a temporary folder inside the course, and only then
moved into submitted/<student>/<assignment>/ (`apply`): a download that fails the checks changes
nothing. No path from the zip is used on disk: a file is written as
submitted/<sanitised student id>/<assignment>/<one of the assignment's notebook names>.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .lms_records import LmsSubmission, load_manifest, save_manifest

# The documented layouts, one regex each on a member's path in the zip (guide: "File names in the zip").
PATTERNS = {
    "canvas": re.compile(
        r"^(?:.*/)?(?P<name>[^/]*?)_(?:(?P<late>late|LATE)_)?(?P<user>\d+)_(?P<file_id>\d+)_(?P<file>[^/]+)$"
    ),
    "moodle": re.compile(
        r"^(?:.*/)?(?P<name>[^/]+)_(?P<user>\d+)_assignsubmission_(?P<plugin>[a-z]+)(?:_?/(?P<path>.+)|_(?P<file>[^/]+))$"
    ),
    "blackboard": re.compile(
        r"^(?:.*/)?(?P<title>[^/]+)_(?P<user>[^/_]+)_attempt_(?P<stamp>\d{4}(?:-\d\d){5})(?:_(?P<file>[^/]+)|(?P<ext>\.[^/_.]+))$"
    ),
}
CANVAS_SUFFIX = re.compile(r"^(?P<stem>.+)-(?P<n>\d+)(?P<ext>\.[^.]+)$")


class CollectError(Exception):
    """The download cannot be collected as asked; the message says why and what to do."""


def student_id(lms_user_id: str) -> str:
    """The nbgrader student id for an LMS's own key: the key with anything but [A-Za-z0-9._-] as '_'."""
    sid = re.sub(r"[^A-Za-z0-9._-]+", "_", lms_user_id).strip("._")
    if not sid:
        raise CollectError(f"cannot make a student id of the LMS id {lms_user_id!r}")
    return sid


@dataclass
class Member:
    """One file of the download, as its name describes it."""

    zip: Path
    member: str
    lms_user_id: str
    file: str  # the file name the student gave it (the LMS's prefix and Canvas's -<n> removed)
    name: str = ""
    late: bool = False
    submitted_at: str = ""
    order: tuple = ()  # later attempts sort higher
    student: str = ""  # nbgrader id, when a --pattern names it


@dataclass
class Plan:
    """What a download will do: the files to unpack, the manifest entries, what is ignored and why."""

    copies: dict[str, list[tuple[Member, str]]] = field(default_factory=dict)  # student: [(member, notebook)]
    entries: dict[str, LmsSubmission] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)  # files that name no student in this layout
    notes: list[str] = field(default_factory=list)


def _members(zips: list[Path]) -> list[tuple[Path, str]]:
    out = []
    for z in zips:
        with zipfile.ZipFile(z) as f:
            out += [(Path(z), n) for n in f.namelist() if not n.endswith("/")]
    return out


def _parse(lms: str, z: Path, member: str, receipts: dict[tuple[str, str], str]) -> Member | None:
    m = PATTERNS[lms].match(member)
    if not m:
        return None
    if lms == "canvas":
        file, n = m["file"], 0
        s = CANVAS_SUFFIX.match(file)
        if s and file.endswith(".ipynb"):
            file, n = s["stem"] + s["ext"], int(s["n"])
        return Member(z, member, m["user"], file, m["name"], bool(m["late"]), "", (n, int(m["file_id"])))
    if lms == "moodle":
        file = m["path"] or m["file"]
        if m["plugin"] != "file":
            file = f"{m['plugin']}/{file}"  # online text and the like: listed as ignored
        return Member(z, member, m["user"], file, m["name"])
    stamp = datetime.strptime(m["stamp"], "%Y-%m-%d-%H-%M-%S")
    text = receipts.get((m["user"], m["stamp"]), "")
    name = re.search(r"^Name:\s*(.*?)\s*(?:\([^()]*\))?\s*$", text, re.M)
    return Member(
        z,
        member,
        m["user"],
        m["file"] or f"submission{m['ext']}",
        name[1] if name else "",
        False,
        stamp.isoformat(),
        (stamp,),
    )


def _blackboard_receipts(zips: list[Path]) -> dict[tuple[str, str], str]:
    out = {}
    for z, member in _members(zips):
        m = PATTERNS["blackboard"].match(member)
        if m and m["ext"] == ".txt":
            with zipfile.ZipFile(z) as f:
                out[(m["user"], m["stamp"])] = f.read(member).decode("utf-8", errors="replace")
    return out


def _parse_pattern(regex: re.Pattern, z: Path, member: str) -> Member | None:
    m = regex.match(f"{Path(z).stem}/{member}")
    if not m:
        return None
    return Member(z, member, m["student_id"], m["file_id"] + ".ipynb", student=student_id(m["student_id"]))


def detect(zips: list[Path]) -> dict[str, int]:
    """{lms: how many files of the download name a student in its layout}."""
    members = _members(zips)
    return {lms: sum(bool(PATTERNS[lms].match(n)) for _, n in members) for lms in PATTERNS}


def plan(
    lms: str,
    zips: list[Path],
    notebooks: list[str],
    *,
    pattern: re.Pattern | None = None,
    duedate: datetime | None = None,
) -> Plan:
    """Read the download and decide, touching nothing, what collect will do; CollectError if nothing.

    notebooks: the assignment's notebook file names. Per student: the latest attempt of each file;
    a notebook under another name is taken as the assignment's only notebook when it has one and the
    student handed in one; everything else is listed as ignored, with the reason.
    """
    receipts = _blackboard_receipts(zips) if lms == "blackboard" and pattern is None else {}
    found: list[Member] = []
    result = Plan()
    for z, member in _members(zips):
        receipt = PATTERNS["blackboard"].match(member) if lms == "blackboard" and pattern is None else None
        if receipt and receipt["ext"] == ".txt":
            continue  # an attempt's receipt: read with the attempt's files
        got = _parse_pattern(pattern, z, member) if pattern is not None else _parse(lms, z, member, receipts)
        if got is None:
            result.unmatched.append(f"{Path(z).name}:{member}")
        else:
            found.append(got)
    if not found:
        hint = ""
        if pattern is None:
            others = {k: v for k, v in detect(zips).items() if v and k != lms}
            if others:
                best = max(others, key=others.get)
                hint = f" It looks like a {best} download: add --lms {best}."
        layout = "--pattern" if pattern is not None else f"{lms}'s layout"
        raise CollectError(
            f"no file in {', '.join(Path(z).name for z in zips)} matches {layout}, so nothing was collected "
            f"and nothing changed.{hint} See 'File names in the zip' in the instructor guide."
        )
    by_student: dict[str, list[Member]] = {}
    for f in found:
        f.student = f.student or student_id(f.lms_user_id)
        by_student.setdefault(f.student, []).append(f)
    for sid, files in sorted(by_student.items()):
        result.copies[sid], result.entries[sid] = _choose(
            lms if pattern is None else "other", sid, files, notebooks
        )
        if lms == "blackboard" and duedate and result.entries[sid].submitted_at:
            result.entries[sid].late = datetime.fromisoformat(result.entries[sid].submitted_at) > duedate
    for sid, copies in result.copies.items():
        if not copies:
            e = result.entries[sid]
            result.notes.append(
                f"{sid} ({e.name or e.lms_user_id}): no notebook of the assignment in the download, "
                "nothing collected for them"
            )
    if not any(result.copies.values()):
        raise CollectError(
            f"the download names {len(result.copies)} student(s) but holds no notebook of the assignment "
            f"({', '.join(notebooks)}), so nothing was collected and nothing changed"
        )
    names: dict[tuple[str, str], list[str]] = {}
    for sid, e in result.entries.items():
        names.setdefault((e.lms, e.name), []).append(sid)
    for (_, name), sids in names.items():
        if name and len(sids) > 1:
            result.notes.append(
                f"{len(sids)} students are named {name!r}: kept apart by their LMS ids ({', '.join(sids)})"
            )
    return result


def _choose(
    lms: str, sid: str, files: list[Member], notebooks: list[str]
) -> tuple[list[tuple[Member, str]], LmsSubmission]:
    latest: dict[str, Member] = {}
    ignored: list[str] = []
    if lms == "blackboard":  # every attempt is in the zip: only the last one's files count
        last = max(f.order for f in files)
        ignored += [f"{f.member}: an earlier attempt (kept the latest)" for f in files if f.order < last]
        files = [f for f in files if f.order == last]
    for f in sorted(files, key=lambda f: f.order):
        if f.file in latest:
            ignored.append(f"{latest[f.file].member}: an earlier attempt (kept the latest)")
        latest[f.file] = f
    kept = list(latest.values())
    ipynbs = [f for f in kept if f.file.endswith(".ipynb")]
    copies: list[tuple[Member, str]] = []
    for f in kept:
        if not f.file.endswith(".ipynb"):
            ignored.append(f"{f.member}: not a notebook")
        elif f.file in notebooks:
            copies.append((f, f.file))
        elif len(notebooks) == 1 and len(ipynbs) == 1:
            copies.append((f, notebooks[0]))
        else:
            ignored.append(
                f"{f.member}: a notebook, but not one of the assignment's ({', '.join(notebooks)})"
            )
    newest = max(files, key=lambda f: f.order)
    entry = LmsSubmission(
        student_id=sid,
        lms=lms,
        lms_user_id=newest.lms_user_id,
        name=newest.name or next((f.name for f in files if f.name), ""),
        late=any(f.late for f in kept),
        submitted_at=newest.submitted_at,
        files=[f.member for f, _ in copies],
        ignored=ignored,
    )
    return copies, entry


def split_name(name: str) -> tuple[str, str]:
    """(first, last) for the gradebook: the last word is the last name ('' and the name when one word)."""
    first, _, last = name.strip().rpartition(" ")
    return first, last


def apply(result: Plan, course_root: Path, submitted: Path, assignment: str) -> list[str]:
    """Unpack the plan's notebooks into a temporary folder in the course, then move each student's in.

    A student's previous submission of the assignment is replaced whole; students the download does
    not name keep theirs. The manifest gains (or replaces) this download's students. Returns the
    students collected.
    """
    tmp_parent = Path(course_root) / ".grading"
    tmp_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="collect-", dir=tmp_parent) as tmp:
        staged = Path(tmp)
        for sid, copies in result.copies.items():
            if not copies:
                continue
            folder = staged / sid
            folder.mkdir()
            for member, notebook in copies:
                with (
                    zipfile.ZipFile(member.zip) as z,
                    z.open(member.member) as src,
                    open(folder / notebook, "wb") as dst,
                ):
                    shutil.copyfileobj(src, dst)
            entry = result.entries[sid]
            if entry.submitted_at:  # nbgrader reads it for late penalties
                stamp = datetime.fromisoformat(entry.submitted_at)
                (folder / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
        collected = [sid for sid, copies in result.copies.items() if copies]
        for sid in collected:
            dest = Path(submitted) / sid / assignment
            old = dest.with_name(f".{assignment}.old")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                os.replace(dest, old)
            shutil.move(str(staged / sid), dest)
            shutil.rmtree(old, ignore_errors=True)
    manifest = load_manifest(course_root, assignment)
    manifest.update(result.entries)
    save_manifest(course_root, assignment, [manifest[s] for s in sorted(manifest)])
    return collected
