"""Student code that attacks the grader: none of it may earn or cost a point it should not.

One grading run holds one submission per attack, next to an honest one that must keep full
marks. Each attack is a cell added to the solution notebook (it must keep 10/10: the attack may
not cost points) or to the unchanged release (it must stay at 0/10: the attack may not earn
any), or a solution whose answers depend on the attack succeeding.
"""

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from conftest import copy_course, notebook_path, write_submission
from nbgrader.api import Gradebook

from autograder.sandbox import worker_uid

A1 = "01_basic_autograd"
TIMEOUT = 3  # seconds per cell, so that the endless loops end quickly

# Cells that try to make wrong (unwritten) answers pass.
CHEATS = {
    "patch_allclose": "import torch\ntorch.allclose = lambda *a, **k: True\n"
    "torch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)",
    "patch_autograder": "import autograder, autograder.checks as c\n"
    "for name in dir(c):\n"
    "    if name.startswith('check'):\n"
    "        setattr(c, name, lambda *a, **k: None)\n"
    "        setattr(autograder, name, lambda *a, **k: None)\n"
    "c.CheckFailed = type('CheckFailed', (Exception,), {})",
    "input_transformer": "ip = get_ipython()\n"
    "wrap = lambda lines: ['try:\\n'] + ['    ' + l for l in lines]"
    " + ['\\nexcept BaseException:\\n    pass\\n']\n"
    "ip.input_transformers_post.append(wrap)",
    "patch_ipython": "import IPython\n"
    "ip = get_ipython()\n"
    "ip.showtraceback = lambda *a, **k: None\n"
    "ip.run_cell = lambda *a, **k: None",
    "patch_builtins": "import builtins\n"
    "builtins.AssertionError = type('AssertionError', (Exception,), {})\n"
    "builtins.isinstance = lambda *a: True",
    "excepthook_settrace": "import sys\n"
    "sys.excepthook = lambda *a: None\n"
    "sys.settrace(lambda *a: None)",
    "patch_streams": "import sys, os\nsys.stdout = sys.stderr = open(os.devnull, 'w')\nos.close(2)",
}

# Cells that must not cost a correct notebook any point.
DISRUPTIONS = {
    "warning_on_stderr": "import sys, warnings\n"
    "warnings.warn('Warning: this is only a warning')\n"
    "print('UserWarning: noisy', file=sys.stderr)",
    "endless_loop": "while True:\n    pass",
    "ignores_sigint": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "while True:\n    pass",
    "memory_hog": "hog = []\nwhile True:\n    hog.append(bytearray(100 * 2**20))",
    "fork_bomb": "import os\n"
    "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "huge_output": "for _ in range(200_000):\n    print('x' * 10_000)",
    "hidden_child": "import ctypes, os\n"
    "if os.fork() == 0:\n"
    "    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # non-dumpable: /proc shows it as root's\n"
    "    while True:\n        pass",
    "os_exit": "import os\nos._exit(0)",
    "kill_itself": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "segfault": "import ctypes\nctypes.string_at(0)",
    "system_exit": "raise SystemExit(0)",
}


def solution_cells(assignment):
    return nbformat.read(notebook_path("source", assignment), as_version=4)


def with_cell(notebook, source, position):
    notebook = nbformat.from_dict(json.loads(json.dumps(notebook)))
    notebook.cells.insert(position, nbformat.v4.new_code_cell(source))
    return notebook


def released():
    return nbformat.read(notebook_path("release", A1), as_version=4)


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


def tampered(notebook, change):
    """`notebook` with `change(cell)` applied to every test cell."""
    notebook = nbformat.from_dict(json.loads(json.dumps(notebook)))
    for index, cell in enumerate(notebook.cells):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            notebook.cells[index] = change(cell) or cell
    return notebook


def moved_to_the_top(notebook):
    """`notebook` with every test cell moved before all other cells."""
    notebook = nbformat.from_dict(json.loads(json.dumps(notebook)))
    tests = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
    notebook.cells = tests + [c for c in notebook.cells if c not in tests]
    return notebook


def unmarked(cell):  # the test's metadata removed and its body emptied
    cell.metadata.pop("nbgrader")
    cell.source = "pass"


def more_points(cell):
    cell.metadata["nbgrader"]["points"] = 100


def retyped(cell):  # a test cell turned into a markdown cell
    return nbformat.v4.new_markdown_cell(cell.source, metadata=cell.metadata)


