"""Grades out of the gradebook, in the file each LMS imports back.

Formats (`export --format`):

plain (default)
    One row per student known to the course, a column per assignment and a total, as before,
    plus the names and e-mail from the gradebook (collect writes the LMS's display names there;
    the LMS record's name fills in where the gradebook has none) and, per assignment,
    `<a> lms_user_id`, `<a> late` and `<a> state`. A student with no score has an empty cell
    (no longer a 0): the total adds the scores there are.

canvas (per assignment): Canvas's gradebook import CSV.
    `Student, ID, SIS User ID, SIS Login ID, Section, <name> (<assignment id>)`, then a
    `Points Possible` row, then one row per student with a score; ID is the Canvas user id
    collect read from the download's file names. Canvas's importer
    (instructure/canvas-lms, app/models/gradebook_importer.rb: `header?`,
    `update_column_count`, `check_for_non_student_row`, `parse_assignments`) wants
    Student and ID first and Section as the last student column (SIS User ID and SIS Login ID
    between them), finds the user by ID, then SIS ids, then name, reads a row whose first cell
    holds "Points Possible" as the points, and matches a column to an assignment by the id in
    "Title (id)" (else by title; else it creates a new assignment). Every other column it does
    not know becomes a new assignment, and an empty cell clears a score already in Canvas
    (`no_change_to_value?`). So the late flag and state go to a companion file
    `<stem>-states.csv`, and students without a score (missing, failed, not graded yet) are
    left out of the upload rather than written blank. Canvas's guide: "How do I import grades
    in the Gradebook?" (community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-
    the-Gradebook/ta-p/807); the required columns as a university guide lists them:
    teaching.resources.osu.edu/.../import-csv-file-carmen-grades.

moodle (per assignment): the assignment's offline grading worksheet (Assignment settings,
    Feedback types: "Offline grading worksheet"; Grading action: "Upload grading worksheet").
    `Identifier, Full name, Email address, Status, Grade, Maximum Grade, Grade can be changed,
    Last modified (submission), Last modified (grade)`, then `Late, State, nbgrader id`, which
    the importer ignores. Chosen over the gradebook's "Import CSV" because it is keyed by the
    participant id the download's folder names carry (`<Full name>_<participant id>_
    assignsubmission_file`: mod/assign/locallib.php, download_submissions, get_uniqueid_for_user),
    which is exactly what collect records; the gradebook import needs a user field (e-mail,
    user name, ID number) the download does not contain. The importer
    (mod/assign/feedback/offline/importgradeslib.php) finds the columns by their English names
    (mod/assign/lang/en/assign.php: recordid "Identifier", lastmodifiedgrade "Last modified
    (grade)", hiddenuser "Participant "; core "Grade"), strips "Participant " from the
    identifier, and (locallib.php, process_import_grades) skips an empty or negative grade, a
    grade above the assignment's maximum, and one changed in Moodle more than 60 s after the
    file's "Last modified (grade)" unless "Allow updating records that have been modified more
    recently in Moodle" is ticked. So a row without a score has an empty Grade and changes
    nothing; "Last modified (grade)" is when the tool graded it. There is no Feedback comments
    column: a column of that name overwrites the comments typed in Moodle. The participant id
    is per assignment, so a student with no submission has no Identifier (Moodle skips the row;
    the row is there to show the state). Teachers whose Moodle is not in English rename the
    headers to their language's strings.

blackboard (per assignment): Grade Center "Work Offline > Upload".
    `Last Name, First Name, Username, Student ID, Last Access, Availability,
    <name> [Total Pts: <max> Score] |<column id>`, every value quoted, one row per student with
    a score. Blackboard's help (library.blackboard.com, "Uploading or Downloading Grade Center
    Items for Working Offline"; help.blackboard.com, "Grade Center Columns" for the six default
    user columns): a student is matched by Username (what collect reads from the download's
    `<title>_<username>_attempt_...` names), a column by its Column ID after "|", in a
    comma-delimited file every value is in quotes, and a column without a Column ID creates a
    new text column worth 0 points. The column header form is the one the Grade Center's own
    download writes. Extra columns would become new columns, so late flag and state go to the
    companion `<stem>-states.csv`, as for Canvas.

Scores are written exactly as the gradebook holds them (20, 18.5, never rounded). States, per
assignment: graded, graded-with-issues, not-gradable (a corrupt or absent notebook: scored 0,
told apart from a blank one by this column), failed (the grader failed; the gradebook holds
nothing new: re-run autograde) from the status store; graded when the gradebook has a
submission the tool did not grade (plain `nbgrader autograde`); ungraded when it was collected
but not graded; missing when a student known to the course (gradebook, any LMS record) has no
submission. Every file is written to a temporary file and renamed, all of them only once all
are written, so a failure leaves the previous files as they were.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .course import Course
from .lms_records import LmsSubmission, load_manifest, manifest_path
from .status import StatusStore

FORMATS = ("plain", "canvas", "moodle", "blackboard")
LMS_FORMATS = FORMATS[1:]
UPLOADED = ("graded", "graded-with-issues", "not-gradable")  # states whose score goes to the LMS
STATE_HELP = {
    "failed": "the grader failed: re-run autograde",
    "ungraded": "collected, not graded yet: run autograde",
    "missing": "no submission",
}


class ExportError(Exception):
    """A refusal: the message says what is wrong and what to do."""


@dataclass
class Row:
    """One student and one assignment, as the export writes them."""

    student_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""
    late: bool | None = None  # None: nothing was submitted
    state: str = "missing"
    score: float | None = None
    max_score: float | None = None
    submitted_at: str = ""
    graded_at: str = ""  # ISO 8601 with the offset, '' when unknown
    issues: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def sortable_name(self) -> str:
        if self.first_name and self.last_name:
            return f"{self.last_name}, {self.first_name}"
        return self.name

    @property
    def uploaded(self) -> bool:
        return self.state in UPLOADED and self.score is not None and bool(self.lms_user_id)


def fmt_score(x: float | None) -> str:
    """The gradebook's number as it is: 20, 18.5, 0.1 (shortest exact form), '' for none."""
    if x is None:
        return ""
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def fmt_late(late: bool | None) -> str:
    return "" if late is None else ("yes" if late else "no")


