"""What an instructor reads first after autograde: how the class did, what went wrong, what is stale.

    python -m course_tools.grading summary ASSIGNMENT [--json]

(`autograde` prints the same at its end.) From the gradebook, the status store
(.grading/status.json) and the autograded notebooks, for one assignment:

- per part (each graded test cell, by its grade id): mean score and failure rate
  (a failure is any score below the cell's maximum);
- the distribution of totals, as a text histogram;
- the most common failure messages per part: the error each failing test cell shows in
  autograded/<student>/<assignment>/*.ipynb, with numbers replaced by `#` so that
  "got 0.31" and "got 0.29" count as one message;
- submissions whose answer cells hold the same code (whitespace and comments aside; the
  byte-identical ones are marked), and pairs that are nearly identical: similarity of the
  answer cells' token sequences with every name replaced by `_`, so renaming variables does
  not hide a copy. Answer cells left as released (an untouched blank) are not evidence and
  are ignored, as are submissions with less than MIN_TOKENS tokens of own code;
- what is stale: feedback pages older than the grade (the autograded notebook or the
  status entry's graded_at), submissions that changed since they were graded (their
  fingerprint differs from the one graded) and submissions never graded.

Nothing here raises on bad input: an autograded notebook that cannot be read, a missing
feedback folder or release notebook is reported in `problems` and the rest is summarised.
"""

from __future__ import annotations

import functools
import io
import keyword
import math
import re
import statistics
import time
import tokenize
from collections import Counter
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

import nbformat

from .cells import grade_id, is_solution
from .course import Course
from .intake import fingerprint
from .status import StatusStore

MIN_TOKENS = 30  # less own code than this is too little to call two submissions copies
SIMILAR = 0.9  # token similarity from which two submissions count as nearly identical
TOP_MESSAGES = 3  # failure messages shown per part
SHOWN_PAIRS = 15  # nearly identical pairs shown in the text (all are in --json)
BLANK = "<as released>"

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w])")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
_RUN = re.compile(r"#(?:,\s*#){2,}")


# ----------------------------------------------------------------------------- pure parts


