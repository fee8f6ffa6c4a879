"""What the instructor tool knows about each submission: graded or not, and why.

One JSON file per course directory, `.grading/status.json` (nbgrader ignores
dot-folders; like all student data it never enters git). Only the instructor
process writes it, after each submission, under a file lock and by atomic
replace, so an interrupted run leaves a readable file and two runs lose nothing. `instructor status` prints it.

States: `graded` (clean), `graded-with-issues` (graded; something was fixed,
refused, crashed or timed out on the way: see `issues`), `not-gradable`
(no readable notebook: scored zero), `failed` (the grader itself failed; the
gradebook was not changed for this student; re-run after fixing the cause).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATES = ("graded", "graded-with-issues", "not-gradable", "failed")


@dataclass
class Entry:
    """The grading record of one student's submission of one assignment."""

    state: str
    score: float | None = None
    max_score: float | None = None
    issues: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)  # suspicious code, for a person to look at
    seconds: float | None = None
    fingerprint: str | None = None  # hash of the submitted files: unchanged ones are not regraded
    graded_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))

    def __post_init__(self) -> None:
        assert self.state in STATES, f"unknown state {self.state!r}; expected one of {STATES}"


class StatusStore:
    """status.json of a course directory: {assignment: {student: Entry}}."""

    def __init__(self, course_root: Path):
        self.path = Path(course_root) / ".grading" / "status.json"
        self.data: dict[str, dict[str, dict]] = {}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def get(self, assignment: str, student: str) -> Entry | None:
        raw = self.data.get(assignment, {}).get(student)
        return Entry(**raw) if raw else None

    def put(self, assignment: str, student: str, entry: Entry) -> None:
        """Record one entry; re-reads the file under a lock, so two runs in one course lose nothing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():
                self.data = json.loads(self.path.read_text())
            self.data.setdefault(assignment, {})[student] = asdict(entry)
            self.save()

    def entries(self, assignment: str) -> dict[str, Entry]:
        return {s: Entry(**e) for s, e in sorted(self.data.get(assignment, {}).items())}

    def assignments(self) -> list[str]:
        return sorted(self.data)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def format_table(assignment: str, entries: dict[str, Entry], only_problems: bool = False) -> str:
    """A plain-text table: one line per student, then the issues and review notes under it."""
    lines = [f"{assignment}: {len(entries)} submission(s)"]
    counts = {s: sum(1 for e in entries.values() if e.state == s) for s in STATES}
    lines.append("  " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    width = max([len(s) for s in entries] + [7])
    for student, e in entries.items():
        if only_problems and e.state == "graded" and not e.review:
            continue
        score = (
            "" if e.score is None else f"{e.score:g}" + ("" if e.max_score is None else f"/{e.max_score:g}")
        )
        secs = "" if e.seconds is None else f"{e.seconds:.1f}s"
        lines.append(f"  {student:<{width}}  {e.state:<18} {score:>9}  {secs:>7}")
        lines += [f"  {'':<{width}}    - {issue}" for issue in e.issues]
        lines += [f"  {'':<{width}}    ? review: {note}" for note in e.review]
    return "\n".join(lines)
