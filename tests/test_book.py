"""The book builds with warnings as errors, every page in the TOC renders, and nothing secret reaches it.

The build runs once per test session into a temporary directory (cold, like CI's),
through the same wrapper `python3 dev.py book` uses (the `html` fixture in conftest.py,
shared with the browser tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from book_chapters import toc_chapters
from browser import toc_files
from bs4 import BeautifulSoup

from course_tools.book.build import build

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def page(html: Path, docname: str) -> BeautifulSoup:
    path = html / f"{docname}.html"
    assert path.exists(), f"{docname} was not rendered ({path} missing)"
    return BeautifulSoup(path.read_text(), "html.parser")


def test_every_toc_page_renders(html: Path):
    for doc in toc_files():
        soup = page(html, doc)
        main = soup.find("main") or soup
        assert len(main.get_text(strip=True)) > 200, f"{doc} rendered almost empty"


def test_chapters_have_computed_figures_and_math(html: Path):
    """A chapter (its landing page and its section pages) shows at least three computed figures;
    every page of it has typeset math and executed outputs, and its figures exist."""
    chapters = toc_chapters()
    assert chapters, "_toc.yml lists no chapter"
    for chapter, docs in chapters.items():
        n_figures = 0
        for doc in docs:
            soup = page(html, doc)
            imgs = [
                img
                for img in soup.find_all("img")
                if "_images/" in img.get("src", "") or img.get("src", "").startswith("data:")
            ]
            n_figures += len(imgs)
            for img in imgs:
                src = img["src"]
                if not src.startswith("data:"):
                    target = (html / doc).parent / src
                    assert target.resolve().exists(), f"{doc}: figure {src} is missing"
            assert soup.select(".math"), f"{doc} has no typeset math"
            assert soup.select(".cell_output"), f"{doc} shows no executed outputs"
        assert n_figures >= 3, (
            f"{chapter} ({len(docs)} pages) has {n_figures} figures; chapters show their claims "
            "with computed figures"
        )


def test_no_solution_or_hidden_test_in_the_html(html: Path):
    for path in html.rglob("*.html"):
        text = path.read_text()
        for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{path.relative_to(html)} contains {marker!r}"
    for path in html.rglob("*.ipynb"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, f"{path} leaks answers"


def test_assignment_page_offers_the_student_notebook(html: Path):
    soup = page(html, "book/assignments/ps01")
    links = [a["href"] for a in soup.find_all("a", href=True) if a["href"].endswith("ps01_backprop.ipynb")]
    assert links, "the ps01 page has no download link to the student notebook"
    target = (html / "book" / "assignments" / links[0]).resolve()
    assert target.exists(), f"download target {links[0]} missing from the build"
    import nbformat

    nb = nbformat.read(target, as_version=4)
    nbformat.validate(nb)
    assert any("NotImplementedError" in c.source for c in nb.cells), "the download is not the student version"
    release = page(html, "exercises/ps01_backprop/ps01_backprop")
    assert "YOUR CODE HERE" in release.get_text()


def test_citations_and_glossary_resolve(html: Path):
    bib = page(html, "book/bibliography")
    assert len(bib.select(".citation, dl.citation > dt, div.citation")) >= 5, (
        "the bibliography lists too few papers"
    )
    gloss = page(html, "book/glossary").get_text()
    for term in ("梯度爆炸", "梯度消失", "批量归一化", "梯度裁剪", "反向传播"):
        assert term in gloss, f"glossary lacks {term}"
    ch1 = page(html, "book/ch01_backprop")
    assert ch1.select("a[href*='bibliography']"), "chapter 1 cites nothing"


def test_failing_chapter_names_itself_and_its_cell(tmp_path: Path, capfd):
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text(
        "title: t\nonly_build_toc_files: true\nexecute:\n  execute_notebooks: cache\n  timeout: 60\n"
    )
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: broken_chapter\n")
    (book / "intro.md").write_text("# Intro\n\nText.\n")
    header = (REPO / "book" / "ch01_backprop.md").read_text().split("---", 2)[1]
    (book / "broken_chapter.md").write_text(
        f"---{header}---\n# Broken\n\n```{{code-cell}} ipython3\nx = 1\n```\n\n"
        "```{code-cell} ipython3\nraise ValueError('planted failure in cell two')\n```\n"
    )
    rc = build(tmp_path / "out", root=book)
    err = capfd.readouterr().err
    assert rc != 0
    assert "chapter broken_chapter.md failed" in err
    assert "raise ValueError('planted failure in cell two')" in err
    assert "ValueError: planted failure in cell two" in err
