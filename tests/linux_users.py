"""Real Linux accounts for the tests that need them (Linux, as root), and commands run as them."""

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def processes_of(uids):
    """The pids of the processes that run as one of `uids`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(f"/proc/{pid}").st_uid in uids:
                pids.append(int(pid))
    return pids


def kill_all_of(uids):
    """End every process of `uids` (their servers, kernels, a grading run), or fail."""
    deadline = time.monotonic() + 10
    while pids := processes_of(uids):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert time.monotonic() < deadline, f"processes {pids} of uids {uids} do not end"
        time.sleep(0.1)


@contextlib.contextmanager
def accounts(names, homes):
    """Linux users `names`, each with a home in `homes` only they may enter: {name: pwd entry}.
    Removed after, with their processes."""
    made = []
    try:
        for name in names:
            home = homes / name
            subprocess.run(
                ["useradd", "--home-dir", home, "--shell", "/usr/sbin/nologin", name], check=True
            )
            made.append(name)
            home.mkdir(mode=0o700)
            shutil.chown(home, name, name)
        yield {name: pwd.getpwnam(name) for name in made}
    finally:
        kill_all_of({pwd.getpwnam(name).pw_uid for name in made})
        for name in made:
            subprocess.run(["userdel", name], check=True)


def random_passwords(names):
    """Give each of the users `names` a random password: {name: password}."""
    passwords = {name: secrets.token_urlsafe(16) for name in names}
    lines = "".join(f"{name}:{password}\n" for name, password in passwords.items())
    subprocess.run(["chpasswd"], input=lines, text=True, check=True)
    return passwords


def python_in_reach():
    """Shell lines that make this Python reachable by other users, in a mount namespace of its
    own: here it may live under /root, which only root may enter (on a class's machine it is in
    /usr). A tmpfs anyone may pass through goes over the closed folder, with the Python inside."""
    python = Path(sys.base_prefix).resolve()
    closed = [p for p in python.parents if not p.stat().st_mode & stat.S_IXOTH]
    if not closed:
        return ""
    return (
        "set -e; stash=$(mktemp -d /var/tmp/autograd-python-XXXXXX); "
        f'mount --bind {python} "$stash"; mount -t tmpfs -o mode=0755 tmpfs {closed[-1]}; '
        f'mkdir -p {python}; mount --move "$stash" {python}; rmdir "$stash"; '
    )


def as_user(user, command, cwd, setup=""):
    """`command` run in `cwd` by the Linux user `user` (a pwd entry), as they would type it:
    with their own groups, no capability, and none of this process's environment but
    PYTHONPATH; after the shell lines `setup`, run as root."""
    environment = {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "PATH": f"{BIN}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
    }
    if "PYTHONPATH" in os.environ:  # a checkout other than the installed one, to be tested
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    drop = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    script = setup + python_in_reach() + 'exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        + drop
        + ["env", "-i", *(f"{k}={v}" for k, v in environment.items()), *map(str, command)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