def _iso_local(stamp: str) -> str:
    """status.json's local '%Y-%m-%d %H:%M:%S' as ISO 8601 with this machine's offset."""
    try:
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").astimezone().isoformat(timespec="seconds")
    except (TypeError, ValueError):
        return ""


def _split_name(full: str) -> tuple[str, str]:
    first, _, last = full.strip().rpartition(" ")
    return first, last


def check_gradebook(course: Course) -> None:
    """Refuse before nbgrader would create an empty SQLite gradebook where there is none."""
    if course.db_url.startswith("sqlite:///"):
        db = Path(course.db_url[len("sqlite:///") :])
        if not db.exists():
            raise ExportError(
                f"no gradebook at {db}: is {course.root} your course directory? "
                "Run export there (or pass --course DIR) after release and autograde."
            )


def all_manifests(course: Course) -> dict[str, dict[str, LmsSubmission]]:
    """{assignment: {student: LmsSubmission}} for every assignment collected from an LMS zip."""
    folder = manifest_path(course.root, "x").parent
    if not folder.is_dir():
        return {}
    return {p.stem: load_manifest(course.root, p.stem) for p in sorted(folder.glob("*.json"))}


@dataclass
class Table:
    """What the gradebook, the status store and the LMS records say about some assignments."""

    assignments: list[str]
    max_scores: dict[str, float]
    rows: dict[str, dict[str, Row]]  # {assignment: {student: Row}}
    students: list[str]


