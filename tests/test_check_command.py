"""`autograd-course check`: a student's self-check before submitting."""

import shutil
import subprocess
import sys
from pathlib import Path

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


def broken_notebook(tmp_path, answers, edit_tests=None):
    """The released 02 notebook with `answers` in its solution cells and `edit_tests`
    ({grade_id: new source, or None to delete the cell}) done to its test cells."""
    notebook = student_notebook(ASSIGNMENT, answers)
    for grade_id, source in (edit_tests or {}).items():
        index = next(
            i
            for i, cell in enumerate(notebook.cells)
            if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id
        )
        if source is None:
            del notebook.cells[index]
        else:
            notebook.cells[index].source = source
    path = tmp_path / f"{ASSIGNMENT}.ipynb"
    nbformat.write(notebook, path)
    return path


def solved(*grade_ids):
    return {grade_id: solution_code(ASSIGNMENT, grade_id) for grade_id in grade_ids}


def test_a_cell_that_hangs_crashes_or_does_not_parse_costs_only_its_exercise(tmp_path):
    answers = solved("ex2_sin_square_autograd", "ex4_mean_square_by_hand", "ex5_graph_ops")
    answers["ex1_sin_square_by_hand"] = "while True:\n    pass"
    answers["ex3_cubic_by_hand"] = "def cubic_grad_by_hand(x)\n    return 6 * x**2"
    answers["ex2_sin_square_autograd"] += "\nimport os\nos._exit(0)"
    path = broken_notebook(tmp_path, answers)
    result = run_cli("check", "--timeout", "3", path, cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert "FAILED  test_ex1_sin_square_by_hand" in out
    assert "Timed out after 3 s in cell" in out
    assert "FAILED  test_ex3_cubic_by_hand" in out
    assert "SyntaxError in cell" in out and ", line 1: expected ':'" in out
    # The worker it ended is replaced; the function its cell defined before os._exit is lost.
    assert "The Python process running the notebook ended in cell" in out
    assert "passed  test_ex4_mean_square_by_hand" in out
    assert "passed  test_ex5_graph_ops" in out


def test_memory_exhaustion_costs_only_its_exercise(tmp_path):
    answers = solved("ex1_sin_square_by_hand", "ex2_sin_square_autograd")
    answers["ex3_cubic_by_hand"] = "hoard = bytearray(64 * 2**30)"
    path = broken_notebook(tmp_path, answers)
    result = run_cli("check", path, cwd=tmp_path)
    assert result.returncode == 1
    assert "passed  test_ex1_sin_square_by_hand" in result.stdout
    assert "passed  test_ex2_sin_square_autograd" in result.stdout
    assert "FAILED  test_ex3_cubic_by_hand" in result.stdout
    assert "MemoryError in cell" in result.stdout


def test_edited_and_deleted_test_cells_are_named_and_the_released_ones_run(tmp_path):
    answers = {"ex1_sin_square_by_hand": "def sin_square_grad_by_hand(x):\n    return 0.0"}
    answers |= solved("ex2_sin_square_autograd")
    path = broken_notebook(
        tmp_path,
        answers,
        {"test_ex1_sin_square_by_hand": "pass", "test_ex2_sin_square_autograd": None},
    )
    result = run_cli("check", path, cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 1
    assert "test cell test_ex1_sin_square_by_hand was changed; the released one was used." in out
    assert "test cell test_ex2_sin_square_autograd is missing; the released one was used." in out
    assert "FAILED  test_ex1_sin_square_by_hand" in out
    assert "passed  test_ex2_sin_square_autograd" in out


def test_validate_gives_the_check_verdicts_message_first(tmp_path):
    answers = {"ex1_sin_square_by_hand": "def sin_square_grad_by_hand(x)\n    return 0.0"}
    answers |= solved("ex2_sin_square_autograd")
    path = broken_notebook(tmp_path, answers)
    shutil.copy(REPO / "nbgrader_config.py", tmp_path)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "nbgrader"), "validate", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    out = result.stdout
    failures = out.split("The following cell failed:")[1:]
    assert len(failures) == 4, out + result.stderr  # ex1 and the three not written
    first = failures[0].split("The error was:")
    assert first[0].strip() == "Test test_ex1_sin_square_by_hand (3 points)"
    assert first[1].strip().startswith("SyntaxError in cell")
    assert "Test test_ex2_sin_square_autograd" not in out


def test_where_workers_cannot_be_forked_they_are_spawned(tmp_path):
    from autograder.check import check
    from autograder.sandbox import Limits
    from autograder.worker import Spawner

    answers = solved("ex1_sin_square_by_hand", "ex4_mean_square_by_hand")
    answers["ex2_sin_square_autograd"] = "while True:\n    pass"
    path = broken_notebook(tmp_path, answers)
    report = check(path, limits=Limits(seconds=10), workers=Spawner)
    verdicts = {result.grade_id: result for result in report.results}
    assert verdicts["test_ex1_sin_square_by_hand"].passed
    assert verdicts["test_ex4_mean_square_by_hand"].passed
    assert verdicts["test_ex2_sin_square_autograd"].message.startswith("Timed out after 10 s")
    assert not verdicts["test_ex3_cubic_by_hand"].passed
