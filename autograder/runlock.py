"""One grading run at a time per gradebook and assignment.

Two runs grading the same assignment into one gradebook would write the same autograded
notebooks, feedback pages and gradebook rows at once. Runs of different assignments share only
the gradebook's students, so they may go side by side: that is how a course grows past one
grading machine (several graders, one PostgreSQL gradebook). A run holds one lock per
assignment for as long as it runs, released when it ends, even when it is killed:

- SQLite (runs on one machine): an flock on `<gradebook>.locks/<assignment>.lock`, a file that
  says which run holds it;
- PostgreSQL (runs on any machine): a session advisory lock keyed by the assignment's name, on
  a connection kept open for the run, whose application_name says which run holds it.

A run that finds an assignment locked refuses at once, naming the other run, rather than wait:
it would only repeat that run's work (the same secret gives the same scores), a grader at a
terminal learns at once that someone else is grading it, and a run that hangs cannot make
another hang behind it.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from autograder.course import CourseError

SETUP = ".setup"  # not an assignment name (course.assignments skips dot-folders)
TIME = "%Y-%m-%d %H:%M:%S %Z"  # when a run started, in the grader's time zone
LABEL = re.compile(r"autograd-course grade: pid (\d+) on (.*)")


class RunLocked(CourseError):
    """Another run is grading one of the assignments."""


def lock_runs(url, names, known=()):
    """Hold the run lock of every assignment in `names` on the gradebook at `url` (until
    `release()`), or raise RunLocked naming the other run; `known` (every assignment of the
    course) lets a PostgreSQL lock name what the other run grades. CourseError, in one sentence,
    for a URL that is wrong or a server that cannot be reached."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CourseError(
            f"the gradebook URL {url!r} (AUTOGRAD_COURSE_DB) is not a SQLAlchemy URL, "
            "such as postgresql://user:password@host/database or sqlite:////path/gradebook.db."
        ) from None
    this_run = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now().astimezone().strftime(TIME),
        "assignments": sorted(names),
    }
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return Unlocked()  # a gradebook of this process alone
        return FileLocks(Path(parsed.database), this_run)
    connection = connect(parsed)
    if parsed.get_backend_name() == "postgresql":
        return AdvisoryLocks(connection, this_run, known)
    connection.close()  # reachable, but no lock of ours for this kind of database
    return Unlocked()


def connect(url):
    """An open connection to the gradebook, or CourseError in one sentence."""
    shown = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        return engine.connect()
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        raise CourseError(
            f"cannot open the gradebook {shown}: no driver for it is installed ({error})."
        ) from None
    except SQLAlchemyError as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())
        raise CourseError(f"cannot open the gradebook {shown}: {reason}") from None


def describe(run):
    """The other run, as a message names it."""
    if not run:
        return "another grading run (it did not say which)"
    started = f", started {run['started']}" if run.get("started") else ""
    grading = f", grading {', '.join(run['assignments'])}" if run.get("assignments") else ""
    return f"another grading run (pid {run['pid']} on {run['host']}{started}{grading})"


def refusal(name, run):
    return RunLocked(
        f"{name} is being graded into this gradebook by {describe(run)}; run this again when it "
        "has finished, or grade other assignments with --assignment."
    )


class Unlocked:
    @contextlib.contextmanager
    def setting_up(self):
        yield

    def release(self):
        pass


class FileLocks:
    """flock()ed files beside a SQLite gradebook: one per assignment, each holding this run's
    description (JSON) for a run that finds it taken."""

    def __init__(self, database, this_run):
        self.folder = database.parent / f"{database.name}.locks"
        self.held = []
        if not database.parent.is_dir():
            raise CourseError(
                f"cannot open the gradebook {database}: {database.parent} is not a folder."
            )
        try:
            self.folder.mkdir(exist_ok=True)
            for name in this_run["assignments"]:
                descriptor = os.open(self.folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                self.held.append(descriptor)
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise refusal(name, self.holder(descriptor)) from None
                os.ftruncate(descriptor, 0)
                os.pwrite(descriptor, json.dumps(this_run).encode(), 0)
        except OSError as error:
            self.release()
            raise CourseError(f"cannot lock the gradebook {database}: {error}") from None
        except RunLocked:
            self.release()
            raise

    @staticmethod
    def holder(descriptor):
        """The description the other run wrote (it writes it right after taking the lock)."""
        for _ in range(20):
            try:
                return json.loads(os.pread(descriptor, 1 << 16, 0))
            except ValueError:
                time.sleep(0.05)
        return None

    @contextlib.contextmanager
    def setting_up(self):
        """Held while a run sets the gradebook up (its tables, the assignments it does not
        know), which two runs must not do at once."""
        descriptor = os.open(self.folder / f"{SETUP}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def release(self):
        while self.held:
            os.close(self.held.pop())  # closing the file releases its lock


def advisory_key(name):
    """A PostgreSQL advisory lock key (a signed 64-bit integer) for `name`."""
    digest = hashlib.sha256(f"autograd-course run: {name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLocks:
    """PostgreSQL session advisory locks, one per assignment, on a connection kept for the run:
    the server releases them when the run ends or its connection drops."""

    def __init__(self, connection, this_run, known):
        self.connection = connection
        # What another run reads in pg_stat_activity (at most 63 bytes: PostgreSQL's limit).
        label = f"autograd-course grade: pid {this_run['pid']} on {this_run['host']}"
        connection.execute(
            text("SELECT set_config('application_name', :label, false)"), {"label": label[:63]}
        )
        # pg_locks shows a key as two unsigned 32-bit halves: the key of each name, unsigned
        self.names = {
            advisory_key(name) % 2**64: name for name in {*known, *this_run["assignments"]}
        }
        try:
            for name in this_run["assignments"]:
                taken = connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(name)}
                ).scalar()
                if not taken:
                    raise refusal(name, self.holder(name))
        except BaseException:
            self.release()
            raise

    def holder(self, name):
        """The run that holds `name`'s lock, from pg_locks and pg_stat_activity."""
        key = advisory_key(name) % 2**64
        row = self.connection.execute(
            text(
                "SELECT l.pid, a.application_name, a.backend_start FROM pg_locks l "
                "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid = :high AND l.objid = :low "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"high": key >> 32, "low": key % 2**32},
        ).first()
        if row is None:
            return None
        label = LABEL.fullmatch(row.application_name or "")
        held = self.connection.execute(
            text(
                "SELECT classid, objid FROM pg_locks WHERE pid = :pid AND locktype = 'advisory' "
                "AND granted AND objsubid = 1"
            ),
            {"pid": row.pid},
        )
        keys = {(high << 32) | low for high, low in held}
        return {
            "host": label.group(2) if label else "a host it did not name",
            "pid": label.group(1) if label else "unknown",
            "started": row.backend_start.astimezone().strftime(TIME) if row.backend_start else None,
            "assignments": sorted(self.names[key] for key in keys if key in self.names),
        }

    @contextlib.contextmanager
    def setting_up(self):
        """Held while a run sets the gradebook up (its tables, the assignments it does not
        know), which two runs must not do at once."""
        key = {"key": advisory_key(SETUP)}
        self.connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
        try:
            yield
        finally:
            self.connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)

    def release(self):
        self.connection.close()  # the server releases a session's locks when it ends
