"""What `collect` learned from an LMS download, kept for `export` and the summary.

An LMS download names each submission by the LMS's own identity of the student (Canvas's
user id, Moodle's participant id, Blackboard's user name), a display name, and whether it
was late. nbgrader keeps none of that, so `collect` writes it here, one JSON file per
assignment: `<course>/.grading/lms/<assignment>.json`. `export` reads it to write a file the
LMS imports back (its user id, the late flag) without re-keying.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

LMS_NAMES = ("canvas", "moodle", "blackboard")


@dataclass
class LmsSubmission:
    """One student's submission of one assignment, as the LMS download described it."""

    student_id: str  # the nbgrader student id the notebooks were collected under
    lms: str  # one of LMS_NAMES
    lms_user_id: str  # the LMS's own key for the student (what its grade import matches on)
    name: str = ""  # full name as the LMS wrote it ('' when the download gives none)
    late: bool = False
    submitted_at: str = ""  # ISO 8601 when the LMS gives a time, else ''
    files: list[str] = field(default_factory=list)  # notebooks collected, as named in the zip
    ignored: list[str] = field(default_factory=list)  # other files of the submission, with the reason


def manifest_path(course_root: Path, assignment: str) -> Path:
    return Path(course_root) / ".grading" / "lms" / f"{assignment}.json"


def save_manifest(course_root: Path, assignment: str, entries: list[LmsSubmission]) -> Path:
    """Write the assignment's manifest by atomic replace (a previous download's is replaced whole)."""
    path = manifest_path(course_root, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(e) for e in entries], indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def load_manifest(course_root: Path, assignment: str) -> dict[str, LmsSubmission]:
    """{student_id: LmsSubmission}; empty when the assignment was not collected from an LMS zip."""
    path = manifest_path(course_root, assignment)
    if not path.exists():
        return {}
    return {e["student_id"]: LmsSubmission(**e) for e in json.loads(path.read_text())}
