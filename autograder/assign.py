"""Stage 1, assign: the source notebooks become the student versions in release/."""

from pathlib import Path

from autograder.check import write_released_tests
from autograder.course import CourseError, assignments, nbgrader_api


def release(root, names=None, release_dir=None):
    """Generate the student version of each assignment (all of them by default).

    Also records each assignment's cells in the gradebook, which grading needs, and its test
    cells beside the notebooks, which `check` needs. With `release_dir`, the notebooks go
    there instead of release/.
    """
    directory = {} if release_dir is None else {"release_directory": str(release_dir)}
    api = nbgrader_api(root, CourseDirectory=directory)
    for name in names or assignments(root):
        result = api.generate_assignment(name, force=True, create=True)
        if not result["success"]:
            raise CourseError(
                f"could not release {name}:\n{result.get('log', '')}{result.get('error', '')}"
            )
        write_released_tests(Path(release_dir or Path(root) / "release") / name)
