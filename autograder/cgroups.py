"""Limits on memory, processes and CPU for all of a notebook's processes together (cgroups).

A resource limit (setrlimit) binds one process: each child of a worker gets the whole of
--memory again, and children in sessions of their own use every core. A control group binds
them together. A grading run makes one group, `autograd-course-<grader pid>`, inside the
cgroup the grader runs in (in each hierarchy, on cgroup v1), and a group per notebook inside
that; the worker writes its pid into its notebook's group while still root, before anything
else runs, so everything it starts is counted there. Pages a worker shares with the zygote
stay charged to the zygote: a notebook's memory is what it adds.

Where a controller is missing grading goes on without it, and `Run.missing` says what that
allows, one sentence per controller, for `warning:` lines. On cgroup v2 a group can only hand
controllers to its children while it holds no processes itself (the root excepted); in a
container without systemd the grader runs in the namespace's root group, so its processes
are moved into a child, `init` (as docker-in-docker does), before the controllers are enabled.
"""

import errno
import os
import re
import signal
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
RUN_PREFIX = "autograd-course-"
CPU_PERIOD_US = 100_000
WITHOUT = {
    "memory": "a notebook's processes together may use more than --memory",
    "pids": "the number of a notebook's processes is bounded only per uid, by RLIMIT_NPROC",
    "cpu": "a notebook's processes together may use every core, slowing everyone else down",
}
OPTIONAL_FILES = {"memory.memsw.limit_in_bytes", "memory.swap.max"}  # only with swap accounting
FREEZE_FILES = [("freezer.state", "FROZEN", "THAWED"), ("cgroup.freeze", "1", "0")]  # v1, v2
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class Run:
    """The group of one grading run, inside which each notebook's group is made. Making it
    removes the groups of earlier runs whose grader is gone; `remove()` (or leaving the `with`
    block) removes it with everything in it. Never raises: what could not be made is in
    `missing`, and `kind` is None when no group could be made at all."""

    def __init__(self, root=CGROUP_ROOT, pid=None):
        root = Path(root)
        self.pid = pid or os.getpid()
        name = f"{RUN_PREFIX}{self.pid}"
        # controller -> this run's group holding it; "freezer": the group to freeze and kill
        # with (on v2, the run's group even where no controller could be had)
        self.dirs = {}
        problems = {}
        if (root / "cgroup.controllers").is_file():
            self.kind = "v2"
            parent = own_group(root, own_cgroup_paths().get("", "/"))
            enabled, problems = delegate(parent, [c for c in WITHOUT])
            try:
                (parent / name).mkdir(exist_ok=True)
                # the freeze and kill files are in every v2 group, with no controller
                self.dirs["freezer"] = parent / name
                enabled, more = enable(parent / name, enabled)
                problems |= more
                self.dirs |= {c: parent / name for c in enabled}
            except OSError as error:
                problems = dict.fromkeys(WITHOUT, error)
        else:
            self.kind = "v1"
            own = own_cgroup_paths()
            for controller in [*WITHOUT, "freezer"]:
                hierarchy = root / controller
                if not (hierarchy / "cgroup.procs").is_file():
                    continue
                group = own_group(hierarchy, own.get(controller, "/")) / name
                try:
                    group.mkdir(exist_ok=True)
                    self.dirs[controller] = group
                except OSError as error:
                    problems[controller] = error
        if not self.dirs:
            self.kind = None
        self.missing = [
            f"no {c} cgroup ({WITHOUT[c]})" + (f": {problems[c]}" if c in problems else "")
            for c in WITHOUT
            if c not in self.dirs
        ]
        self.remove_stale()

    def remove_stale(self):
        """Remove the groups, and kill the processes, of runs whose grader has ended."""
        for parent in {group.parent for group in self.dirs.values()}:
            try:
                entries = list(parent.iterdir())
            except OSError:
                continue
            for entry in entries:
                found = re.fullmatch(re.escape(RUN_PREFIX) + r"(\d+)", entry.name)
                if found and int(found[1]) != self.pid and not alive(int(found[1])):
                    remove_tree(entry)

    def remove(self):
        for group in set(self.dirs.values()):
            remove_tree(group)
        self.dirs = {}

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.remove()


