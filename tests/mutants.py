"""Typical mistakes, each a small edit of one solution, and the test cells it must fail.

A mutant submission is the solution notebook with one edit; grading must take away exactly
the points of the listed test cells and leave every other exercise its full points.

Each assignment declares its own in `assignment_mutants/<assignment>.py` (a list `MUTANTS`),
so adding an assignment adds a file here and changes no code.
"""

import importlib.util
from pathlib import Path
from typing import NamedTuple

FOLDER = Path(__file__).resolve().parent / "assignment_mutants"


class Mutant(NamedTuple):
    assignment: str
    mistake: str
    cell: str  # grade_id of the solution cell that is edited
    old: str  # text of the solution replaced ...
    new: str  # ... by this
    breaks: set  # grade_ids of the test cells that must lose their points
    diagnosis: str | None = None  # the misconception their messages must name, if any


def load(path):
    """The MUTANTS of one assignment's file, which must all name that assignment."""
    spec = importlib.util.spec_from_file_location(f"assignment_mutants.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    strays = [m.mistake for m in module.MUTANTS if m.assignment != path.stem]
    if strays:
        raise ValueError(f"{path.name} declares mutants of another assignment: {strays}")
    return module.MUTANTS


MUTANTS = [mutant for path in sorted(FOLDER.glob("*.py")) for mutant in load(path)]
