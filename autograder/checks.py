"""The checks that test cells call: a student's answer against torch autograd.

Every check either returns quietly or raises CheckFailed (an AssertionError, so nbgrader
counts the test cell as failed) with a message that says what is wrong without printing
the expected value.

Tolerance: an answer passes when |answer - reference| <= ATOL + RTOL * |reference|
element-wise, the reference computed by autograd in float64. float32 answers pass
(their rounding error is about 1e-7 relative); a wrong formula is almost always off by
more than 1e-2.
"""

import ast
import builtins
import contextlib
import contextvars
import functools
import hashlib
import inspect
import math
import textwrap
import threading

import torch
import torch.autograd.functional
from torch.overrides import TorchFunctionMode

from autograder import reach
from autograder.misconceptions import Case, diagnose, diagnose_value

RTOL = 1e-4
ATOL = 1e-5

# Library functions that compute the same thing under other names: forbidding one forbids all.
EQUIVALENTS = [
    {"binary_cross_entropy_with_logits", "BCEWithLogitsLoss"},
    {"binary_cross_entropy", "BCELoss"},
    {"mse_loss", "MSELoss"},
    {"l1_loss", "L1Loss"},
    {"cross_entropy", "CrossEntropyLoss"},
    {"nll_loss", "NLLLoss"},
    {"softplus", "Softplus"},
    {"sigmoid", "Sigmoid", "expit"},
    {"logsigmoid", "LogSigmoid"},
    {"jacobian", "jacrev", "jacfwd"},
]
# Where a library tool may live, to tell it from a notebook function of the same name.
LIBRARIES = (
    *(torch, torch.Tensor, torch.nn, torch.nn.functional, torch.autograd),
    *(torch.autograd.functional, torch.func),
)

# While the grader runs a student's test cells: the key their hidden inputs are drawn with
# (autograder.secret). Unset in a student's own kernel, where the seeds alone decide.
STUDENT_KEY = contextvars.ContextVar("student_key", default=None)


class CheckFailed(AssertionError):
    """A student's answer did not pass a check; the message says why.

    `diagnosis` is the key of the misconception the answer matched, if any. `hidden` is what
    a hidden test may say instead, completing "<the student's function> ...": the kind of
    mistake, never an input, an expected value, test code or the text of an exception.
    """

    def __init__(self, message, diagnosis=None, hidden=None):
        super().__init__(message)
        self.diagnosis = diagnosis
        self.hidden = hidden


def random_inputs(count, *, seed, low=-2.0, high=2.0, size=None):
    """`count` random inputs in [low, high): floats, or lists of `size` floats.

    Seeded, so a grading run is repeatable. When the grader runs the test, the seed is mixed
    with the student's key (STUDENT_KEY): every student gets inputs of their own, the same in
    every run, that no one can work out without the course secret.
    """
    key = STUDENT_KEY.get()
    if key is not None:
        digest = hashlib.sha256(key + b"\0" + str(seed).encode()).digest()
        seed = int.from_bytes(digest[:8], "big") >> 1
    generator = torch.Generator().manual_seed(seed)
    shape = (count,) if size is None else (count, size)
    values = low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)
    return values.tolist()


def check_value(name, answer, expected, *, mistakes=(), rtol=RTOL, atol=ATOL):
    """`answer` equals `expected` within tolerance (for values the notebook shows anyway).

    A wrong answer that one of the exercise's `mistakes` (misconceptions.WrongValue) leads to
    is named in the message.
    """
    expected = torch.as_tensor(expected, dtype=torch.float64)
    problem = mismatch(answer, expected, rtol, atol)
    if problem:
        text, kind = problem
        hidden = f"{kind or 'gives a wrong value'} on other inputs."
        found = diagnose_value(answer, expected, mistakes)
        if found is None:
            raise CheckFailed(f"{name} {text}", hidden=hidden)
        advice = f"{found.diagnosis} {found.hint}"
        said = NO_GRADIENT if answer is None else text  # the diagnosis says why, not a guess
        raise CheckFailed(f"{name} {said} {advice}", found.key, f"{hidden} {advice}")


