"""How long a student waits: `autograd-course check` against executing the same notebook with
nbclient (`jupyter nbconvert --execute`), side by side, on every assignment.

The notebook of each assignment is the released one with every solution cell filled in with
the instructor's solution: a solved assignment, as a student submits it. Each command runs
--rounds times, the two alternating so that both see the same machine; the wall time of the
whole command, process start included, is what a student waits for. The script prints the
median of each, their ratio, and checks that check passed every exercise.

It is a benchmark, not a test: run it by hand, from the course root.

    cd /work/main && .venv/bin/python benchmarks/check_latency.py [--rounds N]
"""

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def solved_notebook(assignment, folder):
    """The released notebook of `assignment` with the source's solution cells, in `folder`."""
    name = f"{assignment}.ipynb"
    source = nbformat.read(REPO / "source" / assignment / name, as_version=4)
    solutions = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in source.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    notebook = nbformat.read(REPO / "release" / assignment / name, as_version=4)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solutions:
            cell.source = solutions[grade_id]
    path = folder / name
    nbformat.write(notebook, path)
    return path


def timed(command, cwd):
    started = time.monotonic()
    run = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    return time.monotonic() - started, run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(f"{platform.python_version()}, {os.cpu_count()} CPUs, {args.rounds} rounds\n")
    print(f"{'assignment':34} {'nbconvert --execute':>20} {'check':>8} {'ratio':>6}")
    assignments = sorted(p.name for p in (REPO / "source").iterdir() if p.is_dir())
    ratios, failed = [], False
    with tempfile.TemporaryDirectory() as scratch:
        for assignment in assignments:
            path = solved_notebook(assignment, Path(scratch))
            executed = path.with_suffix(".executed.ipynb")
            commands = {
                "nbconvert": [
                    str(BIN / "jupyter"),
                    *("nbconvert", "--to", "notebook", "--execute", "--output"),
                    str(executed),
                    str(path),
                ],
                "check": [str(BIN / "autograd-course"), "check", str(path)],
            }
            times = {name: [] for name in commands}
            for _ in range(args.rounds):
                for name, command in commands.items():
                    seconds, run = timed(command, REPO)
                    times[name].append(seconds)
                    if name == "check" and run.returncode != 0:
                        failed = True
                        print(run.stdout + run.stderr)
            nbconvert, check = (statistics.median(times[name]) for name in commands)
            ratios.append(nbconvert / check)
            print(f"{assignment:34} {nbconvert:19.2f}s {check:7.2f}s {nbconvert / check:5.2f}x")
    print(f"\ncheck is {min(ratios):.2f}x to {max(ratios):.2f}x faster than nbconvert --execute")
    if failed:
        print("check failed on a solved notebook (above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
