"""Student code that attacks the grader: none of it may earn or cost a point it should not.

One grading run holds one submission per attack, next to an honest one that must keep full
marks. Each attack is a cell added to the solution notebook (it must keep 10/10: the attack may
not cost points) or to the unchanged release (it must stay at 0/10: the attack may not earn
any), or a solution whose answers depend on the attack succeeding.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from conftest import Listener, copy_course, notebook_path, printed, write_submission
from nbgrader.api import Gradebook

from autograder.sandbox import worker_uid

A1 = "01_basic_autograd"
TIMEOUT = 3  # seconds per cell, so that the endless loops end quickly
CLASSMATES = (".next1", ".next2")  # "." sorts before any letter, digit or "_"

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
    # (The worker is the first process of its PID namespace, so this signal is ignored.)
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
    add_classmates(submissions, A1)
    command = ["grade", submissions, "--json", course / "grades.json", "--timeout", TIMEOUT]
    command += ["--jobs", 1]  # one worker slot: each notebook is graded right after the last
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
    return course, grades, listener, grader.pid, errors


def score(grades, student):
    return grades[student][A1]["score"]


def test_the_honest_submission_keeps_full_marks(attacked):
    _, grades, _, _, _ = attacked
    assert score(grades, "honest") == 10.0
    assert grades["honest"][A1]["error"] is None


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheats_earn_nothing(attacked, name):
    _, grades, _, _, _ = attacked
    assert score(grades, f"cheat_{name}") == 0.0


@pytest.mark.parametrize("name", sorted(DISRUPTIONS))
def test_disruptions_cost_nothing(attacked, name):
    _, grades, _, _, _ = attacked
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
    _, grades, _, _, _ = attacked
    assert score(grades, student) == expected
    assert grades[student][A1]["max_score"] == 10.0


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("endless_loop", f"timed out after {TIMEOUT} s in cell"),
        ("ignores_sigint", f"timed out after {TIMEOUT} s in cell"),
        ("fork_bomb", f"timed out after {TIMEOUT} s in cell"),
        ("os_exit", "ended in cell"),
        ("segfault", "ended in cell"),
    ],
)
def test_a_cell_that_stops_the_worker_is_named(attacked, name, reason):
    _, grades, _, _, _ = attacked
    assert reason in grades[f"disrupt_{name}"][A1]["error"]


@pytest.mark.parametrize("name", ["read_source", "read_submissions", "write_gradebook", "network"])
def test_course_files_and_network_are_out_of_reach(attacked, name):
    _, grades, listener, _, _ = attacked
    tests = grades[f"probe_{name}"][A1]["tests"]
    assert tests["test_ex1_slope_of_square"]["score"] == 0.0  # the attack did not work
    assert score(grades, f"probe_{name}") == 8.0
    assert listener.connections == 0


def test_nothing_outside_the_worker_was_written(attacked):
    course, grades, _, _, _ = attacked
    assert score(grades, "vandal") == 10.0
    honest = course / "submissions" / "honest" / A1 / f"{A1}.ipynb"
    assert nbformat.read(honest, as_version=4).cells
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission(A1, "honest").score == 10.0


def test_no_process_is_left_running(attacked):
    *_, grader_pid, _ = attacked
    assert processes_of_workers(grader_pid) == []


# Attacks graded in one worker slot (--jobs 1), each followed by two honest classmates who must
# keep their marks: what one notebook leaves behind would reach them.
SCRATCH_FOLDERS = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"]
FIND_SOCKET = (
    "import gc, socket, struct\n"
    "sock = next(\n"
    "    o for o in gc.get_objects() if isinstance(o, socket.socket) and o.fileno() >= 0\n"
    ")\n"
)
SLOT_ATTACKS = {
    # A malformed answer, and a detached daemon that kills every process it can, forever.
    "malformed": FIND_SOCKET + "import os, time\n"
    "worker = os.getpid()\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        sock.close()\n"
    "        while True:  # until the notebook's worker is gone\n"
    "            try:\n"
    "                os.kill(worker, 0)\n"
    "                time.sleep(0.01)\n"
    "            except OSError:\n"
    "                break\n"
    "        while True:\n"
    "            try:\n"
    "                os.kill(-1, 9)\n"
    "            except OSError:\n"
    "                pass\n"
    "            time.sleep(0.01)\n"
    "    os._exit(0)\n"
    "time.sleep(0.2)\n"
    "data = b'{\"error\": 1}'\n"
    "sock.sendall(struct.pack('!I', len(data)) + data)",
    # A header that promises bytes that never come.
    "short_message": FIND_SOCKET + "import time\n"
    "sock.sendall(struct.pack('!I', 1000) + b'{\"er')\n"
    "time.sleep(10**6)",
    # The notebook's processes together, not each, are held to --memory.
    "memory_children": "import os\n"
    "held = 0\n"
    "readers = []\n"
    "for _ in range(7):\n"
    "    r, w = os.pipe()\n"
    "    if os.fork() == 0:\n"
    "        block = bytearray(300 * 2**20)\n"
    "        for i in range(0, len(block), 4096):\n"
    "            block[i] = 1\n"
    "        os.write(w, b'1')\n"
    "        import time\n"
    "        time.sleep(5)\n"
    "        os._exit(0)\n"
    "    os.close(w)\n"
    "    readers.append(r)\n"
    "for r in readers:\n"
    "    held += 300 * len(os.read(r, 1))\n"
    "print('children held', held, 'MB')",
    # The worker itself is the largest process when the notebook's memory runs out.
    "memory_worker": "import os, time\n"
    "for _ in range(3):\n"
    "    if os.fork() == 0:\n"
    "        block = bytearray(100 * 2**20)\n"
    "        for i in range(0, len(block), 4096):\n"
    "            block[i] = 1\n"
    "        time.sleep(60)\n"
    "time.sleep(1)\n"
    "block = bytearray(450 * 2**20)\n"
    "for i in range(0, len(block), 4096):\n"
    "    block[i] = 1",
    # Spinning children share the notebook's CPU, not the machine's.
    "spinning_children": "import os, time\n"
    "readers = []\n"
    "start = time.monotonic()\n"
    "for _ in range(8):\n"
    "    r, w = os.pipe()\n"
    "    if os.fork() == 0:\n"
    "        end = time.monotonic() + 2\n"
    "        while time.monotonic() < end:\n"
    "            pass\n"
    "        t = os.times()\n"
    "        os.write(w, str(t.user + t.system).encode())\n"
    "        os._exit(0)\n"
    "    os.close(w)\n"
    "    readers.append(r)\n"
    "cpu = sum(float(os.read(r, 64) or 0) for r in readers)\n"
    "print('cpu', cpu, 'wall', time.monotonic() - start)",
    # Writes to the worker's fd 0, the grader's terminal before.
    "terminal": "import os\nos.write(0, b'graded mallory/01_basic_autograd: 12/12\\n')",
    # Files left in the host's shared scratch folders.
    "scratch_files": f"for folder in {SCRATCH_FOLDERS!r}:\n"
    "    try:\n"
    "        open(folder + '/autograd-course-marker', 'w').write('x' * 1000)\n"
    "    except OSError:\n"
    "        pass",
}
# Endless cells, each a timeout and a replay: the notebook's total time bounds them all.
ENDLESS_PAIRS = ["import time\ntime.sleep(10**6)", "while True:\n    pass"] * 8


def probe_cell():
    """A cell that prints, as JSON, what a worker can see: its descriptors, every path outside
    the allow-list, its environment and uid."""
    from autograder.sandbox import DEVICES, allowed_paths

    binds, _ = allowed_paths()
    allowed = [str(p) for p in binds] + ["/tmp", "/dev/shm"] + [f"/dev/{d}" for d in DEVICES]
    return (
        "import json, os, stat, matplotlib\n"
        "seen = {'fds': {}, 'visible': [], 'env': dict(os.environ), 'uid': os.getuid()}\n"
        # matplotlib keeps the font files it drew a figure's text with open.
        "fonts = os.path.join(os.path.dirname(matplotlib.__file__), 'mpl-data', 'fonts')\n"
        "fonts = {(s.st_dev, s.st_ino) for s in (os.stat(os.path.join(d, n)) "
        "for d, _, names in os.walk(fonts) for n in names)}\n"
        "for fd in range(4096):\n"
        "    try:\n"
        "        info = os.fstat(fd)\n"
        "    except OSError:\n"
        "        continue\n"
        "    null = stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, 3)\n"
        "    font = (info.st_dev, info.st_ino) in fonts\n"
        "    seen['fds'][fd] = 'socket' if stat.S_ISSOCK(info.st_mode) else "
        "'null' if null else 'font' if font else 'other'\n"
        f"ALLOWED = {allowed!r}\n"
        "def allowed(path):\n"
        "    return any(path == a or path.startswith(a + '/') for a in ALLOWED)\n"
        "for folder, dirs, files in os.walk('/'):\n"
        "    if allowed(folder):\n"
        "        dirs[:] = []\n"
        "        continue\n"
        "    seen['visible'] += [os.path.join(folder, n) for n in dirs + files "
        "if not allowed(os.path.join(folder, n))]\n"
        "print(json.dumps(seen))"
    )


def with_answer_if(condition, assignment=A1):
    """The solution notebook, whose exercise 1 is right only if `condition` holds."""
    notebook = solution_cells(assignment)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "ex1_slope_of_square":
            cell.source = (
                f"def attack_worked():\n    try:\n        return bool({condition})\n"
                "    except Exception:\n        return False\n\n\n" + answer_if("attack_worked()")
            )
    return notebook


@pytest.fixture(scope="module")
def readable_folder():
    """A folder anyone may read, outside /tmp: where instructors keep courses and backups."""
    folder = Path(tempfile.mkdtemp(prefix="autograd-course-test-", dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def one_slot(readable_folder):
    course = copy_course(readable_folder / "course")
    clone = copy_course(readable_folder / "another_clone")  # e.g. a backup of the course
    submissions = course / "submissions"
    source_file = course / "source" / A1 / f"{A1}.ipynb"
    end = len(solution_cells(A1).cells)
    attacks = {
        name: with_cell(solution_cells(A1), cell, end) for name, cell in SLOT_ATTACKS.items()
    }
    attacks["fd_leak"] = with_answer_if(
        f"any(__import__('os').path.exists(f'/proc/self/fd/{{n}}{source_file}') "
        "for n in range(3, 256))"
    )
    attacks["another_clone"] = with_answer_if(
        f"__import__('os').path.exists({str(clone / 'source' / A1 / f'{A1}.ipynb')!r})"
    )
    attacks["probe"] = with_cell(solution_cells(A1), probe_cell(), end)
    endless = solution_cells(A1)
    for cell in ENDLESS_PAIRS:
        endless = with_cell(endless, cell, len(endless.cells))
    attacks["endless_pairs"] = endless
    for name, notebook in attacks.items():
        write_submission(submissions, name, A1, notebook)
    add_classmates(submissions, A1)
    for folder in SCRATCH_FOLDERS:
        (Path(folder) / "autograd-course-marker").unlink(missing_ok=True)
    terminal, student_side = os.openpty()
    command = [
        *("grade", submissions, "--json", course / "grades.json"),
        *("--jobs", 1, "--timeout", TIMEOUT, "--memory", 512),
    ]
    try:
        grader = subprocess.Popen(
            [sys.executable, "-m", "autograder", *map(str, command)],
            cwd=course,
            stdin=student_side,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, errors = grader.communicate(timeout=600)
        os.set_blocking(terminal, False)
        try:
            on_terminal = os.read(terminal, 65536).decode(errors="replace")
        except BlockingIOError:
            on_terminal = ""
    finally:
        os.close(terminal)
        os.close(student_side)
    assert grader.returncode == 0, errors
    grades = json.loads((course / "grades.json").read_text())["students"]
    return course, grades, errors, on_terminal, grader.pid


def add_classmates(submissions, assignment):
    """Two honest classmates after each student: graded in one slot (--jobs 1), in the order of
    their names, they come right after that student, and must keep their marks."""
    for student in [folder.name for folder in submissions.iterdir()]:
        for classmate in CLASSMATES:
            write_submission(submissions, student + classmate, assignment, solution_cells(A1))


def classmates_who_lost_marks(grades):
    return {
        student: outcome[A1]["score"]
        for student, outcome in grades.items()
        if student.endswith(CLASSMATES) and (outcome[A1]["score"] != 10.0 or outcome[A1]["error"])
    }


def test_classmates_graded_right_after_an_attack_keep_their_marks(attacked, one_slot):
    assert classmates_who_lost_marks(attacked[1]) == {}
    assert classmates_who_lost_marks(one_slot[1]) == {}


def test_a_malformed_answer_stops_the_worker_and_costs_only_its_cell(one_slot):
    _, grades, *_ = one_slot
    assert score(grades, "malformed") == 10.0
    assert "the worker failed in cell" in grades["malformed"][A1]["error"]


def test_a_message_that_never_ends_times_out(one_slot):
    _, grades, *_ = one_slot
    assert score(grades, "short_message") == 10.0
    assert f"timed out after {TIMEOUT} s" in grades["short_message"][A1]["error"]


@pytest.mark.parametrize("attack", ["fd_leak", "another_clone"])
def test_no_copy_of_the_course_is_in_reach(one_slot, attack):
    _, grades, *_ = one_slot
    assert grades[attack][A1]["tests"]["test_ex1_slope_of_square"]["score"] == 0.0
    assert score(grades, attack) == 8.0


def test_a_worker_sees_only_its_allow_list(one_slot):
    from autograder.sandbox import WORKER_ENVIRONMENT, allowed_paths

    course, *_ = one_slot
    seen = json.loads(printed(course, A1, "probe", "import json, os, stat, matplotlib"))
    others = {fd: kind for fd, kind in seen["fds"].items() if fd not in ("0", "1", "2")}
    assert [seen["fds"].get(fd) for fd in ("0", "1", "2")] == ["null"] * 3
    assert [kind for kind in others.values() if kind != "font"] == ["socket"]
    binds, links = allowed_paths()
    skeleton = {str(a) for p in binds for a in p.parents} | {str(link) for link in links}
    skeleton |= {"/dev"}
    assert set(seen["visible"]) <= skeleton, sorted(set(seen["visible"]) - skeleton)
    for absent in ["/proc", "/var", "/home", "/srv", "/run", str(course)]:
        assert absent not in seen["visible"]
    assert seen["env"] == WORKER_ENVIRONMENT
    assert seen["uid"] != 0


def test_the_host_scratch_folders_are_untouched(one_slot):
    _, grades, *_ = one_slot
    assert score(grades, "scratch_files") == 10.0
    for folder in SCRATCH_FOLDERS:
        assert not (Path(folder) / "autograd-course-marker").exists()


def test_memory_is_limited_per_notebook(one_slot):
    course, grades, errors, *_ = one_slot
    held = printed(course, A1, "memory_children", "import os\nheld = 0")
    # 7 children of 300 MB each under --memory 512: at most one gets its memory
    assert not held or int(held.split()[2]) <= 600, held


def test_running_out_of_memory_is_named(one_slot):
    _, grades, *_ = one_slot
    assert score(grades, "memory_worker") == 10.0
    assert "ran out of memory in cell" in grades["memory_worker"][A1]["error"]


def test_cpu_is_shared_per_notebook(one_slot):
    course, *_ = one_slot
    cpu, wall = (
        float(v) for v in printed(course, A1, "spinning_children", "import os, time").split()[1::2]
    )
    assert cpu <= 1.2 * wall  # one core for the notebook's processes together (of two here)


def test_a_notebook_has_a_total_time_budget(one_slot):
    _, grades, *_ = one_slot
    assert "used up its 12 s in all" in grades["endless_pairs"][A1]["error"]


def test_student_code_cannot_write_on_the_graders_terminal(one_slot):
    *_, on_terminal, _ = one_slot
    assert "mallory" not in on_terminal


def test_no_worker_process_outlives_the_one_slot_run(one_slot):
    *_, grader_pid = one_slot
    assert processes_of_workers(grader_pid) == []


def processes_of_workers(grader_pid):
    """The live processes of the run's worker uids (a zombie has ended; its reaper is the
    system's init)."""
    return [pid for slot in range(64) for pid in live_processes_of(worker_uid(grader_pid, slot))]


