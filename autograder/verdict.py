"""The trusted side of grading one notebook: verdicts computed where student code never ran.

The student's cells run in a worker (autograder.worker). The instructor's test cells, hidden
tests included, run here, in the grader's own process: a name the student defined is a proxy
that asks the worker to call the student's function and sends back the result as data. So the
checks, the references and the inputs they compute never meet student code, and nothing the
student's code does to torch, IPython or the autograder can change a verdict.
"""

import ast
import builtins
import functools
import itertools
import math
import os
import select
import signal
import subprocess
import threading
import time
import types
from pathlib import Path
from typing import NamedTuple

import torch
from IPython.core.inputtransformer2 import TransformerManager

from autograder import protocol, reach, sandbox
from autograder.cgroups import NotebookGroup
from autograder.checks import STUDENT_KEY, Call, CheckFailed, exception_name, parse
from autograder.notebooks import MAX_PARSED_CELL_CHARS, error_message, nbgrader_meta

# What one notebook's figures may weigh, as base64 PNG, in the grader's memory and in what it
# writes; the figures past it are left out.
MAX_NOTEBOOK_FIGURE_BYTES = 8 * 2**20


class Verdict(NamedTuple):
    passed: bool
    message: str
    diagnosis: str | None = None  # the misconception the answer matched (misconceptions.py)


class WorkerLost(Exception):
    """The worker stopped answering; the message says why ("timed out after 30 s in cell 7")."""


