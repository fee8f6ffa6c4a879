"""What a reader of every chapter page can trust (COURSE_DESIGN.md §6), checked on the sources.

- no control characters in `book/*.md`, and no LaTeX command that lost its backslash
  (a `\\t` or `\\r` in a non-raw Python string turns `\\times` into a tab and "imes");
- LaTeX in a chapter's Python strings (anything with `$`) is in raw strings;
- visible code fits the column: every line of code in a chapter is at most 88 characters;
- every number the prose takes from an experiment is glued (MyST-NB `glue`): each key the
  prose pastes is glued on the same page (MyST-NB's `{glue:text}` reads the keys of its own
  page), carries the chapter's prefix (`ch03_`), is glued by one page only, and every glued
  key is used;
- each chapter opens with learning objectives and ends with exercises for self-study; a chapter
  split into pages (`book_chapters`: its landing page plus the section pages `_toc.yml` lists
  under it) opens on its landing page and ends on its last section page;
- no page of the book holds more than about 5,000 words of prose (§6; a longer chapter is
  split into section pages): the check fails above 5,200;
- the built HTML (slow: the session's book fixture) shows every glued number, and no
  control character and no LaTeX fragment in its typeset math.

A glued value MyST-NB cannot format (`np.float64(0.5)` with `:.2f`: glue Python floats)
drops out of its sentence; the HTML test counts the pasted numbers.

The source checks apply to every `book/chNN_*.md` (landing and section pages alike), so a new
chapter is held to them as soon as it exists. They read files only and take well under a second.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest
from book_chapters import chapter_sources

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
CHAPTERS = sorted(BOOK.glob("ch[0-9][0-9]_*.md"))  # every page of every chapter
CHAPTER_PAGES = chapter_sources()  # landing document -> its pages, landing first
PAGES = sorted(BOOK.rglob("*.md"))
MAX_CODE_WIDTH = 88
MAX_PROSE_WORDS = 5200  # §6: "about 5,000 words of prose at most" per page

# Control characters other than newline; a tab in Markdown is never needed either.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
# What is left of a LaTeX command whose backslash became an escape sequence (\t, \r, \f, \b,
# \a, \n, \v): "\times" -> TAB + "imes", "\rho" -> CR + "ho", "\rVert" -> CR + "Vert".
FRAGMENT = re.compile(
    r"(?<![\\A-Za-z])(imes|heta|ilde|anh|ext|ho|ight|Vert|rac|abla|lpha|pprox|egin|oldsymbol)(?![A-Za-z])"
)
MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", re.S)
FENCE = re.compile(r"^(```+)(.*)$")
GLUE_ROLE = re.compile(r"\{glue(?::(\w+))?\}`([^`]+)`")
GLUE_DIRECTIVE = re.compile(r"^```\{glue(?::\w+)?\}\s+(\S+)", re.M)
GLUE_CALL = re.compile(r"""\bglue\(\s*(f?)(["'])(.+?)\2""")


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _cells(path: Path) -> list[tuple[str, list[tuple[int, str]]]]:
    """The page as a list of (kind, [(line number, text)]) runs: kind "prose", "code" (the inside
    of a code cell, its options removed, or of a fence naming a language) or "options".

    Directives (```{figure}, ```{admonition}) and the jupytext header are prose, so their text is
    searched for glue and math.
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    runs: list[tuple[str, list[tuple[int, str]]]] = [("prose", [])]
    i = lines.index("---", 1) + 1 if lines and lines[0] == "---" else 0
    fence, state = None, "prose"
    for n, line in enumerate(lines[i:], start=i + 1):
        m = FENCE.match(line)
        if fence is None and m:
            info = m.group(2).strip()
            if info.startswith("{code-cell}"):
                fence, state = m.group(1), "start"
                runs.append(("code", []))
            elif re.fullmatch(r"[A-Za-z0-9_+-]+", info):
                fence, state = m.group(1), "code"
                runs.append(("code", []))
            else:
                runs[-1][1].append((n, line))
            continue
        if fence is not None and state != "yaml" and line.strip() == fence:
            fence, state = None, "prose"
            runs.append(("prose", []))
            continue
        if state == "start" and line == "---":
            state = "yaml"
            continue
        if state == "yaml":
            if line == "---":
                state = "code"
            continue
        if state == "start" and line.startswith(":"):
            continue
        if state == "start":
            state = "code"
        runs[-1][1].append((n, line))
    return runs


def blocks(path: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(prose lines, code lines) of a MyST notebook, each as (line number, text)."""
    prose = [x for kind, run in _cells(path) if kind == "prose" for x in run]
    code = [x for kind, run in _cells(path) if kind == "code" for x in run]
    return prose, code


def code_cells(path: Path) -> list[str]:
    """The source of each code block, options removed, for tokenising."""
    return ["\n".join(t for _, t in run) for kind, run in _cells(path) if kind == "code"]


def prose_text(path: Path) -> str:
    return "\n".join(text for _, text in blocks(path)[0])


DISPLAY_MATH = re.compile(r"\$\$.+?\$\$|^```\{math\}.*?^```", re.S | re.M)
LABEL = re.compile(r"^\([\w-]+\)=$", re.M)


def prose_words(path: Path) -> int:
    """Words of prose on a page: Markdown outside code cells, without display math and labels."""
    text = DISPLAY_MATH.sub(" ", prose_text(path))
    return len(LABEL.sub(" ", text).split())


# ---------------------------------------------------------------------------- characters


@pytest.mark.parametrize("path", sorted(BOOK.glob("*.md")), ids=_ids(sorted(BOOK.glob("*.md"))))
def test_no_control_characters(path: Path):
    text = path.read_bytes().decode("utf-8")
    bad = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group()!r} in {text[max(0, m.start() - 20) : m.end() + 10]!r}"
        for m in CONTROL.finditer(text)
    ]
    assert not bad, f"{path.name} has control characters (a LaTeX string that was not raw?): {bad[:5]}"


