"""Per-notebook cgroups (issue 8, finding 8: limits were per process, not per notebook).

Run on this machine's real cgroups (v1: memory, pids, cpu and freezer hierarchies), each
limit against a child process that joins its group the way a worker does, from inside the
forked child before anything else runs (`preexec_fn`). The v2 code is tested on this machine's
unified hierarchy (real, but with no controllers: every one is bound to v1 here) and, for
the limit files, on a temporary directory laid out like cgroupfs.
"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autograder import cgroups

MB = 2**20
UNIFIED = cgroups.CGROUP_ROOT / "unified"
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def run():
    if os.getuid() != 0:
        pytest.skip("making cgroups needs root")
    with cgroups.Run() as run:
        if run.kind is None:
            pytest.skip(f"no cgroups here: {run.missing}")
        yield run


def needs(run, controller):
    if controller not in run.dirs:
        pytest.skip(f"no {controller} cgroup on this machine: {run.missing}")


def start_in(group, script):
    """A Python child running `script`, in `group` from before its first instruction."""
    files = group.procs_files()
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        preexec_fn=lambda: cgroups.join(files),
        stdout=subprocess.PIPE,
        text=True,
    )


def finish(child, seconds=60):
    """The line the child printed, once it has exited (processes it left may hold its stdout)."""
    line = child.stdout.readline()
    child.wait(timeout=seconds)
    child.stdout.close()
    return line


def test_memory_is_bounded_for_the_group_not_per_process(run):
    """8 processes of 50 MB each: every one alone is under the 100 MB limit, all together are
    not, so the kernel kills all but one or two of them."""
    needs(run, "memory")
    script = f"""
        import os, time
        children = []
        for _ in range(8):
            pid = os.fork()
            if pid == 0:
                held = b"x" * (50 * {MB})  # written, so every page is really used
                time.sleep(3)
                os._exit(0)
            children.append(pid)
        statuses = [os.waitpid(pid, 0)[1] for pid in children]
        print(sum(os.WIFSIGNALED(s) and os.WTERMSIG(s) == 9 for s in statuses),
              sum(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses))
    """
    with cgroups.NotebookGroup(run, "memory-test", memory_bytes=100 * MB) as group:
        child = start_in(group, script)
        killed, survived = map(int, finish(child).split())
        assert child.returncode == 0
        assert survived <= 2 and killed == 8 - survived, (killed, survived)
        assert group.oom_kills() > 0
        assert group.peak_memory_bytes() <= 100 * MB


def test_a_fork_loop_stops_at_max_processes(run):
    needs(run, "pids")
    script = """
        import os, time
        forked = 0
        while forked < 100:
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
            except BlockingIOError:
                break
            forked += 1
        print(forked)
    """
    with cgroups.NotebookGroup(run, "fork-test", max_processes=8) as group:
        child = start_in(group, script)
        assert int(finish(child)) == 7  # the child itself is the eighth
        assert len(cgroups.processes(group.dirs.values())) == 7  # the sleepers it left
        assert group.kill_all()
        assert not cgroups.processes(group.dirs.values())


def test_spinning_processes_share_the_groups_cpu(run):
    """Two processes spinning for 2 s in a group of a quarter of a core use about 0.5 s of CPU
    between them (on this 2-core machine they could use 4 s), and the kernel says it held
    them back."""
    needs(run, "cpu")
    script = """
        import os, time
        start = time.monotonic()
        for _ in range(2):
            if os.fork() == 0:
                while time.monotonic() - start < 2:
                    pass
                os._exit(0)
        os.wait(), os.wait()
        times = os.times()
        print((times.children_user + times.children_system) / (time.monotonic() - start))
    """
    with cgroups.NotebookGroup(run, "cpu-test", cpu_cores=0.25) as group:
        cores_used = float(finish(start_in(group, script)))
        assert cores_used < 0.5, f"{cores_used:.2f} cores"
        assert cgroups.read_counts(group.dirs["cpu"] / "cpu.stat")["nr_throttled"] > 0


def test_peak_memory_is_at_least_what_the_child_touched(run):
    needs(run, "memory")
    script = f"""
        held = b"x" * (200 * {MB})
    """
    with cgroups.NotebookGroup(run, "peak-test", memory_bytes=1024 * MB) as group:
        child = start_in(group, script)
        finish(child)
        assert child.returncode == 0
        assert group.peak_memory_bytes() >= 200 * MB
        assert group.oom_kills() == 0


def test_remove_kills_what_is_left_and_leaves_no_group(run):
    group = cgroups.NotebookGroup(run, "remove-test", max_processes=16, memory_bytes=256 * MB)
    sleeper = start_in(group, "import os, time; os.fork(); time.sleep(60)")
    folders = set(group.dirs.values())
    assert all(folder.is_dir() for folder in folders) and len(folders) >= 3
    group.remove()
    assert sleeper.wait(timeout=5) == -9
    assert not any(folder.exists() for folder in folders)


def test_remove_stale_removes_the_groups_of_a_run_that_died(run):
    ended = subprocess.Popen(["true"])
    ended.wait()
    stale = cgroups.Run(pid=ended.pid)
    left = cgroups.NotebookGroup(stale, "left-behind", max_processes=8)
    sleeper = start_in(left, "import time; time.sleep(60)")
    folders = set(stale.dirs.values())
    assert all(folder.is_dir() for folder in folders)
    run.remove_stale()
    assert sleeper.wait(timeout=5) == -9
    assert not any(folder.exists() for folder in folders)
    assert all(folder.is_dir() for folder in run.dirs.values())  # a live run's are kept


def test_no_cgroups_is_said_once_per_controller(tmp_path):
    run = cgroups.Run(tmp_path)
    assert run.kind is None
    assert [sentence.split(" (")[0] for sentence in run.missing] == [
        "no memory cgroup",
        "no pids cgroup",
        "no cpu cgroup",
    ]
    assert "more than --memory" in run.missing[0]
    with cgroups.NotebookGroup(run, "nothing", 100 * MB, 8, 0.5) as group:
        assert group.procs_files() == [] and group.peak_memory_bytes() is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason=f"no {SYSTEM_PYTHON} to run as nobody")
def test_not_root_is_said_once_per_controller(run):
    """As an unprivileged user (the real cgroups, which only root may change): each missing
    protection is named with the reason. /usr/bin/python3, since the grader's Python is under
    /root; this module needs only the standard library."""
    script = f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("cgroups", {cgroups.__file__!r})
        cgroups = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cgroups)
        run = cgroups.Run()
        print(run.kind, *run.missing, sep="\\n")
    """
    shown = subprocess.run(
        [SYSTEM_PYTHON, "-c", textwrap.dedent(script)],
        user=65534,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert shown[0] == "None"
    assert [line.split(" (")[0] for line in shown[1:]] == [
        f"no {c} cgroup" for c in ["memory", "pids", "cpu"] if c in run.dirs
    ]
    assert all("Permission denied" in line for line in shown[1:])


def test_v2_limit_files_in_a_directory_laid_out_like_cgroupfs(tmp_path):
    """What this proves: on a v2 layout the run's and the notebook's groups are made where
    they should be, controllers are asked for in cgroup.subtree_control, and the limits go to
    memory.max, pids.max and cpu.max in the kernel's format; join() writes this process's pid
    to cgroup.procs. What it does not: that a real kernel accepts them, the no-internal-process
    rule and moving processes into `init`, memory.swap.max (written only where the kernel made
    it), memory.peak and cgroup.kill on a memory-limited group. Those need a v2 host."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    run = cgroups.Run(tmp_path)
    assert run.kind == "v2" and run.missing == []
    run_group = tmp_path / f"autograd-course-{os.getpid()}"
    assert set(run.dirs.values()) == {run_group}
    # the kernel takes "+memory", "+pids", "+cpu" one by one; a plain file keeps the last
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu"
    assert (run_group / "cgroup.subtree_control").read_text() == "+cpu"
    group = cgroups.NotebookGroup(run, "nb", 300 * MB, 16, 1.5)
    notebook_group = run_group / "nb"
    assert group.procs_files() == [notebook_group / "cgroup.procs"]
    assert (notebook_group / "memory.max").read_text() == str(300 * MB)
    assert (notebook_group / "pids.max").read_text() == "16"
    assert (notebook_group / "cpu.max").read_text() == "150000 100000"
    cgroups.join(group.procs_files())
    assert (notebook_group / "cgroup.procs").read_text() == str(os.getpid())
    (notebook_group / "cgroup.procs").write_text("")
    (notebook_group / "memory.current").write_text(str(5 * MB))
    assert group.peak_memory_bytes() == 5 * MB  # no memory.peak: memory.current, sampled
    group.remove()  # a plain folder with files cannot be rmdir'ed: it must just not raise


@pytest.mark.skipif(not (UNIFIED / "cgroup.procs").is_file(), reason="no cgroup2 mount here")
def test_v2_groups_on_a_real_unified_hierarchy(run):
    """This machine's cgroup2 mount has no controllers (all are bound to v1), so this proves
    on a real kernel only what v2 needs no controller for: making the groups, joining one,
    killing a process tree with cgroup.kill and removing the groups."""
    with cgroups.Run(UNIFIED) as unified:
        assert unified.kind == "v2"
        assert [sentence.split(" (")[0] for sentence in unified.missing] == [
            "no memory cgroup",
            "no pids cgroup",
            "no cpu cgroup",
        ]
        group = cgroups.NotebookGroup(unified, "v2-test", 100 * MB, 8, 0.5)
        folder = group.dirs["freezer"]
        sleeper = start_in(group, "import os, time; os.fork(); os.fork(); time.sleep(60)")
        while len(cgroups.processes([folder])) < 4:
            assert sleeper.poll() is None
            time.sleep(0.01)
        assert (folder / "cgroup.kill").exists()
        group.remove()
        assert sleeper.wait(timeout=5) == -9
        assert not folder.exists()
    assert not (UNIFIED / f"autograd-course-{os.getpid()}").exists()