class Session:
    """One live worker, serving one notebook."""

    spawn_lock = threading.Lock()

    def __init__(self, zygote, slot, limits, group=None):
        """Start a worker, in `group` (its notebook's cgroup); `ready()` waits until it has
        confined itself."""
        self.uid, self.limits, self.group = zygote.uid(slot), limits, group
        self.deadline = time.monotonic() + limits.notebook_seconds  # its notebook's sets it
        self.process = self.sock = None  # a pidfd of the worker (a Popen, if spawned)
        self.missing = None  # the protections it could not have, once it is ready
        self.oom_kills = group.oom_kills() if group else 0  # its notebook's, before it
        try:
            with Session.spawn_lock:
                self.process, self.sock = zygote.spawn(
                    self.uid, group.procs_files() if group else ()
                )
        except (OSError, ValueError) as error:
            raise WorkerLost(f"no worker could be started: {error}") from None

    def ready(self):
        if self.missing is None:
            self.missing = self.request(None, "start", "while starting")["missing"]
        return self

    def request(self, message, op, where):
        """The worker's answer to `message` (checked to have the shape of an answer to `op`),
        or WorkerLost if it dies, runs out of time, or answers out of turn. Whatever goes
        wrong, the worker and everything it started are stopped."""
        deadline = min(time.monotonic() + self.limits.seconds, self.deadline)
        try:
            if message is not None:
                protocol.send(self.sock, message, deadline)
            answer = protocol.receive(self.sock, deadline)
            if answer is None:
                if self.group is not None and self.group.oom_kills() > self.oom_kills:
                    raise WorkerLost(
                        f"the notebook ran out of memory {where} (its processes together may "
                        f"use {self.limits.memory_mb} MB)"
                    )
                raise WorkerLost(
                    f"the Python process running the notebook ended {where} "
                    "(os._exit, a crash, or the memory limit)"
                )
            return protocol.checked_answer(op, answer)
        except TimeoutError:
            self.close()
            if deadline == self.deadline:
                raise WorkerLost(
                    f"the notebook used up its {self.limits.notebook_seconds:g} s in all {where}"
                ) from None
            raise WorkerLost(f"timed out after {self.limits.seconds:g} s {where}") from None
        except (OSError, protocol.BadMessage) as error:
            self.close()
            raise WorkerLost(f"the worker failed {where}: {error}") from None
        except BaseException:
            self.close()
            raise

    def close(self):
        """Kill the worker and everything it started; safe to call more than once."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if isinstance(self.process, subprocess.Popen):
            self.process.kill()
            self.process.wait()
            self.process = None
        elif self.process is not None:
            # It is the first process of its PID namespace: the kernel ends every process
            # of the namespace with it.
            try:
                signal.pidfd_send_signal(self.process, signal.SIGKILL)
                if self.group is None:  # (kill_all below waits for the whole group)
                    select.select([self.process], [], [], 2.0)  # readable once it has died
            except OSError:
                pass  # it had ended
            os.close(self.process)
            self.process = None
        if self.group is not None:
            # Killed, not waited for: a killed process does nothing more, and its notebook's
            # group is removed once it is empty (Notebook.retire).
            self.group.kill_all(seconds=0)
        elif os.getuid() == 0 and self.uid != 0:
            sandbox.kill_uid(self.uid)


def peak_memory_mb(pidfd):
    """The most memory the worker behind `pidfd` has held (where no cgroup measures it), or
    0.0 where that cannot be known."""
    if not isinstance(pidfd, int):
        return 0.0
    try:
        fdinfo = Path(f"/proc/self/fdinfo/{pidfd}").read_text()
        pid = next(line.split()[1] for line in fdinfo.splitlines() if line.startswith("Pid:"))
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return 0.0


class Notebook:
    """Grades one submitted notebook against its source tests."""

    # The grading run's cgroups (autograder.cgroups.Run), set by the judge; None: no cgroups.
    cgroups = None
    groups_made = itertools.count()
    retired = []  # the groups of notebooks done with, whose processes may still be ending

    def __init__(self, zygote, slot, limits, tests, anchors, inputs_key=None, outputs=True):
        self.zygote, self.slot, self.limits = zygote, slot, limits
        # Whether to keep what Jupyter would show of each student cell (cell_results' "value"
        # and "figures"), for the autograded notebook and the feedback page.
        self.outputs = outputs
        self.figure_bytes_left = MAX_NOTEBOOK_FIGURE_BYTES
        self.group = None  # the notebook's cgroup, while it is graded
        self.inputs_key = inputs_key  # draws the student's hidden inputs (checks.STUDENT_KEY)
        self.last_called = None  # the student's function a test called last, for messages
        self.tests = tests  # {grade_id: test cell source, hidden tests included}
        # {solution cell grade_id: [the grade_ids of the tests that follow it in the source]}
        self.anchors = anchors
        self.session = None
        self.ran = []  # (index, source) of the student cells run so far, in order
        self.broken = {}  # index -> why that cell could not run (it is skipped from then on)
        self.in_copy = False  # while hidden tests run in a copy of the worker (run_test)
        # index -> {"output": text, "error": [type, message, where], "value": text of the last
        # expression's value or None, "figures": [base64 PNG]}
        self.cell_results = {}
        self.namespace = {"__name__": "__main__", "__builtins__": builtins}
        self.test_sources = {}  # "<test grade_id>" -> source, to find lambdas in
        self.missing = []
        self.peak_memory_mb = 0.0
        self.deadline = None  # when the notebook's whole time is up

    def grade(self, notebook):
        """{grade_id: Verdict}, running the student's cells in their order and each test right
        after the solution cell it follows in the source notebook.

        So where the student's copy has its test cells (moved, deleted, edited, re-typed) does
        not matter. Afterwards `broken` says which cells stopped the worker, and
        `cell_results` what each student cell printed and raised.
        """
        verdicts = {}
        self.deadline = time.monotonic() + self.limits.notebook_seconds
        self.group = self.notebook_group()
        try:
            for grade_id in self.anchors.get(None, []):  # tests that no solution cell precedes
                verdicts[grade_id] = self.run_test(grade_id)
            for index, cell in enumerate(notebook.cells):
                meta = nbgrader_meta(cell)
                if cell.cell_type != "code" or meta.get("grade_id") in self.tests:
                    continue
                self.run_student_cell(index, cell.source)
                for grade_id in self.anchors.get(meta.get("grade_id"), []):
                    if grade_id not in verdicts:
                        verdicts[grade_id] = self.run_test(grade_id)
            for grade_id in self.tests:  # tests whose solution cell is gone run at the end
                if grade_id not in verdicts:
                    verdicts[grade_id] = self.run_test(grade_id)
        finally:
            self.stop()
            if self.group is not None:
                self.peak_memory_mb = (self.group.peak_memory_bytes() or 0) / 2**20
                self.retire(self.group)
                self.group = None
        return verdicts

    @staticmethod
    def retire(group):
        """Remove `group`, and the groups retired before it, as soon as they are empty: not
        waiting for a killed worker to finish dying keeps the next notebook from waiting."""
        Notebook.retired = [g for g in [*Notebook.retired, group] if not g.remove(seconds=0)]

    def notebook_group(self):
        """A cgroup for all of this notebook's processes, or None where there are none."""
        if Notebook.cgroups is None or Notebook.cgroups.kind is None:
            return None
        # Named by the judge's pid too: a judge started in a dead one's slot makes new names.
        name = f"slot-{self.slot}-{os.getpid()}-{next(Notebook.groups_made)}"
        try:
            return NotebookGroup(
                Notebook.cgroups,
                name,
                memory_bytes=self.limits.memory_mb * 2**20,
                max_processes=self.limits.processes,
                cpu_cores=self.limits.cpus,
            )
        except OSError:
            self.missing = ["no cgroup for a notebook (its processes are limited one by one)"]
            return None

    def worker(self):
        """The live session, after starting a new one and replaying the cells if needed."""
        if self.session is None and self.in_copy:  # a new worker would see hidden inputs
            raise WorkerLost("the worker's copy for hidden tests stopped")
        if self.session is None:
            if time.monotonic() >= self.deadline:
                raise WorkerLost(
                    f"the notebook had used up its {self.limits.notebook_seconds:g} s in all"
                )
            self.session = Session(self.zygote, self.slot, self.limits, self.group)
        if self.session.missing is None:  # a new worker: once it is ready, replay the cells
            self.session.deadline = self.deadline
            self.missing = sorted({*self.missing, *self.session.ready().missing})
            for index, source in list(self.ran):
                self.send_cell(index, source)
        return self.session

    def send_cell(self, index, source, outputs=False):
        message = {"op": "run", "index": index, "source": source, "outputs": outputs}
        return self.request(message, f"in cell {index + 1}")

    def request(self, message, where):
        try:
            return self.worker().request(message, message["op"], where)
        except WorkerLost:
            self.stop()
            raise

    def stop(self):
        if self.session is not None:
            if self.group is None:
                peak = peak_memory_mb(self.session.process)
                self.peak_memory_mb = max(self.peak_memory_mb, peak)
            self.session.close()
            self.session = None

    def run_student_cell(self, index, source):
        try:
            answer = self.send_cell(index, source, self.outputs)
        except WorkerLost as lost:
            self.broken[index] = str(lost)
            return
        figures = []
        for png in answer["figures"]:  # a notebook's figures are bounded as a whole too
            if len(png) <= self.figure_bytes_left:
                self.figure_bytes_left -= len(png)
                figures.append(png)
        self.cell_results[index] = {
            "output": answer["output"][:10_000],
            "error": [part[:2000] for part in answer["error"]] if answer["error"] else None,
            "value": answer["value"],
            "figures": figures,
        }
        self.ran.append((index, source))

    def run_test(self, grade_id):
        """The verdict of one test cell, run part by part (visible code, hidden blocks) in one
        namespace. A failure in a hidden part says what kind of mistake it was, never its
        inputs, expected values, code or the text of an exception (hidden_message)."""
        filename = f"<test {grade_id}>"
        self.test_sources[filename] = source = self.tests[grade_id]
        self.last_called = None
        hidden = copied = False
        student_key = STUDENT_KEY.set(self.inputs_key)
        try:
            parts = test_parts(source, filename)
            self.bind_student_names([code for _, code in parts])
            for part_is_hidden, code in parts:
                hidden = part_is_hidden  # known to the handlers below
                if hidden and not copied:  # the worker's later cells never see hidden inputs
                    self.request({"op": "fork"}, "starting hidden tests")
                    copied = self.in_copy = True
                exec(code, self.namespace)
        except WorkerLost as lost:
            where = "in a hidden test" if hidden else f": {lost}"
            return Verdict(False, f"The notebook's Python process stopped{where}.")
        except BaseException as error:  # noqa: BLE001 (a test cell's failure is a verdict)
            diagnosis = getattr(error, "diagnosis", None)
            if hidden:
                return Verdict(False, self.hidden_message(error), diagnosis)
            message = error_message({"ename": type(error).__name__, "evalue": str(error).strip()})
            return Verdict(False, message, diagnosis)
        finally:
            STUDENT_KEY.reset(student_key)
            self.in_copy = False
            if copied and self.session is not None:
                self.end_copy()
        return Verdict(True, "passed")

    def end_copy(self):
        """Back from the worker's copy (fork) to the worker; a failure stops the worker, whose
        cells are replayed in a new one when needed."""
        try:
            self.request({"op": "end"}, "ending hidden tests")
        except WorkerLost:
            pass

    def hidden_message(self, error):
        """What a failed hidden test tells: which of the student's functions, and the kind of
        mistake the check named (CheckFailed.hidden), or only the type of a Python error."""
        function = self.last_called or "Your function"
        if isinstance(error, CheckFailed) and error.hidden:
            what = error.hidden
        elif isinstance(error, CheckFailed):
            what = "gives a wrong answer on other inputs."
        else:
            what = (
                f"gives an answer the test could not use ({exception_name(type(error).__name__)})."
            )
        return f"Hidden tests: {function} {what}"

    def bind_student_names(self, codes):
        """Put proxies for the student's functions, and copies of their values, in the namespace."""
        used = set().union(*(names_used(code) for code in codes))
        wanted = sorted(used - set(dir(builtins)))
        answer = self.request({"op": "names", "wanted": wanted}, "listing the notebook's names")
        for name in answer.get("functions", []):
            if name in wanted:
                self.namespace[name] = StudentFunction(self, name)
        for name, data in answer.get("values", {}).items():
            if name in wanted:
                self.namespace[name] = protocol.decode(data)

    def reach(self, name):
        """What the student's `name` reaches (autograder.reach) after the cells run so far; a
        cell that raised may have stopped before its later bindings."""
        cells = tuple(
            (i, source, bool(self.cell_results[i]["error"]))
            for i, source in self.ran
            if parsed_cell(source) is not None
        )
        return reached_after(cells, name)

    def function_source(self, fn):
        """How to send a function a test cell passes to the student: a torch or math name, or
        a lambda's source. Anything else is a mistake in the test cell, reported as such."""
        name = getattr(fn, "__name__", "")
        for module in (torch, math):
            if getattr(module, name, None) is fn:
                return f"{module.__name__}.{name}"
        if name == "<lambda>" and not fn.__closure__:
            source = self.lambda_source(fn.__code__)
            if source:
                return source
        raise TypeError(
            f"a test cell passed {name or fn!r} to a student's function: only torch or math "
            "functions, and lambdas that use nothing but their arguments, torch and math, can be "
            "sent to the worker"
        )

    def lambda_source(self, code):
        source = self.test_sources.get(code.co_filename)
        if source is None:
            return None
        lambdas = [
            node
            for node in ast.walk(parse(source))
            if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno
        ]
        return ast.get_source_segment(source, lambdas[0]) if len(lambdas) == 1 else None


