"""Diagnoses where the exercise teaches the mistake: a student's realistic wrong answer gets the
message that names it, and a right answer none.

`autograd-course check` runs one notebook per assignment holding all of its wrong answers (the
other exercises solved); grading runs the solutions, hidden tests included; and the hidden
tests run here on the inputs of twenty students, each with inputs of their own.
"""

import json
import linecache
from typing import NamedTuple

import matplotlib
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

from autograder import CheckFailed, WrongValue, check_value, equal_to
from autograder.checks import STUDENT_KEY

matplotlib.use("Agg")


class Wrong(NamedTuple):
    assignment: str
    cell: str  # grade_id of the solution cell
    old: str  # text of the solution replaced ...
    new: str  # ... by this: what the student wrote
    test: str  # grade_id of the test cell that must name the mistake
    diagnosis: str  # the misconception's key
    says: str  # part of the message the student must see
    misleading: str  # what the message said before, which it must not (ending in "\n": its end)


WRONG = [
    Wrong(
        "01_basic_autograd",
        "ex4_leaf_and_intermediate",
        "    h.retain_grad()\n",
        "",
        "test_ex4_leaf_and_intermediate",
        "grad_not_retained",
        "Call h.retain_grad() before backward()",
        "was the tensor a leaf created with requires_grad=True?",
    ),
    Wrong(
        "04_vector_gradients",
        "ex4_vjp_from_jacobian",
        "J.T @ v",
        "J @ v",
        "test_ex4_vjp_from_jacobian",
        "jacobian_not_transposed",
        "Your answer is J @ v: the Jacobian is not transposed.",
        "is off at index 0 by a relative error of 3.0e+00 (allowed: 1e-04).\n",
    ),
    Wrong(
        "04_vector_gradients",
        "ex5_bowl_gradients",
        "tilted_bowl(P).sum()",
        "tilted_bowl(P).mean()",
        "test_ex5_bowl_gradients",
        "mean_over_points",
        "the gradients of the mean over the N points",
        "at index 1 ",
    ),
    Wrong(
        "05_gradient_accumulation",
        "ex1_two_backwards",
        "y.backward(retain_graph=True)\n",
        "y.backward(retain_graph=True)\n    x.grad.zero_()\n",
        "test_ex1_two_backwards",
        "cleared_between_backwards",
        "the gradient was cleared between the two backward() calls, so they did not add up",
        "A factor 2 is missing",
    ),
    Wrong(
        "05_gradient_accumulation",
        "ex2_grads_per_step",
        "grads.append(w.grad.item())",
        "grads.append(w.grad)",
        "test_ex2_grads_per_step",
        "recorded_the_grad_tensor",
        "Record a copy of its value: w.grad.item() (or w.grad.clone()).",
        "clear w.grad after recording it",
    ),
    Wrong(
        "05_gradient_accumulation",
        "ex4_descend",
        "        w.grad.zero_()\n",
        "",
        "test_ex4_descend",
        "never_cleared",
        "when w.grad is never cleared",
        "is off by a relative error of 8.5e-01 (allowed: 1e-04).\n",
    ),
]
ASSIGNMENTS = sorted({w.assignment for w in WRONG})


def answers(assignment, wrong=True):
    """Every solution cell of `assignment` solved, with its WRONG answers if `wrong`."""
    notebook = student_notebook(assignment)
    cells = [
        c.metadata.nbgrader["grade_id"]
        for c in notebook.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    ]
    code = {cell: solution_code(assignment, cell) for cell in cells}
    for mistake in WRONG:
        if wrong and mistake.assignment == assignment:
            assert mistake.old in code[mistake.cell], f"{mistake} no longer fits the solution"
            code[mistake.cell] = code[mistake.cell].replace(mistake.old, mistake.new)
    return student_notebook(assignment, code)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return copy_course(tmp_path_factory.mktemp("course"))


