"""Reading notebooks safely, and reading the verdict of a graded cell from its outputs."""

import json
import re

import nbformat

# Notebooks larger than this are refused rather than parsed (a course notebook is < 1 MB).
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
# stderr text matching this is a warning, and warnings never cost points (nbgrader_config.py
# gives nbgrader's IgnorePattern the same pattern).
WARNING_PATTERN = r"Warning:"


class BadNotebook(Exception):
    """A file that cannot be graded as a notebook; the message says what is wrong with it."""


def read_notebook(path):
    """The notebook at `path`, or BadNotebook naming the file and the problem."""
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise BadNotebook(
            f"{path.name} is {size / 2**20:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadNotebook(f"{path.name} is not UTF-8 text (byte {error.start})") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadNotebook(
            f"{path.name} is not valid JSON ({error.msg} at line {error.lineno})"
        ) from None
    if not isinstance(content, dict) or "cells" not in content and "worksheets" not in content:
        raise BadNotebook(f"{path.name} is JSON but not a Jupyter notebook")
    if content.get("nbformat") != 4:
        raise BadNotebook(
            f"{path.name} is in notebook format {content.get('nbformat')}; open it in JupyterLab "
            "and save it to convert it to format 4"
        )
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadNotebook(f"{path.name} is not a valid notebook: {first_line}") from None
    return notebook


def nbgrader_meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def test_cells(notebook):
    """The autograded test cells, by grade_id."""
    return {
        nbgrader_meta(cell)["grade_id"]: cell
        for cell in notebook.cells
        if cell.cell_type == "code"
        and nbgrader_meta(cell).get("grade")
        and not nbgrader_meta(cell).get("solution")
    }


def without_hidden_tests(cell):
    """The test cell as students receive it: the lines from BEGIN to END HIDDEN TESTS removed,
    exactly as nbgrader's ClearHiddenTests does."""
    lines, hidden = [], False
    for line in cell.source.split("\n"):
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            lines.append(line)
    return {**cell, "source": "\n".join(lines)}


def graded_ids(notebook):
    """The grade_ids of all nbgrader cells: which assignment a notebook belongs to."""
    return {
        nbgrader_meta(cell)["grade_id"]
        for cell in notebook.cells
        if nbgrader_meta(cell).get("grade_id")
    }


def without_warnings(outputs):
    return [
        output
        for output in outputs
        if not (
            output.get("output_type") == "stream"
            and output.get("name") == "stderr"
            and re.search(WARNING_PATTERN, output.get("text", ""))
        )
    ]


def cell_verdict(cell):
    """(passed, message) for an executed test cell, by nbgrader's rule: no error, no stderr."""
    for output in without_warnings(cell.get("outputs", [])):
        if output.get("output_type") == "error":
            return False, error_message(output)
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            return False, "the test cell wrote to stderr: " + output.get("text", "").strip()[:200]
    return True, "passed"


def error_message(output):
    ename, evalue = output.get("ename", "Error"), output.get("evalue", "")
    if ename in ("CheckFailed", "AssertionError") and evalue:
        return evalue
    if ename == "NotImplementedError":
        return "not written yet: replace `raise NotImplementedError()` with your code"
    if ename == "CellTimeoutError":
        return "the cell ran out of time (an endless loop?)"
    return f"{ename}: {evalue}" if evalue else ename
