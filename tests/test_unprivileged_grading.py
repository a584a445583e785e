"""Grading as an account that is not root, as the grader account of a JupyterHub does.

A Linux user is created for the test (and removed after it); it owns a copy of the course in a
folder under /var/tmp, and runs `autograd-course grade` there, with no privileges. Its workers
must still be shut in: the grader's files, the network and other processes out of reach, no
capability left, and no warning but the one protection only root can give (a uid of their
own). Linux only, as root (to create the user), where unprivileged user namespaces work.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from conftest import Listener, copy_course, printed, solution_code, student_notebook
from linux_users import accounts, as_user


def user_namespaces_work():
    """Whether a user that is not root may make a user namespace here (as the sandbox does)."""
    probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe += ["unshare", "--user", "--map-root-user", "--mount", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(
    sys.platform != "linux"
    or os.geteuid() != 0
    or not shutil.which("useradd")
    or not user_namespaces_work(),
    reason="creates a Linux user: needs Linux, root, and unprivileged user namespaces",
)

A1 = "01_basic_autograd"
EXERCISES = ["ex1_slope_of_square", "ex2_slope_of_quadratic", "ex3_derivative_at"]
EXERCISES += ["ex4_leaf_and_intermediate", "ex5_tangent_line"]
PROBE_MARKER = "# probe: what student code can reach\n"
# cgroups need a folder root delegated to the grader (cgroups.py): none is, here.
OWN_UID = "warning: workers run as the grader's own user"
CGROUP_WARNINGS = ("warning: no memory cgroup", "warning: no pids cgroup", "warning: no cpu cgroup")


@contextmanager
def grader_account(folder):
    """A Linux user to grade as, with a home in `folder` only it may enter; always removed."""
    with accounts([f"agg{secrets.token_hex(3)}"], folder) as users:
        (grader,) = users.values()
        yield grader


def grade(grader, course, setup=""):
    """`autograd-course grade submitted` run in `course` by the Linux user `grader`: (the
    grades, what it printed on stderr)."""
    command = [sys.executable, "-m", "autograder", "grade", "submitted", "--json", "grades.json"]
    result = as_user(grader, command, cwd=course, setup=setup)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((course / "grades.json").read_text())["students"], result.stderr


def course_owned_by(grader, folder, submissions):
    """A copy of the course in `folder`, with `submissions` ({student: notebook}) in its
    submitted/, all owned by `grader`."""
    course = copy_course(folder)
    for student, notebook in submissions.items():
        (course / "submitted" / student / A1).mkdir(parents=True)
        nbformat.write(notebook, course / "submitted" / student / A1 / f"{A1}.ipynb")
    subprocess.run(["chown", "-R", f"{grader.pw_name}:", course], check=True)
    return course


def solution():
    return student_notebook(A1, {cell: solution_code(A1, cell) for cell in EXERCISES})


def probe_cell(files, port):
    """A cell that prints, as JSON, which of `files` it could read, whether it could connect to
    `port` on this machine, which processes it sees, and what it may do with capabilities."""
    return PROBE_MARKER + (
        "import ctypes, json, os, socket\n"
        "seen = {'read': [], 'pid': os.getpid(), 'uid': os.getuid()}\n"
        f"for path in {[str(f) for f in files]!r}:\n"
        "    try:\n"
        "        open(path, 'rb').close()\n"
        "        seen['read'].append(path)\n"
        "    except OSError:\n"
        "        pass\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), 2).close()\n"
        "    seen['connected'] = True\n"
        "except OSError:\n"
        "    seen['connected'] = False\n"
        "def exists(pid):\n"
        "    try:\n"
        "        os.kill(pid, 0)\n"
        "    except ProcessLookupError:\n"
        "        return False\n"
        "    except OSError:\n"
        "        pass\n"
        "    return True\n"
        "seen['processes'] = [pid for pid in range(1, 2000) if exists(pid)]\n"
        "try:\n"
        "    status = open('/proc/self/status').read().splitlines()\n"
        "    seen['cap_eff'] = [l.split()[1] for l in status if l.startswith('CapEff:')][0]\n"
        "except OSError:\n"
        "    seen['cap_eff'] = None\n"
        "libc = ctypes.CDLL(None)\n"
        "seen['mounted'] = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0\n"
        "seen['unshared'] = libc.unshare(0x00020000) == 0  # CLONE_NEWNS\n"
        "print(json.dumps(seen))"
    )


@pytest.fixture(scope="module")
def graded():
    folder = Path(tempfile.mkdtemp(prefix="autograd-unprivileged-", dir="/var/tmp"))
    folder.chmod(0o755)
    listener = Listener()
    try:
        with grader_account(folder) as grader:
            home_secret = Path(grader.pw_dir) / "secret.txt"
            home_secret.write_text("the grader's own secret")
            shutil.chown(home_secret, grader.pw_name, grader.pw_name)
            classmate = folder / "course" / "submitted" / "honest" / A1 / f"{A1}.ipynb"
            probing = solution()
            cell = probe_cell([classmate, home_secret], listener.port)
            probing.cells.append(nbformat.v4.new_code_cell(cell))
            submissions = {"honest": solution(), "wrong": student_notebook(A1), "probe": probing}
            course = course_owned_by(grader, folder / "course", submissions)
            grades, errors = grade(grader, course)
            seen = json.loads(printed(course, A1, "probe", PROBE_MARKER))
            yield grades, seen, errors, listener
    finally:
        listener.sock.close()
        shutil.rmtree(folder)


def test_the_solution_earns_full_marks_and_a_wrong_one_does_not(graded):
    grades, *_ = graded
    assert grades["honest"][A1]["score"] == 10.0
    assert grades["probe"][A1]["score"] == 10.0  # hidden tests too: the worker's copies work
    assert grades["wrong"][A1]["score"] < 10.0


def test_student_code_cannot_read_what_the_grader_can(graded):
    _, seen, *_ = graded
    assert seen["read"] == []


def test_student_code_cannot_open_a_connection(graded):
    _, seen, _, listener = graded
    assert seen["connected"] is False
    assert listener.connections == 0


def test_student_code_sees_only_its_own_processes(graded):
    _, seen, *_ = graded
    # The worker is the first process of its PID namespace, and started no other.
    assert seen["processes"] == [1] and seen["pid"] == 1


def test_student_code_has_no_capabilities(graded):
    _, seen, *_ = graded
    assert seen["cap_eff"] in (None, "0000000000000000")
    assert seen["mounted"] is False and seen["unshared"] is False
    assert seen["uid"] != 0


def test_only_the_own_uid_protection_is_missing(graded):
    _, _, errors, _ = graded
    warnings = [line for line in errors.splitlines() if line.startswith("warning:")]
    assert sum(w.startswith(OWN_UID) for w in warnings) == 1, errors
    others = [w for w in warnings if not w.startswith((OWN_UID, *CGROUP_WARNINGS))]
    assert others == [], errors


@contextmanager
def delegated_cgroups(grader):
    """A cgroup folder in each v1 hierarchy the grader needs, made by root and given to
    `grader` (chown -R), as an administrator delegates one to the grader account: (shell lines
    that move the shell into them). Removed after."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        paths |= dict.fromkeys(controllers.split(","), path)
    groups = []
    try:
        for controller in ("memory", "pids", "cpu", "freezer"):
            group = Path("/sys/fs/cgroup", controller, paths[controller].lstrip("/"))
            group /= f"delegated-{grader.pw_name}"
            group.mkdir()
            groups.append(group)
            subprocess.run(["chown", "-R", f"{grader.pw_name}:", group], check=True)
        yield "".join(f"echo $$ > {group}/cgroup.procs; " for group in groups)
    finally:
        for group in groups:  # the grader removed its own groups in it
            group.rmdir()


@pytest.mark.skipif(
    not Path("/sys/fs/cgroup/memory/cgroup.procs").is_file(),
    reason="delegates cgroup v1 folders (on v2, delegation also needs the trusted.delegate "
    "attribute and enabled controllers)",
)
def test_a_cgroup_folder_delegated_to_the_grader_is_used():
    folder = Path(tempfile.mkdtemp(prefix="autograd-unprivileged-", dir="/var/tmp"))
    folder.chmod(0o755)
    try:
        with grader_account(folder) as grader, delegated_cgroups(grader) as join:
            course = course_owned_by(grader, folder / "course", {"honest": solution()})
            grades, errors = grade(grader, course, setup=join)
            assert grades["honest"][A1]["score"] == 10.0
            warnings = [line for line in errors.splitlines() if line.startswith("warning:")]
            assert [w for w in warnings if not w.startswith(OWN_UID)] == [], errors
    finally:
        shutil.rmtree(folder)
