"""The only course_tools code that runs inside a student's kernel: the grading link."""