# Solutions of exercise 1 that are right only if the attack worked.
def answer_if(condition_code):
    return (
        "def slope_of_square(x0):\n"
        "    x = torch.tensor(x0, requires_grad=True)\n"
        "    (x**2).backward()\n"
        f"    return x.grad if ({condition_code}) else -x.grad\n"
    )


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    submissions = course / "submissions"
    listener = Listener()
    source_file = course / "source" / A1 / f"{A1}.ipynb"
    gradebook_file = course / "gradebook.db"
    write_submission(submissions, "honest", A1, solution_cells(A1))
    for name, cell in CHEATS.items():
        write_submission(submissions, f"cheat_{name}", A1, with_cell(released(), cell, 1))
    for name, cell in DISRUPTIONS.items():
        position = len(solution_cells(A1).cells)
        write_submission(
            submissions, f"disrupt_{name}", A1, with_cell(solution_cells(A1), cell, position)
        )
    # Test cells tampered with: what counts is the source's test cells and points.
    write_submission(submissions, "tamper_unmarked", A1, tampered(released(), unmarked))
    write_submission(submissions, "tamper_points", A1, tampered(solution_cells(A1), more_points))
    write_submission(submissions, "tamper_retyped", A1, tampered(solution_cells(A1), retyped))
    write_submission(submissions, "tamper_reordered", A1, moved_to_the_top(solution_cells(A1)))
    # Attacks on the files and the network: exercise 1 is right only if the attack worked.
    probes = {
        "read_source": f"__import__('os').path.exists({str(source_file)!r})",
        "read_submissions": f"__import__('os').path.exists({str(submissions / 'honest')!r})",
        "write_gradebook": f"__import__('os').access({str(gradebook_file)!r}, 2)",  # W_OK
        "network": f"__import__('socket').create_connection(('127.0.0.1', {listener.port}), 2)",
    }
    for name, condition in probes.items():
        notebook = solution_cells(A1)
        for cell in notebook.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "ex1_slope_of_square":
                cell.source = (
                    f"def attack_worked():\n    try:\n        return bool({condition})\n"
                    "    except Exception:\n        return False\n\n\n"
                    + answer_if("attack_worked()")
                )
        write_submission(submissions, f"probe_{name}", A1, notebook)
    # Files written by a worker must not land in the course or in another submission.
    honest_file = submissions / "honest" / A1 / f"{A1}.ipynb"
    vandal = (
        "import pathlib\n"
        f"for target in [{str(gradebook_file)!r}, {str(honest_file)!r}]:\n"
        "    try:\n"
        "        pathlib.Path(target).write_text('vandalised')\n"
        "    except OSError:\n"
        "        pass"
    )
    write_submission(
        submissions,
        "vandal",
        A1,
        with_cell(solution_cells(A1), vandal, len(solution_cells(A1).cells)),
    )
    command = ["grade", submissions, "--json", course / "grades.json", "--timeout", TIMEOUT]
    grader = subprocess.Popen(
        [sys.executable, "-m", "autograder", *map(str, command)],
        cwd=course,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, errors = grader.communicate(timeout=900)
    assert grader.returncode == 0, errors
    grades = json.loads((course / "grades.json").read_text())["students"]
    return course, grades, listener, grader.pid


def score(grades, student):
    return grades[student][A1]["score"]


def test_the_honest_submission_keeps_full_marks(attacked):
    _, grades, _, _ = attacked
    assert score(grades, "honest") == 10.0
    assert grades["honest"][A1]["error"] is None


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheats_earn_nothing(attacked, name):
    _, grades, _, _ = attacked
    assert score(grades, f"cheat_{name}") == 0.0


@pytest.mark.parametrize("name", sorted(DISRUPTIONS))
def test_disruptions_cost_nothing(attacked, name):
    _, grades, _, _ = attacked
    assert score(grades, f"disrupt_{name}") == 10.0


@pytest.mark.parametrize(
    ("student", "expected"),
    [
        ("tamper_unmarked", 0.0),
        ("tamper_points", 10.0),
        ("tamper_retyped", 10.0),
        ("tamper_reordered", 10.0),
    ],
)
def test_test_cells_come_from_the_source(attacked, student, expected):
    _, grades, _, _ = attacked
    assert score(grades, student) == expected
    assert grades[student][A1]["max_score"] == 10.0


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("endless_loop", f"timed out after {TIMEOUT} s in cell"),
        ("ignores_sigint", f"timed out after {TIMEOUT} s in cell"),
        ("fork_bomb", f"timed out after {TIMEOUT} s in cell"),
        ("os_exit", "ended in cell"),
        ("kill_itself", "ended in cell"),
        ("segfault", "ended in cell"),
    ],
)
def test_a_cell_that_stops_the_worker_is_named(attacked, name, reason):
    _, grades, _, _ = attacked
    assert reason in grades[f"disrupt_{name}"][A1]["error"]


@pytest.mark.parametrize("name", ["read_source", "read_submissions", "write_gradebook", "network"])
def test_course_files_and_network_are_out_of_reach(attacked, name):
    _, grades, listener, _ = attacked
    tests = grades[f"probe_{name}"][A1]["tests"]
    assert tests["test_ex1_slope_of_square"]["score"] == 0.0  # the attack did not work
    assert score(grades, f"probe_{name}") == 8.0
    assert listener.connections == 0


def test_nothing_outside_the_worker_was_written(attacked):
    course, grades, _, _ = attacked
    assert score(grades, "vandal") == 10.0
    honest = course / "submissions" / "honest" / A1 / f"{A1}.ipynb"
    assert nbformat.read(honest, as_version=4).cells
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission(A1, "honest").score == 10.0


def test_no_process_is_left_running(attacked):
    *_, grader_pid = attacked
    worker_uids = {worker_uid(grader_pid, slot) for slot in range(64)}
    left = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = next(
                int(line.split()[1])
                for line in status.read_text().splitlines()
                if line.startswith("Uid:")
            )
        except (OSError, StopIteration):
            continue
        if uid in worker_uids:
            left.append(status.parent.name)
    assert left == []
