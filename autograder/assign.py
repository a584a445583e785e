"""Stage 1, assign: the source notebooks become the student versions in release/.

nbgrader generates each assignment into a scratch folder, which replaces the assignment's folder
in release/ only if that worked: a failure leaves release/ as it was, and the next assignment is
released all the same.

nbgrader keys the gradebook's cells by grade_id. Once an assignment has submissions, releasing it
again updates its cells in place (their code, hidden tests included, and their points), so the
scores recorded stay attached to them, but nbgrader refuses to add, remove or rename a cell,
after having emptied release/<assignment>/. So that case is caught here first, before nbgrader
runs, and explained; any other change is released and described.
"""

import re
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import nbformat

from autograder.check import RELEASED_TESTS, write_released_tests
from autograder.course import assignments, nbgrader_api, source_notebooks
from autograder.notebooks import nbgrader_meta

CELL_KINDS = ("grade", "solution", "task", "source")  # the gradebook's tables of cells


class Released(NamedTuple):
    name: str
    ok: bool
    sentence: str  # what changed and what it means for grades, or why it was not released


class Recorded(NamedTuple):
    """What the gradebook holds of one assignment."""

    submissions: int
    cells: dict  # notebook name -> {kind: set of grade_ids}
    tests: dict  # (notebook name, grade_id) -> the graded cell's code, hidden tests included
    points: dict  # (notebook name, grade_id) -> its points


def release(root, names=None, release_dir=None):
    """Generate the student version of each assignment (all of them by default), each on its
    own: one `Released` per assignment, in order.

    Also records each assignment's cells in the gradebook, which grading needs, and its test
    cells beside the notebooks, which `check` needs. With `release_dir`, the notebooks go
    there instead of release/.
    """
    release_dir = Path(release_dir or Path(root) / "release")
    with tempfile.TemporaryDirectory(prefix="autograd-course-release-") as scratch:
        api = nbgrader_api(root, CourseDirectory={"release_directory": scratch})
        return [
            release_one(api, root, name, Path(scratch) / name, release_dir / name)
            for name in names or assignments(root)
        ]


def release_one(api, root, name, generated, folder):
    """Release `name`: nbgrader generates it into `generated`, which then replaces `folder`."""
    before = recorded(api, name)
    if before and before.submissions:
        refusal = refused_change(root, name, before)
        if refusal:
            return Released(name, False, refusal)
    result = api.generate_assignment(name, force=True, create=True)
    if not result["success"]:
        return Released(
            name,
            False,
            f"{name} cannot be released: nbgrader says {nbgrader_reason(result)}; fix "
            f"source/{name} and release again (release/{name} was left as it was).",
        )
    write_released_tests(generated)
    sentence = what_changed(name, before, recorded(api, name), folder, generated)
    replace_folder(folder, generated)
    return Released(name, True, sentence)


