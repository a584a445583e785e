"""Stage 3, grade: check every submission, autograde it with nbgrader, write feedback, report.

Submissions are laid out like nbgrader's submitted/: SUBMISSIONS/<student>/<assignment>/<nb>.ipynb.
A submission that cannot be graded gets an error of its own; the rest of the class is graded,
and nothing already in the gradebook is removed.
"""

import re
import shutil
import tempfile
import warnings
from pathlib import Path

from autograder.assign import release
from autograder.course import CourseError, assignments, nbgrader_api, source_notebooks
from autograder.notebooks import (
    BadNotebook,
    cell_verdict,
    graded_ids,
    nbgrader_meta,
    read_notebook,
    test_cells,
)

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")


class Assignment:
    """What grading needs to know about one assignment: its notebooks and their test cells."""

    def __init__(self, root, name, release_dir):
        self.name = name
        # notebook name -> {grade_id: test cell as the student received it}
        self.released_tests = {
            path.name: test_cells(read_notebook(release_dir / name / path.name))
            for path in source_notebooks(root, name)
        }
        # the same cells with their hidden tests: an instructor's own copy is not "edited"
        self.source_tests = {
            path.name: test_cells(read_notebook(path)) for path in source_notebooks(root, name)
        }
        self.grade_ids = {gid for tests in self.released_tests.values() for gid in tests}

    def max_score(self, notebook_name, grade_id):
        return float(nbgrader_meta(self.released_tests[notebook_name][grade_id])["points"])


def empty_outcome(assignment):
    """Every test failed with no points: the starting point of a submission's outcome."""
    tests = {
        gid: {
            "score": 0.0,
            "max_score": assignment.max_score(nb, gid),
            "passed": False,
            "message": "",
        }
        for nb, cells in assignment.released_tests.items()
        for gid in cells
    }
    return {
        "score": 0.0,
        "max_score": sum(t["max_score"] for t in tests.values()),
        "error": None,
        "tests": tests,
    }


def grade(root, submissions_dir, names=None, report=print):
    """Grade every submission under `submissions_dir`; {student: {assignment: outcome}}.

    `report` receives one line per graded submission, for progress.
    """
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise CourseError(
            f"{submissions_dir} is not a folder of submissions "
            "(laid out as SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb)."
        )
    known = assignments(root)
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise CourseError(
            f"no assignment called {', '.join(unknown)} in source/ (there are: {', '.join(known)})."
        )
    names = names or known

    # nbgrader's own SQLAlchemy usage warns on every submission; the warnings are not ours to fix.
    warnings.filterwarnings("ignore", module="nbgrader")
    with tempfile.TemporaryDirectory(prefix="autograd-course-") as scratch:
        scratch = Path(scratch)
        release(root, names, release_dir=scratch / "release")
        course = {name: Assignment(root, name, scratch / "release") for name in names}
        ids_of = {name: a.grade_ids for name, a in course.items()}
        staging = scratch / "submitted"
        api = nbgrader_api(root, CourseDirectory={"submitted_directory": str(staging)})

        results = {}
        for student_dir in sorted(submissions_dir.iterdir()):
            if not student_dir.is_dir():
                continue
            for assignment_dir in sorted(student_dir.iterdir()):
                if assignment_dir.name not in course:
                    continue
                outcome = grade_submission(
                    api, course[assignment_dir.name], assignment_dir, staging, ids_of
                )
                results.setdefault(student_dir.name, {})[assignment_dir.name] = outcome
                shown = (
                    "error"
                    if outcome["error"]
                    else f"{outcome['score']:g}/{outcome['max_score']:g}"
                )
                report(f"graded {student_dir.name}/{assignment_dir.name}: {shown}")
    return results


