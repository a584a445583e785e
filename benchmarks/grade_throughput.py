"""Grading throughput: plain nbgrader against `autograd-course grade`, on the same class.

What it measures: for every assignment in source/, a synthetic class of students (by default
30) is built, cycling through KINDS: fifteen students to a cycle, one of them slow.

    correct  the source notebook itself
    blank    the released notebook, unchanged
    wrong    every solution cell filled with the instructor's solution, one with a typical
             mistake from tests/mutants.py (each wrong student gets the next mutant)
    mixed    every other solution cell filled with the solution, the rest left as released
    slow     the correct notebook with a cell `import time; time.sleep(0.5)` appended

The class is graded twice, each time in its own temporary copy of the course (nbgrader_config.py,
source/, release/), so the two graders never share a gradebook and the repository's own
gradebook is never touched:

    plain nbgrader   `nbgrader autograde A --force` then `nbgrader generate_feedback A --force`
                     for every assignment (after an untimed `nbgrader generate_assignment`)
    autograd-course  `autograd-course grade submitted --json grades.json [--jobs N]`
                     (after an untimed `autograd-course release`)

Each time is the wall time of the whole commands, process start included. The script prints
both times, seconds per notebook, their ratio, and checks that the two graders gave every
(student, assignment) the same score; it lists any disagreement and then exits with status 1.

It is a benchmark, not a test: run it by hand, from the course root.

    cd /work/main && .venv/bin/python benchmarks/grade_throughput.py [--students N] [--jobs N]
                                                                      [--keep DIR]

--jobs is passed to `autograd-course grade` (default: none, so its own default applies);
--keep DIR builds the two course copies in DIR (which must not exist yet or be empty) and
leaves them there to inspect.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from mutants import MUTANTS  # noqa: E402 (tests/ is not a package)

# A cycle of fifteen students: mostly ordinary work, and a few slow ones.
KINDS = ["correct", "blank", "wrong", "mixed"] * 3 + ["correct", "wrong", "slow"]
# The tools beside this interpreter (nbgrader, autograd-course, and alembic, which nbgrader
# runs by name) come first on the PATH of every command run here.
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", "")}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30, help="class size (default 30)")
    parser.add_argument(
        "--jobs", type=int, help="--jobs of autograd-course grade (default: its own default)"
    )
    parser.add_argument("--keep", type=Path, metavar="DIR", help="build and keep the copies here")
    parser.add_argument(
        "--only-ours",
        action="store_true",
        help="time autograd-course grade alone (plain nbgrader takes about 15 minutes)",
    )
    args = parser.parse_args()
    if args.students < 1:
        parser.error("--students must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: the folder is not empty")
    return args


# --- the synthetic class ------------------------------------------------------------------


def read(kind, assignment):
    return nbformat.read(REPO / kind / assignment / f"{assignment}.ipynb", as_version=4)


def grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def solutions(assignment):
    """{grade_id: the instructor's solution with its markers removed}, in notebook order."""
    return {
        grade_id(cell): "\n".join(line for line in cell.source.splitlines() if "### " not in line)
        for cell in read("source", assignment).cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


def filled_release(assignment, answers):
    """The released notebook with the solution cells named in `answers` replaced by them."""
    notebook = read("release", assignment)
    for cell in notebook.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return notebook


def applicable_mutants(assignment):
    """The typical mistakes of tests/mutants.py that still match this assignment's solution."""
    code = solutions(assignment)
    found = [m for m in MUTANTS if m.assignment == assignment and m.old in code.get(m.cell, "")]
    if not found:
        sys.exit(f"no mutant in tests/mutants.py applies to {assignment}: cannot build 'wrong'")
    return found


def submission(kind, assignment, number):
    """The notebook a student of this `kind` hands in; `number` picks which mistake is made."""
    if kind == "correct":
        return read("source", assignment)
    if kind == "blank":
        return read("release", assignment)
    code = solutions(assignment)
    if kind == "wrong":
        mutants = applicable_mutants(assignment)
        mutant = mutants[number % len(mutants)]
        code[mutant.cell] = code[mutant.cell].replace(mutant.old, mutant.new)
        return filled_release(assignment, code)
    if kind == "mixed":
        return filled_release(assignment, dict(list(code.items())[::2]))
    if kind == "slow":
        notebook = read("source", assignment)
        notebook.cells.append(nbformat.v4.new_code_cell("import time\n\ntime.sleep(0.5)"))
        return notebook
    raise ValueError(kind)


def synthetic_class(assignments, size):
    """{(student, assignment): notebook}: students s001.. cycle through KINDS."""
    submissions = {}
    for index in range(size):
        student, kind = f"s{index + 1:03d}", KINDS[index % len(KINDS)]
        for assignment in assignments:
            submissions[student, assignment] = submission(kind, assignment, index)
    return submissions


def kind_of(student):
    return KINDS[(int(student[1:]) - 1) % len(KINDS)]


# --- the two graders ----------------------------------------------------------------------


def copy_course(destination, submissions):
    """A course of its own at `destination`, with the class in submitted/."""
    destination.mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", destination)
    for folder in ("source", "release"):
        shutil.copytree(REPO / folder, destination / folder)
    for (student, assignment), notebook in submissions.items():
        folder = destination / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(notebook, folder / f"{assignment}.ipynb")
    return destination


def run(command, cwd):
    """Run `command` in `cwd`; stop the benchmark with its output if it fails."""
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(
            f"`{shlex.join(command)}` failed in {cwd} (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )


def grade_with_nbgrader(course, assignments, students):
    """Seconds taken by autograde + generate_feedback of every assignment, and the scores."""
    from nbgrader.api import Gradebook, MissingEntry

    for assignment in assignments:  # setup, not timed
        run(["nbgrader", "generate_assignment", assignment, "--force"], course)
    started = time.perf_counter()
    for assignment in assignments:
        progress(f"plain nbgrader: {assignment}")
        run(["nbgrader", "autograde", assignment, "--force"], course)
        run(["nbgrader", "generate_feedback", assignment, "--force"], course)
    seconds = time.perf_counter() - started

    scores, cells = {}, {}
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gradebook:
        for student in students:
            for assignment in assignments:
                try:
                    found = gradebook.find_submission(assignment, student)
                except MissingEntry:
                    continue  # never graded: shows up as a mismatch
                scores[student, assignment] = found.score
                cells[student, assignment] = {
                    grade.name: grade.score
                    for notebook in found.notebooks
                    for grade in notebook.grades
                }
    return seconds, scores, cells


def grade_with_ours(course, jobs):
    """Seconds taken by `autograd-course grade`, and the scores from its JSON."""
    # setup, not timed: releasing records the assignments in the gradebook, as
    # generate_assignment does for nbgrader above
    run(["autograd-course", "release"], course)
    command = ["autograd-course", "grade", "submitted", "--json", "grades.json"]
    if jobs:
        command += ["--jobs", str(jobs)]
    progress("autograd-course: " + shlex.join(command))
    started = time.perf_counter()
    run(command, course)
    seconds = time.perf_counter() - started

    students = json.loads((course / "grades.json").read_text())["students"]
    scores, cells = {}, {}
    for student, outcomes in students.items():
        for assignment, outcome in outcomes.items():
            scores[student, assignment] = outcome["score"]
            cells[student, assignment] = {g: t["score"] for g, t in outcome["tests"].items()}
    return seconds, scores, cells


# --- the report ---------------------------------------------------------------------------


def progress(line):
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def machine():
    return (
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, "
        f"python {platform.python_version()}, torch {version('torch')}, "
        f"nbgrader {version('nbgrader')}"
    )


def timing_table(rows):
    """rows: (grader, notebooks graded, wall seconds)."""
    lines = [f"{'grader':<16} {'notebooks':>9} {'wall time':>10} {'s / notebook':>13}"]
    for grader, count, seconds in rows:
        per = seconds / count if count else float("nan")
        lines.append(f"{grader:<16} {count:>9} {seconds:>9.1f}s {per:>12.2f}s")
    return "\n".join(lines)


def mismatches(expected, theirs, ours, their_cells, our_cells):
    """One line per (student, assignment) whose two scores differ, with the cells that differ."""
    lines = []
    for student, assignment in expected:
        key = student, assignment
        a, b = theirs.get(key), ours.get(key)
        if a is not None and b is not None and abs(a - b) < 1e-9:
            continue
        cells = their_cells.get(key, {})
        differing = [
            f"{g} {cells.get(g)} vs {s}"
            for g, s in sorted(our_cells.get(key, {}).items())
            if cells.get(g) is None or abs(cells[g] - s) > 1e-9
        ]
        lines.append(
            f"  {student} ({kind_of(student)}) {assignment}: nbgrader {a}, autograd-course {b}"
            + (f"  [{'; '.join(differing)}]" if differing else "")
        )
    return lines


def main():
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # in order with the progress lines on stderr
    print(f"command: {shlex.join(sys.orig_argv)}  (in {Path.cwd()})")
    print(machine())

    assignments = sorted(p.name for p in (REPO / "source").iterdir() if p.is_dir())
    submissions = synthetic_class(assignments, args.students)
    students = sorted({student for student, _ in submissions})
    jobs = f"--jobs {args.jobs}" if args.jobs else "its default --jobs"
    print(
        f"class: {args.students} students x {len(assignments)} assignments "
        f"= {len(submissions)} notebooks; kinds cycle {', '.join(KINDS)}; "
        f"autograd-course with {jobs}"
    )

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="grade-throughput-"))
    try:
        if not args.only_ours:
            theirs = grade_with_nbgrader(
                copy_course(workdir / "nbgrader", submissions), assignments, students
            )
        ours = grade_with_ours(copy_course(workdir / "autograd-course", submissions), args.jobs)
    finally:
        if args.keep:
            print(f"course copies kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    if args.only_ours:
        print(timing_table([("autograd-course", len(ours[1]), ours[0])]))
        return 0
    print(
        timing_table(
            [
                ("plain nbgrader", len(theirs[1]), theirs[0]),
                ("autograd-course", len(ours[1]), ours[0]),
            ]
        )
    )
    print(f"\nratio: plain nbgrader / autograd-course = {theirs[0] / ours[0]:.2f}x")

    wrong = mismatches(submissions, theirs[1], ours[1], theirs[2], ours[2])
    if wrong:
        print(f"\nscores DIFFER for {len(wrong)} of {len(submissions)} (student, assignment):")
        print("\n".join(wrong))
        return 1
    print(f"\nscores match for all {len(submissions)} (student, assignment)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
