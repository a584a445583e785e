"""The messages between the grader and a worker: length-prefixed JSON, and values encoded as data.

Everything a worker sends is untrusted: it is read with a size limit, parsed as JSON (never
unpickled) and decoded into plain Python values and tensors after its types, shapes and sizes
are checked. A message that breaks a rule raises BadMessage.
"""

import _json
import _socket
import base64
import builtins
import json
import math
import struct
import time

import torch

# A worker runs this module's code in the process where student code runs, so what it uses is
# bound here, when the module is imported (before any student code): a student cell that
# patches builtins, json, struct, socket or torch.Tensor changes nothing below, and the worker
# removes this module from sys.modules, so `import autograder.protocol` gives a student a copy
# the worker does not use (worker.Worker).
__builtins__ = dict(vars(builtins))  # this module's own builtins: isinstance, type, str...
pack = struct.pack
isfinite = math.isfinite
send_all = _socket.socket.sendall  # of an immutable type, unlike socket.socket's methods

MAX_MESSAGE_BYTES = 64 * 2**20
MAX_ELEMENTS = 2**20  # elements of one tensor, items of one list
MAX_TEXT = 10_000  # characters of one string
MAX_DEPTH = 20
MAX_FIGURES = 4  # figures of one student cell, as PNG
MAX_FIGURE_BYTES = 2**20  # of one figure's PNG
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
        torch.bool,
    )
}


class BadMessage(Exception):
    """A worker sent something that is not a well-formed message."""


def send(sock, message, deadline=None):
    """Send `message`; with a `deadline` (time.monotonic()), TimeoutError once it passes."""
    data = to_json(message).encode()
    sock.settimeout(seconds_left(deadline))
    send_all(sock, pack("!I", len(data)) + data)


def to_json(message):
    """json.dumps(message), by the json module's C encoder bound at import."""
    return "".join(JSON_ENCODER(message, 0))


def not_json(value):
    raise TypeError(f"a {type(value).__name__} cannot be sent")


JSON_ENCODER = _json.make_encoder(
    None, not_json, _json.encode_basestring_ascii, None, ":", ",", False, False, True
)


def receive(sock, deadline=None):
    """The next message, or None when the other side has closed the connection. With a
    `deadline`, TimeoutError once it passes: it covers the whole message, so a header that
    promises bytes that never come cannot hold the reader."""
    header = read_exactly(sock, 4, deadline)
    if header is None:
        return None
    (length,) = struct.unpack("!I", header)
    if length > MAX_MESSAGE_BYTES:
        raise BadMessage(f"a message of {length} bytes is over the limit")
    data = read_exactly(sock, length, deadline)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise BadMessage(f"a message is not JSON: {error}") from None


def read_exactly(sock, count, deadline=None):
    chunks = []
    while count:
        sock.settimeout(seconds_left(deadline))
        chunk = sock.recv(min(count, 2**20))
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def seconds_left(deadline):
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline has passed")
    return left


# The shapes of the worker's answers, checked before anything in them is used.


def checked_answer(op, answer):
    """`answer`, if it has the shape of the worker's answer to `op`; BadMessage otherwise."""
    if not isinstance(answer, dict):
        raise BadMessage(f"the answer to {op!r} is not an object")
    shapes = {
        "start": ({"ready", "missing"}, set()),
        "run": ({"error", "output", "value", "figures"}, set()),
        "names": ({"functions", "values"}, set()),
        "call": ({"arguments"}, {"result", "error"}),
        "fork": ({"forked"}, set()),
        "end": ({"copy_ended"}, set()),
    }
    required, one_of = shapes[op]
    keys = set(answer)
    if (
        not required <= keys
        or len(keys - required) != (1 if one_of else 0)
        or not (keys - required <= one_of)
    ):
        raise BadMessage(f"the answer to {op!r} has the keys {sorted(keys)}")
    rules = {
        "ready": lambda v: v is True,
        "missing": lambda v: is_list_of(v, str),
        "output": lambda v: isinstance(v, str),
        "value": lambda v: v is None or (isinstance(v, str) and len(v) <= MAX_TEXT),
        "figures": lambda v: is_list_of(v, str) and len(v) <= MAX_FIGURES and all(map(is_png, v)),
        "error": lambda v: (v is None and op == "run") or is_error(v),
        "functions": lambda v: is_list_of(v, str),
        "values": lambda v: isinstance(v, dict),
        "arguments": lambda v: (
            isinstance(v, list)
            and all(isinstance(a, list) and len(a) == 2 and isinstance(a[1], dict) for a in v)
        ),
        "result": lambda v: True,  # decoded, with its own checks, where it is used
        "forked": lambda v: v is True,
        "copy_ended": lambda v: v is True,
    }
    for key, value in answer.items():
        if not rules[key](value):
            raise BadMessage(f"the answer to {op!r} has a malformed {key!r}")
    return answer


