"""Stage 2, check: a student runs their notebook with its visible tests before submitting."""

from nbclient import NotebookClient

from autograder.notebooks import cell_verdict, nbgrader_meta, read_notebook, test_cells

CELL_TIMEOUT_SECONDS = 30


def run_notebook(path):
    """Execute the notebook at `path` top to bottom, as a fresh kernel would, errors and all."""
    notebook = read_notebook(path)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_SECONDS,
        kernel_name="python3",
        allow_errors=True,
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return notebook


def check(path):
    """[(grade_id, points, passed, message)] for every graded exercise of the notebook."""
    notebook = run_notebook(path)
    results = []
    for grade_id, cell in test_cells(notebook).items():
        passed, message = cell_verdict(cell)
        results.append((grade_id, float(nbgrader_meta(cell).get("points", 0)), passed, message))
    return results
