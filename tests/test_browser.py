"""The student's path in a real browser: JupyterLab on the student edition, driven by Chromium.

One JupyterLab serves the module, started on a freshly built student edition exactly as its
`make lab` starts it (with this checkout's .venv), with settings and workspaces of its own. Each
test gets a fresh browser context and workspace; a failing test saves a screenshot.
"""

import json

import nbformat
import pytest
from browser import SECONDS, artifacts, chromium, jupyter_lab, new_page, screenshot_on_failure
from conftest import REPO, run_cli, solution_code, student_notebook
from playwright.sync_api import expect

from autograder.edition import LAB_CONFIG

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
# A fresh kernel imports torch, and Validate runs the whole notebook: allow for a busy machine.
SLOW = 90 * SECONDS

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
    with jupyter_lab(edition, tmp_path_factory.mktemp("lab"), [edition / LAB_CONFIG]) as lab:
        yield lab


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


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

    def screenshot_on_failure(self):
        return screenshot_on_failure(self.page, self.artifacts / f"{self.name}.png")


@pytest.fixture
def student(browser, lab, request, tmp_path):
    with new_page(browser) as page:
        yield Student(page, lab, request.node.name, artifacts(tmp_path))


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