def check_gradient(student_fn, function, inputs, *, wrt=(0,), mistakes=(), rtol=RTOL, atol=ATOL):
    """`student_fn(*args)` returns the gradient of `function(*args)` for every case in `inputs`.

    A case is a number, a list of numbers, or a tuple of those (one per argument). `wrt`
    names the arguments the gradient is taken with respect to; with more than one, the
    student returns a tuple in the same order. A wrong answer that matches a known
    misconception on every case (the exercise's `mistakes`, then the catalogue in
    autograder.misconceptions) is named in the message.
    """
    name = student_fn.__name__
    tried, first_problem, first_kind = [], None, None
    for case in inputs:
        args = case if isinstance(case, tuple) else (case,)
        call = Call(name, args)
        # before the call: the student's function must not change what it is checked against
        expected, _ = reference_gradients(function, args, wrt, intermediates=False)
        answer = call_student(student_fn, args, call)
        answers = split_answer(answer, len(expected), call)
        for index, (one_answer, one_expected) in enumerate(zip(answers, expected, strict=True)):
            problem = mismatch(one_answer, one_expected, rtol, atol)
            if problem and first_problem is None:
                part = f"{call}, part {index + 1} of {len(expected)}," if len(wrt) > 1 else call
                first_problem, first_kind = f"{part} {problem[0]}", problem[1]
        tried.append((args, answers))
    if first_problem:
        hidden = f"{first_kind or 'gives a wrong gradient'} on other inputs."
        found = diagnose(
            [case_of(function, args, wrt, answers, mistakes) for args, answers in tried], mistakes
        )
        if found is None:
            raise CheckFailed(first_problem, hidden=hidden)
        advice = f"{found.diagnosis} {found.hint}"
        raise CheckFailed(f"{first_problem} {advice}", found.key, f"{hidden} {advice}")


def case_of(function, args, wrt, answers, mistakes):
    """What the diagnosis needs of one case: the answers, and the wrong answers of every
    misconception of `function` there (computed only once an answer is known to be wrong)."""
    expected, partial = reference_gradients(function, args, wrt)
    mistaken = {m.key: reference_gradients(m.function, args, wrt)[0] for m in mistakes}
    sizes = [e.numel() for e in expected]
    return Case([as_float64(a) for a in answers], list(expected), sizes, partial, mistaken)


def check_no_autograd(student_fn):
    """A by-hand gradient is computed with formulas, not with autograd."""
    found = reached(student_fn, "must work the gradient out by hand")
    if found.autograd:
        raise CheckFailed(
            f"{student_fn.__name__} must work the gradient out by hand, but it uses autograd "
            f"({', '.join(found.autograd)}). Write the derivative with the chain rule instead."
        )


def check_uses_autograd(student_fn):
    """An autograd answer really calls backward() (or torch.autograd.grad), in code that runs."""
    if not reached(student_fn, "must let autograd find the gradient").differentiates():
        raise CheckFailed(
            f"{student_fn.__name__} must let autograd find the gradient: build the expression "
            "from a tensor with requires_grad=True and call .backward() on it, in code that runs "
            "(not under `if False:` or after `return`)."
        )


def check_calls(student_fn, name, advice):
    """`student_fn` (or notebook code it reaches) calls `name`, in code that runs; `advice`
    says why it should. Requiring no_grad also forbids `.data`, which goes around it."""
    found = reached(student_fn, f"should call {name}")
    if name == "no_grad" and found.data:
        raise CheckFailed(
            f"{student_fn.__name__} uses {found.data[0]}, which changes a tensor behind "
            "autograd's back and skips its checks. Work on the tensor itself inside "
            "`with torch.no_grad():`."
        )
    if not calls(found, name):
        raise CheckFailed(f"{student_fn.__name__} should call {name}: {advice}")