# Without the privileges the sandbox needs (root, with its capabilities dropped, as in a
# locked-down container), grading still runs and says, once each, what is missing.
WITHOUT_PRIVILEGES = [
    "warning: no network namespace",
    "warning: no private filesystem",
    "warning: workers run as the grader's own user",
    "warning: no PID namespace",
]


@pytest.fixture(scope="module")
def unprivileged(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    submissions = course / "submissions"
    write_submission(submissions, "honest", A1, solution_cells(A1))
    write_submission(submissions, "blank", A1, released())
    write_submission(
        submissions, "endless", A1, with_cell(solution_cells(A1), "while True: pass", 1)
    )
    command = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable]
    command += ["-m", "autograder", "grade", submissions, "--json", course / "grades.json"]
    command += ["--timeout", TIMEOUT]
    grader = subprocess.run(
        [str(part) for part in command], cwd=course, capture_output=True, text=True, timeout=600
    )
    assert grader.returncode == 0, grader.stderr
    return json.loads((course / "grades.json").read_text())["students"], grader.stderr


def test_grading_without_privileges_still_grades(unprivileged):
    grades, _ = unprivileged
    assert score(grades, "honest") == 10.0
    assert score(grades, "blank") == 0.0
    assert score(grades, "endless") == 10.0
    assert f"timed out after {TIMEOUT} s" in grades["endless"][A1]["error"]


