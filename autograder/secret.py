"""The course secret, from which each student's hidden test inputs are drawn.

Hidden tests draw their inputs (checks.random_inputs) from a key made of this secret, the
assignment and the student: grading is repeatable for a student, different between students,
and not predictable from the repository, so hidden inputs seen once (last year's, a
classmate's) are no use. The secret is the environment variable AUTOGRAD_COURSE_SECRET, or
else the file SECRET_FILE in the course root, created on the first `grade`. Workers never see
either: the course root is not in their filesystem and their environment is replaced.
"""

import hashlib
import hmac
import os
import secrets
import stat

from autograder.course import CourseError

ENVIRONMENT_VARIABLE = "AUTOGRAD_COURSE_SECRET"
SECRET_FILE = ".autograd_course_secret"
MAX_SECRET_BYTES = 4096


def course_secret(root):
    """The course's secret as bytes: the environment variable, else the file (made if missing)."""
    from_environment = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if from_environment:
        return from_environment.encode()
    path = root / SECRET_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return read_secret(path)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    return read_secret(path)


def read_secret(path):
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        raise CourseError(f"cannot read the course secret {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise CourseError(f"the course secret {path} is not a regular file")
        text = file.read(MAX_SECRET_BYTES + 1).strip()
    if not text or len(text) > MAX_SECRET_BYTES:
        raise CourseError(
            f"the course secret {path} should hold one line of random text "
            f"(delete it and `grade` makes a new one, or set {ENVIRONMENT_VARIABLE})"
        )
    return text


def assignment_key(secret, assignment):
    """The key of an assignment's hidden inputs."""
    return hmac.new(secret, b"assignment\0" + assignment.encode(), hashlib.sha256).digest()


def student_key(key_of_assignment, student):
    """The key of one student's hidden inputs of one assignment (checks.random_inputs)."""
    return hmac.new(key_of_assignment, b"student\0" + student.encode(), hashlib.sha256).digest()
