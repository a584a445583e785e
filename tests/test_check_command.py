"""`autograd-course check`: a student's self-check before submitting."""

import nbformat
from conftest import REPO, run_cli, solution_code, student_notebook

ASSIGNMENT = "02_chain_rule"


def test_release_notebook_fails_every_exercise_with_a_teaching_message(tmp_path):
    result = run_cli("check", REPO / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", cwd=tmp_path)
    assert result.returncode == 1
    assert "0 passed, 5 failed" in result.stdout
    assert "sin_square_grad_by_hand is not written yet" in result.stdout


def test_finished_notebook_passes(tmp_path):
    result = run_cli("check", REPO / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed, 0 failed" in result.stdout


def test_partly_done_notebook_names_what_fails_and_why(tmp_path):
    notebook = student_notebook(
        ASSIGNMENT,
        {
            "ex1_sin_square_by_hand": solution_code(ASSIGNMENT, "ex2_sin_square_autograd").replace(
                "sin_square_grad_autograd", "sin_square_grad_by_hand"
            ),
            "ex2_sin_square_autograd": solution_code(ASSIGNMENT, "ex2_sin_square_autograd"),
        },
    )
    path = tmp_path / "work.ipynb"
    nbformat.write(notebook, path)
    result = run_cli("check", path, cwd=tmp_path)
    assert result.returncode == 1
    assert "passed  test_ex2_sin_square_autograd" in result.stdout
    assert "FAILED  test_ex1_sin_square_by_hand" in result.stdout
    assert "must work the gradient out by hand, but it uses autograd" in result.stdout


def test_a_file_that_is_not_a_notebook_is_named_in_the_error(tmp_path):
    path = tmp_path / "homework.ipynb"
    path.write_text("{ this is not json")
    result = run_cli("check", path, cwd=tmp_path)
    assert result.returncode == 2
    assert "homework.ipynb is not valid JSON" in result.stderr