def check_not_calls(student_fn, name, advice):
    """Neither `student_fn` nor notebook code it reaches uses `name` or an equivalent of it
    (EQUIVALENTS); `advice` says why."""
    found = reached(student_fn, f"should not use {name}")
    forbidden = {name}.union(*(group for group in EQUIVALENTS if name in group))
    for used, where in found.uses.items():
        last = used.rsplit(".", 1)[-1]
        if last == name:
            raise CheckFailed(f"{student_fn.__name__} should not use {name}: {advice}")
        if last in forbidden:
            raise CheckFailed(
                f"{student_fn.__name__} should not use {name}, nor {used} {where}, which "
                f"computes the same: {advice}"
            )


def check_in_loop(student_fn, name, advice):
    """`student_fn` calls `name` inside a for or while loop, in code that runs (a notebook
    function called in the loop counts); `advice` says why it should."""
    if not calls(reached(student_fn, f"should call {name} in a loop"), name, in_loop=True):
        raise CheckFailed(f"{student_fn.__name__} should call {name} in a loop: {advice}")


def calls(found, name, in_loop=False):
    """Whether code that runs calls `name`: a library tool by its path or as a method (a
    notebook function of the same name does not count), else the notebook's function."""
    library = any(hasattr(place, name) for place in LIBRARIES)
    return any(
        name in (call.tools if library else call.functions) and (call.in_loop or not in_loop)
        for call in found.calls
    )


def check_graph(name, tensor):
    """`tensor` was built by tracked operations, so it has a grad_fn to backpropagate through."""
    if not isinstance(tensor, torch.Tensor):
        raise CheckFailed(
            f"{name} should be a tensor, but it is a {type(tensor).__name__}.",
            hidden=f"returned {kind_of(tensor)} where a tensor was expected on other inputs.",
        )
    if tensor.grad_fn is None:
        raise CheckFailed(
            f"{name} has no grad_fn, so autograd recorded no graph for it. Build it from a "
            "tensor created with requires_grad=True, outside torch.no_grad().",
            hidden="returned a tensor with no autograd graph on other inputs.",
        )


def check_true(condition, message):
    """A plain yes/no fact about the student's work; `message` teaches when it is false."""
    if not condition:
        raise CheckFailed(message, hidden="gives a wrong answer on other inputs.")


def run_student(student_fn, *args, mistakes=()):
    """`student_fn(*args)`, with a failure inside it reported as a failed check. An exception
    that one of the exercise's `mistakes` (misconceptions.RaisedError) leads to is named."""
    return call_student(student_fn, args, Call(student_fn.__name__, args), mistakes)


class Call:
    """`name(arguments)` as messages show it, written out only when a message needs it."""

    def __init__(self, name, arguments):
        self.name, self.arguments = name, arguments

    def __str__(self):
        return f"{self.name}({', '.join(describe_input(a) for a in self.arguments)})"


def call_student(student_fn, args, call, mistakes=()):
    """Run the student's function on copies of the arguments' lists (tensors are passed as
    they are: some exercises change them in place), explaining any failure: by the first of
    `mistakes` whose words (`says`) the exception's message holds, if any."""
    try:
        return student_fn(*copied_lists(args))
    except CheckFailed:
        raise
    except NotImplementedError:
        raise CheckFailed(not_written(student_fn), hidden=NOT_WRITTEN) from None
    except Exception as error:
        name = type(error).__name__
        hidden = f"raised {exception_name(name)} on other inputs."
        found = next((m for m in mistakes if m.says in str(error)), None)
        if found is None:
            raise CheckFailed(f"{call} raised {name}: {error}", hidden=hidden) from None
        advice = f"{found.diagnosis} {found.hint}"
        raise CheckFailed(
            f"{call} raised {name}: {error} {advice}", found.key, f"{hidden} {advice}"
        ) from None