def gather(course: Course, assignments: list[str] | None = None, lms: str | None = None) -> Table:
    """Rows for every student known to the course and each assignment (all when None).

    lms: the format's LMS; its user ids are taken from the assignment's own record, and for
    Canvas and Blackboard (whose ids are course-wide) from the student's other records of that
    LMS; Moodle's participant id belongs to one assignment only.
    """
    from nbgrader.api import Gradebook

    check_gradebook(course)
    store = StatusStore(course.root)
    manifests = all_manifests(course)
    with Gradebook(course.db_url, course.course_id) as gb:
        known = sorted(gb.assignments, key=lambda a: (a.duedate is None, a.duedate, a.name))
        names = [a.name for a in known]
        if assignments is None:
            assignments = names
        unknown = [a for a in assignments if a not in names]
        if unknown:
            raise ExportError(
                f"{', '.join(unknown)} is not in the gradebook: release it first "
                f"(the gradebook has: {', '.join(names) or 'nothing'})"
            )
        max_scores = {a.name: float(a.max_score) for a in known if a.name in assignments}
        people = {
            s.id: (s.first_name or "", s.last_name or "", s.email or "", s.lms_user_id or "")
            for s in gb.students
        }
        course_ids: dict[str, str] = {}
        if lms in ("canvas", "blackboard"):
            for records in manifests.values():
                for sid, rec in records.items():
                    if rec.lms == lms and rec.lms_user_id:
                        course_ids.setdefault(sid, rec.lms_user_id)
        submitted = course.root / course.submitted_directory
        students = set(people)
        for records in manifests.values():
            students.update(records)
        for a in assignments:
            students.update(p.parent.name for p in submitted.glob(f"*/{a}") if p.is_dir())
        students_sorted = sorted(students)

        rows: dict[str, dict[str, Row]] = {}
        for a in assignments:
            subs = {s.student.id: s for s in gb.assignment_submissions(a)}
            records = manifests.get(a, {})
            rows[a] = {}
            for sid in students_sorted:
                first, last, email, gb_lms_id = people.get(sid, ("", "", "", ""))
                rec = records.get(sid)
                if not (first or last):
                    for other in [rec, *(m.get(sid) for m in manifests.values())]:
                        if other is not None and other.name:
                            first, last = _split_name(other.name)
                            break
                sub = subs.get(sid)
                entry = store.get(a, sid)
                on_disk = (submitted / sid / a).is_dir()
                collected = rec is not None or on_disk
                issues = list(entry.issues) if entry is not None else []
                if entry is not None:
                    state = entry.state
                elif sub is not None:
                    state = "graded"
                elif rec is not None and not rec.files and not on_disk:
                    state = "not-gradable"  # the download held no notebook of the assignment
                    issues = ["no notebook in the submission: nothing to grade", *rec.ignored]
                elif collected:
                    state = "ungraded"
                else:
                    state = "missing"
                if rec is not None:
                    late: bool | None = rec.late
                elif sub is not None:
                    late = sub.total_seconds_late > 0
                else:
                    late = False if collected else None
                if rec is not None and rec.lms_user_id and (lms is None or rec.lms == lms):
                    lms_id = rec.lms_user_id
                elif lms == "moodle":
                    lms_id = ""
                else:
                    lms_id = course_ids.get(sid) or gb_lms_id
                stamp = rec.submitted_at if rec is not None and rec.submitted_at else ""
                if not stamp and sub is not None and sub.timestamp is not None:
                    stamp = sub.timestamp.isoformat()
                rows[a][sid] = Row(
                    student_id=sid,
                    first_name=first,
                    last_name=last,
                    email=email,
                    lms_user_id=lms_id,
                    late=late,
                    state=state,
                    score=None if sub is None else float(sub.score),
                    max_score=max_scores[a],
                    submitted_at=stamp,
                    graded_at=_iso_local(entry.graded_at) if entry is not None else "",
                    issues=issues,
                )
    return Table(assignments=assignments, max_scores=max_scores, rows=rows, students=students_sorted)


def _csv(rows: list[list[str]], quote_all: bool = False) -> str:
    buf = io.StringIO()
    csv.writer(
        buf, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL, lineterminator="\r\n"
    ).writerows(rows)
    return buf.getvalue()