def normalise_message(text: str, limit: int = 300) -> str:
    """An error message with numbers as `#` and whitespace collapsed: one key per kind of failure."""
    text = _HEX.sub("0x#", text)
    text = _NUMBER.sub("#", text)
    text = _RUN.sub("#, #, …", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def error_message(outputs: list) -> str | None:
    """`ename: evalue` of the first error among a cell's outputs; None when the cell raised nothing."""
    for out in outputs or []:
        if isinstance(out, dict) and out.get("output_type") == "error":
            name, value = str(out.get("ename") or "Error"), str(out.get("evalue") or "")
            return f"{name}: {value}" if value else name
    return None


@functools.lru_cache(maxsize=8192)  # a class shares most answer cells' code
def _tokens(code: str, names: bool) -> tuple[str, ...]:
    """The code's tokens without comments and layout; names (not keywords, not attributes) as `_`
    unless `names`. Code that does not tokenize is compared by its whitespace-separated words."""
    out: list[str] = []
    previous = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in (
                tokenize.COMMENT,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            ):
                continue
            s = tok.string
            if not names and tok.type == tokenize.NAME and not keyword.iskeyword(s) and previous != ".":
                s = "_"
            out.append(s)
            previous = tok.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return tuple(re.sub(r"#[^\n]*", "", code).split())
    return tuple(out)


def code_key(code: str) -> tuple[str, ...]:
    """Code as tokens, names kept: equal for code that differs only in whitespace and comments."""
    return _tokens(code, names=True)


def shape_tokens(code: str) -> tuple[str, ...]:
    """Code as tokens with every name `_`: equal for code that differs also in the names chosen."""
    return _tokens(code, names=False)


def histogram(totals: list[float], max_score: float, width: int = 40, bins: int = 10) -> list[str]:
    """Text histogram of totals: a line per bin, `#`s scaled to `width`, the count after them.

    Integer scores up to 12 get a line each; otherwise `bins` bins [lo, hi) from 0 to the
    maximum, and full marks a line of their own (that is where a class piles up).
    """
    if not totals:
        return ["  (no totals)"]
    top = max(max_score, max(totals), 0.0)
    if top <= 12 and float(top).is_integer() and all(float(t).is_integer() for t in totals):
        rows = [(f"{v}", lambda t, v=v: t == v) for v in range(int(top) + 1)]
    else:
        step = top / bins if top > 0 else 1.0
        rows = [
            (f"[{i * step:.3g}, {(i + 1) * step:.3g})", lambda t, i=i: i * step <= t < (i + 1) * step)
            for i in range(bins)
        ]
        rows[0] = (rows[0][0], lambda t: t < step)  # negative totals (penalties) land here
        rows.append((f"{top:g}", lambda t: t >= top))
    counts = [sum(1 for t in totals if inside(t)) for _, inside in rows]
    most = max(counts) or 1
    label_w = max(len(label) for label, _ in rows)
    lines = []
    for (label, _), n in zip(rows, counts, strict=True):
        bar = "#" * max(round(n / most * width), 1) if n else ""
        lines.append(f"  {label:>{label_w}} | {bar} {n or ''}".rstrip())
    return lines


def similarity(a: dict[str, tuple[str, ...]], b: dict[str, tuple[str, ...]]) -> float:
    """Share of matching tokens over the answer cells of two submissions (1.0: the same code).

    a, b: {grade_id: tokens}; a cell missing or left blank is an empty sequence. Longer cells
    weigh more, as they should: a copied 20-line function says more than a copied one-liner.
    """
    matched, total = 0, 0
    for gid in set(a) | set(b):
        x, y = a.get(gid, ()), b.get(gid, ())
        total += len(x) + len(y)
        if x and y:
            matched += len(x) + len(y) if x == y else 2 * _matches(x, y)
    return matched / total if total else 0.0


_MATCH_CACHE: dict[tuple, int] = {}


def _matches(x: tuple[str, ...], y: tuple[str, ...]) -> int:
    """Tokens in matching blocks of x and y (cached: many students share a cell's code)."""
    key = (x, y)
    if key not in _MATCH_CACHE:
        if len(_MATCH_CACHE) > 100_000:
            _MATCH_CACHE.clear()
        sm = SequenceMatcher(None, x, y, autojunk=False)
        _MATCH_CACHE[key] = sum(block.size for block in sm.get_matching_blocks())
    return _MATCH_CACHE[key]


def _upper_bound(a: dict[str, Counter], b: dict[str, Counter], total: int) -> float:
    """A cheap bound on `similarity` (multiset intersection per cell): skips most dissimilar pairs."""
    matched = sum(2 * sum((a[g] & b[g]).values()) for g in a.keys() & b.keys())
    return matched / total if total else 0.0


@dataclass
class Group:
    """Submissions whose answer cells hold the same code (whitespace and comments aside)."""

    students: list[str]
    byte_identical: bool  # the answer cells' text is the same to the byte
    reference: bool = False  # ... and it is the reference solution's code
    answer_cells: int = 0  # answer cells with own code (not left as released)


@dataclass
class Pair:
    """Two nearly identical submissions; `also` lists submissions identical to b (same numbers)."""

    a: str
    b: str
    similarity: float
    same_cells: int  # answer cells with the same code in both
    cells: int  # answer cells that either answered
    also_a: list[str] = field(default_factory=list)
    also_b: list[str] = field(default_factory=list)


def compare_answers(
    answers: dict[str, dict[str, str]],
    released: dict[str, str],
    reference: dict[str, str] | None = None,
    threshold: float = SIMILAR,
    min_tokens: int = MIN_TOKENS,
) -> tuple[list[Group], list[Pair], list[str]]:
    """Identical groups, nearly identical pairs, and the submissions that hand in the reference's code.

    answers: {student: {grade_id: code of that answer cell}}; released: {grade_id: the
    release's code} (a cell with that code is an untouched blank and is ignored);
    reference: {grade_id: the reference solution's code}, to mark a group that handed it in.
    """
    blank = {gid: code_key(code) for gid, code in released.items()}
    keys: dict[str, tuple] = {}
    raws: dict[str, tuple] = {}
    shapes: dict[str, dict[str, tuple[str, ...]]] = {}
    gids_of: dict[str, list[str]] = {}
    for student, cells in answers.items():
        own = {gid: code for gid, code in cells.items() if code_key(code) != blank.get(gid)}
        shape = {gid: shape_tokens(code) for gid, code in own.items()}
        if sum(len(t) for t in shape.values()) < min_tokens:
            continue  # (nearly) nothing answered: a blank is no copy
        gids = sorted(set(cells) | set(released))
        gids_of[student] = gids
        keys[student] = tuple(code_key(own[g]) if g in own else BLANK for g in gids)
        raws[student] = tuple(own.get(g, BLANK).strip() for g in gids)
        shapes[student] = shape
    by_key: dict[tuple, list[str]] = {}
    for student in sorted(keys):
        by_key.setdefault(keys[student], []).append(student)
    ref_key = None
    if reference:
        gids = sorted(set(reference) | set(released))
        ref_key = tuple(
            code_key(reference[g]) if g in reference and code_key(reference[g]) != blank.get(g) else BLANK
            for g in gids
        )
    groups = [
        Group(
            students=members,
            byte_identical=len({raws[s] for s in members}) == 1,
            reference=key == ref_key,
            answer_cells=sum(1 for k in key if k != BLANK),
        )
        for key, members in by_key.items()
        if len(members) > 1
    ]
    groups.sort(key=lambda g: (-len(g.students), g.students))
    reps = [members[0] for members in by_key.values()]
    counts = {s: {g: Counter(t) for g, t in shapes[s].items() if t} for s in reps}
    sizes = {s: sum(len(t) for t in shapes[s].values()) for s in reps}
    pairs: list[Pair] = []
    for i, a in enumerate(reps):
        for b in reps[i + 1 :]:
            if _upper_bound(counts[a], counts[b], sizes[a] + sizes[b]) < threshold:
                continue
            sim = similarity(shapes[a], shapes[b])
            if sim < threshold:
                continue
            cells = set(shapes[a]) | set(shapes[b])
            ka = dict(zip(gids_of[a], keys[a], strict=True))
            kb = dict(zip(gids_of[b], keys[b], strict=True))
            same = sum(1 for g in cells if ka.get(g) == kb.get(g))
            also_a, also_b = by_key[keys[a]][1:], by_key[keys[b]][1:]
            pairs.append(Pair(a, b, round(sim, 3), same, len(cells), also_a, also_b))
    pairs.sort(key=lambda p: (-p.similarity, p.a, p.b))
    return groups, pairs, sorted(s for s, k in keys.items() if k == ref_key)


# ----------------------------------------------------------------------------- reading a course


@dataclass
class PartStats:
    """One graded cell over the class."""

    grade_id: str
    max_score: float
    graded: int = 0  # submissions with a grade for it
    mean: float = 0.0
    failed: int = 0  # score below max_score
    manual: int = 0  # still waiting for a manual grade
    messages: list[tuple[str, int]] = field(default_factory=list)  # (normalised message, count)

    @property
    def failure_rate(self) -> float:
        return self.failed / self.graded if self.graded else 0.0


@dataclass
class Stale:
    """What no longer matches the grades."""

    feedback: list[str] = field(default_factory=list)  # feedback page older than the grade
    no_feedback: list[str] = field(default_factory=list)  # graded, no feedback page
    changed: list[str] = field(default_factory=list)  # submission changed since it was graded
    ungraded: list[str] = field(default_factory=list)  # submitted, never graded (or grading failed)
    feedback_folder: bool = True  # the course has a feedback folder for the assignment at all


@dataclass
class Report:
    assignment: str
    max_score: float = 0.0
    states: dict[str, int] = field(default_factory=dict)  # from the status store
    totals: dict[str, float] = field(default_factory=dict)  # {student: total score}
    parts: list[PartStats] = field(default_factory=list)
    identical: list[Group] = field(default_factory=list)
    similar: list[Pair] = field(default_factory=list)
    reference_copies: list[str] = field(default_factory=list)  # answer code = the reference solution's
    stale: Stale = field(default_factory=Stale)
    problems: list[str] = field(default_factory=list)  # what could not be read

    def to_json(self) -> dict:
        data = asdict(self)
        for part, raw in zip(self.parts, data["parts"], strict=True):
            raw["failure_rate"] = round(part.failure_rate, 4)
            raw["messages"] = [{"message": m, "count": n} for m, n in part.messages]
        data["mean"] = statistics.fmean(self.totals.values()) if self.totals else None
        data["median"] = statistics.median(self.totals.values()) if self.totals else None
        return data


def answer_cells(nb: nbformat.NotebookNode) -> dict[str, str]:
    """{grade_id: source} of a notebook's code answer cells."""
    return {grade_id(c) or "?": c.source for c in nb.cells if c.cell_type == "code" and is_solution(c)}


def _read(path: Path, problems: list[str], what: str) -> nbformat.NotebookNode | None:
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # a truncated or hand-edited file: report it, summarise the rest
        problems.append(f"{what} {path} could not be read ({type(exc).__name__}: {str(exc)[:120]})")
        return None


def _local_time(stamp: str) -> float | None:
    """Seconds since the epoch of the status store's graded_at (local time, to the second)."""
    try:
        return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
    except (TypeError, ValueError, OverflowError):
        return None


def _gradebook(course: Course, assignment: str, report: Report) -> dict[str, dict[str, tuple]]:
    """{student: {grade cell: (score, max_score, needs manual grade)}}; fills report.max_score, parts."""
    from nbgrader.api import Gradebook, MissingEntry

    out: dict[str, dict[str, tuple]] = {}
    if not _has_gradebook(course):
        report.problems.append(f"{assignment} is not in the gradebook (release it first)")
        return out
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            a = gb.find_assignment(assignment)
        except MissingEntry:
            report.problems.append(f"{assignment} is not in the gradebook (release it first)")
            return out
        report.max_score = float(a.max_score or 0)
        cells = {c.name: float(c.max_score) for nb in a.notebooks for c in nb.grade_cells}
        report.parts = [PartStats(name, m) for name, m in cells.items()]
        for sub in gb.assignment_submissions(assignment):
            out[sub.student_id] = {
                g.name: (float(g.score or 0), float(g.max_score or 0), bool(g.needs_manual_grade))
                for nb in sub.notebooks
                for g in nb.grades
            }
    return out


def _has_gradebook(course: Course) -> bool:
    """False for a SQLite gradebook that does not exist (opening it would create it)."""
    prefix = "sqlite:///"
    return not course.db_url.startswith(prefix) or Path(course.db_url[len(prefix) :]).is_file()


def _cell_order(course: Course, assignment: str, report: Report) -> dict[str, dict[str, str]]:
    """Orders report.parts as the release notebooks do; returns {notebook: released answer code}."""
    order: list[str] = []
    released: dict[str, dict[str, str]] = {}
    folder = course.path("release", assignment)
    for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        nb = _read(path, report.problems, "release notebook")
        if nb is None:
            continue
        order += [grade_id(c) for c in nb.cells if grade_id(c)]
        released[path.stem] = answer_cells(nb)
    rank = {gid: i for i, gid in enumerate(order)}
    report.parts.sort(key=lambda p: (rank.get(p.grade_id, len(rank)), p.grade_id))
    return released


def _reference(course: Course, assignment: str) -> dict[str, dict[str, str]]:
    """{notebook: {grade_id: the reference solution's code}} from the source notebooks ({} if absent)."""
    from .submissions import solution_answers

    out = {}
    folder = course.path("source", assignment)
    for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        try:
            out[path.stem] = solution_answers(nbformat.read(path, as_version=4))
        except Exception:  # the reference only adds a label; never fail on it
            continue
    return out


def summarise(course: Course, assignment: str) -> Report:
    """The summary of one assignment of a course directory (see the module docstring)."""
    report = Report(assignment)
    grades = _gradebook(course, assignment, report)
    released = _cell_order(course, assignment, report)
    reference = _reference(course, assignment)
    store_entries = StatusStore(course.root).entries(assignment)
    for e in store_entries.values():
        report.states[e.state] = report.states.get(e.state, 0) + 1
    report.totals = {s: sum(v[0] for v in g.values()) for s, g in grades.items()}

    # failures per part, with the messages the autograded notebooks show
    autograded: dict[str, dict[str, nbformat.NotebookNode]] = {}
    for student in grades:
        folder = course.path("autograded", student, assignment)
        autograded[student] = {}
        for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
            nb = _read(path, report.problems, "autograded notebook")
            if nb is not None:
                autograded[student][path.stem] = nb
    for part in report.parts:
        scores, messages = [], Counter()
        for student, g in grades.items():
            if part.grade_id not in g:
                continue
            score, top, manual = g[part.grade_id]
            scores.append(score)
            if manual and score == 0:
                part.manual += 1
            elif score < top:
                part.failed += 1
                messages[
                    _failure_message(autograded[student], part.grade_id, store_entries.get(student))
                ] += 1
        part.graded = len(scores)
        part.mean = statistics.fmean(scores) if scores else 0.0
        part.messages = messages.most_common()

    # identical and nearly identical answer code, per notebook then over all notebooks
    answers: dict[str, dict[str, str]] = {}
    for student, nbs in autograded.items():
        answers[student] = {
            f"{name}/{gid}": code for name, nb in nbs.items() for gid, code in answer_cells(nb).items()
        }
    flat_released = {f"{n}/{g}": code for n, cells in released.items() for g, code in cells.items()}
    flat_reference = {f"{n}/{g}": code for n, cells in reference.items() for g, code in cells.items()}
    report.identical, report.similar, report.reference_copies = compare_answers(
        answers, flat_released, flat_reference
    )

    report.stale = find_stale(course, assignment, list(grades), store_entries, report.problems)
    return report


def _failure_message(nbs: dict[str, nbformat.NotebookNode], gid: str, entry) -> str:
    """What a failing test cell showed; when there is no notebook to show it, why."""
    for nb in nbs.values():
        for cell in nb.cells:
            if cell.cell_type == "code" and grade_id(cell) == gid:
                message = error_message(cell.get("outputs", []))
                return normalise_message(message) if message else "(the cell shows no error)"
    if entry is not None and entry.state == "not-gradable":
        return "(not gradable: no readable notebook)"
    return "(no autograded notebook holds this cell)" if nbs else "(no autograded notebook)"


def find_stale(
    course: Course,
    assignment: str,
    graded: list[str],
    entries: dict | None = None,
    problems: list[str] | None = None,
) -> Stale:
    """Feedback older than the grade, submissions changed since graded, submissions never graded.

    graded: the students with a grade (the gradebook's); entries: the status store's entries.
    """
    entries = StatusStore(course.root).entries(assignment) if entries is None else entries
    problems = [] if problems is None else problems
    stale = Stale()
    feedback_root = course.root / course.feedback_directory
    stale.feedback_folder = any(feedback_root.glob(f"*/{assignment}"))
    for student in sorted(set(graded) | set(entries)):
        entry = entries.get(student)
        if entry is not None and entry.state == "failed" and student not in graded:
            continue  # never graded: counted with the submitted ones below
        times = [t for t in [_local_time(entry.graded_at) if entry else None] if t is not None]
        folder = course.path("autograded", student, assignment)
        times += [p.stat().st_mtime for p in folder.glob("*.ipynb")] if folder.is_dir() else []
        pages = list(course.path("feedback", student, assignment).glob("*.html"))
        if not pages:
            stale.no_feedback.append(student)
        elif times and min(p.stat().st_mtime for p in pages) < max(times):
            stale.feedback.append(student)
    submitted = course.path("submitted")
    students = (
        sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir()) if submitted.is_dir() else []
    )
    for student in students:
        entry = entries.get(student)
        folder = course.path("submitted", student, assignment)
        try:
            if entry is not None and entry.state != "failed":
                if entry.fingerprint and fingerprint(folder) != entry.fingerprint:
                    stale.changed.append(student)
            elif entry is None and student in graded:
                # graded by plain `nbgrader autograde` (no status entry): compare file times
                done = course.path("autograded", student, assignment).glob("*.ipynb")
                graded_at = [p.stat().st_mtime for p in done]
                handed_in = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
                if graded_at and handed_in and max(handed_in) > max(graded_at):
                    stale.changed.append(student)
            else:
                stale.ungraded.append(student)
        except OSError as exc:
            problems.append(f"submission of {student} could not be read ({exc})")
    return stale


