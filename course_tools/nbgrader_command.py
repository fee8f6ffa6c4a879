"""`python -m course_tools.nbgrader_command ARGS` is `nbgrader ARGS`, with course_tools' import savings.

nbgrader's own entry point (nbgrader.apps.nbgraderapp:main). Run as a module of course_tools, it
starts after the package's __init__ has skipped an import nbgrader never uses (see
course_tools/__init__.py): about 2.5 s of CPU less for each of the many nbgrader commands a grading
run or the test suite starts.
"""

import sys

from nbgrader.apps.nbgraderapp import main

if __name__ == "__main__":
    sys.argv[0] = "nbgrader"
    sys.exit(main())
