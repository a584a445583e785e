"""Stage 2, check: a student checks a notebook before submitting, on the grading engine.

The student's cells run in a fresh worker, each with a time limit; the test cells as released
run here, each after the solution cell it follows (autograder.verdict), whatever the student
did to the notebook's own copies. A cell that loops, crashes or runs out of memory costs only
the exercises that need it.
"""

import functools
import json
import os
from pathlib import Path
from typing import NamedTuple

import nbformat

import autograder
from autograder.notebooks import (
    graded_ids,
    nbgrader_meta,
    read_notebook,
    test_cells,
    tests_after_solutions,
    without_hidden_tests,
)

# Written beside the released notebooks of an assignment: their graded code cells, the test
# cells' code included, so a student's edited or deleted test cell can be put back.
RELEASED_TESTS = ".released_tests.json"
# The repository this package was installed from (an editable install), whose release/ holds
# the released tests when the student's notebook is elsewhere (fetched through an exchange).
PACKAGE_COURSE = Path(autograder.__file__).resolve().parent.parent


class Result(NamedTuple):
    grade_id: str
    points: float
    passed: bool
    message: str


class Report(NamedTuple):
    results: list  # [Result], in the released notebook's order
    warnings: list  # [str]: the test cells that were changed or missing
    problems: list  # [str]: the cells that raised or stopped, other than failed exercises'


def write_released_tests(folder):
    """Record the graded code cells of the released notebooks in `folder` (solution cells
    without their code) in RELEASED_TESTS."""
    notebooks = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        cells = []
        for cell in nbformat.read(path, as_version=4).cells:
            meta = nbgrader_meta(cell)
            if cell.cell_type == "code" and meta.get("grade_id"):
                keep = meta.get("grade") and not meta.get("solution")
                cells.append({"source": cell.source if keep else "", "nbgrader": dict(meta)})
        notebooks[path.name] = cells
    text = json.dumps(notebooks, indent=1, sort_keys=True) + "\n"
    (Path(folder) / RELEASED_TESTS).write_text(text)


def released_cells(notebook, near):
    """The released notebook's graded code cells (as a notebook) that `notebook` is a copy
    of, looked for beside it, in a release/ folder above `near` or the working directory, and
    in this package's course; None if there is none."""
    ids = graded_ids(notebook)
    near = Path(near).resolve()
    places = [near / RELEASED_TESTS]
    for folder in dict.fromkeys([near, *near.parents, Path.cwd(), PACKAGE_COURSE]):
        places += sorted((folder / "release").glob(f"*/{RELEASED_TESTS}"))
    for place in places:
        try:
            notebooks = json.loads(place.read_text())
            for cells in notebooks.values():
                released = nbformat.from_dict(
                    {
                        "cells": [
                            {
                                "cell_type": "code",
                                "source": c["source"],
                                "metadata": {"nbgrader": c["nbgrader"]},
                            }
                            for c in cells
                        ]
                    }
                )
                if ids & graded_ids(released):
                    return released
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
    return None


def check(path, near=None, limits=None, workers=None):
    """The Report of the notebook at `path`; `near` (default: its folder) is where to look for
    its released tests. `workers` is the class that starts workers (worker.Zygote where Linux
    allows it, worker.Spawner elsewhere)."""
    from autograder.sandbox import Limits

    path = Path(path)
    notebook = read_notebook(path)
    released = released_cells(notebook, near or path.parent)
    warnings = []
    if released is None:
        released = notebook
        warnings.append(
            f"No released copy of {path.name} was found, so its own test cells were used: "
            "a test cell you changed would go unnoticed."
        )
    tests = {gid: without_hidden_tests(c)["source"] for gid, c in test_cells(released).items()}
    warnings += changed_tests(notebook, tests)
    anchors = tests_after_solutions(released)
    run = run_tests(notebook, tests, anchors, limits or Limits(), workers)
    problems = cell_problems(run)
    solution_of = solution_cells(notebook, released)
    results = []
    for grade_id, (passed, message, _) in run.verdicts.items():
        if not passed and solution_of.get(grade_id) in problems:
            message = problems[solution_of[grade_id]]
        points = float(nbgrader_meta(test_cells(released)[grade_id]).get("points", 0))
        results.append(Result(grade_id, points, passed, message))
    used = {r.message for r in results}
    return Report(results, warnings, [why for why in problems.values() if why not in used])


def changed_tests(notebook, tests):
    """Warnings naming the test cells of `notebook` that differ from the released ones."""
    own = test_cells(notebook)
    warnings = []
    for grade_id, source in tests.items():
        if grade_id not in own:
            warnings.append(f"The test cell {grade_id} is missing; the released one was used.")
        elif without_hidden_tests(own[grade_id])["source"] != source:
            warnings.append(f"The test cell {grade_id} was changed; the released one was used.")
    return warnings


def run_tests(notebook, tests, anchors, limits, workers=None):
    """The verdict.Notebook that ran `notebook` with `tests` (its .verdicts set)."""
    # The zygote is forked before the grader's side is imported: with torch loaded, and it
    # warms up while the rest is imported.
    from autograder import worker

    if workers is None:
        forks = hasattr(os, "pidfd_open")
        workers = functools.partial(worker.Zygote, warm=False) if forks else worker.Spawner
    parent = workers(limits)
    try:
        from autograder import verdict

        run = verdict.Notebook(parent, 0, limits, tests, anchors, outputs=False)
        verdicts = run.grade(notebook)
    finally:
        parent.stop()
    run.verdicts = {gid: verdicts[gid] for gid in tests}  # in the released order
    return run


def solution_cells(notebook, released):
    """{test grade_id: index of the student's solution cell it runs after}."""
    index_of = {nbgrader_meta(c).get("grade_id"): i for i, c in enumerate(notebook.cells)}
    return {
        test: index_of[solution]
        for solution, following in tests_after_solutions(released).items()
        if solution in index_of
        for test in following
    }


def cell_problems(run):
    """{cell index: one line saying why it failed} for each student cell that raised or
    stopped the notebook, in order."""
    problems = {index: why[0].upper() + why[1:] + "." for index, why in run.broken.items()}
    for index, result in run.cell_results.items():
        if result["error"]:
            name, message, where = result["error"]
            line = f", {where}" if where else ""
            problems[index] = f"{name} in cell {index + 1}{line}: {message}".rstrip(": ")
            if name == "NotImplementedError":
                problems[index] = (
                    f"Cell {index + 1} is not written yet: replace `raise NotImplementedError()` "
                    "with your code."
                )
    return dict(sorted(problems.items()))
