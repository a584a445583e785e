"""Shutting a worker in before it runs student code.

A worker (forked, as root, from the zygote) gets, in this order: no file descriptor but its
socket and /dev/null on 0, 1 and 2; its notebook's cgroup (memory, processes and CPU for the whole
notebook); rlimits; its own network, IPC, mount and PID namespaces; a root filesystem built from an
allow-list (a fresh tmpfs holding read-only binds of Python, the course's packages and the system
libraries, a private /tmp and /dev/shm, four device files, and nothing else); an unprivileged uid
of its own; and death with its parent. Each protection is applied where Linux allows it; `confine`
returns one sentence per protection that could not be, so the grader can say plainly what is
missing.

A grader that is not root (a dedicated account on a JupyterHub) gets the same namespaces and
root filesystem where Linux lets unprivileged users make user namespaces: each worker is first
made the owner of a user namespace of its own, where it may make the others, and gives up every
capability before it runs student code. Its uid on the host stays the grader's: only root can
give each worker its own.
"""

import ctypes
import functools
import os
import platform
import resource
import signal
import sys
import time
from pathlib import Path

import autograder

CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000
CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUSER = 0x40000000, 0x20000000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
# open_tree and move_mount have the same numbers on every architecture (Linux 5.2 and later);
# pivot_root does not, and glibc has no wrapper for it.
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
clone = ctypes.PyDLL(None).syscall  # PyDLL: called holding the GIL, as os.fork() forks
clone.restype, clone.argtypes = ctypes.c_long, [ctypes.c_long] * 6
AT_FDCWD, OPEN_TREE_CLONE, O_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH = -100, 1, 0o2000000, 4
FIRST_UID = 61000
# A worker of a grader that is not root: the uid and gid it has in its user namespace (any but
# 0: with uid 0 there, running a program would give it back every capability in it).
NAMESPACE_ID = 1000
LINUX_CAPABILITY_VERSION_3 = 0x20080522
OWN_UID_MISSING = "workers run as the grader's own user (only root can give them their own)"
RUNS = 100_000  # uids FIRST_UID ... FIRST_UID + 64 * RUNS are workers'
# The environment a worker sees: nothing of the grader's (which may hold secrets).
WORKER_ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "MPLBACKEND": "Agg",
}
DEVICES = ("null", "zero", "random", "urandom")
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")


def worker_uid(run, slot):
    """The uid of worker `slot` of grading run `run` (the grader's pid): its own, so that
    killing "every process of this uid" never touches another run's workers."""
    return FIRST_UID + 64 * (run % RUNS) + slot


class Limits:
    """What one notebook may use. The README says how to change them (grade --help)."""

    # The least `memory_mb` grade accepts. The course's solved notebooks need 24 MB beyond
    # the torch they share (measured by their cgroup; with no cgroup, by RLIMIT_AS, 16 MB):
    # ten times that leaves room for an honest solution that allocates more.
    MIN_MEMORY_MB = 256

    def __init__(
        self,
        seconds=30.0,
        memory_mb=2048,
        processes=32,
        output_mb=16,
        notebook_seconds=None,
        cpus=1.0,
    ):
        self.seconds = seconds  # per student cell and per call of a student's function
        # all the work of one notebook, replays after a timeout included
        self.notebook_seconds = notebook_seconds or 4 * seconds
        self.memory_mb = memory_mb  # the notebook's processes together, beyond the shared torch
        self.processes = processes
        self.output_mb = output_mb  # largest file the worker may write, in its private /tmp
        self.cpus = cpus  # CPU cores the notebook's processes may use together


@functools.cache
def allowed_paths():
    """(read-only binds, symbolic links) of the worker's root: what Python, torch, matplotlib
    and the autograder need to run and to import lazily, and nothing else."""
    python = {Path(p) for p in (sys.prefix, sys.base_prefix)}
    python |= {Path(os.path.realpath(p)) for p in python}
    package = Path(autograder.__file__).parent
    binds, links = [], {}
    for path in sorted(python | {package, Path(os.path.realpath(package))}):
        if path.is_dir() and not any(path.is_relative_to(p) for p in binds):
            binds.append(path)
    for name in SYSTEM:
        path = Path(name)
        if path.is_symlink():
            links[path] = os.readlink(path)
        elif path.is_dir() and not any(path.is_relative_to(p) for p in binds):
            binds.append(path)
    binds += [Path(name) for name in SYSTEM_FILES if Path(name).is_file()]
    return binds, links


