"""The gradebook as the one source of truth for scores: a grader's manual scores and comments
(entered in nbgrader's formgrader) brought into the results and the feedback pages.

`grade` reads back what it recorded; `autograd-course feedback` rewrites the feedback pages
(and, if asked, the results) from the gradebook after manual grading, without running any
student code. Both start from what the grading run decided for each test, kept beside the
autograded notebook (OUTCOME_FILE): the messages and diagnoses are not in the gradebook.
"""

import json
from pathlib import Path

import nbformat

from autograder.course import CourseError, Folders, assignments, nbgrader_api, source_notebooks
from autograder.feedback import submission_files, write_feedback_page, write_submission_files
from autograder.notebooks import read_notebook, test_cells, tests_after_solutions

# The grading run's outcome of a submission, in autograded/<student>/<assignment>/ (which only
# instructors see; nbgrader's release_feedback hands out feedback/'s .html files alone).
OUTCOME_FILE = "autograd-course-outcome.json"


class Tests:
    """One assignment's test cells, as scores need them: per notebook, its tests in order and
    the answer cell each one checks."""

    def __init__(self, name, ids, anchors):
        self.name = name
        self.ids = ids  # notebook name -> [test grade_id], in notebook order
        self.anchors = anchors  # notebook name -> {answer grade_id: [the tests after it]}

    @classmethod
    def of(cls, root, name):
        sources = {path.name: read_notebook(path) for path in source_notebooks(root, name)}
        return cls(
            name,
            {notebook: list(test_cells(cells)) for notebook, cells in sources.items()},
            {notebook: tests_after_solutions(cells) for notebook, cells in sources.items()},
        )


def apply_marks(outcome, anchors, marks):
    """Give each test of one notebook (`anchors`: {answer grade_id: [its tests]}) the score the
    gradebook holds (`marks`, a gradebook.Marks) and the grader's comment on the answer it
    checks. True if a grader set a score or wrote a comment there."""
    by_hand = False
    for answer, tests in anchors.items():
        comment = marks.comments.get(answer)
        for grade_id in tests:
            mark = marks.scores.get(grade_id)
            if mark is None or grade_id not in outcome["tests"]:
                continue  # a test added to the source after this submission was graded
            test = outcome["tests"][grade_id]
            test.update(score=mark.score, manual=mark.by_hand, comment=comment)
            by_hand |= mark.by_hand or comment is not None
    outcome["score"] = sum(test["score"] for test in outcome["tests"].values())
    return by_hand


def write_outcome(folders, student, assignment, outcome):
    folder = folders.of("autograded", student, assignment)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OUTCOME_FILE).write_text(json.dumps(outcome))


def rewrite_pages(folders, tests, student, outcome, notebooks):
    """Write the feedback page of each of `notebooks` from its autograded notebook, with the
    submission's timestamp and secret beside it (nbgrader's release_feedback needs them)."""
    autograded = folders.of("autograded", student, tests.name)
    feedback = folders.of("feedback", student, tests.name)
    write_submission_files(submission_files(autograded), feedback)
    for notebook_name in notebooks:
        graded = nbformat.from_dict(json.loads((autograded / notebook_name).read_text()))
        write_feedback_page(
            folders, tests.name, student, notebook_name, graded, outcome, tests.ids[notebook_name]
        )


def rewrite_feedback(root, names=None):
    """Rewrite the feedback page of every graded notebook of these assignments (default: all)
    from the gradebook: ({student: {assignment: outcome}}, pages written, [not rewritten: why])."""
    from autograder import gradebook  # nbgrader: slow to import, only needed here

    known = assignments(root)
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise CourseError(
            f"no assignment called {', '.join(unknown)} in source/ (there are: {', '.join(known)})."
        )
    course = {name: Tests.of(root, name) for name in names or known}
    folders = Folders(root)
    with gradebook.open_gradebook(nbgrader_api(root)) as book:
        marks = gradebook.recorded_marks(book, course)
    results, written, skipped = {}, 0, []
    for student, name in sorted({(student, name) for student, name, _ in marks}):
        tests, autograded = course[name], folders.of("autograded", student, name)
        try:
            outcome = json.loads((autograded / OUTCOME_FILE).read_text())
        except (OSError, ValueError):
            skipped.append(
                f"{student}/{name}: {autograded.relative_to(root)} has no record of what its "
                "tests said (it was last graded by nbgrader's autograde or an older "
                "autograd-course); grade it again"
            )
            continue
        notebooks = [
            notebook
            for notebook in tests.ids
            if (student, name, Path(notebook).stem) in marks and (autograded / notebook).is_file()
        ]
        for notebook in notebooks:
            apply_marks(outcome, tests.anchors[notebook], marks[student, name, Path(notebook).stem])
        rewrite_pages(folders, tests, student, outcome, notebooks)
        written += len(notebooks)
        results.setdefault(student, {})[name] = outcome
    return results, written, skipped
