"""Attacks from the files of a submission folder: links, named pipes, devices, notebooks that
cost gigabytes to parse, and HTML meant to run in the instructor's formgrader.

One grading run holds every attack next to an honest submission that must keep full marks.
"""

import json
import os
import re
import subprocess
import sys

import nbformat
import pytest
from conftest import copy_course, notebook_path, write_submission
from nbconvert import HTMLExporter
from nbgrader.server_extensions.formgrader import handlers
from traitlets.config import Config

from autograder.feedback import feedback_page

A1 = "01_basic_autograd"
NOTEBOOK = f"{A1}.ipynb"
# No process of the run may hold more than this (an 18 MB notebook once cost 8.7 GB).
MEMORY_BOUND_MB = 3000
XSS = {
    "script": "<script>alert('xss')</script>",
    "onerror": '<img src="x" onerror="alert(1)">',
    "javascript_link": "[click](javascript:alert('xss'))",
    "svg_script": "<svg><script>alert('xss')</script></svg>",
}
FORGED_ID = 'x" onmouseover="alert(1)'
# HTML that runs: a script element, an event handler or a javascript: URL inside a tag.
ACTIVE = re.compile(r"<script|<[^>]*\bon\w+\s*=|<[^>]*javascript:", re.IGNORECASE)


def solution():
    return nbformat.read(notebook_path("source", A1), as_version=4)


def solution_text(notebook):
    """The code lines of the source's solutions: what must never reach a feedback page."""
    return [
        line.strip()
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("solution") and cell.cell_type == "code"
        for line in cell.source.splitlines()
        if len(line.strip()) > 25 and "###" not in line
    ]


def folder(submissions, student):
    path = submissions / student / A1
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    submissions = course / "submitted"
    source = course / "source" / A1 / NOTEBOOK
    write_submission(submissions, "honest", A1, solution())
    (submissions / "honest" / A1 / "timestamp.txt").write_text("2024-01-01 00:00:00.000000 UTC")
    folder(submissions, "linked_notebook").joinpath(NOTEBOOK).symlink_to(source)
    for name in ("timestamp.txt", "submission_secret.txt"):
        stem = name.split(".")[0]
        write_submission(submissions, f"{stem}_fifo", A1, solution())
        os.mkfifo(submissions / f"{stem}_fifo" / A1 / name)
        write_submission(submissions, f"{stem}_zero", A1, solution())
        (submissions / f"{stem}_zero" / A1 / name).symlink_to("/dev/zero")
        write_submission(submissions, f"{stem}_link", A1, solution())
        (submissions / f"{stem}_link" / A1 / name).symlink_to(source)
    # 18 MB of JSON in one cell that the judge would parse: once 8.7 GB and 34 s.
    huge = solution()
    huge.cells.append(nbformat.v4.new_code_cell("x = [" + "0," * 9_000_000 + "0]"))
    write_submission(submissions, "huge_cell", A1, huge)
    # 18 MB of JSON holding six million empty objects: once 3 GB and 12 s.
    text = json.dumps(nbformat.writes(solution()))
    bomb = json.loads(json.loads(text))
    bomb["metadata"]["x"] = [{}] * 6_000_000
    compact = json.dumps(bomb, separators=(",", ":"))
    folder(submissions, "json_objects").joinpath(NOTEBOOK).write_text(compact)
    for name, markdown in XSS.items():
        notebook = solution()
        notebook.cells.insert(1, nbformat.v4.new_markdown_cell(f"My answer. {markdown} $a<b$"))
        notebook.cells.insert(1, nbformat.v4.new_raw_cell(markdown))
        write_submission(submissions, f"xss_{name}", A1, notebook)
    forged = solution()
    cell = nbformat.v4.new_markdown_cell("An answer")
    cell.metadata["nbgrader"] = {
        "grade_id": FORGED_ID,
        "solution": True,
        "grade": True,
        "points": 5,
        "schema_version": 3,
    }
    forged.cells.insert(1, cell)
    write_submission(submissions, "forged_id", A1, forged)

    # The grader runs in a child of this wrapper, which reports the largest resident memory
    # of any process of the run (grader, judges, parse children, workers).
    wrapper = (
        "import resource, subprocess, sys\n"
        "run = subprocess.run(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
        "sys.exit(run.returncode)"
    )
    command = ["grade", "submitted", "--json", "grades.json", "--timeout", "10"]
    result = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "autograder", *command],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    peak_mb = int(result.stdout.split()[-1])
    grades = json.loads((course / "grades.json").read_text())["students"]
    return course, grades, peak_mb


def outcome(grades, student):
    return grades[student][A1]


def test_the_honest_submission_keeps_full_marks(graded):
    course, grades, _ = graded
    assert outcome(grades, "honest")["score"] == 10.0
    assert outcome(grades, "honest")["error"] is None
    copied = course / "feedback" / "honest" / A1 / "timestamp.txt"
    assert copied.read_text().startswith("2024-01-01")


