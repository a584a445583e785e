"""Shutting a worker in before it runs student code: limits, namespaces, an unprivileged uid.

Each protection is applied where Linux allows it; `confine` returns the ones that could not be,
so the grader can say plainly what is missing.
"""

import ctypes
import os
import resource
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE = 16384, 1 << 18
# open_tree and move_mount have the same numbers on every architecture (Linux 5.2 and later)
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429
AT_FDCWD, AT_RECURSIVE, OPEN_TREE_CLONE, O_CLOEXEC = -100, 0x8000, 1, 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 4
FIRST_UID = 61000
RUNS = 100_000  # uids FIRST_UID ... FIRST_UID + 64 * RUNS are workers'


def worker_uid(run, slot):
    """The uid of worker `slot` of grading run `run` (the grader's pid): its own, so that
    killing "every process of this uid" never touches another run's workers."""
    return FIRST_UID + 64 * (run % RUNS) + slot


class Limits:
    """What one worker may use. The README says how to change them (grade --help)."""

    def __init__(self, seconds=30.0, memory_mb=2048, processes=32, output_mb=16):
        self.seconds = seconds  # per student cell and per call of a student's function
        self.memory_mb = memory_mb  # address space beyond what the worker starts with
        self.processes = processes
        self.output_mb = output_mb  # largest file the worker may write, in its private /tmp


def confine(uid, limits, hidden):
    """Confine this (freshly forked) process; the names of the protections that failed."""
    missing = []
    os.setsid()
    set_limits(limits)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET | CLONE_NEWIPC) != 0:
        missing.append("no network namespace (student code may open connections)")
    if libc.unshare(CLONE_NEWNS) != 0 or not private_mounts(libc, hidden):
        missing.append("no mount namespace (student code may read course files)")
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    else:
        missing.append("not started as root, so workers share the grader's uid")
    die_with_parent()  # after setuid, which clears it
    os.chdir("/tmp")
    return missing


def die_with_parent():
    """Be killed when the parent process dies, so a killed grading run leaves nothing running."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, 9, 0, 0, 0)


def set_limits(limits):
    address_space = Path("/proc/self/statm").read_text().split()[0]
    current = int(address_space) * os.sysconf("SC_PAGE_SIZE")
    for limit, value in [
        (resource.RLIMIT_AS, current + limits.memory_mb * 2**20),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_FSIZE, limits.output_mb * 2**20),
        (resource.RLIMIT_CORE, 0),
        # a backstop for processes a worker leaves behind; a live worker is timed by the grader
        (resource.RLIMIT_CPU, int(10 * limits.seconds) + 10),
    ]:
        resource.setrlimit(limit, (value, value))


def private_mounts(libc, hidden):
    """Private /tmp and /dev/shm, and empty folders over every path in `hidden`.

    Python itself (its environment and its standard library) stays readable even when it lives
    inside a hidden folder, under /tmp, or behind a folder the worker's uid may not enter (such
    as /root), because Python and torch import some modules only when they are first used: it
    is detached before its folder is covered and attached again on top (open_tree and
    move_mount, Linux 5.2).
    """

    def mount(source, target, kind, flags, data=None):
        encoded = [None if v is None else str(v).encode() for v in (source, target, kind, data)]
        return libc.mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]) == 0

    python = sorted({Path(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix)})
    if libc.syscall(SYS_OPEN_TREE, AT_FDCWD, b"/", OPEN_TREE_CLONE | O_CLOEXEC) < 0:
        return False  # too old a kernel to keep Python visible: hide nothing
    if not mount("none", "/", None, MS_REC | MS_PRIVATE):
        return False
    covers = {Path("/tmp"): "size=256m,mode=1777", Path("/dev/shm"): "size=64m,mode=1777"}
    for path in {Path(os.path.realpath(p)) for p in hidden} | {
        outermost_closed_folder(p) for p in python
    } - {None}:
        covers.setdefault(path, "size=1m,mode=755")
    ok = True
    for path, options in sorted(covers.items()):
        if not path.exists():
            continue  # it was inside a folder covered already
        kept = [(p, detach(libc, p)) for p in python if p.is_relative_to(path)]
        ok &= mount("tmpfs", path, "tmpfs", 0, options)
        for keep, tree in kept:
            keep.mkdir(parents=True, exist_ok=True)
            ok &= tree >= 0 and attach(libc, tree, keep)
            if tree >= 0:
                os.close(tree)
    return ok


def detach(libc, path):
    """A file descriptor holding a copy of the mount tree at `path` (or -1)."""
    flags = OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC
    return libc.syscall(SYS_OPEN_TREE, AT_FDCWD, str(path).encode(), flags)


def attach(libc, tree, path):
    flags = MOVE_MOUNT_F_EMPTY_PATH
    return libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, str(path).encode(), flags) == 0


def outermost_closed_folder(path):
    """The outermost folder above `path` that other users may not enter, or None."""
    return next((a for a in reversed(path.parents) if not a.stat().st_mode & 0o001), None)


def kill_worker(uid, pid):
    """SIGKILL the worker and every process it started (they run as its uid, or in its session)."""
    if os.getuid() != 0:
        try:
            os.killpg(pid, 9)
        except OSError:
            pass
        return
    # By the Uid line, not by who owns the /proc folder: a process that makes itself
    # non-dumpable has a folder owned by root.
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid:
                            os.kill(int(entry.name), 9)
                        break
        except (OSError, ValueError):
            pass  # it ended meanwhile