class NotebookGroup:
    """One notebook's group (one in each hierarchy, on v1), limited to `memory_bytes` of memory
    and no swap, `max_processes` processes and threads, and `cpu_cores` CPUs' worth of time
    (None: no limit). Only the limits whose controller `run` has are set. Making it raises
    OSError (having removed what it made) if the kernel refuses; `remove()` (or leaving the
    `with` block) kills what is left in it and removes it, and never raises."""

    def __init__(self, run, name, memory_bytes=None, max_processes=None, cpu_cores=None):
        if not GROUP_NAME.fullmatch(name):
            raise ValueError(f"cgroup name {name!r}: only letters, digits, '_', '.' and '-'")
        self.kind = run.kind
        self.dirs = {}
        self.peak_seen = 0
        try:
            for controller, parent in run.dirs.items():
                if parent / name not in self.dirs.values():
                    (parent / name).mkdir()
                self.dirs[controller] = parent / name
            self.set_limits(memory_bytes, max_processes, cpu_cores)
        except BaseException:
            self.remove()
            raise

    def set_limits(self, memory_bytes, max_processes, cpu_cores):
        settings = []
        if memory_bytes is not None and self.kind == "v2":
            settings += [("memory", "memory.max", memory_bytes), ("memory", "memory.swap.max", 0)]
        elif memory_bytes is not None:  # memory first: memory and swap may not be below it
            settings.append(("memory", "memory.limit_in_bytes", memory_bytes))
            settings.append(("memory", "memory.memsw.limit_in_bytes", memory_bytes))
        if max_processes is not None:
            settings.append(("pids", "pids.max", max_processes))
        if cpu_cores is not None:
            quota = max(1000, int(cpu_cores * CPU_PERIOD_US))
            if self.kind == "v2":
                settings.append(("cpu", "cpu.max", f"{quota} {CPU_PERIOD_US}"))
            else:
                settings.append(("cpu", "cpu.cfs_period_us", CPU_PERIOD_US))
                settings.append(("cpu", "cpu.cfs_quota_us", quota))
        for controller, file, value in settings:
            if controller in self.dirs:
                path = self.dirs[controller] / file
                if file not in OPTIONAL_FILES or path.exists():
                    path.write_text(str(value))

    def procs_files(self):
        """The files a process writes its pid into to join this group (see `join`)."""
        return [group / "cgroup.procs" for group in set(self.dirs.values())]

    def peak_memory_bytes(self):
        """The most memory the group's processes held together (None without a memory group).
        On v2 kernels before 5.19, which have no memory.peak, it is the most memory.current
        read by calls so far: a lower bound."""
        group = self.dirs.get("memory")
        if group is None:
            return None
        if self.kind == "v1":
            return read_int(group / "memory.max_usage_in_bytes")
        peak = read_int(group / "memory.peak")
        if peak is None:
            self.peak_seen = max(self.peak_seen, read_int(group / "memory.current") or 0)
            return self.peak_seen
        return peak

    def oom_kills(self):
        """How many processes of the group the kernel killed for exceeding its memory."""
        group = self.dirs.get("memory")
        if group is None:
            return 0
        events = group / ("memory.events" if self.kind == "v2" else "memory.oom_control")
        return read_counts(events).get("oom_kill", 0)

    def kill_all(self, seconds=2.0):
        """SIGKILL every process in the group and wait, up to `seconds`, until all have exited;
        whether they have. Never raises."""
        return kill_processes(set(self.dirs.values()), seconds)

    def remove(self, seconds=2.0):
        """Kill what is left in the group and remove it, waiting up to `seconds` for its
        processes to end (0: one attempt); whether it is gone. Never raises."""
        self.kill_all(seconds)
        self.dirs = {c: g for c, g in self.dirs.items() if not remove_group(g, seconds)}
        return not self.dirs

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.remove()


def join(procs_files):
    """Put this process in a notebook's group (`NotebookGroup.procs_files()`): for the forked
    worker, before it drops root. Raises OSError if the kernel refuses: the worker must not
    run then."""
    for path in procs_files:
        Path(path).write_text(str(os.getpid()))


def own_cgroup_paths():
    """This process's cgroup in each v1 hierarchy, by controller ("" for the v2 hierarchy)."""
    paths = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                paths[controller] = path
    except (OSError, ValueError):
        pass
    return paths