def copied_lists(value):
    if isinstance(value, (list, tuple)):
        return type(value)(copied_lists(item) for item in value)
    return value


def exception_name(name):
    """`name` if it is one of Python's own exceptions; a student may name a class of theirs
    after anything, a hidden input included."""
    builtin = getattr(builtins, name, None)
    is_exception = isinstance(builtin, type) and issubclass(builtin, BaseException)
    return name if is_exception else "an exception"


def kind_of(value):
    """What kind of value `value` is, in words that cannot carry a hidden input."""
    if hasattr(value, "type_name"):  # protocol.Opaque: the type's name is the student's
        return "an object of a class of its own"
    return f"a {type(value).__name__}"


NOT_WRITTEN = "is not written yet: replace `raise NotImplementedError()` with your code."


def not_written(student_fn):
    return f"{student_fn.__name__} {NOT_WRITTEN}"


def reached(student_fn, rule):
    """What `student_fn` reaches (autograder.reach), for a check of `rule` ("must work the
    gradient out by hand"): failing while it is the exercise's stub, and when it reaches code
    the autograder cannot see into, since then no rule can be judged."""
    name = student_fn.__name__
    found = student_fn.reach() if hasattr(student_fn, "reach") else reach_here(student_fn)
    if found is None:
        raise CheckFailed(f"Cannot read the source of {name}: define it with `def` in a code cell.")
    if found.stub:
        raise CheckFailed(not_written(student_fn), hidden=NOT_WRITTEN)
    if found.dynamic:
        raise CheckFailed(
            f"{name} {rule}, but the autograder cannot see what it runs: "
            f"{'; '.join(found.dynamic[:3])}. Call functions and tools by their names, without "
            "exec, eval, computed names or modules other than torch and math."
        )
    return found


def reference_gradients(function, args, wrt, intermediates=True):
    """The gradients of `function(*args)` with respect to args[i] for i in wrt, in float64,
    and, with `intermediates`, per such argument the output's gradients with respect to the
    intermediate results of that argument's shape (what an answer missing a factor of the
    chain rule looks like)."""
    tensors = [
        torch.tensor(a, dtype=torch.float64, requires_grad=i in wrt) for i, a in enumerate(args)
    ]
    recorder = Intermediates() if intermediates else contextlib.nullcontext()
    with torch.enable_grad(), recorder:
        output = function(*tensors)
    output.backward()
    expected = [grad_or_zeros(tensors[i]) for i in wrt]
    if not intermediates:
        return expected, []
    partial = [
        [
            t.grad
            for t in recorder.tensors
            if t is not output and t.grad is not None and t.shape == e.shape
        ]
        for e in expected
    ]
    return expected, partial


class Intermediates(TorchFunctionMode):
    """Records every tensor a function computes on the way, keeping its gradient."""

    def __init__(self):
        super().__init__()
        self.tensors = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if isinstance(result, torch.Tensor) and result.grad_fn is not None:
            result.retain_grad()
            self.tensors.append(result)
        return result


def grad_or_zeros(tensor):
    return tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)


