"""Tests that test the tests: every typical mistake costs exactly the points it should."""

import json

import pytest
from conftest import (
    ASSIGNMENTS,
    copy_course,
    run_cli,
    solution_code,
    student_notebook,
    write_submission,
)
from mutants import MUTANTS


def solution_cells(assignment):
    notebook = student_notebook(assignment)
    return [
        c.metadata.nbgrader["grade_id"]
        for c in notebook.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    ]


def mutant_notebook(mutant):
    answers = {
        cell: solution_code(mutant.assignment, cell) for cell in solution_cells(mutant.assignment)
    }
    assert mutant.old in answers[mutant.cell], (
        f"mutant {mutant.mistake!r} no longer matches the solution"
    )
    answers[mutant.cell] = answers[mutant.cell].replace(mutant.old, mutant.new)
    return student_notebook(mutant.assignment, answers)


def student_id(mutant):
    return f"mutant{MUTANTS.index(mutant):02d}"


@pytest.fixture(scope="session")
def graded_mutants(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    for mutant in MUTANTS:
        write_submission(
            course / "mutants", student_id(mutant), mutant.assignment, mutant_notebook(mutant)
        )
    result = run_cli("grade", "mutants", "--json", "mutants.json", cwd=course)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((course / "mutants.json").read_text())["students"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_assignment_has_at_least_four_mutants(assignment):
    assert sum(m.assignment == assignment for m in MUTANTS) >= 4


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: f"{m.assignment}-{m.mistake}")
def test_mutant_loses_exactly_the_points_of_what_it_breaks(graded_mutants, mutant):
    outcome = graded_mutants[student_id(mutant)][mutant.assignment]
    assert outcome["error"] is None
    assert mutant.breaks <= set(outcome["tests"]), "the mutant names test cells that do not exist"
    for grade_id, test in outcome["tests"].items():
        if grade_id in mutant.breaks:
            assert test["score"] == 0 and not test["passed"], (
                f"{grade_id} did not catch: {mutant.mistake}"
            )
            assert test["message"], "a failed test explains itself"
            if mutant.diagnosis:
                assert test["diagnosis"] == mutant.diagnosis, test["message"]
        else:
            assert test["score"] == test["max_score"], f"{grade_id} failed: {test['message']}"
