"""Grading runs side by side, for the tests of the run lock and of a PostgreSQL gradebook: a
small class, `autograd-course grade` started in the background, the gradebook's scores."""

import os
import signal
import subprocess
import sys

from conftest import solution_code, student_notebook, write_submission
from nbgrader.api import Gradebook

A1, A2 = "01_basic_autograd", "02_chain_rule"
SECRET = "the same hidden inputs for every clone of the course"
SLOW = "import time\ntime.sleep(6)  # a slow student: the run is still grading after its first\n"


def write_class(submissions, names=(A1, A2)):
    """alice solves everything, bob nothing, carol the first exercise of each assignment."""
    for name in names:
        write_submission(submissions, "alice", name, solved(name))
        write_submission(submissions, "bob", name, student_notebook(name))
        first = solution_ids(name)[0]
        answers = {first: solution_code(name, first)}
        write_submission(submissions, "carol", name, student_notebook(name, answers))


def solution_ids(name):
    return [
        cell.metadata["nbgrader"]["grade_id"]
        for cell in student_notebook(name).cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    ]


def solved(name):
    """The notebook of `name` with every exercise solved."""
    return student_notebook(name, {gid: solution_code(name, gid) for gid in solution_ids(name)})


def slowly_solved(name):
    """`solved(name)`, its first solution after a wait of 6 s: a slow student, whose run is still
    grading after its first notebook."""
    first, *others = solution_ids(name)
    answers = {gid: solution_code(name, gid) for gid in others}
    return student_notebook(name, {first: SLOW + solution_code(name, first), **answers})


def environment(url):
    return {**os.environ, "AUTOGRAD_COURSE_DB": url, "AUTOGRAD_COURSE_SECRET": SECRET}


def start_grading(course, url, *names):
    """`autograd-course grade submitted` in `course` into the gradebook `url`, started."""
    options = [option for name in names for option in ("--assignment", name)]
    return subprocess.Popen(
        [sys.executable, "-m", "autograder", "grade", "submitted", "--jobs", "2", *options]
        + ["--json", "grades.json"],
        cwd=course,
        env=environment(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(run):
    """(exit status, stdout, stderr) of a started run, once it has ended."""
    out, err = run.communicate(timeout=300)
    return run.returncode, out, err


def graded_one(run):
    """Wait until `run` reports a graded submission (it is grading, so it holds its locks);
    False if it ended first."""
    for line in run.stderr:
        if line.startswith("graded "):
            return True
    return False


def gradebook_scores(url, names=(A1, A2)):
    """{(student, assignment): score} as nbgrader reads the gradebook at `url`."""
    url = url.replace("postgresql://", "postgresql+psycopg://")
    with Gradebook(url) as gradebook:
        return {
            (submission.student.id, name): submission.score
            for name in names
            for submission in gradebook.assignment_submissions(name)
        }


def second_run_while_grading(first, second, url):
    """Start grading A1 in the course `first`, a slow student among its submissions, and stop
    the run once it has graded one notebook (stopped, it holds its locks); then grade every
    assignment of the course `second` into the same gradebook `url`, and let the first go on:
    (the first run, the second's (exit status, stdout, stderr))."""
    write_submission(first / "submitted", "dawn", A1, slowly_solved(A1))
    running = start_grading(first, url, A1)
    assert graded_one(running), finished(running)
    running.send_signal(signal.SIGSTOP)
    try:
        return running, finished(start_grading(second, url))
    finally:
        running.send_signal(signal.SIGCONT)
