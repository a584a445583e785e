"""nbgrader's Validate (the button in JupyterLab, and `nbgrader validate`) answered by
`autograd-course check`, so both give the same verdicts; nbgrader_config.py puts
CheckPreprocessor in place of nbgrader's Execute."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor

from autograder.notebooks import nbgrader_meta
from autograder.sandbox import Limits

# The check's own limits bound it; this only keeps a Validate from waiting forever.
CHECK_SECONDS = Limits().notebook_seconds + 60


class CheckPreprocessor(Preprocessor):
    """Gives each test cell the outputs of its `check` verdict: none when it passed, an error
    that is the check's message when it failed. Each test cell's code is replaced by its
    name, which is what the Validate dialog shows above the message (the released code is
    what was run, whatever the notebook holds). Runs where nbgrader's Validator runs its
    preprocessors: in the notebook's folder."""

    def preprocess(self, nb, resources):
        report = checked(nb)
        cells = {nbgrader_meta(cell).get("grade_id"): cell for cell in nb.cells}
        notes = "".join(f"\n(warning: {warning})" for warning in report["warnings"])
        for result in report["results"]:
            cell = cells.get(result["grade_id"])
            if cell is None:  # deleted from the notebook: the released one was run
                cell = nbformat.v4.new_code_cell()
                nb.cells.append(cell)
            cell.source = f"Test {result['grade_id']} ({result['points']:g} points)"
            cell.metadata["nbgrader"] = {
                "grade": True,
                "grade_id": result["grade_id"],
                "points": result["points"],
                "solution": False,
                "locked": False,  # no checksum: its code was replaced on purpose
            }
            cell.outputs = []
            if not result["passed"]:
                message = result["message"] + notes
                cell.outputs.append(
                    nbformat.v4.new_output(
                        "error", ename="CheckFailed", evalue=message, traceback=[message]
                    )
                )
        return nb, resources


def checked(nb):
    """`autograd-course check --json` of the notebook `nb`, as a dict; run in a process of
    its own (it forks, which the threads of the Jupyter server make unsafe here)."""
    with tempfile.TemporaryDirectory(prefix="autograd-course-validate-") as folder:
        path = Path(folder) / "notebook.ipynb"
        nbformat.write(nb, path)
        command = [sys.executable, "-m", "autograder", "check", "--json", "--near", os.getcwd()]
        try:
            run = subprocess.run(
                [*command, str(path)], capture_output=True, text=True, timeout=CHECK_SECONDS
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"autograd-course check took over {CHECK_SECONDS} s") from None
    try:
        return json.loads(run.stdout)
    except ValueError:
        reason = run.stderr.strip().splitlines()[-1:] or [f"exit status {run.returncode}"]
        raise RuntimeError(f"autograd-course check failed: {reason[0]}") from None
