"""nbgrader configuration for the course (read by every nbgrader command run from the repository root).

solutions/ is nbgrader's source directory (instructor notebooks with solution
regions and hidden tests); exercises/ is its release directory (the student
notebooks, generated, committed). Student data never lives here: instructors
grade in a course directory of their own, see the README.
"""

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "gradient-problems"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
# Only notebooks and the data files they name travel with an assignment; never a .py answer.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]

# PyTorch assignments need more than nbconvert's 30 s default per cell.
c.Execute.timeout = 120
c.Execute.startup_timeout = 120
c.Execute.interrupt_on_timeout = True

# Scores come from the checker outside the student's kernel (course_tools.grading.checked_execute):
# every test cell also runs in the grader's process, where the student's functions are proxies.
from course_tools.grading.checked_execute import autograde_preprocessors  # noqa: E402

c.Autograde.autograde_preprocessors = autograde_preprocessors()  # nbgrader's, with CheckedExecute

# A student who deletes a test cell must not leave that part ungraded.
c.OverwriteCells.add_missing_cells = True
c.CheckCellMetadata.enabled = True

# The student version keeps no outputs and strips solution regions and hidden tests.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"

# Feedback shows the student's code, results and failed-test messages, never hidden tests' source.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import GetGrades  # noqa: E402

from course_tools.grading.feedback import HideHiddenTests  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
