"""Stage 3, grade: check every submission, run it in a worker, judge it here, record it.

Submissions are laid out like nbgrader's submitted/: SUBMISSIONS/<student>/<assignment>/<nb>.ipynb.
A submission that cannot be graded gets an error of its own; the rest of the class is graded,
and nothing already in the gradebook is removed.
"""

import difflib
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import time
import warnings
from multiprocessing.connection import wait
from pathlib import Path

import nbformat
import torch

from autograder import cgroups, sandbox, verdict
from autograder.assign import release
from autograder.course import (
    CourseError,
    Folders,
    assignments,
    configured_gradebook_url,
    nbgrader_api,
    source_notebooks,
)
from autograder.feedback import submission_files, submission_timestamp, write_pages
from autograder.marks import Tests, apply_marks, rewrite_pages, write_outcome
from autograder.notebooks import (
    BadFile,
    BadNotebook,
    graded_cells,
    graded_ids,
    nbgrader_meta,
    read_notebook,
    test_cells,
    tests_after_solutions,
    without_hidden_tests,
)
from autograder.runlock import lock_runs
from autograder.sandbox import Limits
from autograder.secret import assignment_key, course_secret, student_key
from autograder.worker import Zygote

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")
NBGRADER_ID = re.compile(r"[a-zA-Z0-9_\-]+")  # nbgrader's pattern for a grade_id


