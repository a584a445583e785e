"""Hub capacity: how long a student waits for a first kernel, and how much memory a student
costs, with N students starting at once on this machine's JupyterHub (hub/).

For each N given (a fresh hub and fresh accounts each time):

1. Linux accounts with random names: an instructor and N students (homes in a temporary folder
   under /var/tmp; removed at the end, after all their processes are killed).
2. The hub, started by hub/run exactly as `make hub` starts it, on a free port, in a course copy
   under /var/tmp (its .venv a link to this one) with the hub's state in the same folder.
3. An API token of the instructor (the hub's admin, whose role has access:servers): logged in at
   /hub/login with a password, then POST /hub/api/users/<instructor>/tokens.
4. Every student at once: POST /hub/api/users/<name>/server, wait for the hub's progress stream
   to say ready, open the assignment's notebook (POST /user/<name>/api/sessions, as JupyterLab
   does), and run its code cells, one after another, through the kernel's websocket. The
   notebook is 01_basic_autograd's released notebook with the instructor's solutions filled in.

What it reports, per N:
- first kernel: from the server-start request to the first cell's execute_reply (what a
  student waits before their first cell has run), min / median / max over the students;
- memory per student: the sum of the PSS of all processes of the student's uid (their server
  and kernel; shared pages split between those who share them), once all cells have run, median
  and max (and the kernel's part of it, median); and the drop in the machine's MemAvailable
  from just before the servers started to then, divided by N. Students per GiB is 1 / the
  larger of the mean PSS and that drop;
- the hub's own processes (hub, proxy, grader service), and the machine's 1-minute load average
  (at the start, and the highest seen while the students ran).

It is a benchmark, not a test: run it by hand, as root on Linux, from the course root, with the
proxy installed (`npm ci --prefix hub`: the script runs it if hub/node_modules is missing):

    cd /work/main && .venv/bin/python benchmarks/hub_capacity.py [--students 1 10 30]
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import pwd
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path

import nbformat
import requests
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import notebook_path, solution_code, student_notebook  # noqa: E402 (tests/ is not a package)
from linux_users import accounts, free_ports, processes_of, random_passwords  # noqa: E402

ASSIGNMENT = "01_basic_autograd"
# Where the notebook is in a student's copy of the student edition (hub/start-server).
NOTEBOOK = f"release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
# What a course copy needs for hub/setup and `autograd-course student-edition`.
COURSE_FILES = ("nbgrader_config.py", "pyproject.toml", "README.md", "Makefile")
COURSE_FOLDERS = ("autograder", "course", "release", "source")
MiB = 2**20
GiB = 2**30
# A guard, not a measurement: refuse an N the machine's free memory clearly cannot hold.
GUARD_PER_STUDENT = 450 * MiB
TIMEOUT = 900  # seconds, for one student's whole run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="+", default=[1, 10, 30], metavar="N")
    args = parser.parse_args()
    if sys.platform != "linux" or os.geteuid() != 0:
        sys.exit(
            "hub_capacity.py creates Linux accounts and starts the hub: run it as root on Linux"
        )
    if not (REPO / "hub" / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        subprocess.run(
            ["npm", "ci", "--prefix", REPO / "hub", "--no-audit", "--no-fund"], check=True
        )

    cells = solved_cells()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"{meminfo('MemTotal') / GiB:.1f} GiB; jupyterhub {version('jupyterhub')}, "
        f"torch {version('torch')}; {ASSIGNMENT}: {len(cells)} code cells"
    )
    rows = []
    for n in args.students:
        available = meminfo("MemAvailable")
        if available < n * GUARD_PER_STUDENT + GiB:
            print(f"N={n}: skipped, only {available / GiB:.1f} GiB available")
            continue
        print(f"\nN={n}: starting ...", flush=True)
        rows.append(measure(n, cells))
        print(row_text(rows[-1]), flush=True)

    print(f"\ncommand: {shlex.join([sys.executable, *sys.argv])}\n")
    print(table(rows))
    return 1 if any(row["failed"] for row in rows) else 0


def solved_cells():
    """The code cells of the released notebook with every solution cell solved."""
    release = nbformat.read(notebook_path("release", ASSIGNMENT), as_version=4)
    solutions = [
        cell.metadata["nbgrader"]["grade_id"]
        for cell in release.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    ]
    answers = {grade_id: solution_code(ASSIGNMENT, grade_id) for grade_id in solutions}
    notebook = student_notebook(ASSIGNMENT, answers)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def measure(n, cells):
    folder = Path(tempfile.mkdtemp(prefix="autograd-capacity-", dir="/var/tmp"))
    folder.chmod(0o755)  # the students pass through to their homes
    tag = secrets.token_hex(3)
    instructor = f"capi{tag}"
    students = [f"caps{tag}x{i:02d}" for i in range(n)]
    (folder / "homes").mkdir(mode=0o755)
    try:
        with accounts([instructor, *students], folder / "homes") as users:
            (password,) = random_passwords([instructor]).values()
            with running_hub(folder, instructor, students) as hub:
                token = admin_token(hub, instructor, password)
                before = meminfo("MemAvailable")
                load_at_start = os.getloadavg()[0]
                results, load_max = asyncio.run(all_students(hub, token, students, cells))
                after = meminfo("MemAvailable")
                for result in results:
                    uid = users[result["name"]].pw_uid
                    result["pss"] = pss_of_uid(uid)
                    result["kernel"] = pss_of_uid(uid, "ipykernel")
                hub_pss = sum(pss_of(pid) for pid in hub_processes(hub.process.pid, users))
        failed = [r for r in results if "error" in r]
        for r in failed:
            print(f"  {r['name']}: {r['error']}")
        if failed:  # the servers log to the hub's output: keep it, to find out why
            kept = Path(tempfile.mkstemp(prefix=f"hub_capacity-N{n}-", suffix=".log")[1])
            shutil.copy(hub.log, kept)
            print(f"  the hub's log, with every server's: {kept}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ok = [r for r in results if "error" not in r]
    if not ok:
        raise RuntimeError(f"N={n}: no student's cells ran")
    return {
        "n": n,
        "failed": len(failed),
        "first": [r["first"] for r in ok],
        "ready": statistics.median(r["ready"] for r in ok),
        "done": statistics.median(r["done"] for r in ok),
        "pss": [r["pss"] for r in ok],
        "kernel": statistics.median(r["kernel"] for r in ok),
        "drop": (before - after) / n,
        "hub": hub_pss,
        "load": (load_at_start, load_max),
    }


class Hub:
    def __init__(self, url, process, log):
        self.url, self.process, self.log = url, process, log

    def log_tail(self):
        return self.log.read_text(errors="replace")[-6000:]


@contextlib.contextmanager
def running_hub(folder, instructor, students):
    """hub/run in a course copy in `folder`, on a free port, until the hub answers; stopped at
    the end (the hub stops every server it started). hub/setup may create the grader's account
    and the course group: removed again if this run created them and nothing else uses them."""
    course = folder / "course"
    course.mkdir()
    for name in COURSE_FILES:
        shutil.copy(REPO / name, course / name)
    for name in COURSE_FOLDERS + tuple(p.name for p in REPO.glob("requirements*")):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, course / name)
    (course / ".venv").symlink_to(REPO / ".venv")
    roster = folder / "students.txt"
    roster.write_text("".join(f"{name}\n" for name in students))
    port = free_ports(4)  # the hub uses PORT ... PORT + 3 (hub/jupyterhub_config.py)
    had_grader = account_exists("autograd-grader")
    had_group = subprocess.run(["getent", "group", "autograd-course"], capture_output=True)
    environment = {
        **os.environ,
        "AUTOGRAD_HUB_COURSE": str(course),
        "AUTOGRAD_HUB_STATE": str(folder / "state"),
        "AUTOGRAD_HUB_INSTRUCTOR": instructor,
        "AUTOGRAD_HUB_STUDENTS": str(roster),
        "AUTOGRAD_HUB_PORT": str(port),
    }
    log = folder / "hub.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [REPO / "hub" / "run"],
            cwd=folder,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub = Hub(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError("the hub stopped:\n" + hub.log_tail())
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(hub.url + "/hub/api/", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the hub did not answer in 300 s:\n" + hub.log_tail())
            time.sleep(0.5)
        yield hub
    except BaseException:
        print(hub.log_tail(), file=sys.stderr)
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        proxy = folder / "state" / "secrets" / "proxy.pid"
        if proxy.exists():  # the hub removes it when it stops its proxy itself
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(proxy.read_text()), 9)
        if not had_grader and account_exists("autograd-grader"):
            uid = pwd.getpwnam("autograd-grader").pw_uid
            for pid in processes_of({uid}):  # the grader service of this hub, if still running
                if hub_process_of(pid, process.pid):
                    os.kill(pid, 9)
            time.sleep(0.5)
            if not processes_of({uid}):
                subprocess.run(["userdel", "autograd-grader"], check=True)
        if had_group.returncode != 0:
            subprocess.run(["groupdel", "autograd-course"], capture_output=True)


def admin_token(hub, instructor, password):
    """An API token of the instructor, the hub's admin, made the way they would make one."""
    session = requests.Session()
    form = session.get(f"{hub.url}/hub/login", timeout=60).text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form).group(1)
    login = session.post(
        f"{hub.url}/hub/login",
        data={"username": instructor, "password": password, "_xsrf": xsrf},
        allow_redirects=False,
        timeout=60,
    )
    if login.status_code != 302:
        raise RuntimeError(
            f"the instructor's login failed ({login.status_code}):\n{hub.log_tail()}"
        )
    response = session.post(
        f"{hub.url}/hub/api/users/{instructor}/tokens",
        headers={"X-XSRFToken": session.cookies["_xsrf"]},
        json={"note": "hub_capacity.py"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["token"]


async def all_students(hub, token, students, cells):
    """Every student's run, all at once; and the highest 1-minute load average meanwhile."""
    # A student waits as long as it takes: no request of theirs gives up before TIMEOUT.
    patience = {"connect_timeout": TIMEOUT, "request_timeout": TIMEOUT}
    client = AsyncHTTPClient(
        force_instance=True, max_clients=3 * len(students) + 10, defaults=patience
    )
    highest = os.getloadavg()[0]
    runs = asyncio.gather(*(one_student(client, hub, token, name, cells) for name in students))
    while not runs.done():
        await asyncio.wait([runs], timeout=2)
        highest = max(highest, os.getloadavg()[0])
    client.close()
    return runs.result(), highest


async def one_student(client, hub, token, name, cells):
    """Start `name`'s server, open the notebook and run `cells`; the times are from the start
    request, in seconds."""
    result = {"name": name, "step": "starting the server"}
    try:
        await asyncio.wait_for(student_steps(client, hub, token, cells, result), TIMEOUT)
    except (HTTPClientError, RuntimeError, asyncio.TimeoutError, OSError) as error:
        result["error"] = f"{result['step']}: {type(error).__name__}: {error}"
    return result


async def student_steps(client, hub, token, cells, result):
    name, headers = result["name"], {"Authorization": f"token {token}"}
    started = time.monotonic()
    spawn = await client.fetch(
        f"{hub.url}/hub/api/users/{name}/server",
        method="POST",
        body="{}",
        headers=headers,
    )
    if spawn.code == 202:  # pending: the hub streams its progress until ready
        progress = await client.fetch(
            f"{hub.url}/hub/api/users/{name}/server/progress",
            headers={**headers, "Accept": "text/event-stream"},
        )
        events = re.findall(r"^data: (.*)$", progress.body.decode(), re.M)
        last = json.loads(events[-1])
        if not last.get("ready"):
            raise RuntimeError(f"spawn failed: {last.get('message')}")
    result["ready"] = time.monotonic() - started

    result["step"] = "opening the notebook"

    server = f"{hub.url}/user/{name}"
    session = await client.fetch(
        f"{server}/api/sessions",
        method="POST",
        headers=headers,
        body=json.dumps(
            {
                "path": NOTEBOOK,
                "name": Path(NOTEBOOK).name,
                "type": "notebook",
                "kernel": {"name": "python3"},
            }
        ),
    )
    kernel = json.loads(session.body)["kernel"]["id"]
    result["step"] = "running the cells"
    url = server.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels"
    channels = HTTPRequest(url, headers=headers, connect_timeout=TIMEOUT, request_timeout=TIMEOUT)
    websocket = await websocket_connect(channels)
    try:
        for index, code in enumerate(cells):
            await execute(websocket, code)
            if index == 0:
                result["first"] = time.monotonic() - started
    finally:
        websocket.close()
    result["done"] = time.monotonic() - started


async def execute(websocket, code):
    """Run `code` in the kernel behind `websocket` (Jupyter's JSON messages) until its reply."""
    msg_id = uuid.uuid4().hex
    await websocket.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "hub_capacity",
                    "session": msg_id,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    while True:
        message = await websocket.read_message()
        if message is None:
            raise RuntimeError("the kernel's websocket closed")
        if isinstance(message, bytes):
            continue  # binary messages (buffers) carry no reply
        reply = json.loads(message)
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if reply["msg_type"] == "execute_reply":
            content = reply["content"]
            if content["status"] != "ok":
                error = f"{content.get('ename')}: {content.get('evalue')}"
                raise RuntimeError(f"cell {code.splitlines()[0]!r}: {error}")
            return


def parent_of(pid):
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    return 0


def hub_process_of(pid, hub):
    """Whether `pid` is the hub `hub` or one of its descendants."""
    while pid > 1:
        if pid == hub:
            return True
        pid = parent_of(pid)
    return False


def hub_processes(hub, users):
    """The hub, its proxy and its services: its processes, without the users' servers."""
    uids = {user.pw_uid for user in users.values()}
    return [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and hub_process_of(int(pid), hub) and uid_of(int(pid)) not in uids
    ]


def uid_of(pid):
    with contextlib.suppress(FileNotFoundError):
        return os.stat(f"/proc/{pid}").st_uid
    return None


def pss_of(pid):
    """The proportional set size of process `pid`, in bytes (0 if it has ended)."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        return int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1)) * 1024
    return 0


def pss_of_uid(uid, command=""):
    """The PSS of the processes of `uid` (those whose command line holds `command`), in bytes."""
    return sum(pss_of(pid) for pid in processes_of({uid}) if command in command_line(pid))


def command_line(pid):
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    return ""


def meminfo(field):
    """A field of /proc/meminfo, in bytes."""
    text = Path("/proc/meminfo").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024


def account_exists(name):
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def row_text(row):
    first = row["first"]
    return (
        f"N={row['n']}: first kernel {min(first):.1f} / {statistics.median(first):.1f} / "
        f"{max(first):.1f} s, PSS median {statistics.median(row['pss']) / MiB:.0f} MiB "
        f"(the kernel {row['kernel'] / MiB:.0f} MiB), "
        f"MemAvailable drop / N {row['drop'] / MiB:.0f} MiB, failed {row['failed']}"
    )


def table(rows):
    lines = [
        "| students | first kernel, s (min / median / max) | server ready, s (median) "
        "| all cells run, s (median) | PSS per student, MiB (median / max) "
        "| MemAvailable drop / N, MiB | students per GiB | hub itself, MiB "
        "| load average, 1 min (start / highest) | failed |",
        "|" + "---|" * 10,
    ]
    for row in rows:
        first, pss = row["first"], row["pss"]
        per_student = max(statistics.mean(pss), row["drop"])
        lines.append(
            f"| {row['n']} | {min(first):.1f} / {statistics.median(first):.1f} / {max(first):.1f} "
            f"| {row['ready']:.1f} | {row['done']:.1f} "
            f"| {statistics.median(pss) / MiB:.0f} / {max(pss) / MiB:.0f} "
            f"(kernel {row['kernel'] / MiB:.0f}) "
            f"| {row['drop'] / MiB:.0f} | {GiB / per_student:.1f} | {row['hub'] / MiB:.0f} "
            f"| {row['load'][0]:.1f} / {row['load'][1]:.1f} | {row['failed']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