def scrub_environment():
    """Forget the grader's environment, in Python and in the process's memory (where
    /proc/PID/environ and a pointer walk would still find it): called once, in the zygote."""
    libc = ctypes.CDLL(None)
    libc.strlen.restype = ctypes.c_size_t
    environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    index = 0
    while environ[index]:
        ctypes.memset(environ[index], 0, libc.strlen(ctypes.c_void_p(environ[index])))
        index += 1
    # Python's copy: the values as bytes (os.environ and os.environb share them), zeroed in
    # place before they are freed, where a scan of the heap could find them. (Not a value of
    # one byte: CPython shares one object for each, and it is no secret.)
    for value in os.environ._data.values():
        if len(value) > 1:
            ctypes.memset(id(value) + sys.getsizeof(b"") - 1, 0, len(value))
    os.environ.clear()
    os.environ.update(WORKER_ENVIRONMENT)


def confine(uid, limits, socket_fd, join_cgroup=None, namespaces=0):
    """Confine this freshly forked process (running as root, if the grader does); the names of
    the protections that failed. `join_cgroup()` puts it in its notebook's cgroup; `namespaces`
    are the ones fork_with_own_pids made it in (CLONE_ flags)."""
    missing = []
    os.setsid()
    only_descriptors(socket_fd)
    if join_cgroup is not None:
        join_cgroup()
    set_limits(limits)
    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() != 0 and not namespaces & CLONE_NEWUSER:
        enter_user_namespace(libc)  # where the kernel allows it: the steps below say if not
    if libc.unshare(CLONE_NEWNET | CLONE_NEWIPC) != 0:
        missing.append("no network namespace (student code may open connections)")
    if libc.unshare(CLONE_NEWNS) != 0 or not allow_listed_root(libc):
        missing.append("no private filesystem (student code may read the grader's files)")
    if os.geteuid() == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        except PermissionError:
            missing.append(OWN_UID_MISSING)
    else:
        missing.append(OWN_UID_MISSING)
        if not drop_capabilities(libc):
            missing.append("student code keeps capabilities in the worker's namespaces")
    die_with_parent()  # after setuid, which clears it
    if not namespaces & CLONE_NEWPID:
        missing.append("no PID namespace (processes a notebook starts may outlive it)")
    os.chdir("/tmp" if os.path.isdir("/tmp") else "/")
    return missing


def only_descriptors(socket_fd):
    """/dev/null on 0, 1 and 2, and no other descriptor than the socket: nothing inherited from
    the grader (its terminal, its files) reaches student code."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, socket_fd)
    os.closerange(socket_fd + 1, os.sysconf("SC_OPEN_MAX"))


def die_with_parent():
    """Be killed when the parent process dies, so a killed grading run leaves nothing running."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def fork_with_own_pids():
    """Fork a worker that is the first process of a new PID namespace, where Linux allows it:
    (its pid, or 0 in the worker; the namespaces it got, as CLONE_ flags, 0 for none). Every
    process the worker starts is in that namespace, and when the worker ends the kernel ends
    them all: nothing outlives its notebook. Only root may make a PID namespace, or the owner
    of a user namespace in it: a grader that is not root makes the worker one of its own too.
    os.fork() takes no flags, so this is clone() with CPython's own fork hooks around it."""
    if SYS_CLONE is not None:
        ids = os.geteuid(), os.getegid()  # in the new namespace, they read as unmapped
        namespaces = CLONE_NEWPID | (CLONE_NEWUSER if ids[0] != 0 else 0)
        ctypes.pythonapi.PyOS_BeforeFork()
        pid = clone(SYS_CLONE, namespaces | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            ctypes.pythonapi.PyOS_AfterFork_Child()
            if namespaces & CLONE_NEWUSER:
                map_ids(*ids)
            return 0, namespaces
        ctypes.pythonapi.PyOS_AfterFork_Parent()
        if pid > 0:
            return pid, namespaces
    return os.fork(), 0


def enter_user_namespace(libc):
    """Own a new user namespace, as NAMESPACE_ID: its owner holds every capability over the
    namespaces made in it, which is what lets a process that is not root make them."""
    ids = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER) == 0:
        map_ids(*ids)


def map_ids(uid, gid):
    """Map NAMESPACE_ID, in this process's new user namespace, to the grader's `uid` and `gid`
    (the one mapping a process may write without privileges); unmapped, it could create no
    file. The kernel takes a gid_map from an unprivileged process only once setgroups is
    denied (dropping a group could get past a file's "not this group" permissions). If the
    kernel refuses, the steps that need the mapping fail and say so."""
    try:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{NAMESPACE_ID} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{NAMESPACE_ID} {gid} 1")
    except OSError:
        pass


