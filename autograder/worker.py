"""The untrusted side: a zygote that has imported torch, and the workers it forks.

A worker runs one notebook's student cells and calls the student's functions when the grader
asks, answering with data (autograder.protocol). It decides nothing: every verdict is made by
the grader, in a process student code never ran in.

The zygote is forked from the grader before the grader reads any test, reference or
submission, so a worker forked from it cannot find them in its memory; and it never runs a
torch operation on more than one thread, because a child forked from a process that did can
hang in its own first parallel operation.
"""

import ast
import base64
import builtins
import functools
import gc
import io
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import traceback

import matplotlib

# Set for this process, not through the environment: a process that imports this module (a
# test) must not pass a headless backend on to the kernels it starts.
matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402  (imported once here, not per submission)
import torch  # noqa: E402
import torch.autograd.functional  # noqa: E402, F401
from IPython.core.inputtransformer2 import TransformerManager  # noqa: E402

from autograder import cgroups, protocol, sandbox  # noqa: E402

MAX_OUTPUT_CHARS = 10_000
# A student's figure is drawn at this resolution, or lower if it would have more pixels.
FIGURE_DPI = 72
MAX_FIGURE_PIXELS = 4_000_000


def skip_layout():
    """A worker's figures are seen only as small PNGs in feedback, so the layout pass that
    measures all their text is skipped: it is often the slowest thing a notebook does, and no
    verdict depends on it. Done in the zygote and the workers only: a process that imports
    this module (a test, the class report) keeps matplotlib as it is."""
    matplotlib.figure.Figure.tight_layout = lambda figure, *args, **kwargs: None


class Zygote:
    """The clean parent of all workers; lives in its own process until the grader exits."""

    def __init__(self, limits, warm=True):
        """`warm`: pay torch's and matplotlib's first-use costs, and freeze what is shared,
        before forking any worker; worth it over a class's notebooks, not for one."""
        self.control, theirs = socket.socketpair()
        self.run = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            self.control.close()
            zygote_loop(theirs, limits, warm)
        theirs.close()

    def spawn(self, uid, cgroup_files=()):
        """A new worker running as `uid`, which first writes its pid into `cgroup_files` (its
        notebook's cgroup.procs): (a pidfd of the worker, a socket to talk to it)."""
        ours, theirs = socket.socketpair()
        request = json.dumps({"uid": uid, "cgroup_files": [str(f) for f in cgroup_files]})
        socket.send_fds(self.control, [request.encode()], [theirs.fileno()])
        theirs.close()
        _, fds, _, _ = socket.recv_fds(self.control, 16, 1)
        if not fds:
            ours.close()
            raise OSError("the zygote could not fork a worker")
        return fds[0], ours

    def uid(self, slot):
        return sandbox.worker_uid(self.run, slot)

    def stop(self):
        self.control.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class Spawner:
    """Where there is no pidfd to hold a forked worker by (macOS), each worker is a new Python
    process instead: it imports torch itself, a second or two more per worker, and it is not
    confined. Fit for a student checking their own notebook, never for grading."""

    def __init__(self, limits):
        self.limits = limits

    def spawn(self, uid, cgroup_files=()):
        """A new worker: (its Popen, a socket to talk to it)."""
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-m", "autograder.worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        return process, ours

    def uid(self, slot):
        return os.getuid()

    def stop(self):
        pass


def spawned_main(sock_fd):
    """A worker started by Spawner: it serves on the socket `sock_fd`."""
    torch.set_num_threads(1)
    skip_layout()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sock = socket.socket(fileno=sock_fd)
    missing = ["workers are not confined (a new process each, with no limits but time)"]
    protocol.send(sock, {"ready": True, "missing": missing})
    Worker(sock).serve()


def zygote_loop(control, limits, warm):
    sandbox.die_with_parent()
    sandbox.scrub_environment()
    torch.set_num_threads(1)
    skip_layout()
    if warm:
        warm_up()
        # Everything the zygote holds now is shared, copy-on-write, with every worker. Keep
        # the garbage collector out of it: its passes would write to, and so copy, all of it.
        gc.collect()
        gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grader decides when the zygote stops
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 4096, 1)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        request = json.loads(message)
        try:
            pid, namespaces = sandbox.fork_with_own_pids()
        except OSError:
            os.close(fds[0])
            control.sendall(b"-")
            continue
        if pid == 0:
            try:  # whatever happens, this process never returns into the zygote's code
                control.close()
                worker_main(fds[0], request["uid"], limits, request["cgroup_files"], namespaces)
            finally:
                os._exit(0)
        os.close(fds[0])
        # A pidfd, not a pid: the grader can never signal another process that reused the pid.
        pidfd = os.pidfd_open(pid)
        socket.send_fds(control, [b"+"], [pidfd])
        os.close(pidfd)


