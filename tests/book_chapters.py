"""The book's chapters as `_toc.yml` lists them: a chapter is its landing page plus its section pages.

A chapter longer than a page (COURSE_DESIGN.md §6: about 5,000 words of prose) is split into a
landing page (`book/ch01_backprop`, which opens with the learning objectives) and section pages
listed under it in `_toc.yml` (`sections:`), the last of which ends with the summary and the
exercises. Every page is a notebook of its own; the page-level checks (glue, code width, LaTeX,
execution time) apply to each page, the chapter-level ones (objectives, exercises, at least three
figures, an interactive figure) to the chapter as a whole.

    from book_chapters import toc_chapters, chapter_sources
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CHAPTER_DOC = re.compile(r"book/ch\d\d_")


def toc_chapters() -> dict[str, list[str]]:
    """Landing document of each chapter in `_toc.yml` (e.g. "book/ch01_backprop") -> the document
    names of its pages in reading order: the landing page, then its sections."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))

    def pages(entry: dict) -> list[str]:
        return [entry["file"], *(p for s in entry.get("sections") or [] for p in pages(s))]

    out: dict[str, list[str]] = {}
    for part in toc.get("parts", []):
        for entry in part.get("chapters") or []:
            if CHAPTER_DOC.match(entry.get("file", "")):
                out[entry["file"]] = pages(entry)
    return out


def chapter_sources() -> dict[str, list[Path]]:
    """Every chapter's pages as source files: the chapters of `_toc.yml`, then each
    `book/chNN_*.md` that the table of contents does not list yet (a chapter being written,
    held to the standard as a chapter of one page)."""
    out = {landing: [REPO / f"{doc}.md" for doc in docs] for landing, docs in toc_chapters().items()}
    listed = {p for pages in out.values() for p in pages}
    for path in sorted((REPO / "book").glob("ch[0-9][0-9]_*.md")):
        if path not in listed:
            out[f"book/{path.stem}"] = [path]
    return out
