"""Changing an assignment after grading: `release` and `grade` again, through the real CLI.

A course of two assignments (01 and 02, so that one comes after the one that changes) is graded
once; each test edits a copy of it and releases and grades that copy again.
"""

import json
import shutil

import nbformat
import pytest
from conftest import copy_course, run_cli, solution_code, student_notebook, write_submission
from nbgrader.api import Gradebook

FIRST, SECOND = "01_basic_autograd", "02_chain_rule"
SOLUTIONS = ["ex1_slope_of_square", "ex2_slope_of_quadratic", "ex3_derivative_at"]
# Right on every input the hidden tests use today (|x0| <= 5), wrong beyond 10.
CLAMPED_SLOPE = """def slope_of_square(x0):
    x = torch.tensor(min(x0, 10.0), requires_grad=True)
    (x**2).backward()
    return x.grad
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A course with 01 and 02 released and a class graded: alice solved 01's first three
    exercises, bob too but with a slope that is wrong for large inputs."""
    course = copy_course(tmp_path_factory.mktemp("graded") / "course")
    for folder in [*(course / "source").iterdir(), *(course / "release").iterdir()]:
        if folder.name not in (FIRST, SECOND):
            shutil.rmtree(folder)
    answers = {gid: solution_code(FIRST, gid) for gid in SOLUTIONS}
    submissions = course / "submitted"
    write_submission(submissions, "alice", FIRST, student_notebook(FIRST, answers))
    bobs = {**answers, "ex1_slope_of_square": CLAMPED_SLOPE}
    write_submission(submissions, "bob", FIRST, student_notebook(FIRST, bobs))
    result = run_cli("grade", "submitted", "--json", "grades.json", cwd=course)
    assert result.returncode == 0, result.stderr
    tests = json.loads((course / "grades.json").read_text())["students"]["bob"][FIRST]["tests"]
    assert tests["test_ex1_slope_of_square"]["passed"], "bob's slope passes today's hidden tests"
    return course


@pytest.fixture
def course(graded, tmp_path):
    return shutil.copytree(graded, tmp_path / "course")


def edit_source(course, assignment, change):
    """Apply `change(cells)` to the source notebook of `assignment`."""
    path = course / "source" / assignment / f"{assignment}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    change(notebook.cells)
    nbformat.write(notebook, path)


def cell(cells, grade_id):
    return next(c for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def add_text(cells, text):
    next(c for c in cells if c.cell_type == "markdown").source += f"\n\n{text}"


def score_in_gradebook(course, student, grade_id):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as book:
        return book.find_grade(grade_id, FIRST, FIRST, student).score


def grades(course):
    result = run_cli("grade", "submitted", "--json", "grades.json", cwd=course)
    assert result.returncode == 0, result.stderr
    return json.loads((course / "grades.json").read_text())["students"]


def released_text(course, assignment):
    return (course / "release" / assignment / f"{assignment}.ipynb").read_text()


def line_about(output, assignment):
    """The one line of `output` about `assignment`."""
    lines = [line for line in output.splitlines() if assignment in line]
    assert len(lines) == 1, output
    return lines[0]


def test_edited_text_and_tests_are_released_and_regrading_applies_them(course):
    def edit(cells):
        add_text(cells, "A sentence added after grading.")
        visible = cell(cells, "test_ex2_slope_of_quadratic")
        visible.source = visible.source.replace(
            "### BEGIN HIDDEN TESTS",
            "check_gradient(slope_of_quadratic, lambda x: x**2 + 3 * x + 1, [-1.5])\n"
            "### BEGIN HIDDEN TESTS",
        )
        hidden = cell(cells, "test_ex1_slope_of_square")  # stricter: a large input too
        hidden.source = hidden.source.replace(
            "### END HIDDEN TESTS",
            "check_gradient(slope_of_square, lambda x: x**2, [100.0])\n### END HIDDEN TESTS",
        )

    edit_source(course, FIRST, edit)
    result = run_cli("release", cwd=course)
    assert result.returncode == 0, result.stderr
    said = line_about(result.stdout, FIRST)
    assert "the tests of test_ex1_slope_of_square, test_ex2_slope_of_quadratic" in said
    assert "the notebook students get" in said
    assert (
        "the scores of its 2 submissions in the gradebook stay as they are until you grade again"
        in said
    )
    assert line_about(result.stdout, SECOND) == f"{SECOND}: released, unchanged."
    released = released_text(course, FIRST)
    assert "A sentence added after grading." in released and "[-1.5]" in released
    assert "[100.0]" not in released, "hidden tests stay hidden"
    assert score_in_gradebook(course, "bob", "test_ex1_slope_of_square") == 2.0

    regraded = grades(course)
    assert regraded["bob"][FIRST]["tests"]["test_ex1_slope_of_square"]["score"] == 0.0
    assert regraded["alice"][FIRST]["tests"]["test_ex1_slope_of_square"]["score"] == 2.0
    assert score_in_gradebook(course, "bob", "test_ex1_slope_of_square") == 0.0


def test_changed_points_change_the_maximum(course):
    edit_source(
        course,
        FIRST,
        lambda cells: cell(cells, "test_ex3_derivative_at").metadata.nbgrader.update(points=4),
    )
    result = run_cli("release", cwd=course)
    assert result.returncode == 0, result.stderr
    said = line_about(result.stdout, FIRST)
    assert "test_ex3_derivative_at is worth 4 points (was 2)" in said
    assert "it is now out of 12 (was 10)" in said
    alice = grades(course)["alice"][FIRST]
    assert (alice["score"], alice["max_score"]) == (8.0, 12.0)


def rename(cells):
    cell(cells, "test_ex1_slope_of_square").metadata.nbgrader["grade_id"] = "test_ex1_renamed"


def remove(cells):
    cells.remove(cell(cells, "test_ex1_slope_of_square"))


@pytest.mark.parametrize("change", [rename, remove], ids=["renamed", "removed"])
def test_a_graded_cell_renamed_or_removed_is_refused_and_nothing_is_lost(course, change):
    before = released_text(course, FIRST)
    edit_source(course, FIRST, change)
    edit_source(course, SECOND, lambda cells: add_text(cells, "Edited too."))
    result = run_cli("release", cwd=course)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    refusal = line_about(result.stderr, FIRST)
    assert "no longer has cell test_ex1_slope_of_square" in refusal
    assert "give the cells back their grade_ids" in refusal
    assert f"`nbgrader db assignment remove {FIRST} --force`" in refusal
    assert released_text(course, FIRST) == before, "release/ is left as it was"
    assert "Edited too." in released_text(course, SECOND), "the next assignment is released"
    assert score_in_gradebook(course, "bob", "test_ex1_slope_of_square") == 2.0

    result = run_cli("grade", "submitted", cwd=course)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert line_about(result.stderr, FIRST) == f"autograd-course grade: {refusal.split(': ', 1)[1]}"


def test_an_assignment_nbgrader_rejects_leaves_release_alone_and_the_others_go(course):
    before = released_text(course, FIRST)

    def break_solution(cells):
        solution = cell(cells, "ex1_slope_of_square")
        solution.source = solution.source.replace("### END SOLUTION", "")

    edit_source(course, FIRST, break_solution)
    edit_source(course, SECOND, lambda cells: add_text(cells, "Edited too."))
    result = run_cli("release", cwd=course)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    refusal = line_about(result.stderr, FIRST)
    assert refusal.startswith(f"autograd-course release: {FIRST} cannot be released: nbgrader says")
    assert "no end solution statement found" in refusal
    assert released_text(course, FIRST) == before
    assert "Edited too." in released_text(course, SECOND)
