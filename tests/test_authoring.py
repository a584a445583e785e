"""Adding an assignment is what the README's authors' section says: `autograd-course new`, then
the checks of `make test` pass with no change to the code; the tables of assignments are
generated from the notebooks."""

import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, run_cli

from autograder.author import check_new_name, stale_tables, tables
from autograder.course import CourseError
from autograder.edition import student_readme

NEW = "99_scaffold_demo"  # a number no assignment or lecture has


def test_readme_and_syllabus_tables_match_the_notebooks():
    assert set(tables(REPO)) == {REPO / "README.md", REPO / "course" / "README.md"}
    stale = [str(path.relative_to(REPO)) for path in stale_tables(REPO)]
    assert not stale, f"{stale}: the table of assignments is stale: run `make release`"


@pytest.mark.parametrize(
    "name, says",
    [
        ("08_more_checks", "number 08 is taken by course/08_gradient_checking.ipynb"),
        ("07_loops", "number 07 is taken by source/07_training_loop and course/07_training_loop"),
        ("9_jacobians", "'9_jacobians' is not a valid assignment name"),
        ("09_Jacobians", "'09_Jacobians' is not a valid assignment name"),
        ("09_jacobians.ipynb", "not a valid assignment name"),
    ],
)
def test_new_refuses_a_taken_number_or_a_malformed_name(name, says):
    with pytest.raises(CourseError, match=re.escape(says)):
        check_new_name(REPO, name)


def test_a_refused_name_is_one_sentence_and_writes_nothing(tmp_path):
    copy_parts(["nbgrader_config.py", "source", "course"], tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = run_cli("new", "08_more_checks", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("autograd-course new: number 08 is taken")
    assert result.stderr.count("\n") == 1 and result.stderr.count(". ") == 0
    assert sorted(tmp_path.rglob("*")) == before


def copy_parts(parts, destination):
    """Copy these files and folders of the repository to the same places under destination."""
    for part in parts:
        (destination / part).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy
        copy(REPO / part, destination / part)


def course_without_code(destination):
    """The course without its assignments (grading theirs is the other tests' work), with every
    lecture, the README and the tests `make test` runs on an assignment; and no autograder/,
    so nothing there can be changed."""
    tests = ["conftest.py", "mutants.py", "test_release.py", "test_mutants.py", "test_authoring.py"]
    copy_parts(
        ["nbgrader_config.py", "pyproject.toml", "README.md", "course"]
        + [f"tests/{test}" for test in tests],
        destination,
    )
    (destination / "source").mkdir()
    return destination


def test_a_scaffolded_assignment_passes_make_tests_checks_with_no_code_change(tmp_path):
    course = course_without_code(tmp_path)
    created = run_cli("new", NEW, cwd=course)
    assert created.returncode == 0, created.stderr
    written = [
        f"source/{NEW}/{NEW}.ipynb",
        f"course/{NEW}.ipynb",
        f"tests/assignment_mutants/{NEW}.py",
    ]
    assert all((course / path).is_file() for path in written)

    released = run_cli("release", cwd=course)
    assert released.returncode == 0, released.stderr
    assert f"`{NEW}`" in (course / "README.md").read_text()
    assert f"../release/{NEW}/{NEW}.ipynb" in (course / "course" / "README.md").read_text()
    assert f"`{NEW}`" in student_readme((course / "README.md").read_text(), exchange=False)
    # As released, every exercise fails and says it is not written yet (as test_grading asks).
    stub = run_cli("check", f"release/{NEW}/{NEW}.ipynb", cwd=course)
    assert stub.returncode == 1 and "0 passed, 3 failed" in stub.stdout
    for function in ("cube_slope_autograd", "cube_slope_by_hand", "mean_square_grad"):
        assert f"{function} is not written yet" in stub.stdout

    # What `make test` checks of an assignment: ruff (make lint) on its files; the source
    # notebook is well formed; every mutant loses exactly its points; the tables are fresh;
    # nbval re-executes its notebooks. Left out: test_release's comparison of release/ with a
    # fresh release (release/ was made a moment ago from the same source: the repository's
    # own run of it checks that a release is reproducible), and the modules that test the
    # autograder, which a new assignment does not change.
    ruff = [sys.executable, "-m", "ruff"]
    for command in (ruff + ["check"], ruff + ["format", "--check"]):
        linted = subprocess.run(
            command + written, cwd=course, capture_output=True, text=True, timeout=60
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr
    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "--nbval-cell-timeout=120",
            "tests/test_release.py::test_source_notebook_is_a_well_formed_assignment",
            "tests/test_mutants.py",
            "tests/test_authoring.py::test_readme_and_syllabus_tables_match_the_notebooks",
            "--nbval",
            f"source/{NEW}",
            f"course/{NEW}.ipynb",
        ],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    passed = [line for line in tests.stdout.splitlines() if line.startswith("PASSED ")]
    mutants = f"test_mutant_loses_exactly_the_points_of_what_it_breaks[{NEW}-"
    assert sum(mutants in line for line in passed) == 4, "the scaffold's four mutants are caught"
    for notebook in written[:2]:
        assert any(f" {notebook}::Cell" in line for line in passed), notebook
