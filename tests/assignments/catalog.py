"""What a catalog of realistic wrong answers holds: one Mistake per replaced solution cell.

Each tests/assignments/<assignment>_mistakes.py lists MISTAKES for one assignment. The
grading tests prove that every one of them loses the points of test_<part> and of no
other part, so a catalog doubles as a record of what the tests are able to catch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    part: str  # grade_id of the solution cell it replaces, e.g. "sigmoid_grad"
    name: str  # short slug, e.g. "forgot_to_apply_sigmoid"
    description: str  # what the student did wrong
    source: str  # the full replacement source of that solution cell (def included, no solution markers)
