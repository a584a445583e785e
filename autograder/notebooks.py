"""Reading notebooks safely, and reading the verdict of a graded cell from its outputs."""

import json
import os
import re
import resource
import select
import signal
import stat
import time
from pathlib import Path

import nbformat

# Notebooks larger than this are refused rather than parsed (a course notebook is < 1 MB).
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
MAX_CELLS = 2000  # a course notebook has about 30
# The judge parses a student cell (ast, IPython) only up to this size: parsing costs up to
# 500 bytes of memory per character (a solution cell has about 1 000 characters).
MAX_PARSED_CELL_CHARS = 64 * 1024
# Under the size limit, JSON of millions of empty objects costs 3 GB and 12 s to parse
# (benchmarks/notebook_parse_cost.py). A notebook of at most IN_PROCESS_VALUES JSON values (a
# course notebook has about 1 500) is parsed in the process reading it; any other in a child
# with at most PARSE_MEMORY_BYTES more memory and PARSE_SECONDS of CPU (a fork costs a judge
# about 12 ms).
IN_PROCESS_VALUES = 100_000
PARSE_MEMORY_BYTES = 512 * 2**20
PARSE_SECONDS = 10
# The nbgrader metadata kept from a notebook, with the type each value must have.
NBGRADER_KEYS = {
    "grade_id": str,
    "points": (int, float),
    "grade": bool,
    "solution": bool,
    "task": bool,
    "locked": bool,
    "schema_version": int,
}
# stderr text matching this is a warning, and warnings never cost points (nbgrader_config.py
# gives nbgrader's IgnorePattern the same pattern).
WARNING_PATTERN = r"Warning:"
FILE_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFSOCK: "a socket",
}


class BadFile(Exception):
    """A submitted file that cannot be read; the message names it and says what is wrong."""


class BadNotebook(BadFile):
    """A file that cannot be graded as a notebook; the message says what is wrong with it."""


def read_regular_file(path, limit):
    """The bytes of the regular file at `path`, None if there is none, or BadFile. A symbolic
    link, a named pipe or a device is never opened as what it points to, and never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        if os.path.islink(path):
            raise BadFile(f"{path.name} is a symbolic link; submit the file itself") from None
        raise BadFile(f"{path.name} cannot be read ({error.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise BadFile(f"{path.name} is {kind}, not a file")
        if info.st_size > limit:
            raise BadFile(
                f"{path.name} is {megabytes(info.st_size)}, over the {megabytes(limit)} limit"
            )
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise BadFile(f"{path.name} is over the {megabytes(limit)} limit")
        return b"".join(chunks)
    finally:
        os.close(fd)


def megabytes(size):
    return f"{size / 2**20:.0f} MB" if size >= 2**20 else f"{size} bytes"


def read_notebook(path):
    """The notebook at `path` without its outputs, attachments and metadata other than
    nbgrader's (grading makes its own outputs), or BadNotebook naming the file and the problem.
    Parsed in a child process with limited memory and time."""
    try:
        data = read_regular_file(path, MAX_NOTEBOOK_BYTES)
    except BadFile as error:
        raise BadNotebook(str(error)) from None
    if data is None:
        raise BadNotebook(f"{path.name} is missing")
    if json_values_at_most(data) <= IN_PROCESS_VALUES:
        return nbformat.from_dict(slim_notebook(data, path.name))
    return nbformat.from_dict(json.loads(parsed_in_child(data, path.name)))


def json_values_at_most(data):
    """An upper bound of the number of values in the JSON text `data`: every value but the
    first of a container follows a comma, and every container opens with a bracket."""
    return sum(data.count(byte) for byte in (b",", b"[", b"{")) + 1


def parsed_in_child(data, name):
    """The JSON text of slim_notebook(data, name), computed in a forked child under
    PARSE_MEMORY_BYTES and PARSE_SECONDS; BadNotebook if it fails or runs out of either."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(reader)
            limit_child()
            try:
                answer = {"notebook": slim_notebook(data, name)}
            except BadNotebook as error:
                answer = {"error": str(error)}
            except (MemoryError, RecursionError):
                answer = {"error": f"{name} is too large or too deeply nested to be read"}
            with os.fdopen(writer, "wb") as pipe:
                pipe.write(json.dumps(answer).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    try:
        text = read_until_closed(reader, time.monotonic() + PARSE_SECONDS + 5)
    finally:
        os.close(reader)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        answer = {"error": f"{name} takes too much memory or time to be read"}
    if "error" in answer:
        raise BadNotebook(answer["error"])
    return json.dumps(answer["notebook"])


def limit_child():
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    limit = pages * os.sysconf("SC_PAGE_SIZE") + PARSE_MEMORY_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (PARSE_SECONDS, PARSE_SECONDS + 1))


