"""Course tooling: building the book, generating exercises, and driving nbgrader.

Kept apart from course_lib: students import course_lib; instructors and CI run
course_tools. It drives nbgrader through its own command line and never
imports a notebook.
"""
