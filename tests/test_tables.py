"""course_lib.tables: aligned text tables and scientific notation for prose."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib.tables import format_table, print_table, sci


@pytest.mark.parametrize(
    ("x", "digits", "text"),
    [
        (2.34e-9, 1, "2.3 × 10⁻⁹"),
        (1.4e4, 1, "1.4 × 10⁴"),
        (1e5, 1, "10⁵"),
        (0.5, 0, "5 × 10⁻¹"),
        (-3.0e-3, 1, "-3 × 10⁻³"),
        (np.float32(6.25e10), 2, "6.25 × 10¹⁰"),
        (0.0, 1, "0.0"),
        (math.inf, 1, "inf"),
    ],
)
def test_sci(x, digits, text):
    assert sci(x, digits) == text


def test_sci_nan():
    assert sci(float("nan")) == "nan"


def test_format_table_aligns_and_formats_columns():
    text = format_table(
        ["run", "steps", "loss"], [("SGD, B = 1", 1257, 0.31234), ("full", 1, 2.3)], ["", "d", ".3f"]
    )
    lines = text.split("\n")
    assert lines[0].split() == ["run", "steps", "loss"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].startswith("SGD, B = 1") and lines[2].endswith("0.312")
    assert lines[3].endswith("2.300")
    assert len({len(line) for line in lines[1:]}) == 1, "columns line up"


def test_format_table_one_format_for_all_numbers_and_strings_untouched():
    text = format_table(
        ["name", "a", "b"], [("x", 1e-5, "n/a"), ("y", np.float64(2.0), True)], ".1e", title="T"
    )
    assert text.split("\n")[0] == "T"
    assert "1.0e-05" in text and "n/a" in text and "2.0e+00" in text and "True" in text


def test_format_table_rejects_ragged_rows_and_wrong_formats():
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        format_table(["a", "b"], [(1, 2), (3,)])
    with pytest.raises(ValueError, match="3 formats for 2 columns"):
        format_table(["a", "b"], [(1, 2)], ["d", "d", "d"])


def test_print_table(capsys):
    print_table(["a", "b"], [(1, 2.5)], ["d", ".1f"])
    assert capsys.readouterr().out.split("\n")[2].split() == ["1", "2.5"]


def test_numeric_headers_are_written_as_text():
    text = format_table(["radius", 0.5, 8], [("rnn", 1e-13, 3.6e10)], ".1e")
    assert text.split("\n")[0].split() == ["radius", "0.5", "8"]
