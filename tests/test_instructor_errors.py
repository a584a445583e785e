"""An instructor's mistakes, through the real `autograd-course grade`: an option out of range is
refused in one sentence before anything is written, and nothing in the submissions folder is
left out without a line saying so and why."""

import json

import nbformat
import pytest
from conftest import copy_course, notebook_path, run_cli, write_submission
from nbgrader.api import Gradebook

A1 = "01_basic_autograd"


@pytest.mark.parametrize(
    "options, named",
    [
        (["--timeout", "0"], "--timeout"),
        (["--memory", "-5"], "--memory"),
        (["--memory", "255"], "--memory"),  # below what a worker needs
        (["--timeout", "10", "--notebook-timeout", "5"], "--notebook-timeout"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_an_option_out_of_range_is_one_sentence_and_writes_nothing(tmp_path, options, named):
    course = copy_course(tmp_path / "course")
    solution = nbformat.read(notebook_path("source", A1), as_version=4)
    write_submission(course / "submissions", "alice", A1, solution)
    before = sorted(path.name for path in course.iterdir())

    done = run_cli("grade", "submissions", "--json", "grades.json", *options, cwd=course)

    assert done.returncode == 2
    assert done.stderr.startswith(f"autograd-course grade: {named} ")
    assert " must be " in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert sorted(path.name for path in course.iterdir()) == before  # no gradebook, no pages


def test_what_is_not_graded_is_named_with_why(tmp_path):
    course = copy_course(tmp_path / "course")
    submissions = course / "submissions"
    solution = nbformat.read(notebook_path("source", A1), as_version=4)
    write_submission(submissions, "alice", A1, solution)
    nbformat.write(solution, submissions / "alice" / A1 / "copy of my work.ipynb")
    write_submission(submissions, "bob", f"{A1}_v2", solution)  # a misnamed assignment folder
    for nested in [f"carol/{A1}/unzipped", f"dave/{A1}/a/b"]:  # carol's is her only one
        (submissions / nested).mkdir(parents=True)
        nbformat.write(solution, submissions / nested / f"{A1}.ipynb")
    write_submission(submissions, "dave", A1, solution)
    (submissions / "grades.xlsx").write_text("not a student")

    done = run_cli("grade", "submissions", "--json", "grades.json", cwd=course)

    assert done.returncode == 0, done.stderr
    not_graded = [line for line in done.stderr.splitlines() if line.startswith("not graded: ")]
    assert not_graded == [
        f"not graded: alice/{A1}/copy of my work.ipynb: a notebook with another name than "
        f"{A1}.ipynb",
        f"not graded: bob/{A1}_v2: no assignment called {A1}_v2 in source/ (did you mean {A1}?)",
        f"not graded: dave/{A1}/a/b/{A1}.ipynb: a notebook in a subfolder (only {A1}.ipynb "
        "directly in the folder is graded)",
        "not graded: grades.xlsx: a file where a student's folder should be",
    ]
    grades = json.loads((course / "grades.json").read_text())
    assert [f"not graded: {e['path']}: {e['why']}" for e in grades["unrecognised"]] == not_graded
    # The only notebook, one folder too deep, is graded as the notebook it should be: it is
    # in the gradebook (so in `nbgrader export` and the formgrader), and the table says so.
    carol = grades["students"]["carol"][A1]
    assert carol["score"] == carol["max_score"] == 10
    assert (
        carol["error"] == f"unzipped/{A1}.ipynb was graded as {A1}.ipynb, the notebook it should be"
    )
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        recorded = {s.student.id: s.score for s in gradebook.assignment_submissions(A1)}
    assert recorded == {"alice": 10, "carol": 10, "dave": 10}
    new = [line for line in done.stderr.splitlines() if line.startswith("new in the gradebook")]
    assert len(new) == 1
    assert new[0].startswith("new in the gradebook, with no names yet: alice, carol, dave; ")
    assert "`nbgrader db student import FILE`" in new[0]
