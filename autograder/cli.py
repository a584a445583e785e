"""The `autograd-course` command: wires the stages (assign, check, grade) to the command line."""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from autograder.course import CourseError, course_root
from autograder.sandbox import Limits


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="autograd-course", description="The autograd course's tools."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "release",
        help="regenerate release/ from source/ for every assignment, and the tables of "
        "assignments in README.md and course/README.md",
    )
    new_parser = commands.add_parser(
        "new", help="scaffold an assignment: its notebook, its lecture and its mutants"
    )
    new_parser.add_argument("name", metavar="NAME", help="NN_snake_case, e.g. 09_jacobians")
    grade_parser = commands.add_parser(
        "grade", help="autograde submissions, write feedback, report scores"
    )
    grade_parser.add_argument(
        "submissions", type=Path, help="folder laid out as <student>/<assignment>/<nb>.ipynb"
    )
    grade_parser.add_argument(
        "--assignment",
        action="append",
        dest="assignments",
        metavar="NAME",
        help="grade only this one (repeatable)",
    )
    grade_parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the results as JSON"
    )
    grade_parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="notebooks graded at once (default: twice the CPU count)",
    )
    grade_parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="time limit per student cell and per call of a student's function; above 0 "
        "(default 30)",
    )
    grade_parser.add_argument(
        "--notebook-timeout",
        type=float,
        metavar="SECONDS",
        help="time limit for all of a notebook's cells and calls together, replays after a "
        "timeout included; at least --timeout (default: 4 times --timeout)",
    )
    grade_parser.add_argument(
        "--memory",
        type=int,
        default=2048,
        metavar="MB",
        help="memory a notebook's processes may add together to what every notebook shares "
        "(Python, torch and matplotlib, loaded once: about 250 MB); at least "
        f"{Limits.MIN_MEMORY_MB}, default 2048",
    )
    feedback_parser = commands.add_parser(
        "feedback",
        help="rewrite the feedback pages from the gradebook, with the scores and comments "
        "given in the formgrader (runs no student code)",
    )
    feedback_parser.add_argument(
        "--assignment",
        action="append",
        dest="assignments",
        metavar="NAME",
        help="only this one (repeatable)",
    )
    feedback_parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="also write the results as JSON, as `grade --json` does (for `report`)",
    )
    report_parser = commands.add_parser(
        "report", help="a class report per exercise from a grading run's JSON (HTML and CSV)"
    )
    report_parser.add_argument(
        "grades", type=Path, nargs="?", default=Path("grades.json"), help="default: grades.json"
    )
    report_parser.add_argument(
        "--out", type=Path, default=Path("report"), metavar="DIR", help="default: report/"
    )
    check_parser = commands.add_parser(
        "check", help="run a notebook's visible tests before you submit"
    )
    check_parser.add_argument("notebook", type=Path)
    check_parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="time limit per cell and per call of one of your functions (default 30)",
    )
    check_parser.add_argument(
        "--json", action="store_true", help="print the results as JSON (for nbgrader's Validate)"
    )
    check_parser.add_argument(
        "--near",
        type=Path,
        metavar="DIR",
        help="look for the released test cells from DIR (default: the notebook's folder)",
    )
    edition_parser = commands.add_parser(
        "student-edition", help="write what students get (no solutions, no hidden tests) into OUT"
    )
    edition_parser.add_argument("out", type=Path, metavar="OUT", help="a new or empty folder")
    edition_parser.add_argument(
        "--exchange",
        action="store_true",
        help="students use nbgrader's exchange: keep their Assignment List",
    )
    args = parser.parse_args(argv)
    # jsonschema (through nbformat) imports this optional IRI parser, which takes seconds to
    # build its grammar; nothing here validates IRIs, so let that optional import fail fast.
    sys.modules.setdefault("rfc3987_syntax", None)

    try:
        run = {
            "release": run_release,
            "new": run_new,
            "grade": run_grade,
            "feedback": run_feedback,
            "report": run_report,
            "check": run_check,
            "student-edition": run_student_edition,
        }
        status = run[args.command](args)
    except CourseError as error:
        print(f"autograd-course {args.command}: {error}", file=sys.stderr)
        return 2
    if args.command == "check":
        # A student waits for the answer, not for torch's teardown (a quarter of a second);
        # check leaves nothing to clean up.
        sys.stdout.flush()
        os._exit(status)
    return status


