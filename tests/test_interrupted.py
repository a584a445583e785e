"""A grading run killed with SIGKILL half-way loses nothing, and running it again finishes the job;
Ctrl-C says so in one line.

The killed run's zygote and workers die with it; the second run gives exactly the results of a
run that was never interrupted.
"""

import json
import os
import re
import signal
import subprocess
import sys

import nbformat
from conftest import copy_course, notebook_path, write_submission
from nbgrader.api import Gradebook

A1 = "01_basic_autograd"
STUDENTS = 8


def class_of_submissions(submissions):
    solution = nbformat.read(notebook_path("source", A1), as_version=4)
    stub = nbformat.read(notebook_path("release", A1), as_version=4)
    slow = nbformat.from_dict(json.loads(json.dumps(solution)))
    slow.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(1)"))
    for number in range(STUDENTS):
        notebook = [solution, stub, slow][number % 3]
        write_submission(submissions, f"s{number}", A1, notebook)


def grade_command(course):
    return [sys.executable, "-m", "autograder", "grade", "submissions", "--jobs", "1"] + [
        "--json",
        str(course / "grades.json"),
    ]


def gradebook_scores(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {s.student.id: s.score for s in gradebook.assignment_submissions(A1) if s.student}


def test_a_killed_run_loses_nothing_and_a_rerun_completes_it(tmp_path):
    reference = copy_course(tmp_path / "reference")
    class_of_submissions(reference / "submissions")
    done = subprocess.run(grade_command(reference), cwd=reference, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = json.loads((reference / "grades.json").read_text())

    course = copy_course(tmp_path / "course")
    class_of_submissions(course / "submissions")
    run = subprocess.Popen(
        grade_command(course),
        cwd=course,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    graded_lines = 0
    for line in run.stderr:
        graded_lines += line.startswith("graded ")
        if graded_lines == 2:
            run.send_signal(signal.SIGKILL)
            break
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL
    kept = gradebook_scores(course)
    assert 2 <= len(kept) < STUDENTS  # what was graded before the kill is in the gradebook
    assert all(kept[s] == expected["students"][s][A1]["score"] for s in kept)

    again = subprocess.run(grade_command(course), cwd=course, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads((course / "grades.json").read_text()) == expected
    assert gradebook_scores(course) == gradebook_scores(reference)


def test_ctrl_c_is_one_line_and_keeps_what_was_recorded(tmp_path):
    course = copy_course(tmp_path / "course")
    class_of_submissions(course / "submissions")
    # A terminal's Ctrl-C: SIGINT to the whole process group (the grader, its judges, zygote
    # and workers).
    run = subprocess.Popen(
        grade_command(course),
        cwd=course,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for line in run.stderr:
            if line.startswith("graded "):
                os.killpg(run.pid, signal.SIGINT)
                break
        out, rest = run.communicate(timeout=60)
    finally:  # a grader that hangs (a judge left alive once did) is not left behind
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)

    assert run.returncode == 130
    assert out == ""
    said = [line for line in rest.splitlines() if not line.startswith("graded ")]
    assert len(said) == 1, rest
    found = re.fullmatch(
        rf"interrupted: (\d) of {STUDENTS} submissions graded and recorded; "
        "run the same command again to grade the rest",
        said[0],
    )
    assert found, said
    kept = gradebook_scores(course)  # exactly those it says, each with its whole score
    assert len(kept) == int(found[1]) >= 1
    assert all(kept[s] == (0 if int(s[1:]) % 3 == 1 else 10) for s in kept)
