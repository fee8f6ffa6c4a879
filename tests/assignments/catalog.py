"""What the grading catalogues hold: realistic wrong answers, correct alternatives, attacks.

Each tests/assignments/<assignment>_mistakes.py lists, for one assignment,

- MISTAKES: realistic wrong answers. Each loses the points of test_<part> and of no other part.
- ALTERNATIVES: correct answers written differently from the reference (another formula, a loop,
  under torch.no_grad(), code that prints a warning). Each keeps full marks on every part.
- ATTACKS: submissions that try to earn a part's points without the work (patching the checks,
  reading the expected value, forging results, reaching a forbidden built-in by another name).
  Each earns nothing on test_<part>.

Every entry replaces one solution cell (grade_id `part`) of the reference submission, so a
catalogue doubles as a record of what the tests are able to catch. The grading tests run them
all through the real nbgrader autograde and gradebook.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    part: str  # grade_id of the solution cell it replaces, e.g. "sigmoid_grad"
    name: str  # short slug, e.g. "forgot_to_apply_sigmoid"
    description: str  # what the student did wrong
    source: str  # the full replacement source of that solution cell (def included, no solution markers)


@dataclass(frozen=True)
class Alternative:
    part: str  # grade_id of the solution cell it replaces
    name: str  # short slug, e.g. "loop_over_rows"
    description: str  # how it differs from the reference, and why it is still right
    source: str  # the full replacement source of that solution cell


@dataclass(frozen=True)
class Attack:
    part: str  # grade_id of the solution cell it replaces: the part whose points it tries to take
    name: str  # short slug, e.g. "patch_check_close"
    description: str  # what it tries
    source: str  # the full replacement source of that solution cell
