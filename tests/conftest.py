"""Shared test setup: a headless matplotlib backend, a clean slate of figures after each test,
and the book, built once per session for every test that reads it."""

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