def is_list_of(value, kind):
    return (
        isinstance(value, list)
        and len(value) <= MAX_ELEMENTS
        and all(isinstance(item, kind) for item in value)
    )


def is_png(text):
    """Whether `text` is base64 (and nothing else) of a PNG of at most MAX_FIGURE_BYTES."""
    if len(text) > 4 * -(-MAX_FIGURE_BYTES // 3):
        return False
    try:
        return base64.b64decode(text, validate=True).startswith(PNG_SIGNATURE)
    except ValueError:  # not base64, or not ASCII
        return False


def is_error(value):
    """[exception type name, message, where] as the worker describes an exception."""
    return is_list_of(value, str) and len(value) == 3


# Values. A value crosses as JSON: numbers, strings, None and booleans as themselves, and
# containers and tensors as one-key objects. A tensor carries the autograd facts test cells ask
# about (requires_grad, is_leaf, the grad_fn's name, .grad), since its graph cannot cross.


def encode(value, known=None, functions=None, depth=0):
    """`value` as JSON data.

    `known` maps id() of the call's arguments to their paths, so that returning an argument
    itself crosses as a reference to it; `functions` turns a callable argument into source text.
    """
    if known and id(value) in known:
        return {"argument": known[id(value)]}
    if depth > MAX_DEPTH:
        return {"object": "too deeply nested value"}
    if value is None or isinstance(value, (bool, str)):
        return value if not isinstance(value, str) else value[:MAX_TEXT]
    if isinstance(value, int):
        return value if abs(value) < 2**63 else float(value)
    if isinstance(value, float):
        return value if isfinite(value) else {"float": repr(value)}
    if isinstance(value, (list, tuple)):
        items = [encode(item, known, functions, depth + 1) for item in value[:MAX_ELEMENTS]]
        return {"list" if isinstance(value, list) else "tuple": items}
    if isinstance(value, TENSOR):
        return {"tensor": tensor_facts(value)}
    if functions is not None and callable(value):
        return {"function": functions(value)}
    return {"object": type(value).__name__[:100]}


def paths(value, path=()):
    """(path, item) for `value` and every item of its nested lists and tuples."""
    yield list(path), value
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value[:MAX_ELEMENTS]):
            yield from paths(item, (*path, index))


# Tensors are read through torch._C.TensorBase, an immutable type, with __torch_function__
# off: not through torch.Tensor's attributes, which a student cell can replace, nor through a
# tensor subclass of the student's, which could answer for itself.
TENSOR = torch._C.TensorBase
NO_TORCH_FUNCTION = torch._C.DisableTorchFunction
DETACH, CPU, NUMEL, FLATTEN, DOUBLE, TOLIST, GET_ITEM = (
    TENSOR.detach,
    TENSOR.cpu,
    TENSOR.numel,
    TENSOR.flatten,
    TENSOR.double,
    TENSOR.tolist,
    TENSOR.__getitem__,
)
DTYPE, SHAPE, REQUIRES_GRAD, IS_LEAF, GRAD_FN, GRAD = (
    getattr(TENSOR, name).__get__
    for name in ("dtype", "shape", "requires_grad", "is_leaf", "grad_fn", "grad")
)
BOOL = torch.bool


def tensor_facts(tensor, with_grad=True):
    """What the grader learns of a tensor: its values and the autograd facts test cells ask
    about."""
    with NO_TORCH_FUNCTION():
        data = CPU(DETACH(tensor))
        if NUMEL(data) > MAX_ELEMENTS:
            data = GET_ITEM(FLATTEN(data), slice(0, 0))  # too big: the grader sees it empty
        grad = GRAD(tensor) if with_grad and IS_LEAF(tensor) else None
        grad_fn = GRAD_FN(tensor)
        flat = FLATTEN(data)
        dtype = DTYPE(data)
        return {
            "dtype": str(dtype).removeprefix("torch."),
            "shape": list(SHAPE(data)),
            "values": TOLIST(flat)
            if dtype == BOOL
            else [v if isfinite(v) else repr(v) for v in TOLIST(DOUBLE(flat))],
            "requires_grad": REQUIRES_GRAD(tensor),
            "is_leaf": IS_LEAF(tensor),
            "grad_fn": type(grad_fn).__name__ if grad_fn is not None else None,
            "grad": tensor_facts(grad, with_grad=False) if grad is not None else None,
        }