def grade_submission(api, assignment, submission, staging, ids_of):
    """The outcome of one student's submission of one assignment."""
    outcome = empty_outcome(assignment)
    student = submission.parent.name
    problems = submission_problems(submission)
    if problems:
        outcome["error"] = problems
        return outcome

    staged = staging / student / assignment.name
    staged.mkdir(parents=True)
    notes, errors = {}, []
    for notebook_name, released_tests in assignment.released_tests.items():
        path = submission / notebook_name
        if not path.is_file():
            errors.append(f"{notebook_name} is missing")
            continue
        try:
            notebook = read_notebook(path)
        except BadNotebook as error:
            errors.append(str(error))
            continue
        wrong = belongs_elsewhere(notebook, assignment, ids_of)
        if wrong:
            errors.append(f"{notebook_name} {wrong}")
            continue
        notes.update(
            test_cell_changes(notebook, released_tests, assignment.source_tests[notebook_name])
        )
        shutil.copyfile(path, staged / notebook_name)
    extra = sorted(
        p.name for p in submission.glob("*.ipynb") if p.name not in assignment.released_tests
    )
    if extra:
        errors.append(f"ignored notebook(s) not in this assignment: {', '.join(extra)}")

    if any(staged.iterdir()):
        result = api.autograde(assignment.name, student, force=True, create=True)
        if not result["success"]:
            errors.append("nbgrader could not autograde it: " + last_line(result))
        else:
            read_verdicts(api, assignment, student, outcome)
            feedback = api.generate_feedback(assignment.name, student, force=True)
            if not feedback["success"]:
                errors.append("feedback could not be generated: " + last_line(feedback))
    for grade_id, note in notes.items():
        test = outcome["tests"][grade_id]
        test["message"] = f"{note} {test['message']}".strip()
    outcome["score"] = sum(t["score"] for t in outcome["tests"].values())
    outcome["error"] = "; ".join(errors) or None
    return outcome


def submission_problems(submission):
    """Why a submission folder cannot be graded at all, or None."""
    student = submission.parent.name
    if not STUDENT_ID.fullmatch(student):
        return (
            f"student folder {student!r} is not a valid student id "
            "(letters, digits and _ . @ + - only, not starting with a dot or dash)"
        )
    if submission.parent.is_symlink() or submission.is_symlink():
        return f"{student}/{submission.name} is a symbolic link; submissions must be real folders"
    return None


def belongs_elsewhere(notebook, assignment, ids_of):
    """Why a notebook is not a submission of `assignment`, or None when it is."""
    ids = graded_ids(notebook)
    if ids & assignment.grade_ids or not ids:
        return None
    for other, other_ids in ids_of.items():
        if ids & other_ids:
            return f"is the notebook of assignment {other}, not {assignment.name}"
    return f"has none of the exercises of {assignment.name}"


def test_cell_changes(notebook, released_tests, source_tests):
    """{grade_id: note} for test cells the student edited or deleted (nbgrader restores them)."""
    submitted = test_cells(notebook)
    notes = {}
    for grade_id, cell in released_tests.items():
        if grade_id not in submitted:
            notes[grade_id] = "(This test cell was missing from the submission; it was restored.)"
        elif submitted[grade_id].source not in (cell.source, source_tests[grade_id].source):
            notes[grade_id] = "(This test cell had been edited; the original was restored.)"
    return notes


def read_verdicts(api, assignment, student, outcome):
    """Fill in the tests' scores (gradebook) and messages (autograded notebooks)."""
    from nbgrader.api import Gradebook

    with Gradebook(api.coursedir.db_url) as gradebook:
        for notebook_name in assignment.released_tests:
            try:
                submitted = gradebook.find_submission_notebook(
                    Path(notebook_name).stem, assignment.name, student
                )
            except Exception:
                continue  # this notebook was not submitted: its tests keep 0 points
            autograded = read_notebook(
                Path(
                    api.coursedir.format_path(
                        api.coursedir.autograded_directory, student, assignment.name
                    )
                )
                / notebook_name
            )
            cells = test_cells(autograded)
            for grade in submitted.grades:
                if grade.name not in outcome["tests"]:
                    continue
                passed, message = (
                    cell_verdict(cells[grade.name]) if grade.name in cells else (False, "")
                )
                outcome["tests"][grade.name].update(
                    score=float(grade.score),
                    passed=float(grade.score) >= float(grade.max_score),
                    message=message,
                )


def last_line(result):
    text = (result.get("error") or result.get("log") or "").strip()
    return text.splitlines()[-1] if text else "unknown error"
