"""The code of graded answers, in a form that survives renaming: to find an answer printed elsewhere.

A solution region (### BEGIN SOLUTION ... ### END SOLUTION) is the answer to a graded part;
no chapter page may show it. `normalised_lines` turns code into one string per logical line
with every variable name replaced by `_` (attribute names such as `.sum` and keywords kept,
comments and layout dropped), so `s = torch.sigmoid(z)` and `sig = torch.sigmoid(x)` read the
same. `answer_fragments` gives, for each solution region, the fragments a copy of it would
contain: each pair of consecutive lines, or a lone line when it is long enough to be distinctive.
"""

from __future__ import annotations

import io
import keyword
import textwrap
import tokenize
from pathlib import Path

import nbformat

from .cells import SOLUTION_BEGIN as BEGIN
from .cells import SOLUTION_END as END
from .cells import grade_id

MIN_CHARS = 24  # a fragment shorter than this is too generic to count as a copy ("return _ * _")


def normalised_lines(code: str) -> list[str]:
    """One string per logical line, names replaced by `_`; [] if the code does not tokenize."""
    lines, current, previous = [], [], None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                if current:
                    lines.append("".join(current))
                current = []
            elif tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
                pass
            elif tok.type == tokenize.NAME and not keyword.iskeyword(tok.string) and previous != ".":
                current.append("_")
            elif tok.type == tokenize.STRING:
                current.append('""')  # docstrings and messages are not the answer
            else:
                current.append(tok.string)
            if tok.type not in (tokenize.COMMENT, tokenize.NL):
                previous = tok.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [ln for ln in lines if ln]
    return [ln for ln in lines if ln and ln != '""']


def regions(source: str, begin: str = BEGIN, end: str = END) -> list[str]:
    """The code between each begin/end marker pair of a cell's source (markers excluded)."""
    out, inside, region = [], False, []
    for line in source.split("\n"):
        if begin in line:
            inside, region = True, []
        elif end in line and inside:
            inside = False
            out.append("\n".join(region))
        elif inside:
            region.append(line)
    return out


def solution_regions(notebook: Path) -> list[tuple[str, str]]:
    """(grade_id, dedented code) of every solution region in an nbgrader source notebook."""
    out = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code":
            gid = grade_id(cell) or "?"
            out += [(gid, textwrap.dedent(code)) for code in regions(cell.source)]
    return out


def answer_fragments(code: str) -> list[str]:
    """What a copy of this answer would contain, names and layout aside (see the module docstring)."""
    lines = normalised_lines(code)
    pairs = ["\n".join(lines[i : i + 2]) for i in range(len(lines) - 1)]
    fragments = [p for p in pairs if len(p) >= MIN_CHARS]
    fragments += [ln for ln in lines if len(ln) >= 2 * MIN_CHARS]
    return fragments
