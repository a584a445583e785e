"""The student's path in a real browser: JupyterLab on the student edition, driven by Chromium.

One JupyterLab serves the module, started on a freshly built student edition exactly as its
`make lab` starts it (with this checkout's .venv), with settings and workspaces of its own. Each
test gets a fresh browser context and workspace; a failing test saves a screenshot.
"""

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, run_cli, solution_code, student_notebook
from playwright.sync_api import expect, sync_playwright

from autograder.edition import LAB_CONFIG

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ASSIGNMENT = "01_basic_autograd"
NOTEBOOK = f"release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
LECTURE = f"course/{ASSIGNMENT}.ipynb"
EXERCISE = "ex1_slope_of_square"
# Autograd, but of x**3: slope_of_square(3) comes out 27 instead of 6.
WRONG_ANSWER = """\
def slope_of_square(x0):
    x = torch.tensor(x0, requires_grad=True)
    y = x**3
    y.backward()
    return x.grad"""
WRONG_MESSAGE = "slope_of_square(3) is off by a relative error"
NOT_WRITTEN = "slope_of_square is not written yet"
SUCCESS = "Success! Your notebook passes all the tests."
INSTRUCTOR_TOOLS = ("Create Assignment", "Formgrader", "Course List", "Assignment List")
SECONDS = 1000  # Playwright's timeouts are in milliseconds
# A fresh kernel imports torch, and Validate runs the whole notebook: allow for a busy machine.
SLOW = 90 * SECONDS
# Every wait, clicks' and expect()'s alike: JupyterLab loads slowly on a busy CI machine.
WAIT = 30 * SECONDS
expect.set_options(timeout=WAIT)

# Whether the text `expected`, inside `root`, is all in sight: within the window and within
# every box of its dialog that clips it (a scrolled body, say), so it is read without scrolling.
IN_SIGHT = """(root, expected) => {
    const texts = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node; (node = texts.nextNode()); ) {
        const at = node.data.indexOf(expected);
        if (at < 0) continue;
        const range = document.createRange();
        range.setStart(node, at);
        range.setEnd(node, at + expected.length);
        const text = range.getBoundingClientRect();
        const inside = (box) => text.top >= box.top && text.bottom <= box.bottom
            && text.left >= box.left && text.right <= box.right;
        let sight = inside({top: 0, left: 0, bottom: innerHeight, right: innerWidth});
        const dialog = root.closest(".jp-Dialog");
        for (let box = node.parentElement; box !== dialog; box = box.parentElement) {
            if (getComputedStyle(box).overflow !== "visible") {
                sight = sight && inside(box.getBoundingClientRect());
            }
        }
        return sight;
    }
    return false;
}"""


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    """The student edition, with exercises 2 to 5 of the assignment already solved on disk.

    The browser test types exercise 1 itself; Validate only says "Success" when all pass.
    """
    out = tmp_path_factory.mktemp("browser") / "edition"
    built = run_cli("student-edition", out, cwd=REPO)
    assert built.returncode == 0, built.stdout + built.stderr
    released = student_notebook(ASSIGNMENT).cells
    solved = {
        meta["grade_id"]: solution_code(ASSIGNMENT, meta["grade_id"])
        for meta in (cell.metadata.get("nbgrader", {}) for cell in released)
        if meta.get("solution") and meta["grade_id"] != EXERCISE
    }
    nbformat.write(student_notebook(ASSIGNMENT, solved), out / NOTEBOOK)
    return out


@pytest.fixture(scope="module")
def lab(edition, tmp_path_factory):
    """The base URL and token of a JupyterLab serving the edition, as its `make lab` runs it."""
    state = tmp_path_factory.mktemp("lab")
    settings = state / "settings"
    settings.mkdir()
    bin_dir = Path(sys.executable).parent
    config_path = [str(edition / LAB_CONFIG), os.environ.get("JUPYTER_CONFIG_PATH", "")]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "JUPYTER_CONFIG_PATH": os.pathsep.join(filter(None, config_path)),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
    }
    port, token = free_port(), secrets.token_hex(16)
    log = state / "jupyter.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [
                bin_dir / "jupyter",
                "lab",
                "--allow-root",
                "--no-browser",
                f"--port={port}",
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={token}",
            ],
            cwd=edition,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_server(server, f"{url}/api/status?token={token}", log)
        yield url, token
    finally:
        stop(server)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(server, status_url, log, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError):
            with urllib.request.urlopen(status_url, timeout=5) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    pytest.fail(f"JupyterLab did not answer in {seconds} s:\n{log.read_text()[-3000:]}")