@functools.lru_cache(maxsize=1024)
def parsed_cell(source):
    """A student cell read as the worker runs it (IPython's syntax turned into Python), for the
    method rules; None for a cell that is not Python, or too large to parse (it defines
    nothing). Cached: many students' notebooks hold the same cells."""
    try:
        if len(source) > MAX_PARSED_CELL_CHARS:
            raise ValueError("too large to parse")
        return parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


@functools.lru_cache(maxsize=1024)
def reached_after(cells, name):
    """reach.reach after the cells (index, source, whether it raised), cached: a test cell
    often asks twice, and many students' notebooks hold the same cells."""
    found = [reach.Cell(f"cell {i + 1}", parsed_cell(s), raised) for i, s, raised in cells]
    return reach.reach(found, name)


@functools.lru_cache(maxsize=256)
def test_parts(source, filename):
    """((hidden, code), ...): a test cell's code, compiled once per run (every student's
    notebook runs the same), cut into its visible parts and its hidden blocks, in order, each
    keeping its line numbers. A hidden block that is not code of its own (inside a loop of the
    visible part) makes the whole cell hidden."""
    parts, lines, hidden = [], [], False
    for number, line in enumerate(source.split("\n")):
        marker = "END HIDDEN TESTS" if hidden else "BEGIN HIDDEN TESTS"
        if marker in line:
            parts.append((hidden, "\n" * (number - len(lines)) + "\n".join(lines)))
            lines, hidden = [], not hidden
        else:
            lines.append(line)
    parts.append((hidden, "\n" * (len(source.split("\n")) - len(lines)) + "\n".join(lines)))
    try:
        return tuple((hidden, compile(text, filename, "exec")) for hidden, text in parts)
    except SyntaxError:
        if not any(hidden for hidden, _ in parts):
            raise
        return ((True, compile(source, filename, "exec")),)


