"""Feedback that teaches and never leaks: diagnoses in `check` and in the feedback, no hidden
test line or hidden expected value in anything a student gets back, and the class report."""

import csv
import json
import re

import nbformat
import pytest
from conftest import (
    ASSIGNMENTS,
    copy_course,
    notebook_path,
    run_cli,
    solution_code,
    student_notebook,
    write_submission,
)

A1 = "01_basic_autograd"
# A hidden check whose expected value is unmistakable; every answer fails it.
CANARY_VALUE = "271828.1828"
CANARY = f'check_value("the canary", run_student(slope_of_square, 1.5), {CANARY_VALUE})\n'
DOUBLED = """
def slope_of_square(x0):
    x = torch.tensor(x0, requires_grad=True)
    (x**2).backward()
    (x**2).backward()
    return x.grad
"""


def hidden_lines(notebook):
    """The lines between BEGIN and END HIDDEN TESTS that are long enough to be telling."""
    lines = []
    for cell in notebook.cells:
        inside = False
        for line in cell.source.splitlines():
            if "### BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "### END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) >= 20:
                lines.append(line.strip())
    return lines


def with_canary(course):
    path = course / "source" / A1 / f"{A1}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_ex1_slope_of_square":
            cell.source = cell.source.replace(
                "### END HIDDEN TESTS",
                "from autograder import check_value, run_student\n"
                + CANARY
                + "### END HIDDEN TESTS",
            )
    nbformat.write(notebook, path)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    with_canary(course)
    submissions = course / "submitted"
    for assignment in ASSIGNMENTS:
        source = nbformat.read(notebook_path("source", assignment), as_version=4)
        write_submission(submissions, "ada", assignment, source)
        write_submission(submissions, "stub", assignment, student_notebook(assignment))
    answers = {"ex1_slope_of_square": DOUBLED}
    write_submission(submissions, "twice", A1, student_notebook(A1, answers))
    result = run_cli("grade", "submitted", "--json", "grades.json", cwd=course)
    assert result.returncode == 0, result.stderr
    return course, json.loads((course / "grades.json").read_text())["students"], result


def returned_to_students(course):
    """Everything a student may get back: feedback pages, autograded notebooks, the JSON."""
    for folder in ("feedback", "autograded"):
        yield from (p for p in (course / folder).rglob("*") if p.is_file())
    yield course / "grades.json"


def test_the_canary_fails_and_its_expected_value_is_nowhere(graded):
    course, grades, result = graded
    assert not grades["ada"][A1]["tests"]["test_ex1_slope_of_square"]["passed"]
    message = grades["ada"][A1]["tests"]["test_ex1_slope_of_square"]["message"]
    assert "Hidden tests: slope_of_square gives a wrong value" in message
    assert "the canary" not in message  # a hidden test's own text is not shown
    for path in returned_to_students(course):
        assert CANARY_VALUE[:6] not in path.read_text(errors="replace"), path
    assert CANARY_VALUE[:6] not in result.stdout + result.stderr


def test_no_hidden_test_line_is_in_any_report(graded):
    course, _, _ = graded
    texts = {path: path.read_text(errors="replace") for path in returned_to_students(course)}
    assert any(p.suffix == ".html" for p in texts) and any(p.suffix == ".ipynb" for p in texts)
    for assignment in ASSIGNMENTS:
        source = nbformat.read(course / "source" / assignment / f"{assignment}.ipynb", 4)
        lines = hidden_lines(source)
        assert lines, f"{assignment} has hidden tests"
        released = (course / "release" / assignment / f"{assignment}.ipynb").read_text()
        for line in lines:
            if json.dumps(line)[1:-1] in released:
                continue  # the same line is also a visible test
            for path, text in texts.items():
                assert line not in text and json.dumps(line)[1:-1] not in text, (path, line)


def test_feedback_shows_the_diagnosis_and_the_students_code(graded):
    course, grades, _ = graded
    test = grades["twice"][A1]["tests"]["test_ex1_slope_of_square"]
    assert test["diagnosis"] == "doubled"
    page = (course / "feedback" / "twice" / A1 / f"{A1}.html").read_text()
    assert "exactly twice the right one" in page
    assert "(x**2).backward()" in page  # the student's own code


def test_check_names_the_misconception_before_submitting(tmp_path):
    path = tmp_path / f"{A1}.ipynb"
    solutions = {
        "ex2_slope_of_quadratic": solution_code(A1, "ex2_slope_of_quadratic").replace(
            "return x.grad", "return -x.grad"
        )
    }
    nbformat.write(student_notebook(A1, {"ex1_slope_of_square": DOUBLED, **solutions}), path)
    result = run_cli("check", path, cwd=tmp_path)
    assert result.returncode == 1
    assert re.search(r"twice the right one", result.stdout)
    assert re.search(r"wrong sign on every input", result.stdout)


def test_the_class_report(graded, tmp_path):
    course, grades, _ = graded
    result = run_cli("report", course / "grades.json", "--out", tmp_path / "report", cwd=course)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    with open(tmp_path / "report" / "exercises.csv") as stream:
        rows = {(r["assignment"], r["exercise"]): r for r in csv.DictReader(stream)}
    ex1 = rows[A1, "test_ex1_slope_of_square"]
    assert ex1["doubled"] == "1"  # the student who called backward() twice
    assert ex1["solved"] == "0"  # the canary fails everyone
    assert int(ex1["submissions"]) == 3
    assert "nobody solved" in result.stdout and "test_ex1_slope_of_square" in result.stdout
    solved = rows[A1, "test_ex2_slope_of_quadratic"]  # by ada alone, of three
    assert solved["solved"] == "1" and float(solved["mean_score"]) == pytest.approx(2 / 3, abs=0.01)


def test_report_refuses_a_file_that_is_not_grading_results(tmp_path):
    (tmp_path / "grades.json").write_text("[1, 2]")
    result = run_cli("report", tmp_path / "grades.json", cwd=tmp_path)
    assert result.returncode == 2
    assert "grades.json is not the JSON of `autograd-course grade --json`" in result.stderr