def warm_up():
    """Pay once, here, what torch and matplotlib initialise on first use (the first backward()
    alone takes about 0.4 s), instead of in every worker."""
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).backward(torch.ones(3))
    (x.sin() ** 2).mean().backward()
    torch.autograd.functional.jacobian(lambda t: t.cumsum(0), x.detach())
    figure, axes = plt.subplots()
    axes.plot([1.0, 10.0], label="warm-up")
    axes.set_yscale("log")
    axes.set_title("$y = x^2$")
    axes.legend()
    figure.tight_layout()
    plt.close(figure)


def worker_main(sock_fd, uid, limits, cgroup_files, namespaces):
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    join = functools.partial(cgroups.join, cgroup_files)
    missing = sandbox.confine(uid, limits, sock_fd, join, namespaces)
    sock = socket.socket(fileno=sock_fd)
    protocol.send(sock, {"ready": True, "missing": missing})
    Worker(sock).serve()


class IPythonShim:
    """Enough of get_ipython() for the magics students leave in cells: they do nothing here."""

    def run_line_magic(self, *args, **kwargs):
        return None

    run_cell_magic = system = getoutput = run_line_magic


class BoundedText(io.TextIOBase):
    """A stdout that keeps the first MAX_OUTPUT_CHARS characters and drops the rest."""

    def __init__(self):
        self.parts, self.size = [], 0

    def write(self, text):
        if self.size < MAX_OUTPUT_CHARS:
            self.parts.append(str(text)[: MAX_OUTPUT_CHARS - self.size])
            self.size += len(self.parts[-1])
        return len(text)

    def getvalue(self):
        return "".join(self.parts)


class Worker:
    def __init__(self, sock):
        # What this worker answers with (autograder.protocol binds its tools on import) cannot
        # be imported by a student cell: an import gives a fresh copy, whose patching changes
        # nothing here.
        unimportable("autograder.protocol", "autograder.worker")
        self.sock = sock
        self.pid = os.getpid()
        self.is_copy = False  # a copy forked for hidden tests (fork)
        shim = IPythonShim()
        self.user = {"__name__": "__main__", "__builtins__": builtins, "get_ipython": lambda: shim}

    def serve(self):
        handlers = {"run": self.run_cell, "names": self.names, "call": self.call}
        handlers |= {"fork": self.fork, "end": self.end}
        while True:
            message = protocol.receive(self.sock)
            if message is None:
                return
            answer = handlers[message["op"]](message)
            if os.getpid() != self.pid:
                os._exit(0)  # a process the student's code forked must not answer the grader
            protocol.send(self.sock, answer)

    def fork(self, message):
        """Hand the grader over to a copy of this worker until it sends "end": hidden tests
        call the student's functions in the copy, so nothing the student's code keeps of their
        inputs reaches a later cell (and, through its outputs, the feedback page). This
        process waits, untouched, and answers "end" once the copy is gone."""
        copy = fork_when_allowed()
        if copy == 0:
            self.pid, self.is_copy = os.getpid(), True
            return {"forked": True}
        os.waitpid(copy, 0)
        return {"copy_ended": True}

    def end(self, message):
        if self.is_copy:
            os._exit(0)
        raise ValueError("'end' without a copy")

    def run_cell(self, message):
        """Run a student cell. With "outputs", also what Jupyter would show of it besides what
        it printed: the value of its last expression, as text, and its figures, as PNG."""
        figures = [] if message.get("outputs") else None

        def run():
            code = TransformerManager().transform_cell(message["source"])
            body, last = split_last_expression(code, f"<cell {message['index']}>")
            exec(body, self.user)
            value = None if last is None else eval(last, self.user)  # noqa: S307
            if figures is not None and value is not None:
                return repr(value)[:MAX_OUTPUT_CHARS]
            return None

        value, error, output = contained(run, figures)
        return {"error": error, "output": output, "value": value, "figures": figures or []}

    def names(self, message):
        """Which of the names a test cell uses the student defined: functions, and values."""
        wanted = [name for name in message["wanted"] if name in self.user]
        return {
            "functions": [name for name in wanted if callable(self.user[name])],
            "values": {
                name: protocol.encode(self.user[name])
                for name in wanted
                if not callable(self.user[name]) and type(self.user[name]).__name__ != "module"
            },
        }

    def call(self, message):
        arguments = protocol.decode(message["arguments"], functions=rebuild_function)
        arguments = rebuild_tensors(arguments)
        known = {id(item): path for path, item in protocol.paths(arguments) if path}
        result, error, _ = contained(
            lambda: protocol.encode(self.user[message["name"]](*arguments), known)
        )
        answer = {"error": error} if error else {"result": result}
        answer["arguments"] = [
            [path, protocol.tensor_facts(item)]
            for path, item in protocol.paths(arguments)
            if path and isinstance(item, protocol.TENSOR)
        ]
        return answer


