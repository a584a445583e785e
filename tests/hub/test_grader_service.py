"""The grader service (hub/grader_service.py) on a real JupyterHub.

The hub runs on 127.0.0.1 with PAM and three Linux users the test creates (and removes): an
instructor, a student, and the account the service runs as. A course copy holds one collected
submission. Over HTTP, logged in through the hub's login form: the instructor gets the page and
its Grade button grades the submission as the grader's account; the student is refused the page
and the button. Linux only, as root.
"""

import html
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from conftest import (
    ASSIGNMENTS,
    REPO,
    copy_course,
    free_ports,
    solution_code,
    student_notebook,
    write_submission,
)
from linux_users import accounts, python_in_reach, random_passwords
from test_exchange import EXERCISES

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("useradd"),
    reason="creates Linux users: needs Linux and root",
)

BIN = Path(sys.executable).parent
ASSIGNMENT = "01_basic_autograd"
UNGRADED = "02_chain_rule"  # collected too: neither Grade of 01 nor a student may grade it
PROXY = REPO / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
SERVICE = "/services/grader/"
# A second notebook in the submission, named by the student to be markup on the service's page.
FORGED_NAME = '<img src="x" onerror="alert(1)">.ipynb'


class Hub:
    def __init__(self, folder, names, passwords):
        self.folder, self.names, self.passwords = folder, names, passwords
        self.course = folder / "course"
        self.url = f"http://127.0.0.1:{free_ports()}"

    def log(self):
        return (self.folder / "hub.log").read_text(errors="replace")[-6000:]

    def logged_in(self, role):
        """A requests session of `role` (instructor or student), logged in at /hub/login."""
        session = requests.Session()
        form = session.get(f"{self.url}/hub/login", timeout=30).text
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form).group(1)
        name = self.names[role]
        response = session.post(
            f"{self.url}/hub/login",
            data={"username": name, "password": self.passwords[role], "_xsrf": xsrf},
            allow_redirects=False,
            timeout=60,
        )
        assert response.status_code == 302, self.log()
        return session


def close_course(course, instructor, grader, group):
    """The permissions hub/setup gives the course, as far as grading needs them: the grader, in
    the course's group, may read the course and write only gradebook/, autograded/ and
    feedback/, which are its own."""
    for folder in ("gradebook", "autograded", "feedback"):
        (course / folder).mkdir()
    # SQLite makes a new database file 0644 whatever the umask: an empty one made beforehand
    # (a new gradebook to SQLite) keeps its group write for the instructor's formgrader.
    (course / "gradebook" / "gradebook.db").touch()
    (course / ".autograd_course_secret").write_text(secrets.token_hex(32))
    script = (
        "chmod -R u=rwX,g=rX,o= . && find . -type d -exec chmod g+s {} + && "
        "chmod -R g+w gradebook autograded feedback && chmod 2751 ."
    )
    subprocess.run(["chown", "-R", f"{instructor}:{group}", course], check=True)
    subprocess.run(["sh", "-c", script], cwd=course, check=True)
    subprocess.run(["chown", "-R", grader, "gradebook", "autograded", "feedback"], cwd=course)


def hub_config(hub, service_port):
    course = hub.course
    return f"""
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {int(hub.url.rsplit(":", 1)[1])}
c.JupyterHub.hub_port = {free_ports()}
c.JupyterHub.db_url = "sqlite:///{hub.folder}/state/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{hub.folder}/state/cookie_secret"
c.ConfigurableHTTPProxy.command = ["{PROXY}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_ports()}"
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = {{"{hub.names["instructor"]}", "{hub.names["student"]}"}}
c.Authenticator.admin_users = {{"{hub.names["instructor"]}"}}
c.JupyterHub.services = [{{
    "name": "grader",
    "command": ["{sys.executable}", "{REPO / "hub" / "grader_service.py"}"],
    "user": "{hub.names["grader"]}",
    "url": "http://127.0.0.1:{service_port}",
    "oauth_no_confirm": True,
    "environment": {{
        "AUTOGRAD_HUB_COURSE": "{course}",
        "AUTOGRAD_COURSE_DB": "sqlite:///{course}/gradebook/gradebook.db",
    }},
}}]
c.JupyterHub.load_roles = [{{
    "name": "grader-users",
    "users": ["{hub.names["instructor"]}"],
    "scopes": ["access:services!service=grader"],
}}]
"""


