"""`python -m course_tools.grading ...`: the instructor's command line (course_tools.grading.cli)."""

import sys

from .cli import main

sys.exit(main())