def run_release(args):
    from autograder.assign import release
    from autograder.author import write_tables

    root = course_root()
    outcomes = release(root)
    for outcome in outcomes:  # each assignment is released on its own: one sentence each
        if outcome.ok:
            print(outcome.sentence)
        else:
            print(f"autograd-course release: {outcome.sentence}", file=sys.stderr)
    for path in write_tables(root):
        print(f"regenerated the table of assignments in {path.relative_to(root)}")
    return 0 if all(outcome.ok for outcome in outcomes) else 2


def run_new(args):
    from autograder.author import scaffold

    root = course_root()
    for path in scaffold(root, args.name):
        print(f"wrote {path.relative_to(root)}")
    print(
        "Next: replace the examples (the notebooks' metadata say what the tables show), "
        "execute both notebooks, `make release`, `make test`. The README says how."
    )
    return 0


def run_student_edition(args):
    from autograder.edition import write_edition

    root = course_root()
    write_edition(root, args.out, args.exchange)
    print(f"wrote the student edition of {root} into {args.out}")
    return 0


def run_grade(args):
    from autograder.worker import Zygote

    limits = grade_limits(args)  # every option checked before anything is written
    root = course_root()
    progress = Progress()
    try:
        # The workers' parent is forked first, with torch and matplotlib but before nbgrader
        # and the course are loaded: it is smaller, and it warms up while the rest is imported.
        zygote = Zygote(limits)
        try:
            from autograder.grade import grade

            results, stats = grade(
                root, args.submissions, args.assignments, progress, args.jobs, limits, zygote
            )
        finally:
            zygote.stop()
    except KeyboardInterrupt:
        # Each notebook's scores are committed as it is graded: what was recorded stays, and
        # grading again grades everything again, to the same scores.
        done = f"{progress.done} of {progress.total}" if progress.total else "no"
        print(
            f"{chr(10) if progress.bar else ''}interrupted: {done} submissions graded and "
            "recorded; run the same command again to grade the rest",
            file=sys.stderr,
        )
        return 130
    print(score_table(results))
    count = sum(len(outcomes) for outcomes in results.values())
    print(
        f"graded {count} submission{'s' if count != 1 else ''} in {stats['seconds']:.1f} s; "
        f"most memory one notebook added: {stats['peak_memory_mb']:.0f} MB",
        file=sys.stderr,
    )
    for missing in stats["missing_protections"]:
        print(f"warning: {missing}", file=sys.stderr)
    for skipped in stats["unrecognised"]:
        print(f"not graded: {skipped['path']}: {skipped['why']}", file=sys.stderr)
    new = stats["new_students"]
    if new:
        named = ", ".join(new[:10]) + (f" and {len(new) - 10} more" if len(new) > 10 else "")
        print(
            f"new in the gradebook, with no names yet: {named}; name them with `nbgrader db "
            "student import FILE` (a CSV with columns id, first_name, last_name, email) or "
            "`nbgrader db student add ID --first-name=… --last-name=…`",
            file=sys.stderr,
        )
    if args.json:
        everything = {"students": results, "unrecognised": stats["unrecognised"]}
        args.json.write_text(json.dumps(everything, indent=2) + "\n")
    return 0


def grade_limits(args):
    """The Limits that grade's options ask for; a CourseError if one is out of range."""
    timeout, notebook_timeout = args.timeout, args.notebook_timeout
    if not 0 < timeout < math.inf:
        raise CourseError(f"--timeout must be a number of seconds above 0, not {timeout:g}.")
    if notebook_timeout is not None and not timeout <= notebook_timeout < math.inf:
        raise CourseError(
            f"--notebook-timeout (all of a notebook's cells and calls together) must be at "
            f"least --timeout, {timeout:g} s, not {notebook_timeout:g}."
        )
    if args.jobs is not None and args.jobs < 1:
        raise CourseError(f"--jobs must be at least 1, not {args.jobs}.")
    if args.memory < Limits.MIN_MEMORY_MB:
        raise CourseError(
            f"--memory must be at least {Limits.MIN_MEMORY_MB} MB (what a notebook may add to "
            f"the torch every notebook shares), not {args.memory}."
        )
    return Limits(seconds=timeout, memory_mb=args.memory, notebook_seconds=notebook_timeout)