@pytest.mark.parametrize("warning", WITHOUT_PRIVILEGES)
def test_each_missing_protection_is_named_once(unprivileged, warning):
    _, errors = unprivileged
    assert sum(line.startswith(warning) for line in errors.splitlines()) == 1, errors


def test_a_privileged_run_has_no_warnings(attacked):
    *_, errors = attacked
    assert "warning:" not in errors


def test_a_daemon_dies_with_its_worker_without_any_sweep():
    """The PID namespace alone, no cgroup and no uid sweep: killing the worker ends every
    process it started, a detached daemon included."""
    from autograder import protocol
    from autograder.sandbox import Limits
    from autograder.worker import Zygote

    zygote = Zygote(Limits())
    uid = zygote.uid(63)
    try:
        pidfd, sock = zygote.spawn(uid)
        deadline = time.monotonic() + 60
        assert protocol.receive(sock, deadline)["missing"] == []
        daemon = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        daemon += "        time.sleep(600)\n    os._exit(0)\ntime.sleep(0.5)"
        protocol.send(sock, {"op": "run", "index": 0, "source": daemon}, deadline)
        assert protocol.receive(sock, deadline)["error"] is None
        assert len(live_processes_of(uid)) >= 2  # the worker and its daemon
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        gone = time.monotonic() + 5
        while live_processes_of(uid) and time.monotonic() < gone:
            time.sleep(0.05)
        assert live_processes_of(uid) == []
    finally:
        zygote.stop()


