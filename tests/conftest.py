"""Shared test setup: a headless matplotlib backend, a clean slate of figures after each test,
the book, built once per session for every test that reads it, and how `dev.py test` shares
the tests between its pytest-xdist workers."""

import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def html(tmp_path_factory) -> Path:
    """The HTML book, built cold into a temporary directory once per test session.

    COURSE_BOOK_HTML=<dir>/_build/html reuses a book built before (when iterating on tests).
    """
    import os

    from course_tools.book.build import build

    if os.environ.get("COURSE_BOOK_HTML"):
        return Path(os.environ["COURSE_BOOK_HTML"])
    out = tmp_path_factory.mktemp("book")
    rc = build(out, rebuild_all=True)
    assert rc == 0, "the book build failed; the chapter and cell are printed above"
    return out / "_build" / "html"


# How `dev.py test` shares the suite between its two pytest-xdist workers: as work units that
# each keep an expensive fixture to one worker. (xdist's own --dist loadgroup marks do nothing
# under pytest 9: xdist writes the group into Node._nodeid, which pytest 9 no longer reads.)
SPLIT_BY_FIXTURE_PARAM = ("tests/test_grading_pipeline.py", "tests/test_robustness.py")
_reads_book: dict[str, bool] = {}


def work_unit(nodeid: str) -> str:
    """The unit a test goes with: "book" for every file with a test that reads the built book
    (built once), else its file (module fixtures made once), split by the first parameter for
    the modules whose module-scoped fixture is parametrized (one assignment's pipeline, one
    executor's robustness run), so two of those can run side by side."""
    path = nodeid.split("::")[0]
    if path not in _reads_book:
        source = Path(__file__).parent.parent.joinpath(path)
        text = source.read_text() if source.is_file() else ""
        _reads_book[path] = re.search(r"def test_\w+\([^)]*\bhtml\b", text) is not None
    if _reads_book[path]:
        return "book"
    if path in SPLIT_BY_FIXTURE_PARAM and nodeid.endswith("]"):
        return f"{path}[{nodeid.rsplit('[', 1)[1].split('-')[0].rstrip(']')}]"
    return path


# Seconds each slow unit took on one of two workers in a clean-clone run of .ci/run (rounded up;
# the "test time per work unit" section at the end of such a run).
# Only the order of the units depends on these: the heaviest goes first, so that the two
# workers finish together instead of one running a 6-minute unit alone at the end (xdist's
# own order, by number of tests, put the one-test walk-through and Dask units last).
UNIT_SECONDS = {
    "book": 700,
    "tests/test_grading_pipeline.py[ps01_mistakes]": 300,
    "tests/test_robustness.py[dask]": 260,
    "tests/test_robustness.py[local]": 190,
    "tests/test_grading_pipeline.py[ps02_mistakes]": 190,
    "tests/test_instructor_docs.py": 180,
    "tests/test_grading_pipeline.py[ps05_mistakes]": 180,
    "tests/test_grading_pipeline.py[ps04_mistakes]": 180,
    "tests/test_grading_pipeline.py[ps03_mistakes]": 170,
    "tests/test_browser_lab.py": 150,
    "tests/test_dask_grading.py": 130,
    "tests/test_postgres.py": 100,
    "tests/test_warm_isolation.py": 100,
    "tests/test_lms_export.py": 70,
    "tests/test_diagnosis_models.py": 40,
    "tests/test_checker.py": 30,
    "tests/test_exercises.py": 30,
}
SECONDS_PER_OTHER_TEST = 1  # most tests of the other files take well under a second


def unit_seconds(unit: str, n_tests: int) -> float:
    return UNIT_SECONDS.get(unit, SECONDS_PER_OTHER_TEST * n_tests)


def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling (a unit at a time to a free worker), with `work_unit` as the scope,
    handing out the heaviest remaining unit first (see UNIT_SECONDS)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

        def _assign_work_unit(self, node) -> None:
            heaviest = max(self.workqueue, key=lambda unit: unit_seconds(unit, len(self.workqueue[unit])))
            self.workqueue.move_to_end(heaviest, last=False)
            super()._assign_work_unit(node)

    return ByWorkUnit(config, log)


# What each work unit cost and where it ran, printed at the end of a run on several workers:
# the figures to keep UNIT_SECONDS true (test time: setup, call and teardown of its tests).
_unit_seconds: dict[str, float] = defaultdict(float)
_unit_worker: dict[str, str] = {}


def pytest_runtest_logreport(report) -> None:
    node = getattr(report, "node", None)  # set by xdist on the reports its workers send back
    if node is None or not isinstance(getattr(report, "duration", None), float):
        return
    unit = work_unit(report.nodeid)
    _unit_seconds[unit] += report.duration
    _unit_worker[unit] = getattr(getattr(node, "gateway", None), "id", "?")


def pytest_terminal_summary(terminalreporter) -> None:
    if not _unit_seconds:
        return
    by_worker: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for unit, seconds in _unit_seconds.items():
        by_worker[_unit_worker[unit]].append((seconds, unit))
    terminalreporter.section("test time per work unit")
    for worker, units in sorted(by_worker.items()):
        units.sort(reverse=True)
        heavy = ", ".join(f"{unit} {seconds:.0f}" for seconds, unit in units[:12])
        terminalreporter.write_line(
            f"{worker}: {sum(s for s, _ in units):.0f} s in {len(units)} units; heaviest: {heavy}"
        )
