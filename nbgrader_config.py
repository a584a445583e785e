"""nbgrader settings for this course. The repository root is the course directory."""

import os

from autograder.course import gradebook_url
from autograder.exchange import course_exchange

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "autograd-course"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# The gradebook: the SQLAlchemy URL in $AUTOGRAD_COURSE_DB (postgresql://... for several
# graders), else the embedded SQLite file gradebook.db, never committed (see .gitignore).
c.CourseDirectory.db_url = gradebook_url(c.CourseDirectory.root)

# nbgrader's exchange, through which students fetch and submit: the course's exchange/ (never
# committed), made by the instructor's first command with the permissions a class on one machine
# needs: students hand work in, and cannot list or read one another's (autograder/exchange.py).
c.Exchange.root = course_exchange(
    os.path.join(c.CourseDirectory.root, "exchange"), c.CourseDirectory.course_id
)
# Collect (the command and the formgrader's button) takes a submission only if its files belong
# to the student it names: anyone can hand work in under another's name in nbgrader's exchange.
c.ExchangeFactory.collect = "autograder.exchange.OwnerCheckedCollect"
# Release Feedback hands each page out readable by its student, whatever the umask it was made with.
c.ExchangeFactory.release_feedback = "autograder.exchange.ReadableReleaseFeedback"

# Finite limits: a cell that loops forever is interrupted, a kernel that never starts is abandoned.
c.Execute.timeout = 30
c.Execute.startup_timeout = 60
c.Execute.interrupt_on_timeout = True
# nbgrader's default kernel arguments, and a quiet kernel log (no transport warning per notebook).
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]

# nbgrader zeroes a cell that writes anything to stderr; PyTorch's UserWarnings must not
# cost a correct answer, so warning text on stderr is dropped before grading.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"Warning:"

# Test cells a student deleted come back from the source at autograde time.
c.OverwriteCells.add_missing_cells = True

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Validate (the button in JupyterLab, and `nbgrader validate`) runs `autograd-course check`, the
# grading engine: the same verdicts, and a failing test's message is the first thing shown.
# nbgrader does not make the Validator's steps a setting, so its default is changed here.
from nbgrader.preprocessors import CheckCellMetadata, ClearOutput  # noqa: E402
from nbgrader.validator import Validator  # noqa: E402

from autograder.validate import CheckPreprocessor  # noqa: E402

Validator.preprocessors.default_value = [CheckCellMetadata, ClearOutput, CheckPreprocessor]
