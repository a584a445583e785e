"""release/ is exactly what nbgrader generates from source/, and the notebooks are well formed."""

import re

import nbformat
import pytest
from conftest import ASSIGNMENTS, REPO, copy_course, run_cli

SOLUTION = re.compile(r"^\s*### BEGIN SOLUTION$.*^\s*### END SOLUTION$", re.M | re.S)
HIDDEN = re.compile(r"^\s*### BEGIN HIDDEN TESTS$.*^\s*### END HIDDEN TESTS$", re.M | re.S)


def test_release_folder_equals_a_fresh_release(tmp_path):
    course = copy_course(tmp_path / "course")
    for generated in (course / "release").rglob("*"):
        if generated.is_file():
            generated.unlink()
    result = run_cli("release", cwd=course)
    assert result.returncode == 0, result.stderr
    committed, fresh = (
        sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
        for root in (REPO / "release", course / "release")
    )
    assert fresh == committed
    assert any(name.name == ".released_tests.json" for name in committed)
    for name in committed:
        assert (course / "release" / name).read_bytes() == (REPO / "release" / name).read_bytes(), (
            f"release/{name} is stale: run `make release`"
        )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_notebook_is_a_well_formed_assignment(assignment):
    notebook = nbformat.read(REPO / "source" / assignment / f"{assignment}.ipynb", as_version=4)
    nbgrader_cells = [c for c in notebook.cells if "nbgrader" in c.metadata]
    grade_ids = [c.metadata.nbgrader["grade_id"] for c in nbgrader_cells]
    assert len(grade_ids) == len(set(grade_ids)), "grade_ids must be unique"

    solutions = [c for c in nbgrader_cells if c.metadata.nbgrader.get("solution")]
    tests = [
        c for c in nbgrader_cells if c.metadata.nbgrader.get("grade") and c.cell_type == "code"
    ]
    assert len(tests) >= 3, "at least three graded exercises"
    for cell in solutions:
        assert SOLUTION.search(cell.source), (
            f"{cell.metadata.nbgrader['grade_id']} lacks its markers"
        )
    for cell in tests:
        assert cell.metadata.nbgrader["points"] > 0
        assert "from autograder import" in cell.source, "tests go through the autograder's checks"
        assert HIDDEN.search(cell.source), (
            f"{cell.metadata.nbgrader['grade_id']} has no hidden tests"
        )
    assert any("plt.show()" in c.source for c in notebook.cells), "each assignment draws a plot"
    assert notebook.metadata.kernelspec.name == "python3"
