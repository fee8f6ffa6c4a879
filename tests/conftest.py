"""Shared test setup: a headless matplotlib backend, a clean slate of figures after each test,
the book, built once per session for every test that reads it, and how `dev.py test` shares
the tests between its pytest-xdist workers."""

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


def pytest_collection_modifyitems(config, items) -> None:
    """Keep together what shares an expensive fixture, when pytest-xdist runs with --dist loadgroup.

    Every test that reads the built book goes to one worker (the book is built once); every other
    module stays whole on one worker (its module-scoped fixtures are made once), except that a
    module-scoped fixture with parameters (a pipeline per assignment, the robustness suite per
    executor) is split by parameter, so two assignments' pipelines can run side by side.
    """
    for item in items:
        if "html" in getattr(item, "fixturenames", ()):
            group = "book"
        else:
            group = item.module.__name__ if item.module else item.nodeid.split("::")[0]
            params = getattr(getattr(item, "callspec", None), "params", {})
            for name in ("graded", "run"):
                if name in params:
                    group += f"-{params[name]}"
        item.add_marker(pytest.mark.xdist_group(group))