def own_group(hierarchy, path):
    """This process's group in `hierarchy`. Where the hierarchy is mounted at that group itself
    (a container without a cgroup namespace), the path from /proc/self/cgroup is not in it."""
    group = hierarchy / path.lstrip("/")
    return group if group.is_dir() else hierarchy


def delegate(group, controllers):
    """Enable `controllers` for the children of `group`, this process's v2 group: (the ones
    enabled, {controller: why not} for the others). A group holding processes cannot; where it
    is ours to arrange (a container's root group, or one systemd delegated to us), its
    processes are moved into a child first."""
    try:
        offered = (group / "cgroup.controllers").read_text().split()
    except OSError as error:
        return [], dict.fromkeys(controllers, error)
    unoffered = {c: f"not offered by {group}" for c in controllers if c not in offered}
    enabled, problems = enable(group, [c for c in controllers if c in offered])
    busy = any(getattr(e, "errno", None) == errno.EBUSY for e in problems.values())
    if busy and ours_to_arrange(group):
        try:
            move_processes(group, group / "init")
        except OSError as error:
            return enabled, unoffered | dict.fromkeys(problems, error)
        enabled, problems = enable(group, [c for c in controllers if c in offered])
    return enabled, unoffered | problems


def ours_to_arrange(group):
    """Whether this process may move the processes of its own v2 group: it is the root group of
    its cgroup namespace (nobody else manages the tree), or systemd delegated it."""
    if own_cgroup_paths().get("") == "/":
        return True
    for attribute in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(group, attribute) == b"1":
                return True
        except OSError:
            pass
    return False


def move_processes(group, leaf):
    leaf.mkdir(exist_ok=True)
    for pid in (group / "cgroup.procs").read_text().split():
        try:
            (leaf / "cgroup.procs").write_text(pid)
        except ProcessLookupError:
            pass  # it ended meanwhile


def enable(group, controllers):
    """Enable each of `controllers` for the children of the v2 `group`: (the ones enabled,
    {controller: the error} for the others)."""
    enabled, problems = [], {}
    for controller in controllers:
        try:
            (group / "cgroup.subtree_control").write_text(f"+{controller}")
            enabled.append(controller)
        except OSError as error:
            problems[controller] = error
    return enabled, problems


def processes(groups):
    pids = set()
    for group in groups:
        try:
            pids.update(int(pid) for pid in (group / "cgroup.procs").read_text().split())
        except (OSError, ValueError):
            pass
    return pids


def kill_processes(groups, seconds=2.0):
    """SIGKILL every process in `groups` until none is left (up to `seconds`; whether none is),
    with cgroup.kill where the kernel has it (v2, Linux 5.14), else one by one with the groups
    frozen meanwhile, so that none can fork. Never raises."""
    deadline = time.monotonic() + seconds
    for group in groups:
        if (group / "cgroup.kill").exists():
            write_quietly(group / "cgroup.kill", "1")
    freezers = [
        (group / file, frozen, thawed)
        for group in groups
        for file, frozen, thawed in FREEZE_FILES
        if (group / file).exists()
    ]
    killed, pause = set(), 0.0001
    while pids := processes(groups):
        new = not pids <= killed
        if new:  # freeze, so that none of them can fork meanwhile
            for file, frozen, _ in freezers:
                write_quietly(file, frozen)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # it ended meanwhile
        if new:
            for file, _, thawed in freezers:
                write_quietly(file, thawed)  # frozen processes die once thawed
        killed |= pids
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.005)
    return True


def write_quietly(path, value):
    try:
        path.write_text(value)
    except OSError:
        pass


def remove_group(group, seconds=1.0):
    """rmdir `group`, retrying while the kernel still counts processes that have just exited;
    whether it is gone. Never raises."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                return False
        time.sleep(0.001)


def remove_tree(group):
    """Kill every process in `group` and the groups inside it, and remove them all."""
    try:
        children = [entry for entry in group.iterdir() if entry.is_dir()]
    except OSError:
        children = []
    for child in children:
        remove_tree(child)
    kill_processes([group])
    remove_group(group)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


def read_counts(path):
    """The "name number" lines of a cgroup file, as a dict."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    pairs = [re.fullmatch(r"(\S+) (\d+)", line) for line in lines]
    return {pair[1]: int(pair[2]) for pair in pairs if pair}


def read_int(path):
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None
