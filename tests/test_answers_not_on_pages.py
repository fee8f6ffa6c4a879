"""No graded answer is printed on a page: the solution regions' code is not in book/ or the built HTML.

Compared up to layout, comments and names (course_tools.grading.answer_code): a chapter
that shows `sig = torch.sigmoid(x); return sig * (1 - sig)` shows the answer
`s = torch.sigmoid(z); return s * (1 - s)` just the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from course_tools.grading.answer_code import answer_fragments, normalised_lines, solution_regions

REPO = Path(__file__).resolve().parents[1]
CODE_CELL = re.compile(r"```\{code-cell\}[^\n]*\n(.*?)```", re.S)


def fragments() -> dict[str, str]:
    """Answer fragment -> 'psNN/grade_id'."""
    out: dict[str, str] = {}
    for nb in sorted((REPO / "solutions").glob("*/*.ipynb")):
        for gid, code in solution_regions(nb):
            for frag in answer_fragments(code):
                out.setdefault(frag, f"{nb.parent.name}/{gid}")
    return out


def shown(code: str) -> str:
    return "\n" + "\n".join(normalised_lines(code)) + "\n"


def leaks_in(code_blocks: list[str], answers: dict[str, str]) -> list[str]:
    text = "".join(shown(block) for block in code_blocks)
    return sorted(
        {f"{origin}: {frag.splitlines()[0]!r}" for frag, origin in answers.items() if f"\n{frag}\n" in text}
    )


def test_the_comparison_sees_through_names_and_layout():
    answer = "s = torch.sigmoid(z)  # stable\nreturn s * (1 - s)\n"
    page = "sig   = torch.sigmoid(x)\n\nreturn sig * (1 - sig)"
    assert leaks_in([page], {f: "ps/part" for f in answer_fragments(answer)})
    assert not leaks_in(
        ["s = torch.tanh(z)\nreturn s * (1 - s)"], {f: "ps/part" for f in answer_fragments(answer)}
    )


def test_no_chapter_source_shows_a_graded_answer():
    answers = fragments()
    assert answers, "no solution regions found"
    leaks = []
    for page in sorted((REPO / "book").rglob("*.md")):
        found = leaks_in(CODE_CELL.findall(page.read_text()), answers)
        leaks += [f"{page.relative_to(REPO)} shows {f}" for f in found]
    assert not leaks, "pages print the answer of a graded part:\n" + "\n".join(leaks)


@pytest.mark.slow
def test_no_built_page_shows_a_graded_answer(html: Path):
    answers = fragments()
    leaks = []
    for page in sorted(html.glob("book/**/*.html")):
        soup = BeautifulSoup(page.read_text(), "html.parser")
        blocks = [pre.get_text() for pre in soup.select("div.highlight pre")]
        leaks += [f"{page.relative_to(html)} shows {f}" for f in leaks_in(blocks, answers)]
    assert not leaks, "built pages print the answer of a graded part:\n" + "\n".join(leaks)
