"""Recording a graded notebook where nbgrader looks for it: its gradebook and autograded/.

Only the grader writes here, never a worker. Each notebook is committed as soon as it is
graded, so a run that is killed half-way keeps everything graded before it, and grading again
writes the same scores.
"""

import json
import shutil
from pathlib import Path

import nbformat
from nbgrader.api import Grade, Gradebook, GradeCell, MissingEntry

from autograder.notebooks import nbgrader_meta


def open_gradebook(api):
    return Gradebook(api.coursedir.db_url)


def in_gradebook(gradebook, assignment):
    """Whether the gradebook knows `assignment` with exactly its notebooks and graded cells."""
    try:
        known = gradebook.find_assignment(assignment.name)
    except MissingEntry:
        return False
    recorded = {
        notebook.name: {cell.name: cell.max_score for cell in notebook.grade_cells}
        for notebook in known.notebooks
    }
    expected = {
        Path(name).stem: {gid: float(nbgrader_meta(c)["points"]) for gid, c in cells.items()}
        for name, cells in assignment.source_tests.items()
    }
    return recorded == expected


def record_scores(gradebook, assignment, student, notebook_name, scores, timestamp=None):
    """Store {grade_id: score} as nbgrader's automatic scores for one submitted notebook.

    A manual score a grader already gave is kept, and the cell is flagged for review, as
    nbgrader's own autograde does. `timestamp` (from the submission's timestamp.txt) lets
    nbgrader compute lateness.
    """
    gradebook.update_or_create_student(student)
    when = {"timestamp": timestamp} if timestamp else {}
    gradebook.update_or_create_submission(assignment, student, **when)
    submitted = gradebook.find_submission_notebook(Path(notebook_name).stem, assignment, student)
    # one query for the grades and their cells' names (nbgrader's own accessors make several)
    rows = (
        gradebook.db.query(Grade, GradeCell.name)
        .join(GradeCell, Grade.cell_id == GradeCell.id)
        .filter(Grade.notebook_id == submitted.id)
    )
    for grade, name in rows:
        if name in scores:
            grade.auto_score = scores[name]
            grade.needs_manual_grade = grade.manual_score is not None
    gradebook.db.commit()


def autograded_notebook(submitted, released_tests, verdicts, cell_results, broken):
    """The submission as graded: the released test cells with their verdicts as outputs, the
    student's cells with what they printed and raised. Hidden tests are never written here."""
    cells = []
    for index, cell in enumerate(submitted.cells):
        grade_id = nbgrader_meta(cell).get("grade_id")
        if cell.cell_type != "code":
            cells.append(cell)
        elif grade_id in released_tests and not nbgrader_meta(cell).get("solution"):
            passed, message, _ = verdicts[grade_id]
            outputs = [] if passed else [error_output("CheckFailed", message)]
            cells.append({**released_tests[grade_id], "outputs": outputs})
        else:
            cells.append({**cell, "outputs": student_outputs(index, cell_results, broken)})
    return {**submitted, "cells": cells}


def student_outputs(index, cell_results, broken):
    """What a student cell printed and raised when it ran in the worker."""
    outputs = []
    result = cell_results.get(index)
    if result and result["output"]:
        outputs.append(nbformat.v4.new_output("stream", name="stdout", text=result["output"]))
    if result and result["error"]:
        outputs.append(error_output(result["error"][0], result["error"][1]))
    if index in broken:
        outputs.append(error_output("WorkerLost", broken[index]))
    return outputs


def error_output(name, message):
    return nbformat.v4.new_output(
        "error", ename=name, evalue=message, traceback=[f"{name}: {message}"]
    )


# Files nbgrader's exchange keeps beside a submission; release_feedback needs them next to
# the feedback.
SUBMISSION_FILES = ("timestamp.txt", "submission_secret.txt")


def submission_timestamp(submission):
    """The time in the submission's timestamp.txt, or None (absent, empty or unreadable)."""
    from nbgrader.utils import parse_utc

    try:
        return parse_utc((submission / "timestamp.txt").read_text().strip())
    except (OSError, ValueError):
        return None


def copy_submission_files(submission, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in SUBMISSION_FILES:
        if (submission / name).is_file() and not (submission / name).is_symlink():
            shutil.copyfile(submission / name, folder / name)


def write_notebook(notebook, path):
    """Write `notebook` (built from a validated one, so not validated again: that is slow)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(notebook, ensure_ascii=False))
    partial.replace(path)  # a reader never sees half a notebook