@pytest.fixture(scope="module")
def hub():
    folder = Path(tempfile.mkdtemp(prefix="autograd-grader-", dir="/var/tmp"))
    folder.chmod(0o755)
    tag = secrets.token_hex(3)
    names = {"instructor": f"agi{tag}", "student": f"ags{tag}", "grader": f"agg{tag}"}
    group = f"agc{tag}"
    (folder / "homes").mkdir(mode=0o755)
    (folder / "state").mkdir(mode=0o700)
    subprocess.run(["groupadd", group], check=True)
    try:
        with accounts(names.values(), folder / "homes") as users:
            for role in ("instructor", "grader"):
                subprocess.run(["usermod", "-aG", group, names[role]], check=True)
            # As hub/setup makes autograd-grader: no home.
            subprocess.run(["usermod", "--home", "/nonexistent", names["grader"]], check=True)
            passwords = random_passwords(names.values())
            hub = Hub(folder, names, {role: passwords[name] for role, name in names.items()})

            copy_course(hub.course)
            code = {cell: solution_code(ASSIGNMENT, cell) for cell in EXERCISES}
            student = names["student"]
            write_submission(
                hub.course / "submitted", student, ASSIGNMENT, student_notebook(ASSIGNMENT, code)
            )
            write_submission(
                hub.course / "submitted", student, UNGRADED, student_notebook(UNGRADED)
            )
            shutil.copy(
                hub.course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
                hub.course / "submitted" / student / ASSIGNMENT / FORGED_NAME,
            )
            close_course(hub.course, names["instructor"], names["grader"], group)

            service_port = free_ports()
            config = folder / "jupyterhub_config.py"
            config.write_text(hub_config(hub, service_port))
            with open(folder / "hub.log", "wb") as log:
                process = subprocess.Popen(
                    ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
                    + [python_in_reach() + 'exec "$@"', "sh", BIN / "jupyterhub", "-f", config],
                    cwd=folder / "state",
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"),
                )
            try:
                wait_for_service(hub, process)
                hub.users = users
                yield hub
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        subprocess.run(["groupdel", group], check=True)
        shutil.rmtree(folder)


def wait_for_service(hub, process):
    """Until the proxy routes to the running service, which sends a visitor to the hub's OAuth."""
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, "the hub stopped:\n" + hub.log()
        try:
            response = requests.get(hub.url + SERVICE, allow_redirects=False, timeout=5)
            if response.status_code == 302 and "oauth2/authorize" in response.headers["Location"]:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, (
            "the grader service did not start in 60 s:\n" + hub.log()
        )
        time.sleep(0.5)


def form_xsrf(page):
    return re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)


def test_the_instructor_grades_a_collected_submission_as_the_grader_account(hub):
    session = hub.logged_in("instructor")
    page = session.get(hub.url + SERVICE, timeout=60)
    assert page.status_code == 200 and page.url == hub.url + SERVICE, hub.log()
    counts = dict(re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td>", page.text))
    assert counts == {name: "1" if name in (ASSIGNMENT, UNGRADED) else "0" for name in ASSIGNMENTS}

    grade = {"assignment": ASSIGNMENT, "_xsrf": form_xsrf(page.text)}
    click = session.post(hub.url + SERVICE, data=grade, allow_redirects=False, timeout=60)
    assert click.status_code == 303, click.text
    again = session.post(hub.url + SERVICE, data=grade, allow_redirects=False, timeout=60)
    assert again.status_code == 409 and f"{ASSIGNMENT} is still being graded" in again.text

    deadline = time.monotonic() + 240
    while "finished</h2>" not in (page := session.get(hub.url + SERVICE, timeout=60).text):
        assert time.monotonic() < deadline, page + hub.log()
        time.sleep(1)
    command = (
        f"autograd-course grade submitted --assignment {ASSIGNMENT} --json gradebook/grades.json"
    )
    assert f"<code>{command}</code> (exit status 0)" in page, page
    assert (
        f"<code>autograd-course feedback --assignment {ASSIGNMENT}</code> (exit status 0)" in page
    )
    # The file name a student chose is shown as text, never as markup.
    assert FORGED_NAME not in page and html.escape(FORGED_NAME) in page

    student, grader = hub.names["student"], hub.users[hub.names["grader"]]
    grades = json.loads((hub.course / "gradebook" / "grades.json").read_text())["students"]
    assert grades[student][ASSIGNMENT]["score"] == 10.0
    written = [
        hub.course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        hub.course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html",
        hub.course / "gradebook" / "gradebook.db",
    ]
    assert {path.stat().st_uid for path in written} == {grader.pw_uid}
    # The instructor (in the course's group) may rewrite them: `autograd-course feedback`
    # after grading by hand in the formgrader.
    assert all(path.stat().st_mode & stat.S_IWGRP for path in written)
    assert not (hub.course / "autograded" / student / UNGRADED).exists()


def test_a_student_is_refused_the_page_and_the_grade_button(hub):
    session = hub.logged_in("student")
    # The hub refuses the student the service's OAuth ...
    assert session.get(hub.url + SERVICE, timeout=60).status_code == 403
    forged = {"assignment": UNGRADED, "_xsrf": "forged"}
    assert session.post(hub.url + SERVICE, data=forged, timeout=60).status_code == 403
    # ... and the service refuses the student's own hub token.
    name = hub.names["student"]
    token = session.post(
        f"{hub.url}/hub/api/users/{name}/tokens",
        headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")},
        json={"note": "trying the grader"},
        timeout=60,
    )
    assert token.status_code == 201, token.text
    with_token = {"Authorization": f"token {token.json()['token']}"}
    assert requests.get(hub.url + SERVICE, headers=with_token, timeout=60).status_code == 403
    # A POST is refused before any scope is looked at: it has no _xsrf of the service's form.
    post = requests.post(hub.url + SERVICE, data=forged, headers=with_token, timeout=60)
    assert post.status_code == 403