# ----------------------------------------------------------------------------- text


TOOL = "python -m course_tools.grading"  # the hints' command line unless the caller gives its own


def stale_warnings(course: Course, assignment: str, prog: str = TOOL) -> list[str]:
    """The stale part of the summary alone, as warnings (what `status` prints); [] when all is fresh."""
    from nbgrader.api import Gradebook

    try:
        if not _has_gradebook(course):
            raise FileNotFoundError(course.db_url)
        with Gradebook(course.db_url, course.course_id) as gb:
            graded = [s.student_id for s in gb.assignment_submissions(assignment)]
    except Exception:  # no gradebook or no such assignment: nothing graded, nothing stale
        graded = []
    stale = find_stale(course, assignment, graded)
    return _stale_lines(assignment, stale, graded, prog, quiet_if_no_feedback=True)


def _names(students: list[str], limit: int = 8) -> str:
    return ", ".join(students[:limit]) + (
        f" and {len(students) - limit} more" if len(students) > limit else ""
    )


def _stale_lines(
    assignment: str, stale: Stale, graded: list, prog: str = TOOL, quiet_if_no_feedback: bool = False
) -> list[str]:
    """The stale part of the summary, each with the command that fixes it."""
    lines = []
    if stale.feedback:
        lines.append(
            f"! {len(stale.feedback)} feedback page(s) older than the grade: {_names(stale.feedback)}\n"
            f"    refresh: {prog} feedback {assignment}"
            + (f" --student {stale.feedback[0]}" if len(stale.feedback) == 1 else "  (every page)")
        )
    if stale.changed:
        lines.append(
            f"! {len(stale.changed)} submission(s) changed since they were graded: {_names(stale.changed)}\n"
            f"    regrade: {prog} autograde {assignment} --student {' '.join(stale.changed)}"
        )
    if stale.ungraded:
        lines.append(
            f"! {len(stale.ungraded)} submission(s) not graded (never, or grading failed): "
            f"{_names(stale.ungraded)}\n    grade: {prog} autograde {assignment}"
        )
    if graded and not stale.feedback_folder:
        if not quiet_if_no_feedback:
            lines.append(f"  no feedback generated yet: {prog} feedback {assignment}")
    elif stale.no_feedback:
        lines.append(
            f"! {len(stale.no_feedback)} graded submission(s) without a feedback page: {_names(stale.no_feedback)}"
        )
    return lines


