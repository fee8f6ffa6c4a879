"""Plain-text tables and readable numbers for the pages' printed output.

A chapter prints results as a small table, one row per setting; the column layout is
plumbing, so it lives here rather than in format strings on the page:

    print_table(["depth", "‖∂L/∂W₁‖"], [(1, 0.3), (20, 2e-9)], formats=["d", ".1e"])

`sci(2.3e-9)` writes "2.3 × 10⁻⁹", the form a number takes in a sentence (for MyST-NB glue).
"""

from __future__ import annotations

from collections.abc import Sequence

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def sci(x: float, digits: int = 1) -> str:
    """x in scientific notation for prose: sci(2.34e-9) == "2.3 × 10⁻⁹", sci(0.5) == "5 × 10⁻¹".

    `digits` significant digits after the first; a mantissa of 1 is dropped (sci(1e5) == "10⁵").
    Zero, inf and nan are written as Python writes them.
    """
    x = float(x)
    if x == 0 or x != x or x in (float("inf"), float("-inf")):
        return str(x)
    mantissa, exponent = f"{x:.{digits}e}".split("e")
    exponent = str(int(exponent)).translate(_SUPERSCRIPT)
    if float(mantissa) in (1.0, -1.0):
        return ("-" if x < 0 else "") + f"10{exponent}"
    return f"{mantissa.rstrip('0').rstrip('.')} × 10{exponent}"


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    formats: Sequence[str] | str | None = None,
    *,
    title: str | None = None,
) -> str:
    """The rows as an aligned text table: the first column left-aligned, the others right.

    formats: one format spec per column (".3g", "d", "" for str()), or one for every numeric
    cell. Non-numeric cells are written with str(). Every row must have len(headers) cells.
    """
    headers = [str(h) for h in headers]  # numbers as headers: the settings of each column
    width = len(headers)
    if isinstance(formats, str) or formats is None:
        formats = [formats or ""] * width
    if len(formats) != width:
        raise ValueError(f"{len(formats)} formats for {width} columns")
    cells = []
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"row {i} has {len(row)} cells, the table has {width} columns: {row!r}")
        cells.append([_cell(v, f) for v, f in zip(row, formats, strict=True)])
    widths = [max([len(h)] + [len(r[j]) for r in cells]) for j, h in enumerate(headers)]

    def line(items: Sequence[str]) -> str:
        first = items[0].ljust(widths[0])
        rest = (s.rjust(w) for s, w in zip(items[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    out = [title] if title else []
    out += [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    formats: Sequence[str] | str | None = None,
    *,
    title: str | None = None,
) -> None:
    """Print format_table(headers, rows, formats, title=title)."""
    print(format_table(headers, rows, formats, title=title))


def _cell(value: object, fmt: str) -> str:
    if isinstance(value, str) or not fmt:
        return str(value)
    if isinstance(value, bool):
        return str(value)
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)