def fork_when_allowed(patience=2.0):
    """os.fork(), tried again while the processes of this uid's last notebook, killed but not
    yet gone, still count against its process limit."""
    give_up = time.monotonic() + patience
    while True:
        try:
            return os.fork()
        except BlockingIOError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.01)


def unimportable(*names):
    """Take the modules `names` out of sys.modules and off their packages: the next import of
    one of them loads a new copy."""
    for name in names:
        sys.modules.pop(name, None)
        package, _, attribute = name.rpartition(".")
        if package in sys.modules:
            vars(sys.modules[package]).pop(attribute, None)


def contained(action, figures=None):
    """(result, error, output) of running `action()`, which runs student code: what it prints
    is kept (bounded), any exception is described (SystemExit too: student code cannot stop
    the worker), and its figures are closed, after being added to the list `figures` as
    base64 PNGs if one is given."""
    output = BoundedText()
    sys.stdout = sys.stderr = output
    try:
        return action(), None, output.getvalue()
    except BaseException as exception:  # noqa: BLE001
        return None, describe(exception), output.getvalue()
    finally:
        if figures is not None:
            figures += figure_pngs()
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        plt.close("all")


def split_last_expression(code, filename):
    """(the compiled cell without its last statement, the compiled last statement if it is an
    expression Jupyter would show the value of, else None): Jupyter shows it unless the cell
    ends with a semicolon."""
    tree = ast.parse(code, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
        last = compile(ast.Expression(tree.body.pop().value), filename, "eval")
    return compile(tree, filename, "exec"), last


def figure_pngs():
    """The open figures as base64 PNGs, as the grader accepts them (protocol.MAX_FIGURES, each
    at most protocol.MAX_FIGURE_BYTES); one that cannot be drawn or is too large is left out."""
    pngs = []
    for number in plt.get_fignums()[: protocol.MAX_FIGURES]:
        buffer = io.BytesIO()
        try:
            figure = plt.figure(number)
            width, height = figure.get_size_inches()
            dpi = min(FIGURE_DPI, math.sqrt(MAX_FIGURE_PIXELS / max(width * height, 1e-6)))
            figure.savefig(buffer, format="png", dpi=dpi)
        except BaseException:  # noqa: BLE001, S112 (student artists draw themselves)
            continue
        if 0 < buffer.tell() <= protocol.MAX_FIGURE_BYTES:
            pngs.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return pngs


def describe(exception):
    """[type name, message, "line N" of the student's cell where it was raised, or ""]."""
    frames = traceback.extract_tb(exception.__traceback__)
    lines = [f.lineno for f in frames if f.filename.startswith("<cell")]
    if isinstance(exception, SyntaxError) and str(exception.filename).startswith("<cell"):
        lines.append(exception.lineno)  # raised by compile(), in no frame of the cell
        message = exception.msg
    else:
        message = str(exception)
    where = f"line {lines[-1]}" if lines and lines[-1] else ""
    return [type(exception).__name__, message[:2000], where]


def rebuild_function(source):
    """A function the grader sent as source: a lambda, or a name in torch or math."""
    return eval(source, {"torch": torch, "math": math})  # noqa: S307 (the grader's own text)


def rebuild_tensors(value):
    """Real tensors, with their requires_grad and .grad, from the grader's StudentTensors."""
    if isinstance(value, list):
        return [rebuild_tensors(v) for v in value]
    if isinstance(value, tuple):
        return tuple(rebuild_tensors(v) for v in value)
    if isinstance(value, protocol.StudentTensor):
        tensor = value.as_subclass(torch.Tensor).clone()
        if value.facts["requires_grad"]:
            tensor.requires_grad_(True)
        if value.facts["grad"] is not None:
            tensor.grad = value.facts["grad"].as_subclass(torch.Tensor).clone()
        return tensor
    return value


if __name__ == "__main__":
    spawned_main(int(sys.argv[1]))