def read_until_closed(fd, deadline):
    """What is written to the pipe `fd` until it is closed or `deadline` passes."""
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 2**20) if ready else b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def slim_notebook(data, name):
    """The notebook in `data` as a dict of what grading reads (cells, their source, type, id
    and nbgrader metadata), validated, or BadNotebook naming the problem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadNotebook(f"{name} is not UTF-8 text (byte {error.start})") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadNotebook(
            f"{name} is not valid JSON ({error.msg} at line {error.lineno})"
        ) from None
    if not isinstance(content, dict) or "cells" not in content and "worksheets" not in content:
        raise BadNotebook(f"{name} is JSON but not a Jupyter notebook")
    if content.get("nbformat") != 4:
        raise BadNotebook(
            f"{name} is in notebook format {content.get('nbformat')}; open it in JupyterLab "
            "and save it to convert it to format 4"
        )
    cells = content["cells"] if isinstance(content["cells"], list) else []
    if len(cells) > MAX_CELLS:
        raise BadNotebook(f"{name} has {len(cells)} cells, over the limit of {MAX_CELLS}")
    notebook = {
        "cells": [slim_cell(cell) for cell in cells] if cells else content["cells"],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": content.get("nbformat_minor"),
    }
    try:
        nbformat.validate(nbformat.from_dict(notebook))
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadNotebook(f"{name} is not a valid notebook: {first_line}") from None
    for cell in notebook["cells"]:
        if isinstance(cell["source"], list):
            cell["source"] = "".join(cell["source"])
    return notebook


def slim_cell(cell):
    if not isinstance(cell, dict):
        return cell
    slim = {key: cell[key] for key in ("cell_type", "id", "source") if key in cell}
    metadata = cell.get("metadata")
    meta = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    kept = {
        key: value
        for key, value in (meta if isinstance(meta, dict) else {}).items()
        if key in NBGRADER_KEYS and isinstance(value, NBGRADER_KEYS[key])
    }
    slim["metadata"] = {"nbgrader": kept} if kept else {}
    if cell.get("cell_type") == "code":
        slim.update(outputs=[], execution_count=None)
    return slim


def nbgrader_meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def test_cells(notebook):
    """The autograded test cells, by grade_id."""
    return {
        nbgrader_meta(cell)["grade_id"]: cell
        for cell in notebook.cells
        if cell.cell_type == "code"
        and nbgrader_meta(cell).get("grade")
        and not nbgrader_meta(cell).get("solution")
    }


def tests_after_solutions(notebook):
    """{grade_id of a solution cell, or None: [grade_ids of the test cells after it]}."""
    anchors, last = {}, None
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution"):
            last = meta.get("grade_id")
        elif meta.get("grade") and cell.cell_type == "code":
            anchors.setdefault(last, []).append(meta["grade_id"])
    return anchors


def without_hidden_tests(cell):
    """The test cell as students receive it: the lines from BEGIN to END HIDDEN TESTS removed,
    exactly as nbgrader's ClearHiddenTests does."""
    lines, hidden = [], False
    for line in cell.source.split("\n"):
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            lines.append(line)
    return {**cell, "source": "\n".join(lines)}


def graded_cells(notebook):
    """{grade_id: nbgrader metadata} of every nbgrader cell."""
    return {
        nbgrader_meta(cell)["grade_id"]: nbgrader_meta(cell)
        for cell in notebook.cells
        if nbgrader_meta(cell).get("grade_id")
    }


def graded_ids(notebook):
    """The grade_ids of all nbgrader cells: which assignment a notebook belongs to."""
    return set(graded_cells(notebook))


def without_warnings(outputs):
    return [
        output
        for output in outputs
        if not (
            output.get("output_type") == "stream"
            and output.get("name") == "stderr"
            and re.search(WARNING_PATTERN, output.get("text", ""))
        )
    ]


def cell_verdict(cell):
    """(passed, message) for an executed test cell, by nbgrader's rule: no error, no stderr."""
    for output in without_warnings(cell.get("outputs", [])):
        if output.get("output_type") == "error":
            return False, error_message(output)
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            return False, "the test cell wrote to stderr: " + output.get("text", "").strip()[:200]
    return True, "passed"


def error_message(output):
    ename, evalue = output.get("ename", "Error"), output.get("evalue", "")
    if ename in ("CheckFailed", "AssertionError") and evalue:
        return evalue
    if ename == "NotImplementedError":
        return "not written yet: replace `raise NotImplementedError()` with your code"
    if ename == "CellTimeoutError":
        return "the cell ran out of time (an endless loop?)"
    return f"{ename}: {evalue}" if evalue else ename
