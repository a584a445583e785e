"""Manual grades reach the student: a score and a comment a grader enters in nbgrader's
formgrader (here written to the gradebook as the formgrader's API handlers write them) show in
`grade`'s table and JSON, in `autograd-course feedback`'s pages and JSON, in the class report,
in the feedback nbgrader's release_feedback hands out, and survive grading again.

One module fixture runs an instructor's whole sequence in a copy of the course and keeps what
each step produced; each test reads its part.
"""

import csv
import json
import os
import re
import subprocess
import sys

import nbformat
import pytest
from conftest import (
    copy_course,
    notebook_path,
    run_cli,
    solution_code,
    student_notebook,
    write_submission,
)
from nbgrader.api import Gradebook

A1 = "01_basic_autograd"
EXERCISE = "ex1_slope_of_square"
TEST = f"test_{EXERCISE}"
# Autograd, but of x**3: the right method on the wrong function, worth partial credit by hand.
WRONG_ANSWER = """
def slope_of_square(x0):
    x = torch.tensor(x0, requires_grad=True)
    (x**3).backward()
    return x.grad
"""
MANUAL_SCORE = 1.5
COMMENT = "Right method, wrong function: you differentiated x cubed.\nHalf a point off."


def give_manual_grade(course, student):
    """What the formgrader's GradeHandler.put and CommentHandler.put write for one exercise."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade(TEST, A1, A1, student)
        grade.manual_score = MANUAL_SCORE
        grade.extra_credit = None
        grade.needs_manual_grade = False
        comment = gradebook.find_comment(EXERCISE, A1, A1, student)
        comment.manual_comment = COMMENT
        gradebook.db.commit()


def with_tools_on_path():
    """The environment, with this Python's scripts first on PATH (nbgrader runs alembic)."""
    scripts = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}