class CapabilityData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32)]
    _fields_ += [("inheritable", ctypes.c_uint32)]


def drop_capabilities(libc):
    """Give up every capability (the ones the worker holds as the owner of its user namespace):
    whether none is left. Without them student code cannot undo the namespaces or the
    read-only mounts; with no uid 0 in the namespace, no program it runs gets them back."""
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    none = (CapabilityData * 2)()  # version 3: two sets of 32 bits each
    return libc.capset(header, none) == 0


def set_limits(limits):
    """Per-process backstops; the notebook's cgroup is what bounds its processes together."""
    address_space = Path("/proc/self/statm").read_text().split()[0]
    current = int(address_space) * os.sysconf("SC_PAGE_SIZE")
    for limit, value in [
        (resource.RLIMIT_AS, current + limits.memory_mb * 2**20),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_FSIZE, limits.output_mb * 2**20),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_CPU, int(limits.notebook_seconds) + 10),
    ]:
        resource.setrlimit(limit, (value, value))


def allow_listed_root(libc):
    """Make a fresh tmpfs, holding only the allow-list, this process's root (pivot_root)."""
    if SYS_PIVOT_ROOT is None:
        return False
    binds, links = allowed_paths()
    # (path, a copy of the tree there, whether it is a folder, whether it is a device file)
    trees = []
    try:
        if not mount(libc, None, "/", None, MS_REC | MS_PRIVATE):
            return False
        # Copies of the allowed trees, taken before anything is mounted over them.
        wanted = [(path, False) for path in binds]
        wanted += [(Path("/dev") / name, True) for name in DEVICES]
        for path, device in wanted:
            tree = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, bytes(path), OPEN_TREE_CLONE | O_CLOEXEC)
            if tree < 0:
                return False
            trees.append((path, tree, path.is_dir(), device))
        new_root = Path("/tmp")
        if not mount(libc, "tmpfs", new_root, "tmpfs", MS_NOSUID, "size=1m,mode=755"):
            return False
        # The private /tmp and /dev/shm first: an allowed tree under /tmp (a course cloned
        # there, its venv) is then bound inside the new /tmp, not hidden by it.
        scratch = {new_root / "tmp": "size=256m", new_root / "dev" / "shm": "size=64m"}
        ok = True
        for folder, size in scratch.items():
            folder.mkdir(parents=True, exist_ok=True)
            ok &= mount(libc, "tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=1777")
        for path, tree, folder, device in trees:
            target = new_root / path.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.mkdir() if folder else target.touch()
            ok &= attach(libc, tree, target)
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | (0 if device else MS_NODEV)
            flags |= locked_flags(tree)
            ok &= mount(libc, None, target, None, flags)
        for path, destination in links.items():
            (new_root / path.relative_to("/")).symlink_to(destination)
        ok &= mount(libc, None, new_root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID)
        os.chdir(new_root)
        ok = ok and libc.syscall(SYS_PIVOT_ROOT, b".", b".") == 0
        ok = ok and libc.umount2(b".", MNT_DETACH) == 0  # the old root, stacked on top
        os.chdir("/")
        return ok
    finally:
        for _, tree, _, _ in trees:
            os.close(tree)


def locked_flags(tree):
    """The nosuid, nodev and noexec flags of the mount `tree` was copied from: in a user
    namespace, the kernel refuses a remount that would clear them (and they only take away)."""
    return os.fstatvfs(tree).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount(libc, source, target, kind, flags, data=None):
    encoded = [None if v is None else str(v).encode() for v in (source, target, kind, data)]
    return libc.mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]) == 0


def attach(libc, tree, path):
    flags = MOVE_MOUNT_F_EMPTY_PATH
    return libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, bytes(path), flags) == 0


def kill_uid(uid, patience=2.0):
    """SIGKILL every process running as `uid` until none is left (for at most `patience`
    seconds): a backstop, for hosts without cgroups, and the last sweep of a run."""
    give_up = time.monotonic() + patience
    while kill_each(uid) and time.monotonic() < give_up:
        time.sleep(0.005)


def kill_each(uid):
    """SIGKILL each live process running as `uid`; how many there were. By the Uid line, not
    by who owns the /proc folder: a process that makes itself non-dumpable has a folder owned
    by root. Zombies are already dead (their parent, or the system's init, reaps them)."""
    found = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"State:") and line.split()[1] == b"Z":
                        break
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid:
                            found += 1
                            os.kill(int(entry.name), signal.SIGKILL)
                        break
        except (OSError, ValueError, IndexError):
            pass  # it ended meanwhile
    return found
