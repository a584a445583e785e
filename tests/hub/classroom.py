"""A class on a real JupyterHub, started as `make hub` starts it: hub/run on a clone-like copy of
the course, with real Linux accounts (an instructor and students, with passwords) made for the
test. Everything it starts is stopped, and everything it made removed, afterwards.

(Not a conftest.py: tests/hub's test files import tests/conftest.py as `conftest`, which a
conftest.py here would shadow.)
"""

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import free_ports
from linux_users import accounts, kill_all_of, random_passwords

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What of a clone hub/run and the student edition read; `.venv` and hub/node_modules are links
# to this checkout's (hub/setup makes .venv readable by everyone, which it already is).
CLONED = ("hub", "autograder", "source", "release", "course", "nbgrader_config.py")
CLONED += ("pyproject.toml", "README.md", "Makefile", "requirements.lock")
GRADER, GROUP = "autograd-grader", "autograd-course"  # hub/setup makes them


class Hub:
    """A running hub: its URL, course copy, state folder, and accounts {role: pwd entry}."""

    def __init__(self, folder, port, accounts, passwords):
        self.folder, self.accounts, self.passwords = folder, accounts, passwords
        self.course, self.state = folder / "course", folder / "state"
        self.url = f"http://127.0.0.1:{port}"

    def log(self):
        return (self.folder / "hub.log").read_text(errors="replace")[-6000:]

    def server(self, role):
        """The base URL of `role`'s own Jupyter server behind the hub."""
        return f"{self.url}/user/{self.accounts[role].pw_name}"


def clone(destination):
    """A copy of the course as a clone has it, built like one (file times kept, so the copy's
    Makefile sees .venv up to date); its .venv is this checkout's."""
    destination.mkdir()
    for name in CLONED:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("node_modules", "__pycache__", ".hub")
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    (destination / ".venv").symlink_to((REPO / ".venv").resolve())
    (destination / "hub" / "node_modules").symlink_to(REPO / "hub" / "node_modules")
    return destination


def exists(kind, name):
    return subprocess.run(["getent", kind, name], capture_output=True).returncode == 0


def remove_cgroups(account):
    """Remove the cgroup folders hub/setup made for `account` (once its processes have ended),
    with any group grading left in them."""
    root = Path("/sys/fs/cgroup")
    for group in [root / account, *root.glob(f"*/{account}")]:
        for folder, _, _ in os.walk(group, topdown=False):
            os.rmdir(folder)


def wait_for(hub, process, seconds=120):
    """Until the hub serves its login page and the proxy routes to the grader service."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, "hub/run stopped:\n" + hub.log()
        try:
            urllib.request.urlopen(f"{hub.url}/hub/login", timeout=5).close()
            # The service answers a visitor with a redirect to the hub's OAuth (followed here
            # to the login page); while it is not up, the proxy answers 503 for it.
            urllib.request.urlopen(f"{hub.url}/services/grader/", timeout=5).close()
            return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, f"the hub did not start in {seconds} s:\n{hub.log()}"
        time.sleep(0.5)


def stop(process):
    """Stop hub/run's JupyterHub (it stops the users' servers and its proxy), or kill its
    whole session if it hangs."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the proxy, if the hub left it behind
    process.wait()


@contextlib.contextmanager
def running_hub(roles):
    """A hub, as `make hub` runs it, for accounts named by `roles` (the first is the
    instructor, the others students), in a fresh folder under /var/tmp that all may pass
    through. The grader's account (with its cgroup folders) and the course's group are removed
    after if hub/setup made them here."""
    folder = Path(tempfile.mkdtemp(prefix="autograd-hub-", dir="/var/tmp"))
    folder.chmod(0o755)
    had_grader, had_group = exists("passwd", GRADER), exists("group", GROUP)
    (folder / "homes").mkdir(mode=0o755)
    tag = secrets.token_hex(3)
    names = {role: f"agh{tag}{role}"[:32] for role in roles}
    try:
        with accounts(names.values(), folder / "homes") as users:
            passwords = random_passwords(names.values())
            instructor, *students = roles
            roster = folder / "students.txt"
            roster.write_text("".join(f"{names[role]}\n" for role in students))
            port = free_ports(4)  # the hub uses PORT to PORT+3
            hub = Hub(
                folder,
                port,
                {role: users[name] for role, name in names.items()},
                {role: passwords[name] for role, name in names.items()},
            )
            clone(hub.course)
            environment = dict(
                os.environ,
                AUTOGRAD_HUB_COURSE=str(hub.course),
                AUTOGRAD_HUB_STATE=str(hub.state),
                AUTOGRAD_HUB_INSTRUCTOR=names[instructor],
                AUTOGRAD_HUB_STUDENTS=str(roster),
                AUTOGRAD_HUB_PORT=str(port),
            )
            with open(folder / "hub.log", "wb") as log:
                process = subprocess.Popen(
                    [hub.course / "hub" / "run"],
                    cwd=folder,
                    env=environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                wait_for(hub, process)
                yield hub
            finally:
                stop(process)
                if exists("passwd", GRADER):
                    kill_all_of({pwd.getpwnam(GRADER).pw_uid})
    finally:
        if not had_grader and exists("passwd", GRADER):
            remove_cgroups(GRADER)
            subprocess.run(["userdel", GRADER], check=True)
        if not had_group and exists("group", GROUP):
            subprocess.run(["groupdel", GROUP], check=True)
        shutil.rmtree(folder)
