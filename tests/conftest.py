"""Shared fixtures: a private copy of the course, submissions built from the real notebooks, what
a graded cell printed, and a server that counts the connections student code makes."""

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENTS = sorted(p.name for p in (REPO / "source").iterdir() if p.is_dir())


def run_cli(*args, cwd):
    """`autograd-course ARGS` run from `cwd`, as an instructor or student would type it."""
    return subprocess.run(
        [sys.executable, "-m", "autograder", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def copy_course(destination):
    """A course directory of our own, so tests never touch the repository's gradebook."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("nbgrader_config.py", "source", "release"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name)
        else:
            shutil.copy(source, destination / name)
    return destination


def notebook_path(kind, assignment):
    return REPO / kind / assignment / f"{assignment}.ipynb"


def student_notebook(assignment, answers=None):
    """The released notebook of `assignment` with some solution cells filled in.

    `answers` maps a solution cell's grade_id to the code the student wrote there.
    """
    notebook = nbformat.read(notebook_path("release", assignment), as_version=4)
    answers = dict(answers or {})
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers.pop(grade_id)
    assert not answers, f"no solution cells called {sorted(answers)} in {assignment}"
    return notebook


def solution_code(assignment, grade_id):
    """The instructor's solution for one cell, markers removed: what a strong student writes."""
    notebook = nbformat.read(notebook_path("source", assignment), as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return "\n".join(line for line in cell.source.splitlines() if "### " not in line)
    raise KeyError(grade_id)


def write_submission(submissions, student, assignment, notebook):
    folder = submissions / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / f"{assignment}.ipynb")


def printed(course, assignment, student, marker):
    """What the student's cell starting with `marker` printed, from their autograded notebook
    of `assignment` in `course`."""
    path = course / "autograded" / student / assignment / f"{assignment}.ipynb"
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and cell.source.startswith(marker):
            return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    raise AssertionError(f"no cell starting with {marker!r} in {student}'s notebook")


class Listener:
    """A TCP server on this machine that counts the connections it receives."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


@pytest.fixture(scope="session")
def repo():
    return REPO


def free_ports(count=1):
    """The first of `count` consecutive ports that are free on 127.0.0.1."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        try:
            with contextlib.ExitStack() as probes:
                for port in range(first + 1, first + count):
                    probes.enter_context(socket.socket()).bind(("127.0.0.1", port))
            return first
        except (OSError, OverflowError):  # taken, or past port 65535
            continue
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")
