"""`autograd-course grade` with the real nbgrader and real kernels, on a class of submissions.

One grading run covers the whole class (kernels are slow to start); each test reads its part.
"""

import json
import os
import re
import subprocess
import sys

import nbformat
import pytest
from conftest import (
    ASSIGNMENTS,
    REPO,
    copy_course,
    notebook_path,
    run_cli,
    student_notebook,
    write_submission,
)
from nbgrader.api import Gradebook

from autograder.misconceptions import BY_KEY

# Diagnoses that exercises declare in their test cells (Mistake, WrongValue), besides the catalogue.
EXERCISE_DIAGNOSES = {
    key
    for path in (REPO / "source").glob("*/*.ipynb")
    for cell in nbformat.read(path, as_version=4).cells
    for key in re.findall(r'(?:Mistake|WrongValue)\(\s*"(\w+)"', cell.source)
}

A1, A2 = "01_basic_autograd", "02_chain_rule"

# Typical mistakes, as a student would write them in the solution cells.
SIGN_FLIPPED = """
def slope_of_quadratic(x0):
    x = torch.tensor(x0, requires_grad=True)
    y = x**2 + 3 * x + 1
    y.backward()
    return -x.grad
"""
NO_RETAIN_GRAD = """
def leaf_and_intermediate_grads(x0):
    x = torch.tensor(x0, requires_grad=True)
    h = 3 * x
    z = h**2
    z.backward()
    return x.grad, h.grad
"""
MISSING_CHAIN_FACTOR = """
def sin_square_grad_by_hand(x0):
    return math.cos(x0**2)
"""
SUM_NOT_MEAN = """
def mean_square_grad_by_hand(values):
    return 6 * (torch.tensor(values) + 2)
"""
AUTOGRAD_IN_BY_HAND = {
    "ex1_sin_square_by_hand": """
def sin_square_grad_by_hand(x0):
    x = torch.tensor(x0, requires_grad=True)
    torch.sin(x**2).backward()
    return x.grad
""",
    "ex3_cubic_by_hand": """
def cubic_grad_by_hand(x0):
    x = torch.tensor(x0, requires_grad=True)
    (2 * x**3 + 1).backward()
    return x.grad
""",
    "ex4_mean_square_by_hand": """
def mean_square_grad_by_hand(values):
    x = torch.tensor(values, requires_grad=True)
    (3 * (x + 2) ** 2).mean().backward()
    return x.grad
""",
}
# The worked examples' inputs baked in: right on the visible test, wrong anywhere else.
HARD_CODED_SEED_INPUTS = {
    "ex1_slope_of_square": """
def slope_of_square(x0):
    x = torch.tensor(3.0, requires_grad=True)
    (x**2).backward()
    return x.grad
""",
    "ex2_slope_of_quadratic": """
def slope_of_quadratic(x0):
    x = torch.tensor(2.0, requires_grad=True)
    (x**2 + 3 * x + 1).backward()
    return x.grad
""",
}


def source_notebook(assignment):
    return nbformat.read(notebook_path("source", assignment), as_version=4)


def solutions(assignment):
    return {
        c.metadata.nbgrader["grade_id"]: c.source
        for c in source_notebook(assignment).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }


def edited_test_cell(assignment, grade_id, new_source):
    notebook = source_notebook(assignment)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = new_source
    return notebook


def without_cell(assignment, grade_id):
    notebook = source_notebook(assignment)
    notebook.cells = [
        c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id
    ]
    return notebook


