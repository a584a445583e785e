"""One grading run at a time per assignment, with the embedded SQLite gradebook.

A second `grade` of an assignment another run is grading into the same gradebook is refused at
once with one sentence naming that run (its pid, host, start and assignments), before it writes
anything; the lock goes when its run does, even when the run is killed. (Two runs of different
assignments go side by side: tests/test_postgres.py.)
"""

import json
import re
import socket

from conftest import copy_course
from grading_runs import (
    A1,
    finished,
    gradebook_scores,
    second_run_while_grading,
    start_grading,
    write_class,
)


def test_a_second_run_of_an_assignment_being_graded_is_refused_until_the_first_is_gone(
    tmp_path,
):
    course = copy_course(tmp_path / "course")
    url = f"sqlite:///{course / 'gradebook.db'}"
    write_class(course / "submitted", [A1])

    first, (status, _, err) = second_run_while_grading(course, course, url)
    first.kill()  # killed while grading: its lock must go with it
    first.wait()

    assert status == 2, err
    assert re.fullmatch(
        f"autograd-course grade: {A1} is being graded into this gradebook by another grading run "
        rf"\(pid {first.pid} on {re.escape(socket.gethostname())}, started \d{{4}}-\d\d-\d\d "
        rf"\d\d:\d\d:\d\d \w+, grading {A1}\); run this again when it has finished, or grade "
        "other assignments with --assignment.\n",
        err,
    ), err

    status, _, err = finished(start_grading(course, url))
    assert status == 0, err
    assert "internal error" not in err
    graded = json.loads((course / "grades.json").read_text())["students"]
    assert graded["dawn"][A1]["score"] == graded["alice"][A1]["score"] == 10
    assert gradebook_scores(url, [A1])[("dawn", A1)] == 10