def names_used(code):
    """Every name `code` and the functions defined in it refer to."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= names_used(constant)
    return names


class StudentFunction:
    """A function defined in the student's notebook; calling it runs it in the worker."""

    def __init__(self, notebook, name):
        self.notebook = notebook
        self.__name__ = name

    def reach(self):
        return self.notebook.reach(self.__name__)

    def __call__(self, *arguments):
        call = Call(self.__name__, arguments)
        self.notebook.last_called = self.__name__
        message = {
            "op": "call",
            "name": self.__name__,
            "arguments": protocol.encode(list(arguments), functions=self.notebook.function_source),
        }
        try:
            answer = self.notebook.request(message, f"in {call}")
        except WorkerLost as lost:
            raise CheckFailed(
                f"{call} stopped the notebook's Python process: {lost}.",
                hidden="stopped the notebook's Python process on other inputs (an endless loop, "
                "a crash, or the memory limit).",
            ) from None
        try:
            mirror_arguments(arguments, answer.get("arguments", []))
            if "error" in answer:
                raise remote_error(answer["error"])
            return protocol.decode(answer.get("result"), arguments=list(arguments))
        except protocol.BadMessage as error:
            raise CheckFailed(
                f"{call} returned something unreadable: {error}.",
                hidden="returned something unreadable on other inputs.",
            ) from None


def remote_error(error):
    """The exception the student's function raised, re-created by type name and message."""
    name, message = (str(part)[:2000] for part in (error + ["", ""])[:2])
    if name == "NotImplementedError":
        return NotImplementedError(message)
    return type(name if name.isidentifier() else "Error", (Exception,), {})(message)


def mirror_arguments(arguments, reports):
    """Apply to the grader's tensors what the student's function did to their copies."""
    for path, facts in reports:
        original = protocol.argument_at(list(arguments), path)
        if not isinstance(original, torch.Tensor):
            continue
        after = protocol.decode_tensor(facts)
        with torch.no_grad():
            if after.shape == original.shape:
                original.copy_(after.as_subclass(torch.Tensor).to(original.dtype))
        if isinstance(original, protocol.StudentTensor):
            original.facts = after.facts
            continue
        if original.is_leaf and original.is_floating_point():
            original.requires_grad_(after.facts["requires_grad"])
            grad = after.facts["grad"]
            fits = grad is not None and grad.shape == original.shape
            original.grad = grad.as_subclass(torch.Tensor).to(original.dtype) if fits else None