def format_report(report: Report, prog: str = TOOL) -> str:
    """The summary as the instructor reads it; prog: this tool's command line, for the hints."""
    a = report.assignment
    totals = list(report.totals.values())
    states = ", ".join(f"{n} {s}" for s, n in sorted(report.states.items()))
    lines = [f"== {a}: summary of {len(totals)} graded submission(s)" + (f" ({states})" if states else "")]
    if totals:
        full = sum(1 for t in totals if t >= report.max_score > 0)
        lines.append(
            f"total: mean {statistics.fmean(totals):.3g} of {report.max_score:g}, "
            f"median {statistics.median(totals):.3g}; {full} full marks, {sum(1 for t in totals if t == 0)} zero"
        )
        lines.append("score distribution (total: submissions):")
        lines += histogram(totals, report.max_score)
    if report.parts:
        width = max(len(p.grade_id) for p in report.parts)
        lines.append("per part (graded cell), most common failure messages under it:")
        lines.append(f"  {'':<{width}}   mean / max   failed")
        for p in report.parts:
            manual = f"  ({p.manual} await a manual grade)" if p.manual else ""
            lines.append(
                f"  {p.grade_id:<{width}}  {p.mean:5.2f} / {p.max_score:<4g} "
                f"{100 * p.failure_rate:4.0f}% ({p.failed}/{p.graded}){manual}"
            )
            for message, n in p.messages[:TOP_MESSAGES]:
                lines.append(f"    {n:>3}x {message[:150]}")
            if len(p.messages) > TOP_MESSAGES:
                rest = sum(n for _, n in p.messages[TOP_MESSAGES:])
                lines.append(f"    {rest:>3}x ({len(p.messages) - TOP_MESSAGES} other message(s))")
    if report.identical:
        lines.append("identical answer code (whitespace and comments aside; untouched blanks ignored):")
        for g in report.identical:
            what = ("byte-identical" if g.byte_identical else "same code") + (
                ", the reference solution" if g.reference else ""
            )
            lines.append(
                f"  {len(g.students)} submissions, {what}, {g.answer_cells} answer cell(s): {_names(g.students, 12)}"
            )
    if report.similar:
        lines.append(f"nearly identical (token similarity >= {SIMILAR:g}, names ignored):")
        for p in report.similar[:SHOWN_PAIRS]:
            a_ = p.a + (f" (+{len(p.also_a)} identical)" if p.also_a else "")
            b_ = p.b + (f" (+{len(p.also_b)} identical)" if p.also_b else "")
            lines.append(
                f"  {math.floor(p.similarity * 100) / 100:.2f}  {a_} ~ {b_}: {p.same_cells} of {p.cells} answer cells the same"
            )
        if len(report.similar) > SHOWN_PAIRS:
            lines.append(f"  ... and {len(report.similar) - SHOWN_PAIRS} more pair(s) (--json lists all)")
    if report.reference_copies:
        lines.append(
            f"answer code identical to the reference solution ({len(report.reference_copies)}): "
            + _names(report.reference_copies, 12)
        )
    if not report.identical and not report.similar and totals:
        lines.append("no identical or nearly identical answer code")
    stale = _stale_lines(a, report.stale, totals, prog)
    if totals and not stale:
        stale = ["nothing stale: every feedback page is newer than its grade"]
    lines += stale
    if report.problems:
        lines.append("could not read:")
        lines += [f"  {p}" for p in report.problems]
    return "\n".join(lines)
