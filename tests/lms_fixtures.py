"""Zips laid out as Canvas, Moodle and Blackboard lay out their "download all submissions".

Each layout follows the LMS's own code or documentation (see course_tools.grading.lms_collect
for the sources); the tests drive `collect --zip` with these and export reads what collect learnt.

    build_zip("canvas", tmp_path / "submissions.zip", [
        FixtureSubmission("Wei Zhang", "4211", notebook=nb, late=True),
        FixtureSubmission("Wei Zhang", "4377", notebook=nb2, extra_files={"notes.txt": "..."}),
    ])

Canvas (ContentZipper#get_filename): `<sortable name, word characters only, lower case>[_late]_<user
id>_<attachment id>_<file name>`; a re-uploaded file is renamed `<stem>-<n>.<ext>` and only the
current submission's files are in the zip. Moodle (assign's download_submissions, Moodle >= 3.1
default "download submissions in folders"): `<Full Name>_<participant id>_assignsubmission_file/
<file>` (Moodle 3.x adds a trailing underscore to the folder; layout="moodle-flat" is the pre-3.1
single-folder naming `<Full Name>_<participant id>_assignsubmission_file_<file>`); only the current
attempt is in the zip. Blackboard (Grade Center, Assignment File Download): every attempt, each as
`<assignment title>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>_<file name>` plus a receipt
`<assignment title>_<username>_attempt_<stamp>.txt` (Name, Assignment, Date Submitted, ...).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import nbformat

NOTEBOOK = "ps01_backprop.ipynb"
BASE_TIME = datetime(2026, 10, 5, 14, 0, 0)


@dataclass
class FixtureSubmission:
    """One student's submission as the LMS holds it.

    name: full name ("Wei Zhang"); lms_user_id: Canvas user id (digits), Moodle participant id
    (digits) or Blackboard user name. notebook: the current attempt's notebook (None: no notebook,
    only extra_files). attempts: earlier attempts' notebooks, oldest first (Blackboard's zip holds
    them all; Canvas renames the re-uploaded file `-<n>`; Moodle keeps only the last).
    extra_files: other files of the submission, {file name: content}. late: the LMS's late flag
    (only Canvas writes it into the names). submitted_at: time of the current attempt.
    """

    name: str
    lms_user_id: str
    notebook: nbformat.NotebookNode | None = None
    notebook_name: str = NOTEBOOK
    extra_files: dict[str, str | bytes] = field(default_factory=dict)
    late: bool = False
    attempts: list[nbformat.NotebookNode] = field(default_factory=list)
    submitted_at: datetime = BASE_TIME


def _canvas_name(full_name: str) -> str:
    """Canvas's sortable name ("Zhang, Wei") with everything but word characters removed, lower case."""
    first, _, last = full_name.rpartition(" ")
    sortable = f"{last}, {first}" if first else last
    return re.sub(r"[^\w]", "", sortable).lower()


def _with_suffix(file_name: str, n: int) -> str:
    if not n:
        return file_name
    stem, dot, ext = file_name.rpartition(".")
    return f"{stem}-{n}{dot}{ext}" if dot else f"{file_name}-{n}"


def _files(sub: FixtureSubmission, nb: nbformat.NotebookNode | None) -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {}
    if nb is not None:
        out[sub.notebook_name] = nbformat.writes(nb)
    out.update(sub.extra_files)
    return out


def _receipt(sub: FixtureSubmission, title: str, when: datetime, files: dict[str, str], late: bool) -> str:
    listing = "".join(
        f"\tOriginal filename: {orig}\n\tFilename: {stored}\n" for orig, stored in files.items()
    )
    return (
        f"Name: {sub.name} ({sub.lms_user_id})\n"
        f"Assignment: {title}\n"
        f"Date Submitted: {when:%A, %d %B %Y %H:%M:%S} o'clock UTC\n"
        f"Current Grade: Needs Grading\n\n"
        f"Submission Field:\nThere is no student submission text data for this assignment.\n\n"
        f"Comments:\nThere are no student comments for this assignment.\n\n"
        f"Files:\n{listing}"
    )


def build_zip(
    lms: str,
    dest: Path,
    submissions: list[FixtureSubmission],
    *,
    title: str = "ps01_backprop",
    layout: str = "",
) -> Path:
    """Write `dest`, a download of `submissions` as the LMS names it; return dest.

    lms: canvas, moodle or blackboard. layout (Moodle only): "" (folders, Moodle >= 4),
    "moodle3" (folders with a trailing underscore) or "moodle-flat" (no folders, before 3.1).
    title: the assignment's title in the LMS (Blackboard puts it into every name).
    """
    dest = Path(dest)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        attachment = 90000
        for sub in submissions:
            if lms == "canvas":
                prefix = "_".join([_canvas_name(sub.name), *(["late"] if sub.late else []), sub.lms_user_id])
                for file_name, content in _files(sub, sub.notebook).items():
                    attachment += 1
                    n = len(sub.attempts) if file_name == sub.notebook_name else 0
                    z.writestr(f"{prefix}_{attachment}_{_with_suffix(file_name, n)}", content)
            elif lms == "moodle":
                person = f"{sub.name.replace('_', ' ')}_{sub.lms_user_id}"
                for file_name, content in _files(sub, sub.notebook).items():
                    if layout == "moodle-flat":
                        z.writestr(f"{person}_assignsubmission_file_{file_name}", content)
                    else:
                        folder = f"{person}_assignsubmission_file{'_' if layout == 'moodle3' else ''}"
                        z.writestr(f"{folder}/{file_name}", content)
            elif lms == "blackboard":
                history = [*sub.attempts, sub.notebook]
                for i, nb in enumerate(history):
                    when = sub.submitted_at - timedelta(hours=len(history) - 1 - i)
                    stem = f"{title}_{sub.lms_user_id}_attempt_{when:%Y-%m-%d-%H-%M-%S}"
                    files = (
                        _files(sub, nb)
                        if i == len(history) - 1
                        else _files(
                            FixtureSubmission(sub.name, sub.lms_user_id, notebook_name=sub.notebook_name), nb
                        )
                    )
                    stored = {orig: f"{stem}_{orig}" for orig in files}
                    for orig, content in files.items():
                        z.writestr(stored[orig], content)
                    z.writestr(f"{stem}.txt", _receipt(sub, title, when, stored, sub.late))
            else:
                raise ValueError(f"unknown LMS {lms!r}: canvas, moodle or blackboard")
    return dest