def build_class(submissions):
    for assignment in ASSIGNMENTS:
        write_submission(submissions, "ada", assignment, source_notebook(assignment))
        write_submission(submissions, "stub", assignment, student_notebook(assignment))
    write_submission(
        submissions,
        "partial",
        A1,
        student_notebook(
            A1,
            {
                "ex1_slope_of_square": solutions(A1)["ex1_slope_of_square"],
                "ex2_slope_of_quadratic": SIGN_FLIPPED,
                "ex3_derivative_at": solutions(A1)["ex3_derivative_at"],
                "ex4_leaf_and_intermediate": NO_RETAIN_GRAD,
            },
        ),
    )
    write_submission(
        submissions,
        "partial",
        A2,
        student_notebook(
            A2,
            {
                **solutions(A2),
                "ex1_sin_square_by_hand": MISSING_CHAIN_FACTOR,
                "ex4_mean_square_by_hand": SUM_NOT_MEAN,
            },
        ),
    )
    write_submission(
        submissions, "byhand", A2, student_notebook(A2, {**solutions(A2), **AUTOGRAD_IN_BY_HAND})
    )
    write_submission(
        submissions,
        "hardcoded",
        A1,
        student_notebook(A1, {**solutions(A1), **HARD_CODED_SEED_INPUTS}),
    )
    # Test cells tampered with: nbgrader restores them from the source before running.
    write_submission(
        submissions, "edited", A1, edited_test_cell(A1, "test_ex5_tangent_line", "pass")
    )
    write_submission(submissions, "deleted", A2, without_cell(A2, "test_ex5_graph_ops"))
    # Files that are not gradable notebooks of this assignment.
    bad = {
        "notjson": b"{ not json",
        "notnotebook": json.dumps(["a", "list"]).encode(),
        "nbformat3": json.dumps(
            {"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}
        ).encode(),
        "latin1": '{"cells": [], "note": "caf\xe9"}'.encode("latin-1"),
        "wrongassignment": nbformat.writes(source_notebook(A2)).encode(),
    }
    for student, content in bad.items():
        (submissions / student / A1).mkdir(parents=True)
        (submissions / student / A1 / f"{A1}.ipynb").write_bytes(content)
    missing = submissions / "missing" / A1
    missing.mkdir(parents=True)
    (missing / "my_answers.ipynb").write_text(nbformat.writes(source_notebook(A1)))
    write_submission(submissions, "bad name!", A1, source_notebook(A1))
    os.symlink(submissions / "ada", submissions / "linked")
    # Collected through nbgrader's exchange: a timestamp and a secret beside the notebook.
    (submissions / "ada" / A1 / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")
    (submissions / "ada" / A1 / "submission_secret.txt").write_text("0123456789abcdef")


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """The course graded once: (course dir, JSON results, CLI result)."""
    course = copy_course(tmp_path_factory.mktemp("course"))
    submissions = course / "submissions"
    build_class(submissions)
    result = run_cli("grade", "submissions", "--json", "grades.json", cwd=course)
    assert result.returncode == 0, result.stdout + result.stderr
    return course, json.loads((course / "grades.json").read_text())["students"], result


def scores(outcome):
    return {grade_id: test["score"] for grade_id, test in outcome["tests"].items()}


def test_solutions_get_full_marks(graded):
    _, results, _ = graded
    for assignment in ASSIGNMENTS:
        outcome = results["ada"][assignment]
        assert outcome["error"] is None
        assert outcome["score"] == outcome["max_score"] > 0
        assert all(test["passed"] for test in outcome["tests"].values())


def test_unchanged_release_gets_zero_and_no_test_passes(graded):
    _, results, _ = graded
    for assignment in ASSIGNMENTS:
        outcome = results["stub"][assignment]
        assert outcome["score"] == 0
        assert not any(test["passed"] for test in outcome["tests"].values())
        assert all("not written yet" in test["message"] for test in outcome["tests"].values())


def test_plausible_wrong_work_gets_partial_marks_with_failing_tests_named(graded):
    _, results, _ = graded
    one = results["partial"][A1]
    assert scores(one) == {
        "test_ex1_slope_of_square": 2,
        "test_ex2_slope_of_quadratic": 0,
        "test_ex3_derivative_at": 2,
        "test_ex4_leaf_and_intermediate": 0,
        "test_ex5_tangent_line": 0,
    }
    assert one["score"] == 4 and one["max_score"] == 10
    assert "relative error" in one["tests"]["test_ex2_slope_of_quadratic"]["message"]
    assert "is None" in one["tests"]["test_ex4_leaf_and_intermediate"]["message"]
    two = results["partial"][A2]
    assert scores(two) == {
        "test_ex1_sin_square_by_hand": 0,
        "test_ex2_sin_square_autograd": 2,
        "test_ex3_cubic_by_hand": 2,
        "test_ex4_mean_square_by_hand": 0,
        "test_ex5_graph_ops": 2,
    }


def test_autograd_in_a_by_hand_exercise_loses_exactly_those_points(graded):
    _, results, _ = graded
    outcome = results["byhand"][A2]
    assert scores(outcome) == {
        "test_ex1_sin_square_by_hand": 0,
        "test_ex2_sin_square_autograd": 2,
        "test_ex3_cubic_by_hand": 0,
        "test_ex4_mean_square_by_hand": 0,
        "test_ex5_graph_ops": 2,
    }
    assert "uses autograd" in outcome["tests"]["test_ex1_sin_square_by_hand"]["message"]


def test_hard_coded_worked_examples_fail_the_hidden_random_inputs(graded):
    _, results, _ = graded
    outcome = results["hardcoded"][A1]
    assert outcome["tests"]["test_ex1_slope_of_square"]["score"] == 0
    assert outcome["tests"]["test_ex2_slope_of_quadratic"]["score"] == 0
    assert outcome["score"] == 6


def test_edited_and_deleted_test_cells_are_restored_and_graded(graded):
    _, results, _ = graded
    edited = results["edited"][A1]
    assert edited["score"] == 10
    assert "had been edited" in edited["tests"]["test_ex5_tangent_line"]["message"]
    deleted = results["deleted"][A2]
    assert deleted["score"] == 12
    assert "was missing" in deleted["tests"]["test_ex5_graph_ops"]["message"]


@pytest.mark.parametrize(
    ("student", "message"),
    [
        ("notjson", f"{A1}.ipynb is not valid JSON"),
        ("notnotebook", f"{A1}.ipynb is JSON but not a Jupyter notebook"),
        ("nbformat3", "notebook format 3"),
        ("latin1", "is not UTF-8 text"),
        ("wrongassignment", f"is the notebook of assignment {A2}, not {A1}"),
        ("bad name!", "is not a valid student id"),
        ("linked", "symbolic link"),
    ],
)
def test_bad_submissions_get_their_own_clear_error(graded, student, message):
    _, results, cli = graded
    outcome = results[student][A1]
    assert message in outcome["error"]
    assert outcome["score"] == 0 and outcome["max_score"] == 10
    assert message in cli.stdout, "the table lists the problem too"


def test_the_only_notebook_under_another_name_is_graded_as_the_right_one(graded):
    _, results, _ = graded
    outcome = results["missing"][A1]
    assert outcome["score"] == 10
    assert (
        outcome["error"] == f"my_answers.ipynb was graded as {A1}.ipynb, the notebook it should be"
    )


def test_json_matches_the_contract(graded):
    _, results, _ = graded
    for outcomes in results.values():
        for outcome in outcomes.values():
            assert set(outcome) == {"score", "max_score", "error", "tests"}
            assert isinstance(outcome["score"], float) and isinstance(outcome["max_score"], float)
            assert outcome["error"] is None or isinstance(outcome["error"], str)
            assert outcome["score"] == sum(t["score"] for t in outcome["tests"].values())
            for test in outcome["tests"].values():
                assert set(test) == {
                    "score",
                    "max_score",
                    "passed",
                    "message",
                    "diagnosis",
                    "manual",
                    "comment",
                }
                assert test["manual"] is False and test["comment"] is None  # nobody graded
                assert isinstance(test["passed"], bool) and isinstance(test["message"], str)
                known = test["diagnosis"] in BY_KEY or test["diagnosis"] in EXERCISE_DIAGNOSES
                assert test["diagnosis"] is None or known


def test_table_and_feedback_and_gradebook(graded):
    course, _, cli = graded
    assert "ada" in cli.stdout and "10/10" in cli.stdout and "12/12" in cli.stdout
    for assignment in ASSIGNMENTS:
        assert (course / "feedback" / "ada" / assignment / f"{assignment}.html").is_file()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        students = {student.id for student in gradebook.students}
    assert {"ada", "stub", "partial", "byhand"} <= students


def with_tools_on_path():
    """The environment, with this Python's scripts first on PATH (nbgrader runs alembic)."""
    scripts = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}


def test_feedback_can_be_released_through_nbgrader(graded, tmp_path):
    course, _, _ = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        submitted = gradebook.find_submission(A1, "ada").timestamp
    assert submitted.isoformat().startswith("2026-11-20T10:00:00")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    released = subprocess.run(
        [sys.executable, "-m", "nbgrader", "release_feedback", A1, "--student", "ada"]
        + [f"--Exchange.root={exchange}"],
        cwd=course,
        capture_output=True,
        text=True,
        env=with_tools_on_path(),
    )
    assert released.returncode == 0, released.stderr
    assert list((exchange / "autograd-course" / "feedback").glob("*.html"))


def test_plain_nbgrader_autograde_still_works_on_the_notebooks(graded, tmp_path):
    """Test cells keep an in-notebook verdict: nbgrader itself grades the solution in full."""
    course, _, _ = graded
    submitted = course / "submitted" / "plain" / A1
    submitted.mkdir(parents=True)
    nbformat.write(source_notebook(A1), submitted / f"{A1}.ipynb")
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "autograde", A1, "--student", "plain", "--force"],
        cwd=course,
        capture_output=True,
        text=True,
        env=with_tools_on_path(),
    )
    assert done.returncode == 0, done.stderr
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission(A1, "plain").score == 10.0


