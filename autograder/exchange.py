"""nbgrader's exchange for a class on one machine: a folder of the course, made by the instructor.

nbgrader's default exchange, /usr/local/share/nbgrader/exchange, needs an administrator, and the
first `release_assignment` run by anyone creates it. nbgrader_config.py puts the exchange in the
course instead and calls `course_exchange` whenever the instructor's nbgrader or autograd-course
loads it, so the formgrader finds it (and offers Release and Collect) from a fresh clone.

nbgrader checks that every user may write to the exchange folder itself. Made here, it has the
sticky bit as well, as /tmp has: nobody can rename or remove what another user put in it. The
course's folder in it is made at once, the instructor's and closed to writes by others, so no
student can put a folder of their own where the course's outbound (released assignments),
inbound (submissions) or feedback folders go. nbgrader makes those with its own permissions:
outbound readable by everyone, inbound 2733 (students add submissions, under names nobody can
guess, and cannot list it), feedback 711 (each student opens only their own pages, by a name
made from their submission's secret).

Collect takes a submission only from the student it names (`OwnerCheckedCollect`), and
Release Feedback hands every page out readable by its student (`ReadableReleaseFeedback`).
"""

import datetime
import json
import os
import pwd
import stat
from functools import cached_property

from nbgrader.exchange.default import ExchangeCollect, ExchangeReleaseFeedback
from traitlets import Unicode, default

EVERYONE_WRITES = 0o1777  # nbgrader's check requires write access; the sticky bit guards it
ONLY_OWNER_WRITES = 0o755
# What one submission may be: nbgrader's copy recurses (a folder nested thousands deep stops it
# for the whole class) and reads everything, as the instructor.
MAX_DEPTH = 8
MAX_ENTRIES = 1000
MAX_BYTES = 100 * 2**20
SECRET = "submission_secret.txt"  # written by nbgrader submit; release_feedback needs it
RELEASED_PAGE = 0o644  # in the feedback folder (0711): only who knows a page's name finds it


def course_exchange(root, course_id):
    """The exchange folder `root`, with the folder of `course_id` in it made if missing."""
    for path, mode in ((root, EVERYONE_WRITES), (os.path.join(root, course_id), ONLY_OWNER_WRITES)):
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except OSError:
            break  # not ours to make: nbgrader says the exchange is missing, in its own words
        os.chmod(path, mode)  # mkdir's mode is cut by the umask, and never sets the sticky bit
    return root


class OwnerCheckedCollect(ExchangeCollect):
    """nbgrader's collect, taking a submission only from the student whose name it bears.

    nbgrader names a submission folder `<student>+<assignment>+<time>+<random>` after whoever
    the submitter says (`nbgrader submit --student NAME`; $JUPYTERHUB_USER for a `jovyan`), in an
    inbound folder every student may write to, and keeps the latest folder of each name after a
    mere warning: so anyone could replace a classmate's work. The
    operating system's owner is the proof instead (only root can give a file away): the folder
    and everything in it must belong to the named student's uid. Other folders are refused
    before the latest of each student is chosen, so a forgery cannot shadow the real work.
    Symbolic links are refused too: nbgrader's copy follows them as the instructor, so a link
    to source/ would hand in the solutions.
    """

    owners_file = Unicode(
        "",
        help="A JSON file {student: uid} that says whose uid is whose, instead of the passwd "
        "database: for student servers with their own uids but no passwd entries (Kubernetes).",
    ).tag(config=True)

    @default("check_owner")
    def _without_nbgrader_warning(self):
        return False  # the refusal below replaces it (and it knows no owners_file)

    def _path_to_record(self, path):
        try:
            record = super()._path_to_record(path)
        except ValueError:  # a time nbgrader cannot read, which would stop the whole collect
            name = os.path.basename(path)
            record = {"username": name.split("+")[0], "filename": name}
            record["timestamp"] = datetime.datetime.min  # compared, never copied
            record["refusal"] = f"refused: {path} is not named <student>+<assignment>+<time>+…"
        else:
            record["refusal"] = self._refusal(path, record["username"])
        if record["refusal"]:
            self.log.error(record["refusal"])
        return record

    def _sort_by_timestamp(self, records):
        # nbgrader takes the first of one student's sorted records (the latest, or the latest
        # before the due date): only the student's own compete. If none is, copy_files drops it.
        accepted = [record for record in records if not record["refusal"]]
        return super()._sort_by_timestamp(accepted or records)

    def copy_files(self):
        self.src_records = [record for record in self.src_records if not record["refusal"]]
        super().copy_files()

    def _refusal(self, folder, student):
        """Why the submission `folder` is not `student`'s own work, or None if it is."""
        uid = self._uids.get(student) if self.owners_file else _passwd_uid(student)
        if uid is None:
            return f"refused: {folder} is handed in as {student}, who has no account here"
        entries = size = 0
        try:
            for path, status, depth in _lstat_all(folder):
                if status.st_uid != uid:
                    owner = f"uid {status.st_uid} ({self._name_of(status.st_uid)})"
                    return f"refused: {path} was handed in by {owner}, not by {student}"
                if not (stat.S_ISDIR(status.st_mode) or stat.S_ISREG(status.st_mode)):
                    return f"refused: {path} is a symbolic link or a special file, never collected"
                entries, size = entries + 1, size + status.st_size
                if depth > MAX_DEPTH or entries > MAX_ENTRIES or size > MAX_BYTES:
                    return (
                        f"refused: {folder} is more than a submission may be ({MAX_ENTRIES} "
                        f"files, {MAX_DEPTH} folders deep, {MAX_BYTES // 2**20} MB)"
                    )
        except OSError as error:
            return f"refused: {folder} cannot be read whole ({error})"
        if not os.path.isfile(os.path.join(folder, SECRET)):  # no link: the walk refused those
            return f"refused: {folder} has no {SECRET}: it was not handed in by nbgrader submit"
        return None

    @cached_property
    def _uids(self):
        with open(self.owners_file) as roster:
            return json.load(roster)

    def _name_of(self, uid):
        if self.owners_file:
            names = [name for name, known in self._uids.items() if known == uid]
            return " or ".join(names) or "not on the roster"
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return "no account"


def _passwd_uid(user_name):
    try:
        return pwd.getpwnam(user_name).pw_uid
    except KeyError:
        return None


def _lstat_all(folder):
    """(path, lstat, depth) of `folder` and everything in it, without following a symbolic link;
    a loop, not recursion, so a folder nested thousands deep is walked too."""
    pending = [(folder, 0)]
    while pending:
        path, depth = pending.pop()
        status = os.lstat(path)
        yield path, status, depth
        if stat.S_ISDIR(status.st_mode):
            pending += [(os.path.join(path, name), depth + 1) for name in os.listdir(path)]


class ReadableReleaseFeedback(ExchangeReleaseFeedback):
    """nbgrader's release of feedback, with every released page readable by its student.

    nbgrader copies each page with the mode it has in the course's feedback/, where pages
    written under a private umask (the instructor's, or the grader account's) are closed to
    students: their fetch then fails with a PermissionError. The pages are named by a hash of
    each submission's secret in a folder nobody can list, so readable is still private.
    """

    def copy_files(self):
        super().copy_files()
        for entry in os.scandir(self.dest_path):
            page = entry.name.endswith(".html") and entry.is_file(follow_symlinks=False)
            if page and entry.stat(follow_symlinks=False).st_uid == os.geteuid():
                os.chmod(entry.path, RELEASED_PAGE)
