"""The course directory: where it is, what assignments it has, and nbgrader set up for it."""

import os
import re
import sys
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG_FILE = "nbgrader_config.py"


class CourseError(Exception):
    """An instructor-side problem (wrong folder, unknown assignment): nothing can be graded."""


def course_root(path="."):
    """The course directory `path`, checked: it must hold nbgrader_config.py and source/."""
    root = Path(path).resolve()
    missing = [name for name in (CONFIG_FILE, "source") if not (root / name).exists()]
    if missing:
        raise CourseError(
            f"{root} is not a course directory: it has no {' and no '.join(missing)}. "
            "Run this command from the root of the course repository."
        )
    return root


def assignments(root):
    """The assignment names: the folders of source/, in order."""
    return sorted(
        p.name for p in (root / "source").iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def source_notebooks(root, assignment):
    return sorted((root / "source" / assignment).glob("*.ipynb"))


class Folders:
    """Where nbgrader keeps each student's graded work, as nbgrader_config.py sets it
    (CourseDirectory.directory_structure and the *_directory names), read without nbgrader."""

    def __init__(self, root):
        settings = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config().CourseDirectory
        self.root = root
        self.structure = settings.get(
            "directory_structure",
            os.path.join("{nbgrader_step}", "{student_id}", "{assignment_id}"),
        )
        self.steps = {
            step: settings.get(f"{step}_directory", step) for step in ("autograded", "feedback")
        }

    def of(self, step, student, assignment):
        """The folder of `step` ("autograded" or "feedback") for one student's assignment."""
        return self.root / self.structure.format(
            nbgrader_step=self.steps[step], student_id=student, assignment_id=assignment
        )


def gradebook_url(root):
    """The gradebook's SQLAlchemy URL: $AUTOGRAD_COURSE_DB, else the SQLite file gradebook.db in
    the course root. nbgrader_config.py sets nbgrader's db_url from it."""
    url = os.environ.get("AUTOGRAD_COURSE_DB") or "sqlite:///" + os.path.join(root, "gradebook.db")
    return with_driver(url)


def with_driver(url):
    """`url` with the PostgreSQL driver the lock installs named in it."""
    # SQLAlchemy's default driver for postgresql:// is psycopg2; the lock installs psycopg 3.
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def configured_gradebook_url(root, config=None):
    """The gradebook URL that nbgrader_config.py (or its loaded `config`) gives nbgrader:
    gradebook_url's, unless the file sets another."""
    config = config or PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    return with_driver(config.CourseDirectory.get("db_url", gradebook_url(root)))


def nbgrader_api(root, **sections):
    """nbgrader's API for the course at `root`, with nbgrader_config.py loaded.

    `sections` override settings, e.g. CourseDirectory={"release_directory": "/tmp/x"}.
    """
    from nbgrader.apps import NbGraderAPI  # slow import: only the instructor side needs it

    # nbgrader runs the `alembic` command by name; it is installed beside this interpreter.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")

    config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = configured_gradebook_url(root, config)
    overrides = Config()
    for section, values in sections.items():
        for key, value in values.items():
            setattr(overrides[section], key, value)
    config.merge(overrides)
    return NbGraderAPI(config=config)