def live_processes_of(uid):
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if int(fields["Uid"].split()[0]) == uid and fields["State"].strip()[0] != "Z":
            found.append(status.parent.name)
    return found


def test_a_judge_that_dies_costs_only_its_submission(tmp_path):
    """A judge killed while it grades (as a bug, or the kernel's OOM killer, would): that
    submission gets an error, a new judge grades the rest, and the run ends."""
    course = copy_course(tmp_path / "course")
    submissions = course / "submissions"
    slow = with_cell(solution_cells(A1), "import time\ntime.sleep(30)", 1)
    write_submission(submissions, "a_slow", A1, slow)
    for student in ("b_honest", "c_honest"):
        write_submission(submissions, student, A1, solution_cells(A1))
    command = [sys.executable, "-m", "autograder", "grade", submissions, "--jobs", 1]
    command += ["--json", course / "grades.json", "--timeout", 60]
    grader = subprocess.Popen([str(c) for c in command], cwd=course, stderr=subprocess.PIPE)
    try:
        uid = worker_uid(grader.pid, 0)
        started = time.monotonic() + 120
        while not live_processes_of(uid) and time.monotonic() < started:
            time.sleep(0.1)  # until the judge grades a_slow (its worker runs)
        time.sleep(1)
        children = [p for p in child_processes(grader.pid) if not child_processes(p)]
        assert len(children) == 1  # the judge (the zygote is the one with children)
        os.kill(children[0], signal.SIGKILL)
        _, errors = grader.communicate(timeout=300)
    finally:
        grader.kill()
    assert grader.returncode == 0, errors
    grades = json.loads((course / "grades.json").read_text())["students"]
    assert "internal error" in grades["a_slow"][A1]["error"]
    assert score(grades, "b_honest") == score(grades, "c_honest") == 10.0
    assert processes_of_workers(grader.pid) == []


def child_processes(pid):
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat_file.parent.name))
    return children
