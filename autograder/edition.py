"""`autograd-course student-edition OUT`: the folder students get, with no solution or hidden test.

Everything in it is copied or generated from the course's own files, so it cannot drift from
them: course/, release/, the autograder package (the checks the visible tests import, and
`check`), pyproject.toml and the lock file(s), as they are; a README built from the instructor
README's setup paragraph, assignment table and student section (templates in student_edition/);
a Makefile whose variables and .venv rule are the course Makefile's; an nbgrader_config.py with
only the course's settings for Validate; and JupyterLab settings without nbgrader's instructor
tools. source/, tests/, the gradebook and the course secret are never read.
"""

import ast
import json
import re
import shutil
from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

from autograder.course import CONFIG_FILE, CourseError

TEMPLATES = Path(__file__).parent / "student_edition"
# The lock files are copied too: every top-level `requirements*` file or folder.
COPIED = ("course", "release", "autograder", "pyproject.toml")
# Left out of the copied package: the scaffold of `autograd-course new`, whose example
# solutions are an instructor's.
INSTRUCTOR_MODULES = ("autograder/author.py",)
# `make lab` puts this folder on JUPYTER_CONFIG_PATH (the browser test does the same).
LAB_CONFIG = ".jupyter"

# The nbgrader settings the Validate button uses (with an exchange, also those that find it).
VALIDATE_SETTINGS = ("Validator", "ValidateApp")
EXCHANGE_COMMENT = (
    "# Your instructor's nbgrader exchange, where you fetch and submit, and the course's id."
)
# nbgrader's JupyterLab plugins and server extensions that are for instructors only; the
# assignment list (and the Nbgrader menu, which offers nothing else to a student) needs an exchange.
INSTRUCTOR_PLUGINS = ("create-assignment", "formgrader", "course-list")
EXCHANGE_PLUGINS = ("assignment-list", "menu")
INSTRUCTOR_SERVER_EXTENSIONS = ("formgrader", "course_list")
EXCHANGE_SERVER_EXTENSIONS = ("assignment_list",)

SETUP_MARKERS = ("<!-- student-edition: setup -->", "<!-- end student-edition: setup -->")
TABLE_HEADER = "| assignment | what it teaches |"

SUBMIT_FILE = """\
Hand in your notebook, `release/<assignment>/<assignment>.ipynb`, under its own name, the way
your instructor asks (an upload to the course's site, say). Grading runs the hidden tests and
writes a feedback page with every exercise's score and message for your instructor to hand back.
"""
SUBMIT_EXCHANGE = """\
This course hands out and collects assignments through nbgrader's exchange. In JupyterLab, open
**Nbgrader → Assignment List**, *Fetch* the assignment (it is copied into a folder named after
it), work in that copy, check it as above, and press *Submit*. Your feedback appears in the same
list once your instructor releases it.
"""


