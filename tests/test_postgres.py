"""A PostgreSQL gradebook (AUTOGRAD_COURSE_DB), as several graders would share it.

A real PostgreSQL 15 server is started for this module (initdb and pg_ctl, as the `postgres`
user, on 127.0.0.1 and a free port). A small class is graded into it with a postgresql:// URL
and into the embedded SQLite gradebook, with the same scores; two clones of the course (two
grading machines) grade different assignments into one gradebook at the same time; a second
run of the same assignment is refused, naming the first; a wrong URL is one sentence.
"""

import json
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import copy_course, free_ports
from grading_runs import (
    A1,
    A2,
    environment,
    finished,
    gradebook_scores,
    second_run_while_grading,
    start_grading,
    write_class,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(*command, **options):
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *map(str, command)],
        check=True,
        capture_output=True,
        text=True,
        **options,
    )


@pytest.fixture(scope="module")
def server():
    """A running PostgreSQL 15 server: a function that creates a database and gives its URL."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 is not installed in {PG_BIN} (apt-get install postgresql-15)")
    folder = Path(tempfile.mkdtemp(prefix="autograd-course-pg-"))
    shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_ports()
    try:
        as_postgres(PG_BIN / "initdb", "--no-sync", "-U", "postgres", "-A", "trust", "-D", data)
        as_postgres(
            PG_BIN / "pg_ctl",
            "-D",
            data,
            "-l",
            folder / "log",
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off",
            "start",
        )

        def database(name):
            as_postgres(PG_BIN / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", name)
            return f"postgresql://postgres@127.0.0.1:{port}/{name}"

        yield database
    finally:
        if (data / "postmaster.pid").exists():
            as_postgres(PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def sqlite_reference(tmp_path_factory):
    """The class graded into the embedded SQLite gradebook: (grades.json, gradebook scores)."""
    course = copy_course(tmp_path_factory.mktemp("sqlite") / "course")
    write_class(course / "submitted")
    url = f"sqlite:///{course / 'gradebook.db'}"
    status, _, err = finished(start_grading(course, url))
    assert status == 0, err
    return json.loads((course / "grades.json").read_text())["students"], gradebook_scores(url)


@pytest.fixture(scope="module")
def postgres_class(server, tmp_path_factory):
    """The same class graded into a PostgreSQL gradebook given as postgresql://: (course, URL,
    the run's exit status and stderr)."""
    course = copy_course(tmp_path_factory.mktemp("postgres") / "course")
    write_class(course / "submitted")
    url = server("gradebook")  # postgresql://: psycopg 3, from the lock, not psycopg2
    status, _, err = finished(start_grading(course, url))
    return course, url, status, err


def test_a_class_graded_into_postgresql_gets_the_scores_it_gets_in_sqlite(
    postgres_class, sqlite_reference
):
    expected_json, expected_scores = sqlite_reference
    course, url, status, err = postgres_class

    assert status == 0, err
    assert "Traceback" not in err
    assert json.loads((course / "grades.json").read_text())["students"] == expected_json
    assert gradebook_scores(url) == expected_scores
    assert expected_scores[("alice", A1)] == 10 and expected_scores[("bob", A1)] == 0
    assert not (course / "gradebook.db").exists()
    # nbgrader's own commands read the same variable through nbgrader_config.py.
    export = subprocess.run(
        [Path(sys.executable).parent / "nbgrader", "export", "--to", "grades.csv"],
        cwd=course,
        env=environment(url),
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stderr
    rows = (course / "grades.csv").read_text().splitlines()
    assert f"{A1},,,alice,,,,10.0,0.0,10.0,10.0" in rows
    assert f"{A2},,,carol,,,,{expected_scores[('carol', A2)]},0.0," in "\n".join(rows)


def test_two_machines_grade_different_assignments_into_one_gradebook_at_once(
    server, sqlite_reference, tmp_path
):
    expected_json, expected_scores = sqlite_reference
    url = server("shared")
    machines = [copy_course(tmp_path / machine) for machine in ("first", "second")]
    for course, name in zip(machines, (A1, A2), strict=True):
        write_class(course / "submitted", [name])

    runs = [
        start_grading(course, url, name) for course, name in zip(machines, (A1, A2), strict=True)
    ]
    outcomes = [finished(run) for run in runs]

    for (status, _, err), course, name in zip(outcomes, machines, (A1, A2), strict=True):
        assert status == 0, err
        assert "internal error" not in err and "Traceback" not in err
        graded = json.loads((course / "grades.json").read_text())["students"]
        assert graded == {student: {name: got[name]} for student, got in expected_json.items()}
    assert gradebook_scores(url) == expected_scores


def test_a_second_run_of_the_same_assignment_is_refused_naming_the_first(postgres_class, tmp_path):
    _, url, *_ = postgres_class
    first, second = copy_course(tmp_path / "first"), copy_course(tmp_path / "second")
    write_class(first / "submitted", [A1])
    write_class(second / "submitted")

    running, (status, _, err) = second_run_while_grading(first, second, url)

    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err
    assert f"{A1} is being graded into this gradebook by another grading run (pid " in err
    assert f"pid {running.pid} on {socket.gethostname()}, started " in err
    assert f"grading {A1})" in err
    assert not (second / "feedback").exists()  # nothing was graded
    status, _, err = finished(running)
    assert status == 0, err
    assert gradebook_scores(url, [A1])[("dawn", A1)] == 10


@pytest.mark.parametrize(
    "url, says",
    [
        ("postgresql://postgres@127.0.0.1:{closed}/gradebook", "Connection refused"),
        ("not a url", "is not a SQLAlchemy URL"),
    ],
)
def test_a_wrong_gradebook_url_is_one_sentence(url, says, tmp_path):
    course = copy_course(tmp_path / "course")
    write_class(course / "submitted", [A1])

    done = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "submitted"],
        cwd=course,
        env=environment(url.format(closed=free_ports())),
        capture_output=True,
        text=True,
    )

    assert done.returncode == 2
    assert done.stderr.startswith("autograd-course grade: ") and done.stderr.count("\n") == 1
    assert says in done.stderr and "Traceback" not in done.stderr