@pytest.mark.parametrize("path", sorted(BOOK.glob("*.md")), ids=_ids(sorted(BOOK.glob("*.md"))))
def test_no_latex_fragments_in_math(path: Path):
    bad = []
    for m in MATH.finditer(prose_text(path)):
        math = m.group(1) or m.group(2)
        bad += [f"{f.group()!r} in ${math.strip()[:60]}$" for f in FRAGMENT.finditer(math)]
    assert not bad, f"{path.name}: LaTeX commands that lost their backslash: {bad[:5]}"


def test_fragment_check_catches_the_known_corruptions():
    for broken in ("32\times 32", "\rho", "h_t\rVert", "\frac{1}{2}", "\nabla f", "\times"):
        text = broken.replace("\t", " ").replace("\r", "\n").replace("\f", " ").replace("\n", " ")
        assert FRAGMENT.search(text), broken
    for fine in (r"32\times32", r"\rho", r"\lVert h\rVert", r"\frac12", r"\nabla", r"\tanh'(z)"):
        assert not FRAGMENT.search(fine), fine


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_latex_in_python_strings_is_raw(path: Path):
    bad = []
    for cell in code_cells(path):
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(cell).readline))
        except (tokenize.TokenError, IndentationError, SyntaxError):
            continue  # the build reports broken code; here only strings matter
        for tok in tokens:
            if tok.type != tokenize.STRING:
                continue
            prefix = re.match(r"[A-Za-z]*", tok.string).group().lower()
            if "r" in prefix or "$" not in tok.string:
                continue
            if re.search(r"\\[A-Za-z]", tok.string):
                bad.append(tok.string[:60])
    assert not bad, f'{path.name}: LaTeX in non-raw strings (write r"..."): {bad[:5]}'


# ---------------------------------------------------------------------------- code width


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_code_lines_fit_the_column(path: Path):
    _, code = blocks(path)
    long = [(n, len(text)) for n, text in code if len(text) > MAX_CODE_WIDTH]
    assert not long, (
        f"{path.name}: {len(long)} code lines are wider than {MAX_CODE_WIDTH} characters and scroll "
        f"sideways on the page (line, width): {long[:10]}; wrap them, or move plumbing into "
        "course_lib or behind a hide-input toggle"
    )


def test_width_check_sees_code_cells_and_skips_their_options(tmp_path: Path):
    page = tmp_path / "ch99_x.md"
    page.write_text(
        "---\njupytext: x\n---\n\n# T\n\nprose " + "w" * 100 + "\n\n"
        "```{code-cell} ipython3\n---\ntags: [hide-input]\nmystnb:\n  figure:\n    caption: |\n"
        "      " + "c" * 100 + "\n---\nx = 1\n```\n\n```python\n" + "y" * 90 + "\n```\n"
    )
    prose, code = blocks(page)
    assert [t for _, t in code] == ["x = 1", "y" * 90]
    assert any("w" * 100 in t for _, t in prose)


# ---------------------------------------------------------------------------- glue


def glue_keys(path: Path) -> tuple[set[str], list[re.Pattern[str]], set[str]]:
    """(keys glued literally, patterns of keys glued from f-strings, keys the prose pastes)."""
    text = path.read_text(encoding="utf-8")
    code = "\n".join(code_cells(path))
    literal, patterns = set(), []
    for m in GLUE_CALL.finditer(code):
        key = m.group(3)
        if m.group(1):  # f"ch02_gain_{name}": any text where the braces are
            parts = re.split(r"\{[^}]*\}", key)
            patterns.append(re.compile(r".+?".join(re.escape(p) for p in parts) + r"\Z"))
        else:
            literal.add(key)
    pasted = set()
    for m in GLUE_ROLE.finditer(text):
        role, content = m.group(1) or "", m.group(2)
        key = content.rsplit(":", 1)[0] if role in ("text", "md") and ":" in content else content
        pasted.add(key)
    pasted |= set(GLUE_DIRECTIVE.findall(text))
    return literal, patterns, pasted


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_pasted_numbers_are_glued_on_the_page(path: Path):
    literal, patterns, pasted = glue_keys(path)
    assert literal or patterns, (
        f"{path.name} glues nothing: every number its prose takes from an experiment must be "
        "inserted with myst_nb.glue, never typed"
    )
    missing = sorted(k for k in pasted if k not in literal and not any(p.match(k) for p in patterns))
    assert not missing, (
        f"{path.name} pastes keys it never glues: {missing} ({{glue:text}} reads only the keys "
        "glued on its own page: glue the number on the page that uses it)"
    )
    unused = sorted(k for k in literal if k not in pasted)
    assert not unused, f"{path.name} glues keys its prose never uses: {unused}"
    prefix = path.name[:5]  # "ch03_"
    off = sorted(k for k in literal | {p.pattern for p in patterns} if not k.startswith(prefix))
    assert not off, f"{path.name}: glue keys must start with {prefix!r} (unique across the book): {off}"


