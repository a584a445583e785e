"""Recording a graded notebook where nbgrader looks for it: its gradebook and autograded/.

Only the grader writes here, never a worker. Each notebook is committed as soon as it is
graded, so a run that is killed half-way keeps everything graded before it, and grading again
writes the same scores.
"""

from pathlib import Path
from typing import NamedTuple
from uuid import uuid4

from nbgrader.api import (
    Assignment,
    BaseCell,
    Comment,
    Grade,
    Gradebook,
    MissingEntry,
    Notebook,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
)
from nbgrader.utils import parse_utc
from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

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


class ScoreRecorder:
    """Writes automatic scores into nbgrader's gradebook: one transaction per notebook.

    A new submission gets the rows nbgrader's own add_submission makes (one per notebook,
    graded cell and answer cell), written as plain inserts: nbgrader's ORM path commits three
    times and looks the assignment's cells up again for every submission, which made it the
    slowest step of grading a class. A manual score a grader already gave is kept, and the
    cell flagged for review, as nbgrader's autograde does.
    """

    def __init__(self, gradebook):
        self.gradebook, self.db = gradebook, gradebook.db
        self.assignments = {}

    def record(self, assignment, student, notebook_name, scores, timestamp=None):
        """Store {grade_id: score} for one submitted notebook; `timestamp` (the text of the
        submission's timestamp.txt) lets nbgrader compute lateness."""
        timestamp = utc_time(timestamp)
        known = self.assignment(assignment)
        if self.db.get(Student, student) is None:
            self.db.execute(new_rows_only(self.db, Student.__table__).values(id=student))
        submission = self.db.execute(
            select(SubmittedAssignment.id).filter_by(assignment_id=known.id, student_id=student)
        ).scalar()
        if submission is None:
            submission = self.new_submission(known, student)
        if timestamp:
            self.db.execute(
                update(SubmittedAssignment.__table__)
                .where(SubmittedAssignment.id == submission)
                .values(timestamp=timestamp)
            )
        cells = known.notebooks[Path(notebook_name).stem]
        notebook = self.db.execute(
            select(SubmittedNotebook.id).filter_by(assignment_id=submission, notebook_id=cells.id)
        ).scalar()
        grades = Grade.__table__
        for name, score in scores.items():
            self.db.execute(
                update(grades)
                .where(grades.c.notebook_id == notebook, grades.c.cell_id == cells.graded[name])
                .values(auto_score=score, needs_manual_grade=grades.c.manual_score.isnot(None))
            )
        self.db.commit()

    def assignment(self, name):
        """The assignment's id and, per notebook, the ids of its cells (read once per run)."""
        if name not in self.assignments:
            found = self.gradebook.find_assignment(name)
            notebooks = {
                notebook.name: Cells(
                    notebook.id,
                    {cell.name: cell.id for cell in notebook.grade_cells},
                    [cell.id for cell in notebook.solution_cells],
                    [cell.id for cell in notebook.task_cells],
                )
                for notebook in found.notebooks
            }
            self.assignments[name] = KnownAssignment(found.id, notebooks)
        return self.assignments[name]

    def new_submission(self, assignment, student):
        submission = uuid4().hex
        notebooks, grades, comments = [], [], []
        for cells in assignment.notebooks.values():
            notebook = uuid4().hex
            notebooks.append({"id": notebook, "assignment_id": submission, "notebook_id": cells.id})
            for cell in [*cells.graded.values(), *cells.tasks]:
                grades.append({"id": uuid4().hex, "notebook_id": notebook, "cell_id": cell})
            for cell in [*cells.answers, *cells.tasks]:
                comments.append({"id": uuid4().hex, "notebook_id": notebook, "cell_id": cell})
        self.db.execute(
            insert(SubmittedAssignment.__table__).values(
                id=submission, assignment_id=assignment.id, student_id=student
            )
        )
        for model, rows in [(SubmittedNotebook, notebooks), (Grade, grades), (Comment, comments)]:
            if rows:
                self.db.execute(insert(model.__table__), rows)
        return submission


class Mark(NamedTuple):
    """A graded cell's score as nbgrader counts it (Grade.score: the manual score if a grader
    gave one, else the automatic one, plus any extra credit) and whether a grader set it."""

    score: float
    by_hand: bool


class Marks(NamedTuple):
    """What the gradebook holds for one submitted notebook."""

    scores: dict  # grade_id of a graded cell -> Mark
    comments: dict  # grade_id of an answer cell -> the comment on it


def recorded_marks(gradebook, assignment_names):
    """{(student, assignment, notebook name): Marks} for every submitted notebook of these
    assignments, read in two queries whatever the size of the class."""
    db = gradebook.db

    def rows(model, *columns):  # (student, assignment, notebook, cell name, *columns)
        return db.execute(
            select(
                SubmittedAssignment.student_id,
                Assignment.name,
                Notebook.name,
                BaseCell.name,
                *columns,
            )
            .select_from(model)
            .join(SubmittedNotebook, model.notebook_id == SubmittedNotebook.id)
            .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
            .join(Notebook, SubmittedNotebook.notebook_id == Notebook.id)
            .join(BaseCell, model.cell_id == BaseCell.id)
            .where(Assignment.name.in_(list(assignment_names)))
        )

    marks = {}
    for student, assignment, notebook, cell, score, manual, extra in rows(
        Grade, Grade.score, Grade.manual_score, Grade.extra_credit
    ):
        entry = marks.setdefault((student, assignment, notebook), Marks({}, {}))
        entry.scores[cell] = Mark(float(score), manual is not None or extra is not None)
    for student, assignment, notebook, cell, comment in rows(Comment, Comment.comment):
        if comment:
            entry = marks.setdefault((student, assignment, notebook), Marks({}, {}))
            entry.comments[cell] = comment
    return marks


class Cells(NamedTuple):
    id: str  # the notebook's
    graded: dict  # grade_id -> cell id
    answers: list
    tasks: list


class KnownAssignment(NamedTuple):
    id: str
    notebooks: dict  # notebook name -> Cells


def new_rows_only(db, table):
    """An insert into `table` that skips a row whose key is taken: a run grading other
    assignments into the same gradebook may add the same student at the same moment."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(db.get_bind().dialect.name)
    return dialect.insert(table).on_conflict_do_nothing() if dialect else insert(table)


def utc_time(text):
    """A timestamp.txt's time as nbgrader reads it, or None if there is none or it is not one."""
    try:
        return parse_utc(text) if text else None
    except (ValueError, OverflowError):
        return None