def stop(server):
    """Stop JupyterLab (it shuts its kernels down), or kill its whole session if it hangs."""
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)
        server.wait()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"No Chromium at {CHROMIUM}: the browser test drives Debian's Chromium. Install it "
            "with `apt-get install chromium` (as root), or set CHROMIUM to a Chromium binary."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Student:
    """A browser page on the lab, as a student uses it; each test gets a fresh one."""

    def __init__(self, page, lab, name, artifacts):
        self.page = page
        self.url, self.token = lab
        self.name = name
        self.artifacts = artifacts

    def open(self, path):
        """Open a file by its URL, in a workspace of this test's own (no tabs restored)."""
        self.page.goto(f"{self.url}/lab/workspaces/{self.name}/tree/{path}?token={self.token}")

    def open_notebook(self, path):
        self.open(path)
        statusbar = self.page.locator("#jp-main-statusbar")
        expect(statusbar).to_contain_text("| Idle", timeout=SLOW)

    def menu(self, menu, command):
        """Choose a menu bar entry, named by its JupyterLab command id."""
        self.page.locator(".lm-MenuBar-item", has_text=menu).click()
        self.page.locator(f".lm-Menu-item[data-command='{command}']").click()

    def cell(self, index):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(index)

    def type_answer(self, grade_id, code):
        """Replace a solution cell's code through its editor, then save it (File → Save)."""
        self.cell(cell_index(grade_id)).locator(".cm-content").click()
        keyboard = self.page.keyboard
        keyboard.press("Control+A")
        keyboard.insert_text(code)  # as if pasted: no auto-indent on top of the code's own
        keyboard.press("Escape")
        self.menu("File", "docmanager:save")
        dirty = self.page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")
        expect(dirty).to_have_count(0)

    def validate(self, expected):
        """Click nbgrader's Validate button; the results dialog must show `expected` without
        scrolling. The dialog's text, once it is closed."""
        self.page.locator(".jp-NotebookPanel-toolbar .validate-button").click()
        message = self.page.locator(".jp-Dialog #validation-message")
        message.wait_for(timeout=SLOW)
        text = message.inner_text()
        assert expected in text, text
        in_sight = message.evaluate(IN_SIGHT, expected)
        assert in_sight, f"{expected!r} is not in one piece of text, all in sight without scrolling"
        self.page.locator(".jp-Dialog .jp-mod-accept").click()
        expect(self.page.locator(".jp-Dialog")).to_have_count(0)
        return text

    @contextlib.contextmanager
    def screenshot_on_failure(self):
        """A failure inside saves a screenshot of the page, and its message says where."""
        try:
            yield
        except Exception as error:
            self.artifacts.mkdir(parents=True, exist_ok=True)
            path = self.artifacts / f"{self.name}.png"
            self.page.screenshot(path=path)
            raise AssertionError(f"{error}\nscreenshot of the page: {path}") from error


@pytest.fixture
def student(browser, lab, request, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT)
    artifacts = Path(os.environ.get("BROWSER_TEST_ARTIFACTS") or tmp_path)
    try:
        yield Student(page, lab, request.node.name, artifacts)
    finally:
        context.close()


def cell_index(grade_id):
    """Where the cell `grade_id` is in the released notebook."""
    cells = student_notebook(ASSIGNMENT).cells
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in cells].index(grade_id)


def saved_source(edition, grade_id):
    """The code of cell `grade_id` in the notebook as saved on disk."""
    notebook = json.loads((edition / NOTEBOOK).read_text())
    return "".join(notebook["cells"][cell_index(grade_id)]["source"])


def test_assignment_wrong_then_right_answer(student, edition):
    with student.screenshot_on_failure():
        student.open_notebook(NOTEBOOK)
        student.menu("Run", "runmenu:run-all")
        # Run All stops at the first failing test: exercise 1's, not written yet.
        errors = student.page.locator("[data-mime-type='application/vnd.jupyter.stderr']")
        expect(errors.first).to_contain_text(NOT_WRITTEN, timeout=SLOW)

        student.type_answer(EXERCISE, WRONG_ANSWER)
        assert saved_source(edition, EXERCISE) == WRONG_ANSWER
        assert SUCCESS not in student.validate(WRONG_MESSAGE)

        right_answer = solution_code(ASSIGNMENT, EXERCISE)
        student.type_answer(EXERCISE, right_answer)
        assert saved_source(edition, EXERCISE) == right_answer
        student.validate(SUCCESS)


def test_lecture_plot_renders(student):
    with student.screenshot_on_failure():
        student.open_notebook(LECTURE)
        student.menu("Edit", "editmenu:clear-all")
        images = student.page.locator(".jp-OutputArea-output img")
        expect(images).to_have_count(0)
        student.menu("Run", "runmenu:run-all")
        expect(images.first).to_be_attached(timeout=SLOW)
        # Decoded into a picture the size of the figure, not a broken-image icon.
        student.page.wait_for_function(
            "img => img.complete && img.naturalWidth > 200", arg=images.first.element_handle()
        )


def test_no_instructor_tools(student):
    page = student.page
    with student.screenshot_on_failure():
        student.open_notebook(NOTEBOOK)
        expect(page.locator(".validate-button")).to_be_visible()  # the student's one tool
        # Sidebars (Create Assignment), menus and the launcher name no instructor tool.
        student.menu("File", "launcher:create")
        expect(page.locator(".jp-Launcher")).to_be_visible()
        menus = page.locator(".lm-MenuBar-item").all_inner_texts()
        if "Nbgrader" in menus:
            page.locator(".lm-MenuBar-item", has_text="Nbgrader").click()
        for tool in INSTRUCTOR_TOOLS:
            expect(page.get_by_text(tool)).to_have_count(0)
            expect(page.locator(f"[title*='{tool}']")).to_have_count(0)
        page.keyboard.press("Escape")
        # The command palette offers no nbgrader command either.
        student.menu("View", "apputils:activate-command-palette")
        palette = page.locator(".lm-CommandPalette")
        expect(palette.locator(".lm-CommandPalette-input")).to_be_focused()
        for tool in INSTRUCTOR_TOOLS:
            expect(palette.locator(".lm-CommandPalette-itemLabel", has_text=tool)).to_have_count(0)
        expect(palette.locator(".lm-CommandPalette-header", has_text="nbgrader")).to_have_count(0)
        # Nor does the server serve the formgrader.
        response = page.request.get(f"{student.url}/formgrader?token={student.token}")
        assert response.status == 404, response.status


def test_syllabus_opens_rendered(student):
    page = student.page
    with student.screenshot_on_failure():
        student.open("course/README.md")
        expect(page.locator(".jp-MarkdownViewer .jp-RenderedMarkdown h1")).to_be_visible()
        expect(page.locator(".jp-FileEditor")).to_have_count(0)