def test_no_glue_key_is_defined_by_two_pages():
    owner: dict[str, str] = {}
    clashes = []
    for path in CHAPTERS:
        for key in glue_keys(path)[0]:
            if key in owner:
                clashes.append(f"{key} ({owner[key]}, {path.name})")
            owner[key] = path.name
    assert not clashes, f"glue keys defined twice: {clashes}"


# ---------------------------------------------------------------------------- structure


@pytest.mark.parametrize("chapter", list(CHAPTER_PAGES), ids=list(CHAPTER_PAGES))
def test_chapter_opens_with_objectives_and_ends_with_exercises(chapter: str):
    pages = CHAPTER_PAGES[chapter]
    missing = [p.name for p in pages if not p.exists()]
    assert not missing, f"{chapter}: _toc.yml lists pages that do not exist: {missing}"
    landing, last = prose_text(pages[0]), prose_text(pages[-1])
    first_section = landing.split("\n## ", 1)[0]
    assert re.search(r"learning objectives|you will be able to", first_section, re.I), (
        f"{pages[0].name} must open (before its first section) with 3-5 learning objectives"
    )
    headings = [m.group(1) for m in re.finditer(r"^## (.+)$", last, re.M)]
    assert headings, f"{pages[-1].name} has no sections"
    assert re.search(r"exercises", headings[-1], re.I), (
        f"{chapter} must end with a section of exercises for self-study (the last section of "
        f"{pages[-1].name}: {headings[-1]!r})"
    )
    assert any(re.search(r"summary", h, re.I) for h in headings[-2:]), (
        f"{chapter} must end with a summary, just before the exercises ({pages[-1].name})"
    )
    for page in pages[1:-1] if len(pages) > 2 else []:
        inner = [m.group(1) for m in re.finditer(r"^## (.+)$", prose_text(page), re.M)]
        assert not any(re.search(r"^(summary|exercises)", h, re.I) for h in inner), (
            f"{page.name}: the summary and the exercises belong on the chapter's last page"
        )
    for page in pages[1:]:
        assert re.search(r"^# \S", prose_text(page), re.M), f"{page.name}: a section page needs a # title"


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(BOOK)) for p in PAGES])
def test_pages_hold_at_most_about_5000_words_of_prose(path: Path):
    words = prose_words(path)
    assert words <= MAX_PROSE_WORDS, (
        f"{path.relative_to(REPO)} holds {words} words of prose (at most about 5,000 a page, "
        "COURSE_DESIGN.md §6): split the chapter into section pages at a topic boundary "
        "(_toc.yml `sections:` under the chapter; each page a notebook of its own)"
    )


def test_prose_word_count_skips_code_math_and_labels(tmp_path: Path):
    page = tmp_path / "ch99_x.md"
    page.write_text(
        "---\njupytext: x\n---\n\n(ch99-a)=\n# One two\n\nthree $x$ four\n\n$$\na b c d e\n$$\n\n"
        "```{code-cell} ipython3\nnot counted at all\n```\n\n```{math}\nf g h\n```\nfive\n"
    )
    assert prose_words(page) == 7  # "#", One, two, three, $x$, four, five


# ---------------------------------------------------------------------------- the built HTML


@pytest.mark.slow
def test_html_math_has_no_control_characters_or_fragments(html: Path):
    from bs4 import BeautifulSoup

    for md in CHAPTERS:
        page = html / "book" / f"{md.stem}.html"
        if not page.exists():
            continue  # a chapter not yet in _toc.yml is not built
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        main = soup.find("main") or soup
        text = main.get_text()
        bad = [repr(c) for c in set(CONTROL.findall(text)) if c not in "\t"]
        assert not bad, f"{page.name} shows control characters: {bad}"
        pasted = len(GLUE_ROLE.findall(prose_text(md)))
        shown = [el.get_text() for el in main.select(".pasted-text") if el.get_text().strip()]
        assert len(shown) >= pasted, (
            f"{page.name} shows {len(shown)} of its {pasted} glued numbers: MyST-NB leaves a "
            "value it cannot format out of the sentence (glue Python floats, not np.float64)"
        )
        for el in main.select(".math"):
            math = el.get_text()
            assert not CONTROL.sub("", math.replace("\n", " ")) != math.replace("\n", " "), (
                f"{page.name}: control character in math {math[:80]!r}"
            )
            frag = FRAGMENT.search(math)
            assert not frag, f"{page.name}: LaTeX fragment {frag.group()!r} in math {math.strip()[:80]!r}"
