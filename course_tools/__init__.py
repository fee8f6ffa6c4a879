"""Course tooling: building the book, generating exercises, and driving nbgrader.

Kept apart from course_lib: students import course_lib; instructors and CI run
course_tools. It drives nbgrader through its own command line and never
imports a notebook.
"""

import sys

# jsonschema checks the "iri" string format with rfc3987_syntax, which builds a Lark parser when
# it is imported: ~2.5 s of CPU in every process that imports nbformat (the grading tool, its
# workers, each nbgrader command, the book build). Nothing here validates that format, and
# jsonschema skips the check when the import fails.
sys.modules.setdefault("rfc3987_syntax", None)