def run_feedback(args):
    from autograder.marks import rewrite_feedback

    root = course_root()
    results, written, skipped = rewrite_feedback(root, args.assignments)
    print(score_table(results))
    for why in skipped:
        print(f"not rewritten: {why}", file=sys.stderr)
    print(
        f"wrote {written} feedback page{'s' if written != 1 else ''} from the gradebook; "
        "`nbgrader release_feedback ASSIGNMENT` hands them out",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps({"students": results}, indent=2) + "\n")
    return 0


def run_report(args):
    from autograder.report import write_report

    try:
        results = json.loads(args.grades.read_text())["students"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CourseError(
            f"{args.grades} is not the JSON of `autograd-course grade --json` ({error})"
        ) from None
    rows = write_report(results, args.out)
    unsolved = [f"{r['assignment']}/{r['exercise']}" for r in rows if r["solved"] == 0]
    print(
        f"wrote {args.out / 'index.html'} and {args.out / 'exercises.csv'} ({len(rows)} exercises)"
    )
    if unsolved:
        print(f"nobody solved: {', '.join(unsolved)}")
    return 0


def run_check(args):
    from autograder.check import check
    from autograder.notebooks import BadNotebook
    from autograder.sandbox import Limits

    if args.timeout <= 0:
        raise CourseError("--timeout must be more than 0 seconds")
    if not args.notebook.is_file():
        raise CourseError(f"{args.notebook} is not a file")
    try:
        report = check(args.notebook, near=args.near, limits=Limits(seconds=args.timeout))
    except BadNotebook as error:
        raise CourseError(str(error)) from None
    failed = sum(not result.passed for result in report.results)
    if args.json:
        print(json.dumps(report._asdict() | {"results": [r._asdict() for r in report.results]}))
        return 1 if failed else 0
    for warning in report.warnings:
        print(f"warning: {warning}")
    for problem in report.problems:
        print(f"note: {problem}")
    if report.warnings or report.problems:
        print()
    if not report.results:
        print(f"{args.notebook} has no graded exercises to check.")
        return 1
    for result in report.results:
        mark = "passed" if result.passed else "FAILED"
        points = f"{result.points:g} point{'s' if result.points != 1 else ''}"
        print(f"{mark}  {result.grade_id} ({points})")
        if not result.passed:
            print(f"        {result.message}")
    print(f"\n{len(report.results) - failed} passed, {failed} failed")
    if not failed:
        print("All visible tests pass. Hidden tests will try more inputs when your work is graded.")
    return 1 if failed else 0


def score_table(results):
    """Students down, assignments across, `score/max` in each cell; problems listed below."""
    names = sorted({name for outcomes in results.values() for name in outcomes})
    width = max([len("student")] + [len(s) for s in results])
    rows = ["  ".join(["student".ljust(width)] + [n.ljust(len(n)) for n in names])]
    problems = []
    for student, outcomes in sorted(results.items()):
        cells = []
        for name in names:
            outcome = outcomes.get(name)
            if outcome is None:
                shown = "-"
            else:
                shown = f"{outcome['score']:g}/{outcome['max_score']:g}"
                if outcome["error"]:
                    shown += " !"
                    problems.append(f"  {student}/{name}: {outcome['error']}")
            cells.append(shown.ljust(len(name)))
        rows.append("  ".join([student.ljust(width)] + cells))
    if not results:
        rows.append("(no submissions found)")
    if problems:
        rows += ["", "! problems:"] + problems
    return "\n".join(rows)


class Progress:
    """A progress bar on a terminal; one plain line per submission otherwise (logs, CI)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.started = time.monotonic()
        self.bar = stream.isatty()
        self.done, self.total = 0, None  # submissions recorded so far, of how many

    def __call__(self, done, total, line):
        self.done, self.total = done, total
        if not self.bar:
            print(line, file=self.stream, flush=True)
            return
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed else 0.0
        left = (total - done) / rate if rate else 0.0
        filled = int(30 * done / total)
        print(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}  {rate:.1f}/s  "
            f"{left:.0f} s left ",
            end="\n" if done == total else "",
            file=self.stream,
            flush=True,
        )
