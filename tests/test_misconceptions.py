"""The diagnoses, measured on a corpus: one wrong answer per misconception per gradient exercise.

Every check_gradient call of every source notebook (hidden tests included) is recorded by
running the notebook; for each, a student function is generated that gives the answer of one
misconception (the catalogue's, and the exercise's own) on every input. The diagnosis must
name the right misconception for at least 90% of them, and never name one for a right answer.
"""

import linecache
from typing import NamedTuple

import matplotlib
import nbformat
import pytest
import torch
from conftest import ASSIGNMENTS, notebook_path

import autograder
from autograder import CheckFailed
from autograder.checks import reference_gradients
from autograder.misconceptions import CATALOGUE, Case, predictions

matplotlib.use("Agg")


def gradient_checks(assignment, monkeypatch):
    """Every check_gradient call the source notebook makes: (name, function, inputs, wrt,
    mistakes), recorded while the notebook runs with its solutions."""
    calls = []
    real = autograder.check_gradient

    def recording(student_fn, function, inputs, *, wrt=(0,), mistakes=(), **tolerances):
        calls.append((student_fn.__name__, function, list(inputs), wrt, mistakes))
        return real(student_fn, function, inputs, wrt=wrt, mistakes=mistakes, **tolerances)

    monkeypatch.setattr(autograder, "check_gradient", recording)
    namespace = {"__name__": "__main__"}
    notebook = nbformat.read(notebook_path("source", assignment), as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            filename = f"<{assignment} cell {index}>"
            # what IPython does, so that inspect.getsource finds the functions of the cell
            linecache.cache[filename] = (
                len(cell.source),
                None,
                cell.source.splitlines(True),
                filename,
            )
            exec(compile(cell.source, filename, "exec"), namespace)
    matplotlib.pyplot.close("all")
    return calls


class Entry(NamedTuple):
    """One submission of the corpus: an exercise's check, and the answer a student gives."""

    exercise: str
    misconception: str | None  # None: the right answer
    student: object
    check: tuple  # (function, inputs, wrt, mistakes) of the check_gradient call


def corpus(calls):
    """An entry per misconception that gives a wrong answer on an exercise's inputs, and one
    with the right answer, for every recorded check."""
    for name, function, inputs, wrt, mistakes in calls:
        check = (function, inputs, wrt, mistakes)
        cases = cases_of(function, inputs, wrt, mistakes)
        for misconception in [*mistakes, *CATALOGUE]:
            answers = {args: first_wrong(misconception.key, case) for args, case in cases.items()}
            if all(answer is not None for answer in answers.values()):
                student = student_answering(name, answers, len(wrt))
                yield Entry(name, misconception.key, student, check)
        right = {args: case.expected for args, case in cases.items()}
        yield Entry(name, None, student_answering(name, right, len(wrt)), check)


def cases_of(function, inputs, wrt, mistakes):
    """{repr(args): Case} with the right answers in place of the student's."""
    cases = {}
    for case in inputs:
        args = case if isinstance(case, tuple) else (case,)
        expected, partial = reference_gradients(function, args, wrt)
        mistaken = {m.key: reference_gradients(m.function, args, wrt)[0] for m in mistakes}
        sizes = [e.numel() for e in expected]
        cases[repr(args)] = Case(list(expected), list(expected), sizes, partial, mistaken)
    return cases


def first_wrong(key, case):
    """The first answer misconception `key` predicts that is not the right one, or None."""
    for option in predictions(key, case):
        if not all(torch.equal(o, e) for o, e in zip(option, case.expected, strict=True)):
            return option
    return None


def student_answering(name, answers, parts):
    """A student function that returns `answers[repr(args)]`, in float32 as students do."""

    def student(*args):
        answer = [a.to(torch.float32) for a in answers[repr(args)]]
        return answer[0] if parts == 1 else tuple(answer)

    student.__name__ = name
    return student


@pytest.fixture(scope="module")
def diagnoses():
    """[(exercise, misconception given, misconception named)] over the whole course."""
    found = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        for assignment in ASSIGNMENTS:
            for entry in corpus(gradient_checks(assignment, monkeypatch)):
                function, inputs, wrt, mistakes = entry.check
                try:
                    autograder.checks.check_gradient(
                        entry.student, function, inputs, wrt=wrt, mistakes=mistakes
                    )
                    named = "passed"
                except CheckFailed as failure:
                    named = failure.diagnosis
                found.append((f"{assignment}/{entry.exercise}", entry.misconception, named))
    return found


def test_the_corpus_covers_every_gradient_exercise(diagnoses):
    exercises = {exercise for exercise, _, _ in diagnoses}
    assert len(exercises) >= 15
    wrong = [d for d in diagnoses if d[1] is not None]
    assert len(wrong) >= 5 * len(exercises)


def test_right_answers_pass_and_are_never_diagnosed(diagnoses):
    right = [(exercise, named) for exercise, key, named in diagnoses if key is None]
    assert right and all(named == "passed" for _, named in right), right


def test_wrong_answers_never_pass(diagnoses):
    assert not [d for d in diagnoses if d[1] is not None and d[2] == "passed"]


def test_the_diagnosis_names_the_right_misconception_nine_times_in_ten(diagnoses):
    wrong = [d for d in diagnoses if d[1] is not None]
    named_right = sum(given == named for _, given, named in wrong)
    misnamed = [d for d in wrong if d[1] != d[2]]
    print(f"\n{named_right} of {len(wrong)} wrong answers diagnosed right; misnamed: {misnamed}")
    assert named_right >= 0.9 * len(wrong)