def write_edition(root, out, exchange=False):
    """Write the student edition of the course at `root` into the folder `out`."""
    out = Path(out).resolve()
    if out == root or root in out.parents:
        raise CourseError(f"{out} is inside the course: choose a folder outside {root}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CourseError(f"{out} is not an empty folder: choose a new or empty one")
    out.mkdir(parents=True, exist_ok=True)
    locks = sorted(path.name for path in root.glob("requirements*"))
    for name in COPIED + tuple(locks):
        if (root / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
            shutil.copytree(root / name, out / name, ignore=ignore)
        else:
            shutil.copy(root / name, out / name)
    for name in INSTRUCTOR_MODULES:
        (out / name).unlink(missing_ok=True)
    (out / "README.md").write_text(student_readme((root / "README.md").read_text(), exchange))
    (out / "Makefile").write_text(student_makefile((root / "Makefile").read_text()))
    (out / ".gitignore").write_text((TEMPLATES / "gitignore.in").read_text())
    settings = course_exchange_settings(root) if exchange else {}
    (out / CONFIG_FILE).write_text(student_config((root / CONFIG_FILE).read_text(), settings))
    write_lab_config(out / LAB_CONFIG, exchange)


def student_readme(readme, exchange):
    """The student README: the template filled in from the instructor `readme`."""
    start, end = SETUP_MARKERS
    setup = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), readme, re.S)
    students = re.search(r"^## For students\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    table = re.search("^" + re.escape(TABLE_HEADER) + r"\n(?:\|.*\n)*", readme, re.M)
    for part, what in (
        (setup, f"{start} … {end}"),
        (students, "## For students"),
        (table, TABLE_HEADER),
    ):
        if part is None:
            raise CourseError(f"README.md has no {what}: the student README is built from it")
    return (
        (TEMPLATES / "README.md.in")
        .read_text()
        .replace("{{setup}}", setup.group(1).strip())
        .replace("{{assignments}}", table.group(0).strip())
        .replace("{{working}}", students.group(1).strip())
        .replace("{{submitting}}", (SUBMIT_EXCHANGE if exchange else SUBMIT_FILE).strip())
    )


def student_makefile(makefile):
    """The student targets between the course Makefile's variables and its .venv rule."""
    first_rule = re.search(r"^[^\s#][^=\n]*?:(?!=)", makefile, re.M)
    install_rule = re.search(r"^\$\(INSTALLED\):.*\n(?:\t.*\n)*", makefile, re.M)
    if first_rule is None or install_rule is None:
        raise CourseError("Makefile has no $(INSTALLED) rule: the student Makefile copies it")
    variables = makefile[: first_rule.start()].rstrip()
    targets = (TEMPLATES / "Makefile.in").read_text().strip()
    return f"{variables}\n\n{targets}\n\n{install_rule.group(0)}"


def student_config(config, exchange_settings):
    """nbgrader_config.py for students: the course's Validate settings, and `exchange_settings`
    (a setting's dotted name to its value)."""
    lines = config.splitlines()
    tree = ast.parse(config)
    chosen = [
        node for node in tree.body if any(map(_is_setting(VALIDATE_SETTINGS), _targets(node)))
    ]
    used = {n.id for node in chosen for n in ast.walk(node) if isinstance(n, ast.Name)}
    imports = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        and used & {(a.asname or a.name).split(".")[0] for a in node.names}
    ]

    def with_comment(node):
        first = node.lineno - 1
        while first > 0 and lines[first - 1].lstrip().startswith("#"):
            first -= 1  # the comment that says why
        return "\n".join(lines[first : node.end_lineno])

    exchange = [f"c.{name} = {value!r}" for name, value in exchange_settings.items()]
    parts = [
        '"""nbgrader settings for students: the course\'s settings for the Validate button'
        + (" and where its exchange is." if exchange else ".")
        + '"""',
        "\n".join(map(with_comment, imports)),
        "c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)",
        "\n".join(map(with_comment, chosen)),
        "\n".join([EXCHANGE_COMMENT, *exchange]) if exchange else "",
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def course_exchange_settings(root):
    """Where the course's nbgrader exchange is, as values: the course's nbgrader_config.py works
    the folder out from its own location, and a student's nbgrader must find that same folder."""
    config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    settings = {f"Exchange.{name}": value for name, value in config.Exchange.items()}
    course_id = config.CourseDirectory.get("course_id")
    if not course_id:
        raise CourseError(f"{CONFIG_FILE} sets no CourseDirectory.course_id; the exchange needs it")
    return settings | {"CourseDirectory.course_id": course_id}


def _targets(node):
    """The expressions a top-level statement assigns to or calls a method of."""
    if isinstance(node, ast.Assign):
        return node.targets
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return [node.target]
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return [node.value.func]
    return []


def _is_setting(wanted):
    """Whether an expression sets one of `wanted` in the config, `c.Validator.preprocessors`,
    or in the class itself, `Validator.preprocessors.default_value`."""

    def matches(expression):
        names = []
        while isinstance(expression, ast.Attribute):
            names.insert(0, expression.attr)
            expression = expression.value
        if not isinstance(expression, ast.Name):
            return False
        dotted = ".".join(names if expression.id == "c" else [expression.id, *names])
        return any(dotted == w or dotted.startswith(w + ".") for w in wanted)

    return matches


def write_lab_config(folder, exchange):
    """Jupyter settings for `make lab`: nbgrader's instructor tools off, Markdown rendered."""
    server = {
        f"nbgrader.server_extensions.{name}": False
        for name in INSTRUCTOR_SERVER_EXTENSIONS + (() if exchange else EXCHANGE_SERVER_EXTENSIONS)
    }
    disabled = {
        f"@jupyter/nbgrader:{name}": True
        for name in INSTRUCTOR_PLUGINS + (() if exchange else EXCHANGE_PLUGINS)
    }
    markdown = {"markdown": "Markdown Preview"}
    files = {
        "jupyter_server_config.json": {"ServerApp": {"jpserver_extensions": server}},
        "labconfig/page_config.json": {"disabledExtensions": disabled},
        "labconfig/default_setting_overrides.json": {
            "@jupyterlab/docmanager-extension:plugin": {"defaultViewers": markdown},
            # No "get Jupyter news?" prompt over the student's notebook.
            "@jupyterlab/apputils-extension:notification": {"fetchNews": "false"},
        },
    }
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content, indent=2) + "\n")