def recorded(api, name):
    """What the gradebook holds of assignment `name`, or None if it does not know it."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(api.coursedir.db_url) as book:
        try:
            assignment = book.find_assignment(name)
        except MissingEntry:
            return None
        cells, tests, points = {}, {}, {}
        for notebook in assignment.notebooks:
            cells[notebook.name] = {
                kind: {cell.name for cell in getattr(notebook, f"{kind}_cells")}
                for kind in CELL_KINDS
            }
            graded = cells[notebook.name]["grade"]
            for cell in notebook.source_cells:
                if cell.name in graded:
                    tests[notebook.name, cell.name] = cell.source
            for cell in notebook.grade_cells:
                points[notebook.name, cell.name] = cell.max_score
        return Recorded(len(assignment.submissions), cells, tests, points)


def source_cells(path):
    """{kind: set of grade_ids} of a source notebook, as nbgrader's SaveCells records them
    (LockCells locks every graded cell first, so graded cells are read-only ones too)."""
    cells = {kind: set() for kind in CELL_KINDS}
    for cell in nbformat.read(path, as_version=4).cells:
        meta = nbgrader_meta(cell)
        if "grade_id" not in meta:
            continue
        for kind in ("grade", "solution", "task"):
            if meta.get(kind):
                cells[kind].add(meta["grade_id"])
        if any(meta.get(kind) for kind in ("grade", "solution", "task", "locked")):
            cells["source"].add(meta["grade_id"])
    return cells


def refused_change(root, name, before):
    """Why nbgrader would refuse source/`name` now that it has submissions, in one sentence
    that says what to do; None if it would not."""
    now = {}
    for path in source_notebooks(root, name):
        try:
            now[path.stem] = source_cells(path)
        # nbformat raises many kinds of error for a file that is not a notebook
        except Exception as error:
            return (
                f"{name} cannot be released: source/{name}/{path.name} is not a notebook "
                f"nbformat can read ({type(error).__name__}); fix it and release again."
            )
    graded = counted(before.submissions, "submission")
    remove = f"delete every grade of {name} with `nbgrader db assignment remove {name} --force`"
    if set(now) != set(before.cells):
        return (
            f"{name} cannot be released: its notebooks in source/ ({listed(sorted(now))}) are "
            f"not those of its {graded} in the gradebook ({listed(sorted(before.cells))}); "
            f"restore them, or {remove} first."
        )
    problems = []
    for notebook, old in sorted(before.cells.items()):
        new = now[notebook]
        old_ids, new_ids = set().union(*old.values()), set().union(*new.values())
        gone, added = sorted(old_ids - new_ids), sorted(new_ids - old_ids)
        kind = sorted(i for i in old_ids & new_ids if any(i in old[k] ^ new[k] for k in old))
        changes = [f"no longer has {cells_named(gone)}"] if gone else []
        changes += [f"has the new {cells_named(added)}"] if added else []
        changes += [f"made {cells_named(kind)} another kind of cell"] if kind else []
        if changes:
            problems.append(f"source/{name}/{notebook}.ipynb {' and '.join(changes)}")
    if not problems:
        return None
    return (
        f"{name} cannot be released: {'; '.join(problems)}, but its {graded} in the gradebook "
        "are scored by grade_id, and nbgrader cannot add, remove or rename the cells of an "
        "assignment once it has submissions; give the cells back their grade_ids (and put a new "
        f"exercise in a new assignment), or {remove} first."
    )


def what_changed(name, before, after, folder, generated):
    """One sentence: what releasing `name` changed, and what that means for its grades."""
    if before is None:
        return f"{name}: released, and recorded in the gradebook."
    # keys are (notebook, grade_id)
    tests = sorted(key[1] for key, code in after.tests.items() if before.tests.get(key) != code)
    visible = released_tests(folder) != released_tests(generated)
    points = {
        key[1]: (before.points.get(key, 0.0), new)
        for key, new in after.points.items()
        if before.points.get(key) != new
    }
    changes = []
    if tests:
        hidden_only = "" if visible else " (hidden tests only)"
        changes.append(f"the tests of {listed(tests)}{hidden_only}")
    for gid, (old, new) in points.items():
        changes.append(f"{gid} is worth {new:g} points (was {old:g})")
    if not same_files(folder, generated):
        changes.append("the notebook students get")
    if not changes:
        return f"{name}: released, unchanged."
    sentence = f"{name}: released; changed: {', '.join(changes)}"
    if before.submissions and (tests or points):
        total_before, total_after = sum(before.points.values()), sum(after.points.values())
        if total_before != total_after:
            sentence += f"; it is now out of {total_after:g} (was {total_before:g})"
        sentence += (
            f"; the scores of its {counted(before.submissions, 'submission')} in the gradebook "
            "stay as they are until you grade again, which applies the new tests and points."
        )
    elif before.submissions:
        sentence += "; the scores of its submissions are unaffected."
    else:
        sentence += "; it has no submissions yet."
    return sentence


def released_tests(folder):
    path = Path(folder) / RELEASED_TESTS
    return path.read_text() if path.is_file() else None


def same_files(folder, generated):
    """Whether the folder `folder` holds exactly the files of `generated`, byte for byte."""
    files = [
        {p.relative_to(top): p.read_bytes() for p in top.rglob("*") if p.is_file()}
        for top in (Path(folder), Path(generated))
    ]
    return files[0] == files[1]


def replace_folder(folder, generated):
    """Put `generated` where `folder` is: the old folder goes only once the new one is there."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    incoming = folder.with_name(f".{folder.name}.new")
    outgoing = folder.with_name(f".{folder.name}.old")
    for leftover in (incoming, outgoing):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(generated, incoming)
    if folder.exists():
        folder.rename(outgoing)
    incoming.rename(folder)
    shutil.rmtree(outgoing, ignore_errors=True)


EXCEPTION_LINE = re.compile(r"^\s*(?:\[ERROR\]\s*)?(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
GENERIC = "Please see the"  # nbgrader's own closing line, which says nothing of the cause


def nbgrader_reason(result):
    """The cause nbgrader gave for a failure (the message of the exception it logged)."""
    lines = f"{result.get('log') or ''}\n{result.get('error') or ''}".splitlines()
    causes = [m.group(2).strip() for m in map(EXCEPTION_LINE.match, lines) if m]
    causes = [cause for cause in causes if GENERIC not in cause]
    if causes:
        return f'"{causes[-1]}"'
    errors = [line.split("]", 1)[1].strip() for line in lines if line.startswith("[ERROR]")]
    errors = [line for line in errors if GENERIC not in line and "Traceback" not in line]
    return f'"{errors[0]}"' if errors else "nothing more"


def listed(names):
    return ", ".join(names)


def cells_named(names):
    return f"{'cell' if len(names) == 1 else 'cells'} {listed(names)}"


def counted(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"