def plain_rows(table: Table) -> list[list[str]]:
    header = ["student_id", "last_name", "first_name", "email"]
    for a in table.assignments:
        header += [f"{a} lms_user_id", f"{a} late", f"{a} state"]
    out = [header + [*table.assignments, "total"]]
    for sid in table.students:
        per = [table.rows[a][sid] for a in table.assignments]
        first = next((r for r in per if r.name), per[0])
        line = [sid, first.last_name, first.first_name, first.email]
        for r in per:
            line += [r.lms_user_id, fmt_late(r.late), r.state]
        scores = [r.score for r in per]
        total = sum(s for s in scores if s is not None) if any(s is not None for s in scores) else None
        out.append(line + [fmt_score(s) for s in scores] + [fmt_score(total)])
    return out


def canvas_rows(table: Table, a: str, column: str) -> list[list[str]]:
    out = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column]]
    out.append(["    Points Possible", "", "", "", "", fmt_score(table.max_scores[a])])
    for r in table.rows[a].values():
        if r.uploaded:
            out.append([r.sortable_name, r.lms_user_id, "", "", "", fmt_score(r.score)])
    return out


MOODLE_HEADER = [
    "Identifier",
    "Full name",
    "Email address",
    "Status",
    "Grade",
    "Maximum Grade",
    "Grade can be changed",
    "Last modified (submission)",
    "Last modified (grade)",
    "Late",  # the columns from here on are not Moodle's: its importer ignores them
    "State",
    "nbgrader id",
]


def moodle_rows(table: Table, a: str) -> list[list[str]]:
    out = [list(MOODLE_HEADER)]
    for r in table.rows[a].values():
        grade = fmt_score(r.score) if r.uploaded else ""
        out.append(
            [
                f"Participant {r.lms_user_id}" if r.lms_user_id else "",
                r.name,
                r.email,
                "No submission" if r.state == "missing" else "Submitted for grading",
                grade,
                fmt_score(table.max_scores[a]),
                "Yes",
                r.submitted_at,
                r.graded_at if grade else "",
                fmt_late(r.late),
                r.state,
                r.student_id,
            ]
        )
    return out


BLACKBOARD_USER_COLUMNS = ["Last Name", "First Name", "Username", "Student ID", "Last Access", "Availability"]


def blackboard_rows(table: Table, a: str, column: str) -> list[list[str]]:
    out = [[*BLACKBOARD_USER_COLUMNS, column]]
    for r in table.rows[a].values():
        if r.uploaded:
            out.append([r.last_name, r.first_name, r.lms_user_id, "", "", "", fmt_score(r.score)])
    return out


STATES_HEADER = [
    "student_id",
    "name",
    "lms_user_id",
    "late",
    "state",
    "score",
    "max_score",
    "in_upload",
    "note",
]


def states_rows(table: Table, a: str) -> list[list[str]]:
    out = [list(STATES_HEADER)]
    for r in table.rows[a].values():
        note = "; ".join(r.issues) or STATE_HELP.get(r.state, "")
        if r.state in UPLOADED and r.score is not None and not r.lms_user_id:
            note = "no LMS user id (not collected from this LMS's download): enter by hand"
        out.append(
            [
                r.student_id,
                r.name,
                r.lms_user_id,
                fmt_late(r.late),
                r.state,
                fmt_score(r.score),
                fmt_score(r.max_score),
                "yes" if r.uploaded else "no",
                note,
            ]
        )
    return out


def companion_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}-states{path.suffix or '.csv'}")


def write_atomically(files: dict[Path, str]) -> None:
    """Write every file to a temporary sibling, then rename them all: never half a CSV."""
    tmps: dict[Path, Path] = {}
    try:
        for path, text in files.items():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmps[path] = tmp
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


@dataclass
class Result:
    files: list[Path]
    lines: list[str]  # what to tell the instructor


def _check_target(to: Path) -> None:
    if not to.parent.is_dir():
        raise ExportError(f"cannot write {to}: there is no folder {to.parent}")
    if to.is_dir():
        raise ExportError(
            f"cannot write {to}: it is a folder; give a file name, e.g. --to {to / 'grades.csv'}"
        )


