"""The class on JupyterHub, end to end: `make hub`'s hub/run on a copy of the course, real Linux
accounts (an instructor and three students, made for the test and removed after), and Chromium.

The instructor releases an assignment with the formgrader's button; student1 fetches it in the
Assignment List, solves it, validates and submits; student2 submits half of it; student3, in a
terminal of their own, hands work in under student1's name. The instructor collects (the
forgery is refused), grades with the grader service (as the account autograd-grader, which can
read neither the instructor's home nor the hub's secrets) and releases feedback; student1 and
student2 fetch theirs and see their own scores, and nothing of anyone else's. Linux only, as root.
"""

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from browser import SECONDS, artifacts, chromium, new_page, screenshot_on_failure
from classroom import GRADER, running_hub
from conftest import notebook_path, solution_code
from playwright.sync_api import expect
from test_browser import SLOW, SUCCESS, Student
from test_exchange import EXERCISES, hand_in

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("useradd"),
    reason="creates Linux users and runs JupyterHub as root: needs Linux and root",
)

ASSIGNMENT = "01_basic_autograd"
NOTEBOOK = f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"  # where Fetch puts it, in the student's server
ROLES = ("teacher", "student1", "student2", "student3")
FORGERY = "# handed in by student3 under student1's name"
# A first server starts cold (torch from disk), grading runs every test of two notebooks.
SPAWN = 120 * SECONDS
GRADING = 180 * SECONDS


def points(assignment, grade_ids=None):
    """The points of the assignment's tests in source/ (of the exercises `grade_ids` only)."""
    cells = nbformat.read(notebook_path("source", assignment), as_version=4).cells
    marks = [cell.metadata.get("nbgrader", {}) for cell in cells]
    return sum(
        mark["points"]
        for mark in marks
        if mark.get("grade") and (grade_ids is None or mark["grade_id"][5:] in grade_ids)
    )


TOTAL = points(ASSIGNMENT)
HALF = EXERCISES[:2]  # what student2 solves
PARTIAL = points(ASSIGNMENT, HALF)


@pytest.fixture(scope="module")
def hub():
    with running_hub(ROLES) as hub:
        yield hub


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


class HubUser(Student):
    """One account's browser page, logged in through the hub's login form; its server's
    JupyterLab as the browser tests' student drives it."""

    def __init__(self, page, hub, role, folder):
        super().__init__(page, (hub.server(role), None), role, folder)
        self.hub, self.role = hub, role
        self.account = hub.accounts[role]

    def log_in(self):
        """Log in at /hub/login: the hub starts the account's server (see lab())."""
        self.page.goto(f"{self.hub.url}/hub/login")
        self.page.fill("#username_input", self.account.pw_name)
        self.page.fill("#password_input", self.hub.passwords[self.role])
        self.page.click("#login_submit")

    def lab(self):
        """Wait until the hub has opened the server's JupyterLab after log_in()."""
        self.page.wait_for_url(f"{self.url}/lab**", timeout=SPAWN)
        expect(self.page.locator("#jp-main-statusbar")).to_be_visible(timeout=SPAWN)

    def open(self, path):
        self.page.goto(f"{self.url}/lab/workspaces/{self.role}/tree/{path}")

    def assignment_list(self):
        """Nbgrader → Assignment List, loaded: the panel."""
        self.page.goto(f"{self.url}/lab/workspaces/{self.role}")
        self.menu("Nbgrader", "nbgrader:open-assignment-list")
        panel = self.page.locator("#nbgrader-assignment-list")
        expect(panel.locator("#released_assignments_list_loading")).to_be_hidden()
        return panel

    def press_in_list(self, panel, listing, button):
        """Press `button` on the assignment's row in the list `listing` (released, fetched,
        submitted)."""
        row = panel.locator(f"#{listing}_assignments_list .list_item", has_text=ASSIGNMENT)
        row.first.get_by_role("button", name=button).click()

    def formgrader(self):
        self.page.goto(f"{self.url}/formgrader/manage_assignments")
        row = self.page.locator("tr", has=self.page.locator("td.name", has_text=ASSIGNMENT))
        expect(row).to_have_count(1)
        return row

    def formgrader_button(self, column):
        """Click the assignment's button in the formgrader's `column` (release, collect,
        release-feedback); the text of the dialog that reports how it went, closed after."""
        self.formgrader().locator(f"td.{column} a").click()
        dialog = self.page.locator(".modal.in .modal-content")
        expect(dialog).to_be_visible(timeout=SLOW)
        text = dialog.inner_text()
        dialog.get_by_role("button", name="OK").click()
        expect(dialog).to_have_count(0)
        return text

    def feedback(self):
        """Fetch Feedback in the Assignment List, open it from there: the page's text."""
        panel = self.assignment_list()
        self.press_in_list(panel, "submitted", "Fetch Feedback")
        panel.get_by_text("(view feedback)").click()
        page = self.page.locator(".jp-DirListing-item", has_text=f"{ASSIGNMENT}.html")
        page.dblclick()
        viewer = self.page.frame_locator(".jp-HTMLViewer iframe")
        expect(viewer.locator("body")).to_contain_text("Score:")
        return viewer.locator("body").inner_text()

    def screenshot_on_failure(self):
        return screenshot_on_failure(self.page, self.artifacts / f"hub-{self.role}.png")