def test_nothing_already_graded_is_lost_when_a_later_submission_is_broken(tmp_path):
    course = copy_course(tmp_path / "course")
    first = tmp_path / "first"
    write_submission(first, "kim", A1, source_notebook(A1))
    assert run_cli("grade", first, "--assignment", A1, cwd=course).returncode == 0
    second = tmp_path / "second"
    (second / "kim" / A1).mkdir(parents=True)
    (second / "kim" / A1 / f"{A1}.ipynb").write_text("garbage")
    result = run_cli("grade", second, "--assignment", A1, "--json", "again.json", cwd=course)
    assert result.returncode == 0
    assert (
        "not valid JSON"
        in json.loads((course / "again.json").read_text())["students"]["kim"][A1]["error"]
    )
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        total = gradebook.find_submission(A1, "kim").score
    assert total == 10


@pytest.mark.parametrize(
    ("args", "where", "message"),
    [
        (["grade", "no_such_folder"], "course", "no_such_folder is not a folder of submissions"),
        (["grade", "."], "elsewhere", "is not a course directory"),
        (["grade", ".", "--assignment", "99_nope"], "course", "no assignment called 99_nope"),
    ],
)
def test_instructor_side_problems_exit_non_zero_with_a_message(tmp_path, args, where, message):
    course = copy_course(tmp_path / "course")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli(*args, cwd=course if where == "course" else elsewhere)
    assert result.returncode == 2
    assert message in result.stderr
