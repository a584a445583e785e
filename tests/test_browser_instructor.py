"""The instructor's path in a real browser: grade a class, see and change its scores in
nbgrader's formgrader, then hand back feedback pages that show them.

A copy of the course grades three students of one assignment; one JupyterLab, started in the
course root as an instructor starts it, serves the module. Chromium drives the formgrader as an
instructor would (clicks, typing); `autograd-course feedback` then rewrites grades.json and the
feedback pages from the gradebook. The tests run in file order: the first checks the scores
`grade` wrote, before the second changes one by hand. A failing test saves a screenshot.
"""

import json
import re

import nbformat
import pytest
from browser import artifacts, chromium, jupyter_lab, new_page, screenshot_on_failure
from conftest import copy_course, run_cli, solution_code, student_notebook, write_submission
from playwright.sync_api import expect

ASSIGNMENT = "01_basic_autograd"
NOTEBOOK = ASSIGNMENT  # nbgrader names a notebook by its file name without .ipynb
EXERCISE = "ex1_slope_of_square"
TEST = f"test_{EXERCISE}"
# Autograd, but of x**3: the right method on the wrong function, worth partial credit by hand.
WRONG_ANSWER = """\
def slope_of_square(x0):
    x = torch.tensor(x0, requires_grad=True)
    y = x**3
    y.backward()
    return x.grad"""
MANUAL_SCORE = 1.5
COMMENT = "Right method, wrong function: you differentiated x cubed. Half a point off."
# A student's markdown that would run in the formgrader's or the feedback page's origin if it
# were rendered as it is; its first line shows the cell made it into the page.
NOTES = "Notes to self before the exercises."
ATTACK = f"""{NOTES}

<script>window.__pwned = 1</script>

<img src=x onerror="window.__pwned=2">
"""
MATH = "The loss falls fastest against $\\frac{\\partial L}{\\partial w}$."
# The released notebook's last exercise feeds a plot: solved, the student's notebook draws one.
PLOT_CELL = "fig, ax = plt.subplots()"
# Every frame of the page: whether any of the student's scripts ran there.
PWNED = "() => typeof window.__pwned"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """(course root, grades.json of `grade`): "ada" solved everything, "bo" nothing, "cy" all
    but exercise 1, with notes that try to run a script, some math and the plot."""
    course = copy_course(tmp_path_factory.mktemp("instructor") / "course")
    released = student_notebook(ASSIGNMENT).cells
    solutions = {
        meta["grade_id"]: solution_code(ASSIGNMENT, meta["grade_id"])
        for meta in (cell.metadata.get("nbgrader", {}) for cell in released)
        if meta.get("solution")
    }
    cy = student_notebook(ASSIGNMENT, {**solutions, EXERCISE: WRONG_ANSWER})
    assert any(PLOT_CELL in cell.source for cell in cy.cells), "the plot cell moved"
    cy.cells[1:1] = [nbformat.v4.new_markdown_cell(ATTACK), nbformat.v4.new_markdown_cell(MATH)]
    submissions = course / "submitted"
    write_submission(submissions, "ada", ASSIGNMENT, student_notebook(ASSIGNMENT, solutions))
    write_submission(submissions, "bo", ASSIGNMENT, student_notebook(ASSIGNMENT))
    write_submission(submissions, "cy", ASSIGNMENT, cy)
    result = run_cli("grade", "submitted", "--json", "grades.json", cwd=course)
    assert result.returncode == 0, result.stdout + result.stderr
    return course, json.loads((course / "grades.json").read_text())["students"]


@pytest.fixture(scope="module")
def lab(graded, tmp_path_factory):
    """JupyterLab started in the course root: the formgrader reads nbgrader_config.py there."""
    course, _ = graded
    with jupyter_lab(course, tmp_path_factory.mktemp("instructor-lab")) as lab:
        yield lab


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