class Assignment:
    """What grading needs to know about one assignment: its notebooks and their test cells."""

    def __init__(self, root, name, secret):
        self.name = name
        self.inputs_key = assignment_key(secret, name)  # of its hidden tests' inputs
        sources = {path.name: read_notebook(path) for path in source_notebooks(root, name)}
        # notebook name -> {grade_id: test cell, hidden tests included}
        self.source_tests = {nb: test_cells(notebook) for nb, notebook in sources.items()}
        # notebook name -> {solution grade_id (None: none yet): [the tests that follow it]}
        self.anchors = {nb: tests_after_solutions(notebook) for nb, notebook in sources.items()}
        # notebook name -> {grade_id: the nbgrader metadata of its cell}, for every graded cell
        self.graded_cells = {nb: graded_cells(notebook) for nb, notebook in sources.items()}
        # the same cells as students receive them
        self.released_tests = {
            notebook: {gid: nbformat.from_dict(without_hidden_tests(c)) for gid, c in cells.items()}
            for notebook, cells in self.source_tests.items()
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
            "diagnosis": None,
            "manual": False,  # a grader's score, from the gradebook (see marks.py)
            "comment": None,  # a grader's comment on the answer this test checks
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


def grade(root, submissions_dir, names=None, report=None, jobs=None, limits=None, zygote=None):
    """Grade every submission under `submissions_dir`: ({student: {assignment: outcome}}, stats).

    `report(done, total, line)` is called as each submission is graded, for progress. The
    workers are forked from `zygote` (started here when not given; a caller that starts it
    before importing this module gets a smaller, earlier one).
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
    limits = limits or Limits()
    # A notebook's work alternates between its worker (student cells) and this process (the
    # checks), so two notebooks per core keep the cores busy.
    jobs = jobs or 2 * (os.cpu_count() or 1)
    started = time.monotonic()
    # Refused, naming the other run, while another run grades one of these assignments into
    # the same gradebook: before anything is read or written (runlock.py).
    run_lock = lock_runs(configured_gradebook_url(root), names, known)

    scratch = Path(tempfile.mkdtemp(prefix="autograd-course-"))
    own_zygote = zygote is None
    if own_zygote:  # forked now, before any test, reference or submission is read
        zygote = Zygote(limits)
    run = cgroups.Run()  # every notebook's cgroup is made in it
    try:
        secret = course_secret(root)  # only now: the zygote, parent of all workers, has no copy
        course = {name: Assignment(root, name, secret) for name in names}
        ids_of = {name: a.grade_ids for name, a in course.items()}
        todo, unrecognised = submissions_in(submissions_dir, course, known)
        results, stats = {}, {"peak_memory_mb": 0.0, "missing_protections": set(run.missing)}
        stats["unrecognised"] = unrecognised
        setup = {
            "cgroups": run,
            "zygote": zygote,
            "limits": limits,
            "folders": Folders(root),
            "course": course,
            "ids_of": ids_of,
        }
        # The judges are forked before the gradebook is opened: they do not inherit its
        # connection (only a judge started to replace one that died does, and never uses it).
        with Judges(jobs, setup) as judges:
            graded = judges.results(todo)
            # Only this process writes the gradebook: nbgrader is imported now, while the
            # judges, which never need it, start grading.
            from autograder import gradebook

            # nbgrader's own SQLAlchemy usage warns on every submission; not ours to fix.
            warnings.filterwarnings("ignore", module="nbgrader")
            api = nbgrader_api(root)
            with run_lock.setting_up():  # a run on other assignments may be doing it too
                teach_gradebook(gradebook, api, root, course, scratch)
            with gradebook.open_gradebook(api) as book:
                recorder = gradebook.ScoreRecorder(book)
                known_students = {student.id for student in book.students}
                recorded = {}  # (student, assignment) -> the notebooks recorded
                for done, (student, name, outcome, pages) in enumerate(graded, 1):
                    for notebook, page in pages:
                        recorder.record(name, student, notebook, page["scores"], page["timestamp"])
                        recorded.setdefault((student, name), []).append(notebook)
                        stats["peak_memory_mb"] = max(
                            stats["peak_memory_mb"], page["peak_memory_mb"]
                        )
                        stats["missing_protections"].update(page["missing"])
                    results.setdefault(student, {})[name] = outcome
                    if report:
                        report(done, len(todo), f"graded {student}/{name}: {shown_score(outcome)}")
                marks = gradebook.recorded_marks(book, course)
            # the recorder added them by id only: nbgrader shows "None, None" for their names
            stats["new_students"] = sorted({s for s, _ in recorded} - known_students)
            with_gradebook_marks(setup["folders"], course, results, recorded, marks)
    finally:
        run.remove()
        if own_zygote:
            zygote.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        run_lock.release()
    stats["seconds"] = time.monotonic() - started
    stats["missing_protections"] = sorted(stats["missing_protections"])
    return results, stats


def with_gradebook_marks(folders, course, results, recorded, marks):
    """The scores of the notebooks `recorded` as the gradebook holds them (`marks`), in
    `results` and in their feedback pages: a score or comment a grader gave in the formgrader
    is kept by the recorder, and shown instead of the automatic score."""
    for (student, name), notebooks in recorded.items():
        assignment, outcome = course[name], results[student][name]
        by_hand = [
            notebook
            for notebook in notebooks
            if apply_marks(
                outcome, assignment.anchors[notebook], marks[student, name, Path(notebook).stem]
            )
        ]
        if by_hand:
            ids = {notebook: list(tests) for notebook, tests in assignment.released_tests.items()}
            rewrite_pages(folders, Tests(name, ids, assignment.anchors), student, outcome, by_hand)


def submissions_in(submissions_dir, course, known):
    """[(student, assignment folder)] to grade, of the assignments in `course`, and
    [{"path", "why"}] for every other entry of `submissions_dir` that will not be graded
    (those of a `known` assignment left out with --assignment excepted)."""
    todo, unrecognised = [], []

    def skip(path, why):
        unrecognised.append({"path": str(path.relative_to(submissions_dir)), "why": why})

    for student_dir in sorted(submissions_dir.iterdir()):
        if not student_dir.is_dir():
            skip(student_dir, "a file where a student's folder should be")
            continue
        for assignment_dir in sorted(student_dir.iterdir()):
            name = assignment_dir.name
            if name in course:
                todo.append((student_dir.name, assignment_dir))
                if not (student_dir.is_symlink() or assignment_dir.is_symlink()):  # refused
                    expected = list(course[name].released_tests)
                    for path, why in notebook_files(assignment_dir, expected)[1].items():
                        skip(assignment_dir / path, why)
            elif name not in known:
                closest = difflib.get_close_matches(name, known, n=1)
                skip(
                    assignment_dir,
                    f"no assignment called {name} in source/"
                    + (f" (did you mean {closest[0]}?)" if closest else ""),
                )
    return todo, unrecognised


def notebook_files(submission, expected):
    """Which file of the folder `submission` is graded as each `expected` notebook name, and
    why each other notebook in it is not: ({expected name: path}, {path: why}), paths relative
    to the folder. A notebook under another name or in a subfolder (a browser's "name
    (1).ipynb", a zip's folder) is graded as the one expected notebook that is missing, when
    it is the only such notebook. Names only: no file is read and no link is followed."""
    found = []
    for folder, subfolders, files in os.walk(submission):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))  # checkpoints
        found += [
            Path(folder, file).relative_to(submission)
            for file in sorted(files)
            if file.endswith(".ipynb") and not file.startswith(".")
        ]
    missing = [name for name in expected if Path(name) not in found]
    others = [path for path in found if str(path) not in expected]
    if len(missing) == 1 and len(others) == 1:
        return {missing[0]: others[0]}, {}
    ours = " and ".join(expected)
    return {}, {
        str(path): f"a notebook in a subfolder (only {ours} directly in the folder is graded)"
        if len(path.parts) > 1
        else f"a notebook with another name than {ours}"
        for path in others
    }


def teach_gradebook(gradebook, api, root, course, scratch):
    """Make sure the gradebook knows every assignment's cells: nbgrader records them when it
    releases an assignment, so release (into `scratch`) those it does not know yet."""
    with gradebook.open_gradebook(api) as book:
        stale = [a.name for a in course.values() if not gradebook.in_gradebook(book, a)]
    if not stale:
        return
    refused = [r.sentence for r in release(root, stale, scratch / "release") if not r.ok]
    if refused:
        others = " (--assignment NAME grades the others)" if len(course) > len(refused) else ""
        raise CourseError("\n".join(refused) + f"\nNothing was graded{others}.")


class Judges:
    """`count` judges: processes of the grader's own (forked from it, so trusted) that grade
    submissions one at a time, each with a worker slot of its own. They run the checks side by
    side, which one process could not: Python runs one thread at a time.

    Nothing a submission does can leave the run waiting: a judge that dies, or that takes
    longer than its submission's whole time allows, costs only that submission (it gets an
    error), and a new judge takes its slot.
    """

    def __init__(self, count, setup):
        self.context = multiprocessing.get_context("fork")
        self.setup = {**setup, "spawning": self.context.Lock()}
        self.idle = []  # (connection, process, slot)
        self.busy = {}  # connection -> (process, slot, item, when it must be done by)
        self.processes = {}  # slot -> its judge: idle, busy, or between the two when stopped
        for slot in range(count):
            self.start(slot)

    def start(self, slot):
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=judge_loop, args=(theirs, slot, self.setup))
        process.start()
        self.processes[slot] = process
        theirs.close()
        self.idle.append((ours, process, slot))

    def results(self, todo):
        """judge(item) for every item of `todo`, in the order they are done."""
        todo = list(todo)
        limits = self.setup["limits"]
        while todo or self.busy:
            while todo and self.idle:
                connection, process, slot = self.idle.pop()
                item = todo.pop(0)
                notebooks = len(self.setup["course"][item[1].name].released_tests)
                allowed = (limits.notebook_seconds + 30) * max(notebooks, 1) + 60
                connection.send(item)
                self.busy[connection] = (process, slot, item, time.monotonic() + allowed)
            soonest = min(due for *_, due in self.busy.values())
            waiting = list(self.busy) + [process.sentinel for process, *_ in self.busy.values()]
            ready = wait(waiting, timeout=max(soonest - time.monotonic(), 0))
            for connection, (process, slot, item, due) in list(self.busy.items()):
                if connection not in ready and process.sentinel not in ready:
                    if time.monotonic() < due:
                        continue
                    process.kill()
                del self.busy[connection]
                try:
                    result = connection.recv()
                except (EOFError, OSError):
                    yield self.replace(connection, process, slot, item)
                    continue
                self.idle.append((connection, process, slot))
                yield result

    def replace(self, connection, process, slot, item):
        """The outcome of a submission whose judge died or ran out of time, after starting
        another judge in its slot."""
        process.kill()
        process.join()
        connection.close()
        # Its worker may still run, in the slot's cgroup and with the slot's uid.
        for group in set(self.setup["cgroups"].dirs.values()):
            for leftover in group.glob(f"slot-{slot}-*"):
                cgroups.remove_tree(leftover)
        if os.getuid() == 0:
            sandbox.kill_uid(self.setup["zygote"].uid(slot))
        self.start(slot)
        student, submission = item
        outcome = empty_outcome(self.setup["course"][submission.name])
        outcome["error"] = "internal error: grading it stopped the process that graded it"
        return student, submission.name, outcome, []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for connection in [c for c, *_ in self.idle] + list(self.busy):
            connection.close()
        # Every judge, even one a Ctrl-C caught between busy and idle: one left alive would
        # keep the zygote, and so the grader, waiting.
        for slot, process in self.processes.items():
            process.kill()
            process.join()
            if os.getuid() == 0:  # a last sweep: no worker may outlive the run
                sandbox.kill_uid(self.setup["zygote"].uid(slot))


JUDGE = {}  # what a judge process works with, set when it starts


def judge_loop(connection, slot, setup):
    """A judge's life: grade each submission it is sent, until the grader closes the pipe."""
    sandbox.die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grader decides when judges stop
    torch.set_num_threads(1)
    verdict.Session.spawn_lock = setup["spawning"]  # the zygote takes one request at a time
    verdict.Notebook.cgroups = setup["cgroups"]
    JUDGE.update(setup, slot=slot)
    while True:
        try:
            item = connection.recv()
        except (EOFError, OSError):
            return
        connection.send(judge(item))


def judge(item):
    """(student, assignment, outcome, graded pages) for one submission folder; the pages are
    written here, the scores go back to the grader, which alone writes the gradebook."""
    student, submission = item
    assignment = JUDGE["course"][submission.name]
    try:
        outcome, graded = grade_submission(
            JUDGE["zygote"],
            JUDGE["slot"],
            JUDGE["limits"],
            assignment,
            submission,
            JUDGE["ids_of"],
        )
        pages = []
        if graded:  # what each test said, for `autograd-course feedback` (see marks.py)
            write_outcome(JUDGE["folders"], student, submission.name, outcome)
        for notebook_name, page in graded:
            write_pages(JUDGE["folders"], assignment, submission, notebook_name, page, outcome)
            scores = {gid: outcome["tests"][gid]["score"] for gid in page["verdicts"]}
            pages.append(
                (
                    notebook_name,
                    {
                        "scores": scores,
                        "timestamp": submission_timestamp(page["files"]),
                        "peak_memory_mb": page["peak_memory_mb"],
                        "missing": page["missing"],
                    },
                )
            )
    except Exception as error:  # a bug of ours must not stop the class's grading
        outcome, pages = empty_outcome(assignment), []
        outcome["error"] = f"internal error while grading: {type(error).__name__}: {error}"
    return student, submission.name, outcome, pages


def shown_score(outcome):
    return "error" if outcome["error"] else f"{outcome['score']:g}/{outcome['max_score']:g}"


def grade_submission(zygote, slot, limits, assignment, submission, ids_of):
    """One student's submission of one assignment: (outcome, [(notebook name, graded page)])."""
    outcome = empty_outcome(assignment)
    problems = submission_problems(submission)
    if problems:
        outcome["error"] = problems
        return outcome, []
    try:  # read once: what is checked is what is copied beside the feedback
        files = submission_files(submission)
    except BadFile as error:
        outcome["error"] = str(error)
        return outcome, []

    errors, graded = [], []
    stand_ins = notebook_files(submission, list(assignment.released_tests))[0]
    for name, stand_in in stand_ins.items():  # the only notebook, misnamed: graded all the same
        errors.append(f"{stand_in} was graded as {name}, the notebook it should be")
    for notebook_name, released_tests in assignment.released_tests.items():
        try:
            notebook = read_notebook(submission / stand_ins.get(notebook_name, notebook_name))
        except BadNotebook as error:
            errors.append(str(error))
            continue
        wrong = belongs_elsewhere(notebook, assignment, ids_of)
        if wrong:
            errors.append(f"{notebook_name} {wrong}")
            continue
        for why in with_source_metadata(notebook, assignment.graded_cells[notebook_name]):
            errors.append(f"{notebook_name}: {why}")
        source_tests = assignment.source_tests[notebook_name]
        tests = {gid: cell.source for gid, cell in source_tests.items()}
        inputs_key = student_key(assignment.inputs_key, submission.parent.name)
        run = verdict.Notebook(
            zygote, slot, limits, tests, assignment.anchors[notebook_name], inputs_key=inputs_key
        )
        verdicts = run.grade(notebook)
        for grade_id, (passed, message, diagnosis) in verdicts.items():
            test = outcome["tests"][grade_id]
            test.update(
                score=test["max_score"] if passed else 0.0,
                passed=passed,
                message=message,
                diagnosis=diagnosis,
            )
        for grade_id, note in test_cell_changes(notebook, released_tests, source_tests).items():
            test = outcome["tests"][grade_id]
            test["message"] = f"{note} {test['message']}".strip()
        errors += [f"{notebook_name}: {why}" for why in run.broken.values()]
        graded.append(
            (
                notebook_name,
                {
                    "notebook": notebook,
                    "verdicts": verdicts,
                    "cell_results": run.cell_results,
                    "broken": run.broken,
                    "peak_memory_mb": run.peak_memory_mb,
                    "missing": run.missing,
                    "files": files,
                },
            )
        )
    outcome["score"] = sum(t["score"] for t in outcome["tests"].values())
    outcome["error"] = "; ".join(errors) or None
    return outcome, graded


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


def with_source_metadata(notebook, source_cells):
    """Give every cell of `notebook` that claims a grade_id the source's nbgrader metadata for
    it (ids, points and names are the source's); a cell whose grade_id is not nbgrader's kind
    of id or not one of the source's loses its nbgrader metadata. [why, for each one lost]."""
    dropped = []
    for index, cell in enumerate(notebook.cells):
        if "nbgrader" not in cell.metadata:
            continue
        grade_id = nbgrader_meta(cell).get("grade_id")
        if NBGRADER_ID.fullmatch(grade_id or "") and grade_id in source_cells:
            cell.metadata["nbgrader"] = nbformat.from_dict(source_cells[grade_id])
        else:
            del cell.metadata["nbgrader"]
            dropped.append(
                f"cell {index + 1} is marked as an exercise this notebook does not have; "
                "it was graded as an ordinary cell"
            )
    return dropped


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