class Opaque:
    """A value the worker could not send as data: only its type's name crossed."""

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<a {self.type_name}>"


class Node:
    """The name of a student tensor's grad_fn: its graph stays in the worker."""

    def __init__(self, name):
        self.name_ = name

    def name(self):
        return self.name_

    def __repr__(self):
        return f"<{self.name_}>"


def reported(fact):
    """A tensor property that answers with what the worker reported."""
    return property(lambda tensor: tensor.facts[fact])


class StudentTensor(torch.Tensor):
    """A tensor the student's code produced, with the autograd facts the worker reported."""

    # torch operations on it give plain tensors
    __torch_function__ = torch._C._disabled_torch_function_impl
    requires_grad = reported("requires_grad")
    is_leaf = reported("is_leaf")
    grad_fn = reported("grad_fn")
    grad = reported("grad")


def decode(data, arguments=(), functions=None, depth=0):
    """The value `data` describes, checked on the way; BadMessage if it breaks a rule.

    `arguments` are the call's arguments, for references to them; `functions` rebuilds a
    function from its source (only a worker accepts functions, and only from the grader).
    """
    if depth > MAX_DEPTH:
        raise BadMessage("a value is nested too deeply")
    if data is None or isinstance(data, (bool, int, float)):
        return data
    if isinstance(data, str):
        return data[:MAX_TEXT]
    if isinstance(data, list):
        raise BadMessage("a bare list (lists are sent as {'list': [...]})")
    if not isinstance(data, dict) or len(data) != 1:
        raise BadMessage("a value is not a one-key object")
    ((kind, body),) = data.items()
    if kind in ("list", "tuple"):
        if not isinstance(body, list) or len(body) > MAX_ELEMENTS:
            raise BadMessage(f"a {kind} is malformed or too long")
        items = [decode(item, arguments, functions, depth + 1) for item in body]
        return items if kind == "list" else tuple(items)
    if kind == "float":
        if body not in ("nan", "inf", "-inf"):
            raise BadMessage("a float is malformed")
        return float(body)
    if kind == "tensor":
        return decode_tensor(body)
    if kind == "argument":
        return argument_at(arguments, body)
    if kind == "function" and functions is not None:
        return functions(body)
    if kind == "object":
        return Opaque(str(body)[:100])
    raise BadMessage(f"unknown kind of value {kind!r}")


def decode_tensor(facts, with_grad=True):
    """A StudentTensor from a tensor's facts."""
    if not isinstance(facts, dict):
        raise BadMessage("a tensor is malformed")
    dtype = DTYPES.get(facts.get("dtype"))
    shape, values = facts.get("shape"), facts.get("values")
    if dtype is None:
        raise BadMessage("a tensor has an unknown dtype")
    if not (isinstance(shape, list) and len(shape) <= 8 and all(is_count(n) for n in shape)):
        raise BadMessage("a tensor's shape is malformed")
    if not isinstance(values, list) or len(values) != math.prod(shape):
        raise BadMessage("a tensor's values do not fill its shape")
    try:
        numbers = [float(v) if isinstance(v, str) else v for v in values]
        data = torch.tensor(numbers, dtype=torch.float64).reshape(shape).to(dtype)
    except (TypeError, ValueError, RuntimeError):
        raise BadMessage("a tensor's values are not numbers") from None
    grad_fn, grad = facts.get("grad_fn"), facts.get("grad")
    if grad_fn is not None and not isinstance(grad_fn, str):
        raise BadMessage("a tensor's grad_fn is malformed")
    tensor = torch.Tensor._make_subclass(StudentTensor, data)
    tensor.facts = {
        "requires_grad": facts.get("requires_grad") is True,
        "is_leaf": facts.get("is_leaf") is not False,
        "grad_fn": Node(grad_fn[:100]) if grad_fn else None,
        "grad": decode_tensor(grad, with_grad=False) if with_grad and grad is not None else None,
    }
    return tensor


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ELEMENTS


def argument_at(arguments, path):
    """The argument (or the item of an argument) at `path`: the student returned it unchanged."""
    if not isinstance(path, list) or not path or not all(is_count(i) for i in path):
        raise BadMessage("an argument reference is malformed")
    value = arguments
    for index in path:
        if not isinstance(value, (list, tuple)) or index >= len(value):
            raise BadMessage("an argument reference points nowhere")
        value = value[index]
    return value
