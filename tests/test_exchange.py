"""A class on one machine, through nbgrader's exchange, from a clone of the course.

Two students are real Linux users, created for the test and removed after it. The instructor
closes the course as the README says, releases; each student fetches and submits with the
nbgrader settings of the student edition, as their own user; neither can see the other's work;
the instructor collects, grades and hands back feedback, which a student fetches. A third
student who hands work in under a classmate's name is refused at collect and costs the classmate
nothing. And the formgrader, started in a fresh copy, offers Release and Collect. Linux only, as
root.
"""

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, copy_course, free_ports, run_cli, solution_code, student_notebook
from linux_users import accounts, as_user

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("useradd"),
    reason="creates Linux users: needs Linux and root",
)

BIN = Path(sys.executable).parent
ASSIGNMENT = "01_basic_autograd"
COURSE_ID = "autograd-course"
EXERCISES = ["ex1_slope_of_square", "ex2_slope_of_quadratic", "ex3_derivative_at"]
EXERCISES += ["ex4_leaf_and_intermediate", "ex5_tangent_line"]
EDITION_SOURCES = {"course", "autograder", "pyproject.toml", "README.md", "Makefile"}
# The README's commands that keep the course closed to students but let them reach exchange/.
CLOSE_THE_COURSE = """
mkdir -p submitted autograded feedback report && touch gradebook.db grades.json grades.csv
chmod -R go= $(ls -A -I exchange)
chmod 711 .
"""


@pytest.fixture
def shared_folder():
    """A folder every user can reach (pytest's are closed to others), removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="autograd-exchange-", dir="/var/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        # rm, not shutil.rmtree: one test plants a folder nested past Python's recursion limit
        subprocess.run(["rm", "-rf", "--", folder], check=True)


def nbgrader(*args):
    return [BIN / "nbgrader", *args]


def instructor(command, cwd):
    """`command` run by the instructor, in a shell where the course's .venv is activated (nbgrader
    runs `alembic` by name when it makes the gradebook)."""
    environment = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    return ok(
        subprocess.run(
            command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
        )
    )


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def clone(destination):
    """What a clone of the course has that the student edition is built from."""
    course = copy_course(destination)
    for path in REPO.iterdir():
        if path.name in EDITION_SOURCES or path.name.startswith("requirements"):
            copy = shutil.copytree if path.is_dir() else shutil.copy
            copy(path, course / path.name)
    return course


def released_in_a_closed_course(shared_folder):
    """A clone of the course in `shared_folder`, closed as the README says, with ASSIGNMENT
    released and the student edition in `shared_folder`/edition: (course, its exchange folder)."""
    course = clone(shared_folder / "course")
    course.chmod(0o755)
    instructor(["bash", "-c", CLOSE_THE_COURSE], cwd=course)
    ok(run_cli("student-edition", shared_folder / "edition", "--exchange", cwd=course))
    instructor(nbgrader("release_assignment", ASSIGNMENT), cwd=course)
    (shared_folder / "homes").mkdir(mode=0o755)
    return course, course / "exchange" / COURSE_ID


def solutions(exercises):
    return {cell: solution_code(ASSIGNMENT, cell) for cell in exercises}


def hand_in(user, edition, answers, *submit_options):
    """`user` fetches ASSIGNMENT into their own copy of the student `edition`, writes `answers`
    ({solution cell: code}) there and submits (nbgrader submit `submit_options`); returns the
    notebook."""
    work = Path(user.pw_dir) / "edition"
    shutil.copytree(edition, work)
    subprocess.run(["chown", "-R", f"{user.pw_name}:{user.pw_name}", work], check=True)
    ok(as_user(user, nbgrader("fetch_assignment", ASSIGNMENT), cwd=work))
    fetched = work / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nbformat.write(student_notebook(ASSIGNMENT, answers), fetched)
    shutil.chown(fetched, user.pw_name, user.pw_name)
    ok(as_user(user, nbgrader("submit", ASSIGNMENT, *submit_options), cwd=work))
    return fetched


def scores(course):
    """Each student's score for ASSIGNMENT, graded by autograd-course from submitted/."""
    ok(run_cli("grade", "submitted", "--json", "grades.json", cwd=course))
    results = json.loads((course / "grades.json").read_text())["students"]
    return {name: result[ASSIGNMENT]["score"] for name, result in results.items()}