class Instructor:
    """A browser page on the instructor's JupyterLab; each test gets a fresh one."""

    def __init__(self, page, lab, name, artifacts):
        self.page = page
        self.url, self.token = lab
        self.name = name
        self.artifacts = artifacts

    def open(self, path):
        self.page.goto(f"{self.url}/{path}?token={self.token}")

    def open_notebook_submissions(self):
        """From the formgrader's start, through Manual Grading to the assignment's notebook:
        one row per submission, with the students' names shown."""
        self.open("formgrader")
        self.page.get_by_role("link", name="Manual Grading", exact=True).click()
        self.page.get_by_role("link", name=ASSIGNMENT, exact=True).click()
        self.page.get_by_role("link", name=NOTEBOOK, exact=True).click()
        expect(self.page.locator("tbody")).not_to_contain_text("Loading")
        self.page.get_by_role("button", name="Show All Names").click()
        expect(self.page.locator("tbody .name-shown").first).to_be_visible()

    def submission_row(self, student):
        name = self.page.locator(".name-shown", has_text=re.compile(rf"^\s*{student}\s*$"))
        return self.page.locator("tr", has=name)

    def assert_no_student_script_ran(self):
        """No script or event handler of the student's ran, in the page or any frame of it."""
        self.page.wait_for_load_state("load")  # a broken <img>'s onerror fires before this
        for frame in self.page.frames:
            assert frame.evaluate(PWNED) == "undefined", f"a student's script ran in {frame.url}"

    def screenshot_on_failure(self):
        return screenshot_on_failure(self.page, self.artifacts / f"{self.name}.png")


@pytest.fixture
def instructor(browser, lab, request, tmp_path):
    with new_page(browser) as page:
        yield Instructor(page, lab, request.node.name, artifacts(tmp_path))


def shown_score(outcome):
    """A score as the formgrader shows it: `8 / 10`."""
    return f"{outcome['score']:g} / {outcome['max_score']:g}"


def test_formgrader_lists_the_scores_grade_wrote(instructor, graded):
    _, results = graded
    with instructor.screenshot_on_failure():
        instructor.open_notebook_submissions()
        for student, outcomes in results.items():
            row = instructor.submission_row(student)
            expect(row.locator(".score")).to_have_text(shown_score(outcomes[ASSIGNMENT]))
        expect(instructor.page.locator("tbody tr")).to_have_count(len(results))


def test_manual_grade_reaches_grades_json_and_the_feedback_page(instructor, graded):
    course, results = graded
    automatic = results["cy"][ASSIGNMENT]
    assert automatic["tests"][TEST]["score"] == 0, "cy's exercise 1 should fail automatically"
    page = instructor.page
    with instructor.screenshot_on_failure():
        instructor.open_notebook_submissions()
        instructor.submission_row("cy").locator("a.name-shown").click()
        expect(page.locator("body")).to_contain_text(NOTES)
        instructor.assert_no_student_script_ran()

        # The score input of exercise 1's test and the comment box under the student's answer
        # save when the instructor leaves them (their change event), each with one request.
        score = page.locator(f"input.score#{TEST}")
        expect(score).to_have_attribute("placeholder", "0")  # its grades have loaded
        with page.expect_response(lambda r: "/api/grade/" in r.url and r.ok):
            score.fill(f"{MANUAL_SCORE:g}")
            score.press("Tab")
        comment = page.locator(f"textarea.comment#{EXERCISE}-comment")
        with page.expect_response(lambda r: "/api/comment/" in r.url and r.ok):
            comment.fill(COMMENT)
            comment.press("Tab")
        instructor.assert_no_student_script_ran()

        result = run_cli("feedback", "--json", "grades.json", cwd=course)
        assert result.returncode == 0, result.stdout + result.stderr
        outcome = json.loads((course / "grades.json").read_text())["students"]["cy"][ASSIGNMENT]
        test = outcome["tests"][TEST]
        assert (test["score"], test["manual"], test["comment"]) == (MANUAL_SCORE, True, COMMENT)
        assert outcome["score"] == automatic["score"] + MANUAL_SCORE, outcome

        instructor.open(f"files/feedback/cy/{ASSIGNMENT}/{NOTEBOOK}.html")
        body = page.locator("body")
        expect(body).to_contain_text(COMMENT)
        expect(body).to_contain_text(f"{outcome['score']:g} / {outcome['max_score']:g}")
        expect(body).to_contain_text(f"{MANUAL_SCORE:g} / {outcome['tests'][TEST]['max_score']:g}")


def test_feedback_page_shows_the_plot_and_math_and_runs_no_student_script(instructor):
    page = instructor.page
    with instructor.screenshot_on_failure():
        instructor.open(f"files/feedback/cy/{ASSIGNMENT}/{NOTEBOOK}.html")
        expect(page.locator("body")).to_contain_text(NOTES)
        instructor.assert_no_student_script_ran()
        # The student's plot, decoded into a picture the size of a figure (not a broken image).
        page.wait_for_function(
            "() => [...document.images].some(img => img.complete && img.naturalWidth > 100)"
        )
        # The math rendered offline into MathML: a ∂ in a <math> element, no TeX left as text.
        expect(page.locator("math", has_text="∂").first).to_be_attached()
        assert "\\frac" not in page.locator("body").inner_text()