def message_of(output, test):
    """The indented message lines under `FAILED  <test>` in check's output."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"FAILED  {test} "))
    message = []
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        message.append(line.strip())
    return " ".join(message) + "\n"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_check_names_each_mistake_and_passes_the_rest(course, assignment):
    path = course / f"{assignment}.ipynb"
    nbformat.write(answers(assignment), path)
    result = run_cli("check", path, cwd=course)
    assert result.returncode == 1, result.stdout + result.stderr
    wrong = [w for w in WRONG if w.assignment == assignment]
    for mistake in wrong:
        message = message_of(result.stdout, mistake.test)
        assert mistake.says in message, message
        assert mistake.misleading not in message, message
    failed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("FAILED")}
    assert failed == {w.test for w in wrong}, result.stdout


def test_grading_passes_the_right_answers_undiagnosed(course):
    for assignment in ASSIGNMENTS:
        write_submission(course / "right", "solver", assignment, answers(assignment, False))
    result = run_cli("grade", "right", "--json", "right.json", cwd=course)
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = json.loads((course / "right.json").read_text())["students"]["solver"]
    for assignment in ASSIGNMENTS:
        assert outcomes[assignment]["error"] is None
        for grade_id, test in outcomes[assignment]["tests"].items():
            assert test["passed"] and test["diagnosis"] is None, (assignment, grade_id, test)


def run_cells(namespace, name, source):
    # what IPython does, so that the checks can read the source of the functions defined
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    exec(compile(source, name, "exec"), namespace)


def hidden_tests(assignment, grade_id):
    """The code between the test cell's hidden-test markers."""
    notebook = nbformat.read(notebook_path("source", assignment), as_version=4)
    (cell,) = [
        c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    ]
    return cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_hidden_tests_name_each_mistake_for_every_student_and_pass_the_solution(assignment):
    """Each student's hidden inputs are their own (random_inputs mixed with their key): on
    twenty students' inputs, the wrong answer is named and the solution passes undiagnosed."""
    namespace = {"__name__": "__main__"}
    notebook = nbformat.read(notebook_path("source", assignment), as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            run_cells(namespace, f"<{assignment} cell {index}>", cell.source)
    matplotlib.pyplot.close("all")
    for mistake in (w for w in WRONG if w.assignment == assignment):
        right = solution_code(assignment, mistake.cell)
        hidden = hidden_tests(assignment, mistake.test)
        for student in range(20):
            token = STUDENT_KEY.set(f"student {student}".encode())
            try:
                run_cells(namespace, f"<{mistake.cell} right>", right)
                run_cells(namespace, f"<{mistake.test} hidden>", hidden)
                run_cells(
                    namespace, f"<{mistake.cell} wrong>", right.replace(mistake.old, mistake.new)
                )
                with pytest.raises(CheckFailed) as failure:
                    run_cells(namespace, f"<{mistake.test} hidden>", hidden)
            finally:
                STUDENT_KEY.reset(token)
            assert failure.value.diagnosis == mistake.diagnosis, str(failure.value)
            assert mistake.says in failure.value.hidden, failure.value.hidden


def test_check_value_names_a_mistake_only_where_it_tells_the_answer_from_the_right_one():
    one_pass = WrongValue("one_pass", equal_to(4.0), "One backward() ran.", "Run two.")
    with pytest.raises(CheckFailed) as failure:
        check_value("x.grad", 4.0, 8.0, mistakes=[one_pass])
    assert failure.value.diagnosis == "one_pass"
    assert str(failure.value).endswith("One backward() ran. Run two.")
    # a hair off the right value, which this "mistake" also gives: no diagnosis
    with pytest.raises(CheckFailed) as failure:
        check_value("x.grad", 4.001, 4.0, mistakes=[one_pass])
    assert failure.value.diagnosis is None


def test_a_diagnosed_none_is_not_also_blamed_on_a_missing_leaf():
    not_retained = WrongValue("grad_not_retained", lambda answer: answer is None, "h.", "Retain.")
    with pytest.raises(CheckFailed) as failure:
        check_value("h.grad", None, 6.0, mistakes=[not_retained])
    assert str(failure.value) == "h.grad is None: no gradient arrived. h. Retain."
    with pytest.raises(CheckFailed, match="was the tensor a leaf"):
        check_value("x.grad", None, 6.0)
