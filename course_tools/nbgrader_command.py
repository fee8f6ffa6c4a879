"""`python -m course_tools.nbgrader_command ARGS` is `nbgrader ARGS`, with course_tools' import savings.

nbgrader's own entry point (nbgrader.apps.nbgraderapp:main). Run as a module of course_tools, it
starts after the package's __init__ has skipped an import nbgrader never uses (see
course_tools/__init__.py): about 2.5 s of CPU less for each of the many nbgrader commands a grading
run or the test suite starts; and a command that creates a gradebook reads its revision stamp
in-process (course_tools.grading.alembic_head), 4-7 s less.
"""

import sys

from nbgrader.apps.nbgraderapp import main

from course_tools.grading import alembic_head

if __name__ == "__main__":
    alembic_head.install()  # a new gradebook's revision read here, not by an `alembic heads` subprocess
    sys.argv[0] = "nbgrader"
    sys.exit(main())