def test_a_linked_notebook_is_an_error_and_leaks_nothing(graded):
    course, grades, _ = graded
    assert outcome(grades, "linked_notebook")["score"] == 0.0
    assert "symbolic link" in outcome(grades, "linked_notebook")["error"]
    pages = list((course / "feedback").glob("linked_notebook/**/*.html"))
    shown = "".join(page.read_text() for page in pages)
    assert not any(line in shown for line in solution_text(solution()))


@pytest.mark.parametrize("name", ["timestamp.txt", "submission_secret.txt"])
@pytest.mark.parametrize(("kind", "reason"), [("fifo", "named pipe"), ("zero", "symbolic link")])
def test_a_submission_file_that_is_not_a_file_is_an_error(graded, name, kind, reason):
    _, grades, _ = graded
    student = f"{name.split('.')[0]}_{kind}"
    assert outcome(grades, student)["score"] == 0.0
    assert f"{name} is" in outcome(grades, student)["error"]
    assert reason in outcome(grades, student)["error"]


@pytest.mark.parametrize("name", ["timestamp.txt", "submission_secret.txt"])
def test_a_linked_submission_file_is_not_copied(graded, name):
    course, grades, _ = graded
    student = f"{name.split('.')[0]}_link"
    assert "symbolic link" in outcome(grades, student)["error"]
    assert not list((course / "feedback").glob(f"{student}/**/{name}"))


def test_huge_notebooks_are_graded_within_bounds(graded):
    _, grades, peak_mb = graded
    # The huge cell runs in the worker, under its limits, after every exercise; the bomb's
    # metadata is never carried. Both are graded as the solutions they are.
    assert outcome(grades, "huge_cell")["score"] == 10.0
    assert outcome(grades, "json_objects")["score"] == 10.0
    assert peak_mb < MEMORY_BOUND_MB


def formgrader_html(path):
    """The autograded notebook as nbgrader's formgrader renders it for the instructor."""
    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {
        "assignment_id": A1,
        "notebook_id": A1,
        "submission_id": "x",
        "index": 0,
        "total": 1,
        "base_url": "",
        "student": "s",
        "last_name": None,
        "first_name": None,
        "notebook_path": "x",
    }
    html, _ = HTMLExporter(config=config).from_filename(str(path), resources=resources)
    return html


def student_part(html):
    """The rendered notebook without the formgrader's own scripts (its header)."""
    return html[html.index('id="notebook-container"') :]


@pytest.mark.parametrize("name", sorted(XSS))
def test_autograded_notebooks_carry_nothing_executable(graded, name):
    course, grades, _ = graded
    assert outcome(grades, f"xss_{name}")["score"] == 10.0
    html = student_part(formgrader_html(course / "autograded" / f"xss_{name}" / A1 / NOTEBOOK))
    assert "My answer." in html
    assert not ACTIVE.search(html)


def test_ordinary_markdown_and_math_are_kept(graded):
    course, _, _ = graded
    path = course / "autograded" / "honest" / A1 / NOTEBOOK
    autograded = [c.source for c in nbformat.read(path, as_version=4).cells]
    for cell in solution().cells:
        if cell.cell_type == "markdown":
            assert cell.source in autograded


def test_a_forged_grade_id_is_not_carried(graded):
    course, grades, _ = graded
    assert outcome(grades, "forged_id")["score"] == 10.0
    assert "ordinary cell" in outcome(grades, "forged_id")["error"]
    assert set(outcome(grades, "forged_id")["tests"]) == set(outcome(grades, "honest")["tests"])
    path = course / "autograded" / "forged_id" / A1 / NOTEBOOK
    assert not ACTIVE.search(student_part(formgrader_html(path)))
    ids = {
        c.metadata.get("nbgrader", {}).get("grade_id")
        for c in nbformat.read(path, as_version=4).cells
    }
    assert FORGED_ID not in ids


def test_the_feedback_page_escapes_everything_from_the_student():
    notebook = solution()
    notebook.cells.insert(1, nbformat.v4.new_markdown_cell(XSS["script"] + XSS["onerror"]))
    notebook.cells.insert(1, nbformat.v4.new_code_cell(XSS["svg_script"]))
    tests = {
        FORGED_ID: {"score": 0, "max_score": 1, "passed": False, "message": XSS["onerror"]},
    }
    page = feedback_page(f"{A1} {XSS['script']}", notebook, tests)
    assert not ACTIVE.search(page)
    # No image but the PNG data of a figure (the source notebook's own plot), no SVG.
    assert not re.search(r"<img(?![^>]*src='data:image/png;base64,)|<svg", page, re.IGNORECASE)
    assert "&lt;script&gt;" in page