def as_float64(answer):
    """The answer as a float64 tensor, or None when it is not a number or a tensor of numbers."""
    try:
        return torch.as_tensor(answer).detach().to(torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def split_answer(answer, count, call):
    """One gradient per differentiated argument: the answer itself, or a tuple of `count`."""
    if count == 1:
        return [answer]
    if not isinstance(answer, (tuple, list)) or len(answer) != count:
        raise CheckFailed(
            f"{call} should return a tuple of {count} gradients.",
            hidden=f"did not return a tuple of {count} gradients on other inputs.",
        )
    return list(answer)


NO_GRADIENT = "is None: no gradient arrived."


def mismatch(answer, expected, rtol, atol):
    """Why `answer` is not `expected` within tolerance, or None when it is: (what a visible
    test says, what a hidden one may say: None when the numbers are merely wrong)."""
    if answer is None:
        return (
            f"{NO_GRADIENT} Did backward() run, and was the tensor a leaf created with "
            "requires_grad=True?",
            "returned None",
        )
    if isinstance(answer, bool) or not isinstance(answer, (int, float, torch.Tensor)):
        kind = getattr(answer, "type_name", type(answer).__name__)
        return (
            f"should be a number or a tensor, but it is a {kind}.",
            f"returned {kind_of(answer)} where a number or a tensor was expected",
        )
    if isinstance(answer, torch.Tensor) and not (
        answer.is_floating_point() or answer.dtype in (torch.int32, torch.int64)
    ):
        return (
            f"should hold real numbers, but its dtype is {answer.dtype}.",
            f"returned a tensor of {answer.dtype}",
        )
    actual = torch.as_tensor(answer).detach().to(torch.float64)
    if actual.shape != expected.shape:
        return (
            f"has shape {tuple(actual.shape)}, but it should have shape {tuple(expected.shape)}.",
            "returned the wrong shape",
        )
    if not torch.isfinite(actual).all():
        return "contains NaN or infinity.", "returned NaN or infinity"
    error = (actual - expected).abs()
    allowed = atol + rtol * expected.abs()
    if (error <= allowed).all():
        return None
    relative = (error / expected.abs().clamp_min(atol)).flatten()
    worst = int(relative.argmax())
    where = ""
    if actual.dim() == 1:
        where = f" at index {worst}"
    elif actual.dim() > 1:  # as the student would index it: [row, column]
        index = torch.unravel_index(torch.tensor(worst), actual.shape)
        where = f" at index {[int(i) for i in index]}"
    return (
        f"is off{where} by a relative error of {relative[worst]:.1e} (allowed: {rtol:.0e}).",
        None,
    )


def describe_input(value):
    if callable(value):
        return getattr(value, "__name__", "a function")
    if isinstance(value, list):
        return "[" + ", ".join(describe_input(v) for v in value) + "]"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return repr(value)


PARSING = threading.Lock()


@functools.lru_cache(maxsize=1024)
def parse(source):
    """ast.parse, cached (every student's copy of a function is often the same text), one
    thread at a time: CPython 3.11's parser can fail when threads use it at
    once ("AST constructor recursion depth mismatch")."""
    with PARSING:
        return ast.parse(source)


def reach_here(student_fn):
    """What a function defined in this process reaches. In a kernel running the notebook
    (`autograd-course check`) that is read from the cells it ran so far, as when grading;
    where they are not in its history (nbval, a test module), from the sources of the
    module's functions it uses."""
    history = getattr(student_fn, "__globals__", {}).get("_ih")
    cells = []
    for number, source in enumerate(history if isinstance(history, list) else []):
        try:
            cells.append(reach.Cell(f"In [{number}]", parse(source), False))
        except (SyntaxError, ValueError):
            continue
    found = reach.reach(cells, student_fn.__name__)
    if found is not None:
        return found
    cells, modules = [], set()
    for fn in functions_reached(student_fn):
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            raise CheckFailed(
                f"Cannot read the source of {fn.__name__}: define it with `def` in a code cell."
            ) from None
        cells.append(reach.Cell(fn.__name__, parse(source), False))
        modules |= {
            f"import {value.__name__} as {name}"
            for name in fn.__code__.co_names
            if inspect.ismodule(value := fn.__globals__.get(name))
        }
    imports = reach.Cell("imports", parse("\n".join(sorted(modules))), False)
    return reach.reach([imports, *cells], student_fn.__name__)


def functions_reached(student_fn):
    """`student_fn` and every function of the same module it calls, directly or not."""
    seen, todo = [], [student_fn]
    while todo:
        fn = todo.pop()
        if fn in seen:
            continue
        seen.append(fn)
        for name in fn.__code__.co_names:
            value = fn.__globals__.get(name)
            if inspect.isfunction(value) and value.__module__ == student_fn.__module__:
                todo.append(value)
    return seen