def succeeded(steps, *names):
    for name in names:
        result = steps[name]
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """grade; a manual score and comment for cy's exercise 1; feedback --json; report; grade
    again; feedback once ada's grading record is lost. {step: what it produced}."""
    course = copy_course(tmp_path_factory.mktemp("manual") / "course")
    submitted = course / "submitted"
    solutions = {
        cell.metadata.nbgrader["grade_id"]: solution_code(A1, cell.metadata.nbgrader["grade_id"])
        for cell in student_notebook(A1).cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    write_submission(submitted, "ada", A1, student_notebook(A1, solutions))
    write_submission(
        submitted, "cy", A1, student_notebook(A1, {**solutions, EXERCISE: WRONG_ANSWER})
    )
    # Collected through nbgrader's exchange: release_feedback needs these beside the feedback.
    (submitted / "cy" / A1 / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")
    (submitted / "cy" / A1 / "submission_secret.txt").write_text("0123456789abcdef")
    steps = {"course": course}
    page = course / "feedback" / "cy" / A1 / f"{A1}.html"

    def run(step, *args, output=None):
        """Run one step; keep its result and the JSON it wrote, if any: a step that fails
        fails the tests that read it, not the others."""
        steps[step] = run_cli(*args, cwd=course)
        if output:
            written = course / output
            if written.is_file():
                steps[output] = json.loads(written.read_text())["students"]

    run("grade", "grade", "submitted", "--json", "graded.json", output="graded.json")
    give_manual_grade(course, "cy")
    run("feedback", "feedback", "--json", "grades.json", output="grades.json")
    steps["page"] = page.read_text()
    run("report", "report", "grades.json", "--out", "report")
    if steps["report"].returncode == 0:
        with open(course / "report" / "exercises.csv") as stream:
            steps["exercises.csv"] = {row["exercise"]: row for row in csv.DictReader(stream)}
    run("regrade", "grade", "submitted", "--json", "regraded.json", output="regraded.json")
    steps["page again"] = page.read_text()
    # What grading recorded of each test's verdict, lost (as after nbgrader's own autograde).
    for record in (course / "autograded" / "ada" / A1).glob("*.json"):
        record.unlink()
    run("unrecorded", "feedback")
    return steps


def test_grading_gives_cy_eight_points_before_any_manual_grade(steps):
    succeeded(steps, "grade")
    outcome = steps["graded.json"]["cy"][A1]
    assert outcome["score"] == 8 and outcome["tests"][TEST]["score"] == 0
    assert not outcome["tests"][TEST]["manual"] and outcome["tests"][TEST]["comment"] is None


def test_feedback_json_has_the_manual_score_marked_manual_and_the_comment(steps):
    succeeded(steps, "grade", "feedback")
    outcome = steps["grades.json"]["cy"][A1]
    test = outcome["tests"][TEST]
    assert test["score"] == MANUAL_SCORE and test["manual"] is True
    assert test["comment"] == COMMENT
    assert not test["passed"], "passed stays what the check said"
    assert outcome["score"] == 8 + MANUAL_SCORE
    others = [t for grade_id, t in outcome["tests"].items() if grade_id != TEST]
    assert all(not t["manual"] and t["comment"] is None for t in others)
    assert steps["grades.json"]["ada"] == steps["graded.json"]["ada"], "nothing changed for ada"
    assert re.search(rf"^cy +{8 + MANUAL_SCORE:g}/10 *$", steps["feedback"].stdout, re.MULTILINE)


def test_feedback_page_shows_the_manual_score_and_the_comment_and_no_hidden_test(steps):
    succeeded(steps, "grade", "feedback")
    page = steps["page"]
    assert f"{8 + MANUAL_SCORE:g} / 10" in page
    assert f"{MANUAL_SCORE:g} / 2" in page
    assert "score set by your grader" in page
    assert "Right method, wrong function: you differentiated x cubed." in page
    assert "Half a point off." in page
    source = nbformat.read(notebook_path("source", A1), as_version=4)
    hidden = [
        line.strip()
        for cell in source.cells
        if "BEGIN HIDDEN TESTS" in cell.source
        for line in cell.source.split("BEGIN HIDDEN TESTS")[1]
        .split("END HIDDEN TESTS")[0]
        .splitlines()[1:]
        if len(line.strip()) >= 20
    ]
    assert hidden and not [line for line in hidden if line in page]


def test_the_class_report_uses_the_manual_score(steps):
    succeeded(steps, "grade", "feedback", "report")
    row = steps["exercises.csv"][TEST]
    assert float(row["mean_score"]) == pytest.approx((2 + MANUAL_SCORE) / 2)


def test_grading_again_keeps_the_manual_score_in_the_table_json_and_page(steps):
    succeeded(steps, "grade", "regrade")
    outcome = steps["regraded.json"]["cy"][A1]
    test = outcome["tests"][TEST]
    assert test["score"] == MANUAL_SCORE, "grading again showed the automatic score"
    assert test["manual"] is True and test["comment"] == COMMENT
    assert outcome["score"] == 8 + MANUAL_SCORE
    assert re.search(rf"^cy +{8 + MANUAL_SCORE:g}/10 *$", steps["regrade"].stdout, re.MULTILINE)
    assert "Half a point off." in steps["page again"]
    with Gradebook(f"sqlite:///{steps['course'] / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade(TEST, A1, A1, "cy")
        assert (grade.manual_score, grade.auto_score) == (MANUAL_SCORE, 0)


def test_release_feedback_hands_out_the_page_with_the_manual_grade(steps, tmp_path):
    succeeded(steps, "grade", "feedback", "regrade")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    released = subprocess.run(
        [sys.executable, "-m", "nbgrader", "release_feedback", A1, "--student", "cy"]
        + [f"--Exchange.root={exchange}"],
        cwd=steps["course"],
        capture_output=True,
        text=True,
        env=with_tools_on_path(),
    )
    assert released.returncode == 0, released.stderr
    [page] = (exchange / "autograd-course" / "feedback").glob("*.html")
    assert "Half a point off." in page.read_text()


def test_feedback_names_and_skips_a_submission_it_has_no_grading_record_of(steps):
    succeeded(steps, "grade", "unrecorded")
    assert f"ada/{A1}" in steps["unrecorded"].stderr
    assert "grade it again" in steps["unrecorded"].stderr
    assert re.search(r"^cy +9.5/10", steps["unrecorded"].stdout, re.MULTILINE)
    assert not re.search(r"^ada ", steps["unrecorded"].stdout, re.MULTILINE)
