"""autograd-course's autograder: the checks test cells call, and the course's command line.

Test cells import from here; this module loads only torch, so a notebook starts fast.
"""

from autograder.checks import (
    ATOL,
    RTOL,
    CheckFailed,
    check_calls,
    check_gradient,
    check_graph,
    check_in_loop,
    check_no_autograd,
    check_not_calls,
    check_true,
    check_uses_autograd,
    check_value,
    random_inputs,
    run_student,
)
from autograder.gradcheck import numerical_gradient, relative_error
from autograder.misconceptions import Mistake, RaisedError, WrongValue, equal_to
from autograder.tracebacks import install

install()  # in a student's kernel: a failed check shows its message first

__all__ = [
    "ATOL",
    "RTOL",
    "CheckFailed",
    "Mistake",
    "RaisedError",
    "WrongValue",
    "check_calls",
    "check_gradient",
    "check_graph",
    "check_in_loop",
    "check_no_autograd",
    "check_not_calls",
    "check_true",
    "check_uses_autograd",
    "check_value",
    "equal_to",
    "numerical_gradient",
    "random_inputs",
    "relative_error",
    "run_student",
]