def _counts(rows: list[Row]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def export(
    course: Course,
    fmt: str = "plain",
    assignment: str | None = None,
    to: Path | None = None,
    lms_id: str = "",
    lms_name: str = "",
) -> Result:
    """Write the export; raise ExportError, before anything is written, on wrong inputs."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; the formats are: {', '.join(FORMATS)}")
    if fmt == "plain":
        to = Path(to or "grades.csv")
        _check_target(to)
        table = gather(course, [assignment] if assignment else None)
        if not table.assignments:
            raise ExportError("the gradebook has no assignment: run `release` first")
        write_atomically({to: _csv(plain_rows(table))})
        maxima = ", ".join(f"{a} {fmt_score(m)}" for a, m in table.max_scores.items())
        lines = [f"wrote {to}: {len(table.students)} student(s); maximum scores: {maxima}"]
        for a in table.assignments:
            lines.append(f"  {a}: {_counts(list(table.rows[a].values()))}")
        return Result([to], lines)

    label = fmt.capitalize() if fmt != "blackboard" else "Blackboard"
    if not assignment:
        raise ExportError(
            f"--format {fmt} needs --assignment A: {label} imports one assignment's grades at a time "
            "(--format plain writes every assignment in one file)"
        )
    records = load_manifest(course.root, assignment)
    if not records:
        raise ExportError(
            f"no {label} record of {assignment}: the {label} format needs the user ids collect reads from "
            f"{label}'s download. Run `collect {assignment} --zip <the {label} zip>` first, "
            "or use --format plain (no LMS ids)."
        )
    sources = sorted({r.lms for r in records.values()})
    if fmt not in sources:
        raise ExportError(
            f"{assignment} was collected from a {' and '.join(sources)} download, whose user ids {label} "
            f"does not know: use --format {sources[0]}, or collect {assignment} from the {label} zip"
        )
    to = Path(to or f"{assignment}-{fmt}.csv")
    _check_target(to)
    table = gather(course, [assignment], lms=fmt)
    rows = list(table.rows[assignment].values())
    name = lms_name or assignment
    lines: list[str] = []
    if fmt == "canvas":
        column = f"{name} ({lms_id})" if lms_id else name
        files = {to: _csv(canvas_rows(table, assignment, column))}
        if not lms_id:
            lines.append(
                f"no --lms-id: Canvas matches the column to the assignment titled {name!r}, or creates a new "
                "assignment; pass --lms-id with the number in the assignment's address (/assignments/<id>)"
            )
    elif fmt == "blackboard":
        column = f"{name} [Total Pts: {fmt_score(table.max_scores[assignment])} Score]"
        column = f"{column} |{lms_id}" if lms_id else name
        files = {to: _csv(blackboard_rows(table, assignment, column), quote_all=True)}
        if not lms_id:
            lines.append(
                "no --lms-id: Blackboard makes a new text column worth 0 points; pass --lms-id with the "
                "column's Column ID (Grade Center: the column's menu, Quick Column Information)"
            )
    else:
        files = {to: _csv(moodle_rows(table, assignment))}
    if fmt in ("canvas", "blackboard"):
        files[companion_path(to)] = _csv(states_rows(table, assignment))
    write_atomically(files)

    uploaded = [r for r in rows if r.uploaded]
    left = [r for r in rows if r not in uploaded]
    where = "in the file (columns Late, State)" if fmt == "moodle" else f"in {companion_path(to)}"
    out = [
        f"wrote {to}: {len(uploaded)} grade(s) of {assignment} for {label} "
        f"(maximum {fmt_score(table.max_scores[assignment])}); states of all {len(rows)}: {_counts(rows)}; "
        f"late flag and state {where}"
    ]
    nogr = [r.student_id for r in uploaded if r.state == "not-gradable"]
    if nogr:
        out.append(f"  not gradable (scored 0: no readable notebook): {', '.join(nogr)}")
    by_reason: dict[str, list[str]] = {}
    for r in left:
        reason = r.state if r.lms_user_id or r.state not in UPLOADED else "no LMS user id"
        by_reason.setdefault(reason, []).append(r.student_id)
    for reason, who in sorted(by_reason.items()):
        hint = STATE_HELP.get(reason, "enter by hand" if reason == "no LMS user id" else "")
        out.append(f"  no grade uploaded, {reason}{f' ({hint})' if hint else ''}: {', '.join(who)}")
    return Result(list(files), out + [f"  {line}" for line in lines])
