"""`autograd-course student-edition OUT`: everything a student needs, nothing they must not have."""

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import nbformat
import pytest
from browser import jupyter_lab
from conftest import REPO, run_cli, solution_code, student_notebook

from autograder.edition import LAB_CONFIG, VALIDATE_SETTINGS, write_edition

ASSIGNMENT = "01_basic_autograd"
NOTEBOOK = f"release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
# Shorter lines ("return x", "y = f(x)") are too common to tell anything.
MEANINGFUL = 10
# Lines of hidden tests that are generic code the autograder itself has (a graph walk's loop).
GENERIC = {"while todo:", "node = todo.pop()", "return names"}


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "autograd-course"
    result = run_cli("student-edition", out, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return out


def strings(value):
    """Every string inside a JSON value: a notebook's sources and outputs, unescaped."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from strings(item)


def texts(folder):
    """{path: text} for every file under `folder`, JSON files also as their unescaped strings."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="replace")
        if path.suffix in (".ipynb", ".json"):
            text += "\n".join(strings(json.loads(text)))
        found[path] = text
    return found


def marked_lines(begin, end):
    """The stripped lines between `begin` and `end` markers in every source notebook's cells."""
    lines = set()
    for path in sorted(REPO.glob("source/*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                if begin in line or end in line:
                    inside = begin in line
                elif inside:
                    lines.add(line.strip())
    return lines


def secret_lines():
    """Solution and hidden-test lines a student must not see: long enough to mean something,
    and not shown to students anyway by the released notebooks or the lectures."""
    public = "\n".join(texts(REPO / "release").values()) + "\n".join(
        texts(REPO / "course").values()
    )
    marked = marked_lines("### BEGIN SOLUTION", "### END SOLUTION") | marked_lines(
        "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
    )
    return {
        line
        for line in marked - GENERIC
        if len(line) >= MEANINGFUL and line not in public and "### " not in line
    }


def solved_notebook():
    """The released notebook with every solution cell filled in as the instructor did."""
    released = nbformat.read(REPO / NOTEBOOK, as_version=4)
    solution_ids = [
        cell.metadata.nbgrader["grade_id"]
        for cell in released.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    ]
    return student_notebook(ASSIGNMENT, {i: solution_code(ASSIGNMENT, i) for i in solution_ids})


def test_no_line_of_a_solution_or_hidden_test_is_anywhere_in_it(edition):
    secrets = secret_lines()
    assert len(secrets) > 150  # the course has that many: the rule above is not vacuous
    leaks = [
        f"{path.relative_to(edition)}: {line}"
        for path, text in texts(edition).items()
        for line in secrets
        if line in text
    ]
    assert not leaks, "\n".join(leaks)


def test_a_solution_line_copied_into_it_would_be_found(edition, tmp_path):
    copy = shutil.copytree(edition, tmp_path / "copy")
    nbformat.write(solved_notebook(), copy / NOTEBOOK)
    leaked = {line for line in secret_lines() if line in texts(copy)[copy / NOTEBOOK]}
    assert leaked


def files(folder):
    return {
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.is_file() and ".ipynb_checkpoints" not in path.parts
    }


def test_it_has_no_instructor_files_or_settings(edition, repo):
    names = {path.name for path in edition.iterdir()}
    assert names == {
        ".gitignore",
        ".jupyter",
        "Makefile",
        "README.md",
        "autograder",
        "course",
        "nbgrader_config.py",
        "pyproject.toml",
        "release",
    } | {path.name for path in repo.glob("requirements*")}
    for folder in ("course", "release"):  # release/ has what `check` needs beside the notebooks
        assert files(edition / folder) == files(repo / folder)
    everything = {path.name for path in edition.rglob("*")}
    for instructor_only in ("source", "gradebook.db", ".autograd_course_secret", "__pycache__"):
        assert instructor_only not in everything
    in_edition, in_course = side_by_side(
        (edition, [sys.executable, "-c", VALIDATOR_PROBE]),
        (repo, [sys.executable, "-c", VALIDATOR_PROBE]),
    )
    settings, course_settings = json.loads(in_edition.stdout), json.loads(in_course.stdout)
    assert set(settings["sections"]) <= set(VALIDATE_SETTINGS)  # no gradebook, no course root
    assert settings["validator"] == course_settings["validator"]


# What the Validate button's server extension does to configure its Validator.
VALIDATOR_PROBE = """
import json, os
from jupyter_core.paths import jupyter_config_path
from nbgrader.apps import NbGrader
from nbgrader.validator import Validator
paths = jupyter_config_path()
paths.insert(0, os.getcwd())
app = NbGrader()
app.config_file_paths.append(paths)
app.load_config_file()
steps = [f"{p.__module__}.{p.__name__}" for p in Validator(config=app.config).preprocessors]
sections = sorted(name for name, values in app.config.items() if values)
print(json.dumps({"sections": sections, "validator": steps}))
"""


def side_by_side(*runs):
    """Run each (folder, command) at once, in that folder with its own `autograder` first on
    the path; their results, in order, once all are done."""
    processes = [
        (
            command,
            subprocess.Popen(
                command,
                cwd=folder,
                env=dict(os.environ, PYTHONPATH=str(folder)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for folder, command in runs
    ]
    results = []
    for command, process in processes:
        stdout, stderr = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    return results


def test_its_readme_tells_a_student_what_to_do(edition):
    readme = (edition / "README.md").read_text()
    for assignment in (p.name for p in (edition / "release").iterdir()):
        assert f"| `{assignment}` |" in readme
    assert f".venv/bin/autograd-course check {NOTEBOOK}" in readme
    assert "make lab" in readme and "**Validate**" in readme and "Hand in your notebook" in readme
    assert "## For instructors" not in readme and "source/" not in readme


def test_check_works_inside_it(edition, tmp_path):
    solved_copy = shutil.copytree(edition, tmp_path / "copy")
    nbformat.write(solved_notebook(), solved_copy / NOTEBOOK)
    check = [sys.executable, "-m", "autograder", "check", NOTEBOOK]
    unsolved, solved = side_by_side((edition, check), (solved_copy, check))
    assert unsolved.returncode == 1, unsolved.stdout + unsolved.stderr
    assert "FAILED" in unsolved.stdout
    assert solved.returncode == 0, solved.stdout + solved.stderr
    assert "FAILED" not in solved.stdout


def test_make_lab_installs_the_pinned_environment_then_starts_jupyterlab_with_its_settings(
    edition,
):
    dry_run = subprocess.run(
        ["make", "-n", "lab"], cwd=edition, capture_output=True, text=True, check=True
    ).stdout
    assert "-m venv .venv" in dry_run
    assert "pip install" in dry_run and " -r requirements" in dry_run
    assert f'JUPYTER_CONFIG_PATH="{edition}/.jupyter' in dry_run
    assert ".venv/bin/jupyter lab" in dry_run
    check = subprocess.run(
        ["make", "-n", "check", f"NB={NOTEBOOK}"], cwd=edition, capture_output=True, text=True
    ).stdout
    assert '.venv/bin/autograd-course check "$notebook"' in check and NOTEBOOK in check


def test_exchange_keeps_the_assignment_list(tmp_path):
    out = tmp_path / "with-exchange"
    write_edition(REPO, out, exchange=True)
    page = json.loads((out / ".jupyter/labconfig/page_config.json").read_text())
    assert page["disabledExtensions"]["@jupyter/nbgrader:create-assignment"] is True
    assert "@jupyter/nbgrader:assignment-list" not in page["disabledExtensions"]
    assert "Assignment List" in (out / "README.md").read_text()


def test_it_refuses_a_folder_inside_the_course_or_one_not_empty(tmp_path):
    inside = run_cli("student-edition", REPO / "edition", cwd=REPO)
    assert inside.returncode == 2
    assert "is inside the course" in inside.stderr
    assert not (REPO / "edition").exists()
    (tmp_path / "notes.txt").write_text("mine")
    taken = run_cli("student-edition", tmp_path, cwd=REPO)
    assert taken.returncode == 2
    assert "is not an empty folder" in taken.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_its_jupyterlab_hides_instructor_tools_renders_markdown_and_validates(edition, tmp_path):
    # As `make lab` starts it, with the edition's own autograder as its venv would have.
    lab = jupyter_lab(edition, tmp_path, [edition / LAB_CONFIG], {"PYTHONPATH": str(edition)})
    with lab as (url, token):

        def get(path, form=None):
            request = urllib.request.Request(
                url + path,
                data=form and urllib.parse.urlencode(form).encode(),
                headers={"Authorization": f"token {token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, ""

        _, page = get("/lab")
        config_data = page.split('id="jupyter-config-data"', 1)[1].split(">", 1)[1]
        disabled = json.loads(config_data.split("</script>", 1)[0])["disabledExtensions"]
        for plugin in ("create-assignment", "formgrader", "course-list", "assignment-list", "menu"):
            assert f"@jupyter/nbgrader:{plugin}" in disabled
        assert "@jupyter/nbgrader:validate-assignment" not in disabled
        _, settings = get("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
        viewers = json.loads(settings)["schema"]["properties"]["defaultViewers"]["default"]
        assert viewers == {"markdown": "Markdown Preview"}
        assert get("/formgrader")[0] == 404
        assert get("/assignments")[0] == 404
        assert get("/formgrader/api/courses")[0] == 404
        # Validate stays, and runs the course's check with the edition's nbgrader_config.py.
        _, answer = get("/assignments/validate", {"path": NOTEBOOK})
        failed = json.loads(answer)["value"]["failed"]
        assert "slope_of_square is not written yet" in failed[0]["error"]