def solve(user, grade_ids):
    """Fetch the assignment in the Assignment List, open it, type the solutions of
    `grade_ids` into their cells and save."""
    user.press_in_list(user.assignment_list(), "released", "Fetch")
    user.open_notebook(NOTEBOOK)
    for grade_id in grade_ids:
        user.type_answer(grade_id, solution_code(ASSIGNMENT, grade_id))


def submit(user):
    panel = user.assignment_list()
    user.press_in_list(panel, "fetched", "Submit")
    submitted = panel.locator("#submitted_assignments_list .list_item", has_text=ASSIGNMENT)
    expect(submitted).to_have_count(1)


def as_account(account, *command):
    """`command` run as the Linux account `account` (a pwd entry): its uid, gid and groups."""
    drop = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"]
    return subprocess.run([*drop, *map(str, command)], capture_output=True, text=True)


def test_a_class_on_the_hub_from_release_to_feedback(hub, browser, tmp_path):
    folder = artifacts(tmp_path)
    pages = {}
    with contextlib.ExitStack() as stack:
        for role in ROLES[:3]:
            page = stack.enter_context(new_page(browser))
            pages[role] = HubUser(page, hub, role, folder)
        teacher, student1, student2 = (pages[role] for role in ROLES[:3])
        names = {role: hub.accounts[role].pw_name for role in ROLES}
        course = hub.course

        # Everyone logs in at once: the hub starts their servers side by side.
        for user in pages.values():
            user.log_in()
        with teacher.screenshot_on_failure():
            teacher.lab()
            log = teacher.formgrader_button("release")
            assert f"Successfully released '{ASSIGNMENT}'" in log, log

        with student1.screenshot_on_failure():
            student1.lab()
            solve(student1, EXERCISES)
            student1.validate(SUCCESS)
            submit(student1)

        with student2.screenshot_on_failure():
            student2.lab()
            solve(student2, HALF)
            submit(student2)

        # student3 cannot forge in a browser (the hub's server runs as student3 and nbgrader
        # submits under the server's own account): in a terminal, as student3, naming student1.
        forger = hub.accounts["student3"]
        edition = hub.state / "edition"
        hand_in(forger, edition, {EXERCISES[0]: FORGERY}, "--student", names["student1"])

        with teacher.screenshot_on_failure():
            log = teacher.formgrader_button("collect")
            forged_by = f"uid {forger.pw_uid} ({names['student3']})"
            refusal = f"handed in by {forged_by}, not by {names['student1']}"
            assert "refused:" in log and refusal in log, log
            submitted = course / "submitted"
            assert sorted(p.name for p in submitted.iterdir()) == sorted(
                [names["student1"], names["student2"]]
            )
            collected = [p.read_text() for p in submitted.rglob("*.ipynb")]
            assert not any(FORGERY in text for text in collected)

            # Grading, through the grader service's page, as autograd-grader.
            teacher.page.goto(f"{hub.url}/services/grader/")
            row = teacher.page.locator("tr", has=teacher.page.get_by_text(ASSIGNMENT, exact=True))
            row.get_by_role("button", name="Grade").click()
            expect(teacher.page.locator("h2")).to_contain_text("finished", timeout=GRADING)
            body = teacher.page.locator("body").inner_text()
            assert body.count("(exit status 0)") == 2, body
            # The sandbox kept everything but a uid per worker (only root gives that), cgroups
            # included: the service joined the folder hub/setup delegated to the grader.
            warnings = [line for line in body.splitlines() if line.startswith("warning:")]
            assert [w for w in warnings if "grader's own user" not in w] == [], body

        grader = pwd.getpwnam(GRADER)
        graded = list((course / "autograded").rglob("*.ipynb"))
        assert len(graded) == 2 and {p.stat().st_uid for p in graded} == {grader.pw_uid}
        grades = json.loads((course / "gradebook" / "grades.json").read_text())["students"]
        scores = {name: result[ASSIGNMENT]["score"] for name, result in grades.items()}
        assert scores == {names["student1"]: TOTAL, names["student2"]: PARTIAL}
        # What student code run by that account could reach: not the instructor's home, not
        # the hub's cookie secret and database.
        secrets = hub.state / "secrets"
        for path in (hub.accounts["teacher"].pw_dir, secrets, secrets / "jupyterhub.sqlite"):
            denied = as_account(grader, "cat" if Path(path).is_file() else "ls", path)
            assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied

        with teacher.screenshot_on_failure():
            log = teacher.formgrader_button("release-feedback")
            assert f"Successfully released feedback of '{ASSIGNMENT}'" in log, log

        for role, score in (("student1", TOTAL), ("student2", PARTIAL)):
            user = pages[role]
            with user.screenshot_on_failure():
                text = user.feedback()
                assert f"Score: {score:g} / {TOTAL:g}" in text, text
                others = [names[other] for other in ROLES if other != role]
                assert not any(name in text for name in others), text
                listing = user.assignment_list().inner_text()
                assert not any(name in listing for name in others), listing