def test_two_students_on_one_machine_fetch_submit_and_get_feedback(shared_folder):
    course, exchange = released_in_a_closed_course(shared_folder)
    # The student edition tells a student's nbgrader where the instructor's exchange is.
    settings = (shared_folder / "edition" / "nbgrader_config.py").read_text()
    assert f"c.Exchange.root = {str(course / 'exchange')!r}" in settings
    assert f"c.CourseDirectory.course_id = {COURSE_ID!r}" in settings
    assert (exchange / "outbound" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    assert stat.S_IMODE((course / "exchange").stat().st_mode) == 0o1777
    assert stat.S_IMODE((exchange / "inbound").stat().st_mode) == 0o2733

    strong, weak = (f"agc{secrets.token_hex(3)}{letter}" for letter in "ab")
    answers = {strong: solutions(EXERCISES), weak: solutions(EXERCISES[:2])}
    with accounts([strong, weak], shared_folder / "homes") as users:
        for name, user in users.items():
            # Each student has their own clone of the student edition and works in it.
            hand_in(user, shared_folder / "edition", answers[name])

        # The weak student can neither list the submissions nor find the strong one's.
        peek = as_user(
            users[weak],
            [
                BIN / "python",
                "-c",
                "import glob, os, sys\n"
                f"print(glob.glob(os.path.join(sys.argv[1], '{strong}+*')))\n"
                "os.listdir(sys.argv[1])",
                exchange / "inbound",
            ],
            cwd=shared_folder,
        )
        assert peek.stdout.strip() == "[]"
        assert "PermissionError" in peek.stderr
        instructor(nbgrader("collect", ASSIGNMENT), cwd=course)
        collected = course / "submitted" / strong / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        assert collected.is_file()
        # Nor, in the closed course, the solutions or the collected work.
        for secret in (course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", collected):
            denied = as_user(users[weak], ["cat", secret], cwd=shared_folder)
            assert denied.returncode != 0 and "Permission denied" in denied.stderr

        assert scores(course) == {strong: 10.0, weak: 4.0}

        # Pages written under a private umask (077, as on a shared server) are still handed out
        # readable by their student: nbgrader's release copies a page's mode.
        instructor(["chmod", "-R", "go=", "feedback"], cwd=course)
        instructor(nbgrader("release_feedback", ASSIGNMENT), cwd=course)
        work = Path(users[weak].pw_dir) / "edition"
        ok(as_user(users[weak], nbgrader("fetch_feedback", ASSIGNMENT), cwd=work))
        pages = list((work / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html"))
        assert len(pages) == 1 and "test_ex3_derivative_at" in pages[0].read_text()


# What a student types to make a submission folder by hand, under any name: $1, with the time $2,
# and $4 copied into it by the command $3 (cp, or ln -s to link it).
PLANT = 'mkdir "$1" && printf %s "$2" > "$1/timestamp.txt" && $3 "$4" "$1/"'


def test_collect_refuses_forged_linked_and_malformed_submissions(shared_folder):
    course, exchange = released_in_a_closed_course(shared_folder)
    inbound = exchange / "inbound"
    victim, mallory = (f"agc{secrets.token_hex(3)}{letter}" for letter in "vm")
    forgery = "# handed in by mallory"
    with accounts([victim, mallory], shared_folder / "homes") as users:
        real = hand_in(users[victim], shared_folder / "edition", solutions(EXERCISES))
        # Later, mallory hands in her own (failing) work as the victim's, with nbgrader's option ...
        forged = hand_in(
            users[mallory], shared_folder / "edition", {EXERCISES[0]: forgery}, "--student", victim
        )
        # ... or makes the folder by hand, with a later time; and one in her own name holding only a
        # link to the solutions, which collect would copy as the instructor.
        later = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
        by_hand = inbound / f"{victim}+{ASSIGNMENT}+{later} UTC+handmade"
        link = inbound / f"{mallory}+{ASSIGNMENT}+{later} UTC+link"
        source = course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        for folder, put, notebook in ((by_hand, "cp", forged), (link, "ln -s", source)):
            command = ["sh", "-c", PLANT, "sh", folder, f"{later} UTC", put, notebook]
            ok(as_user(users[mallory], command, cwd=shared_folder))
        # And, in her own name, folders that would stop collect or feedback for the whole class:
        # a time nbgrader cannot read, a folder nested past Python's recursion limit, and no
        # submission secret (release_feedback fails for everyone without it).
        unreadable_time = inbound / f"{mallory}+{ASSIGNMENT}+not a time+x"
        deep = inbound / f"{mallory}+{ASSIGNMENT}+{later} UTC+deep"
        no_secret = inbound / f"{mallory}+{ASSIGNMENT}+{later} UTC+nosecret"
        for folder in (unreadable_time, no_secret, deep):
            command = ["sh", "-c", PLANT, "sh", folder, f"{later} UTC", "cp", forged]
            ok(as_user(users[mallory], command, cwd=shared_folder))
        nest = "import os, sys\nos.chdir(sys.argv[1])\n"
        nest += "for _ in range(1500): os.mkdir('d'); os.chdir('d')"
        ok(as_user(users[mallory], [BIN / "python", "-c", nest, deep], cwd=shared_folder))
        mallorys_in_victims_name = {p for p in inbound.glob(f"{victim}+*") if p.owner() == mallory}
        (by_user,) = mallorys_in_victims_name - {by_hand}

        log = instructor(nbgrader("collect", ASSIGNMENT), cwd=course).stderr
        submitted = course / "submitted"
        assert (submitted / victim / ASSIGNMENT / real.name).read_bytes() == real.read_bytes()
        assert sorted(path.name for path in submitted.iterdir()) == [victim]
        handed_in = [path.read_text() for path in submitted.rglob("*") if path.is_file()]
        assert not any(forgery in text for text in handed_in)
        mallorys = f"uid {users[mallory].pw_uid} ({mallory})"
        for folder in (by_user, by_hand):
            assert f"refused: {folder} was handed in by {mallorys}, not by {victim}" in log
        assert f"refused: {link / source.name} is a symbolic link" in log
        assert f"refused: {unreadable_time} is not named <student>+<assignment>+<time>" in log
        assert f"refused: {deep} is more than a submission may be" in log
        assert f"refused: {no_secret} has no submission_secret.txt" in log
        assert scores(course) == {victim: 10.0}

        # Feedback goes by the secret in the submission collected: the victim's own.
        instructor(nbgrader("release_feedback", ASSIGNMENT), cwd=course)
        for name, work in ((victim, real.parent.parent), (mallory, forged.parent.parent)):
            ok(as_user(users[name], nbgrader("fetch_feedback", ASSIGNMENT), cwd=work))
        assert len(list((real.parent / "feedback").glob(f"*/{ASSIGNMENT}.html"))) == 1
        assert not (forged.parent / "feedback").exists()


def test_the_formgrader_offers_release_and_collect_in_a_fresh_clone(tmp_path):
    course = copy_course(tmp_path / "course")
    port, token = free_ports(), "exchange-test"
    server = subprocess.Popen(
        [BIN / "jupyter", "lab", "--allow-root", "--no-browser", f"--port={port}"]
        + [f"--IdentityProvider.token={token}"],
        cwd=course,
        # As `make lab` starts it: the course's .venv/bin on PATH, no settings of this machine's.
        env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", JUPYTER_CONFIG_DIR=tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def get(path):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {token}"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read().decode()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get("/api/status")
                break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not start in 60 s"
                time.sleep(0.3)
        page = get("/formgrader/manage_assignments")
        assert "warning-exchange" not in page  # nbgrader's "exchange … does not exist" banner
        assignments = json.loads(get("/formgrader/api/assignments"))
        assert ASSIGNMENT in {row["name"] for row in assignments}
        # The formgrader shows Release and Collect for an assignment exactly when it is releaseable.
        assert all(row["releaseable"] for row in assignments), assignments
    finally:
        server.terminate()
        server.wait(timeout=30)
