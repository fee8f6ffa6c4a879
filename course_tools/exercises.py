"""Generate the student versions (exercises/) from the instructor notebooks (solutions/).

    python -m course_tools.exercises            regenerate exercises/ in place
    python -m course_tools.exercises --check    fail, naming the files, if exercises/ is stale

Generation runs nbgrader generate_assignment in a scratch course directory, so
no gradebook or log lands in the repository. Each notebook is read first: one
that is not valid JSON or not a valid notebook is reported by name, and the
others are still generated.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

from .grading.course import Course, NbgraderError
from .paths import REPO


class MalformedNotebook(ValueError):
    """A notebook under solutions/ cannot be read."""


def assignments(solutions: Path) -> list[str]:
    """Names of the assignment folders (psNN_*) under solutions/."""
    return sorted(p.name for p in solutions.iterdir() if p.is_dir() and not p.name.startswith("."))


def validate_notebook(path: Path) -> None:
    """Raise MalformedNotebook naming `path` unless it is a readable, schema-valid notebook."""
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several unrelated types for bad input
        raise MalformedNotebook(f"{path}: not a valid notebook ({type(exc).__name__}: {exc})") from None


def generate(solutions: Path, dest: Path, names: list[str] | None = None) -> list[str]:
    """Generate release versions of `names` (default: all) into dest/<name>/; return the errors."""
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="course-exercises-") as tmp:
        course = Course.create(Path(tmp) / "course")
        for name in names or assignments(solutions):
            src = solutions / name
            bad = []
            for nb_path in sorted(src.glob("*.ipynb")):
                try:
                    validate_notebook(nb_path)
                except MalformedNotebook as exc:
                    bad.append(str(exc))
            if bad:
                errors.extend(bad)
                continue
            shutil.copytree(
                src, course.root / "solutions" / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints")
            )
            try:
                course.run("generate_assignment", name, "--force")
            except NbgraderError as exc:
                errors.append(f"{src}: nbgrader could not generate it:\n{exc}")
                continue
            target = dest / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(course.root / "exercises" / name, target)
    return errors


def stale_files(expected: Path, actual: Path, prefix: str = "") -> list[str]:
    """Paths that differ between two trees (missing, extra or changed)."""
    diffs: list[str] = []
    if not actual.is_dir():
        return [f"{prefix} (missing)"]

    def walk(cmp: filecmp.dircmp, prefix: str) -> None:
        diffs.extend(f"{prefix}{n} (missing)" for n in cmp.left_only)
        diffs.extend(f"{prefix}{n} (extra)" for n in cmp.right_only)
        diffs.extend(f"{prefix}{n} (changed)" for n in cmp.diff_files)
        for sub, subcmp in cmp.subdirs.items():
            walk(subcmp, f"{prefix}{sub}/")

    walk(filecmp.dircmp(expected, actual, ignore=[".ipynb_checkpoints", "__pycache__"]), prefix)
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report whether exercises/ is up to date")
    parser.add_argument("names", nargs="*", help="assignments to generate (default: all)")
    args = parser.parse_args(argv)
    solutions, exercises = REPO / "solutions", REPO / "exercises"
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            errors = generate(solutions, Path(tmp), args.names or None)
            if errors:
                diffs = []
            elif args.names:  # compare only the named assignments' folders
                diffs = [d for n in args.names for d in stale_files(Path(tmp) / n, exercises / n, f"{n}/")]
            else:
                diffs = stale_files(Path(tmp), exercises)
        for e in errors:
            print(f"[exercises] {e}", file=sys.stderr)
        if diffs:
            print(
                "[exercises] exercises/ is stale; run `python3 dev.py exercises`:\n  " + "\n  ".join(diffs),
                file=sys.stderr,
            )
        return 1 if errors or diffs else 0
    errors = generate(solutions, exercises, args.names or None)
    for e in errors:
        print(f"[exercises] {e}", file=sys.stderr)
    print(
        f"[exercises] generated {len(args.names or assignments(solutions)) - len(errors)} assignment(s) into {exercises}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
