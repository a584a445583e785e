"""What a student's function really reaches, for the method rules (work by hand, use autograd,
call or do not call a tool).

A rule is judged from source text, so it must read what runs, not one `def`: the name's final
binding in the cells run so far (a `def`, a lambda, an alias, an import), then every function,
lambda, class and import that reaches, across cells, with code that cannot run removed (under
`if False:`, in a loop over nothing, after `return`). Code whose effect the text does not show
(exec, eval, getattr with a computed name, modules other than torch and math's kind, ...) within
reach breaks every rule: the autograder cannot see what it runs. So does module-level code that
could change what a name means behind the text's back (exec, globals(), patching torch).
"""

import ast
import builtins
import functools
import operator
from typing import NamedTuple

AUTOGRAD_MODULES = ("torch.autograd", "torch.func", "functorch")
# Attribute names that mean "autograd did this", for by-hand exercises.
AUTOGRAD_ATTRIBUTES = {
    "backward",
    "grad",
    "grad_fn",
    "requires_grad",
    "requires_grad_",
    "retain_grad",
    "enable_grad",
    "set_grad_enabled",
    "autograd",
    "func",
}
# What autograd differentiates with: a "use autograd" exercise must call one of these.
DIFFERENTIATING = {
    "backward",
    "grad",
    "grad_and_value",
    "vjp",
    "jvp",
    "vhp",
    "hvp",
    "jacobian",
    "hessian",
    "jacrev",
    "jacfwd",
    "linearize",
}
# Builtins a function under a rule may use: none runs code given as data or opens a namespace.
SAFE_BUILTINS = {
    *("abs", "all", "any", "bool", "complex", "dict", "divmod", "enumerate", "filter", "float"),
    *("format", "frozenset", "hasattr", "hash", "id", "int", "isinstance", "issubclass", "iter"),
    *("len", "list", "map", "max", "min", "next", "pow", "print", "range", "repr", "reversed"),
    *("round", "set", "slice", "sorted", "str", "sum", "super", "tuple", "type", "zip"),
    *("object", "property", "staticmethod", "classmethod", "chr", "ord", "callable"),
    *(n for n in dir(builtins) if n.endswith(("Error", "Exception", "Warning"))),
    *("NotImplemented", "Ellipsis", "StopIteration"),
}
# Modules (with their submodules) a function under a rule may use.
SAFE_MODULES = {
    *("torch", "math", "cmath", "numpy", "random", "functools", "itertools", "collections"),
    *("statistics", "fractions", "decimal", "typing", "dataclasses", "warnings", "matplotlib"),
    *("time", "copy"),
}
# Parts of torch that load, compile or intercept code the autograder cannot read.
OPAQUE_TORCH = (
    *("torch.ops", "torch.classes", "torch.jit", "torch.fx", "torch.hub", "torch.load"),
    *("torch.package", "torch.library", "torch.utils.cpp_extension", "torch.compile"),
    *("torch.compiler", "torch.export", "torch.overrides", "torch.multiprocessing"),
)
# What can change what a name means from module-level code: rebinding or patching by name.
RENAMING_BUILTINS = {
    *("exec", "eval", "compile", "globals", "vars", "locals", "setattr", "delattr"),
    *("__import__", "breakpoint", "__builtins__"),
}
RENAMING_MODULES = {
    *("sys", "importlib", "builtins", "ctypes", "gc", "inspect", "types", "IPython"),
    *("__main__", "runpy", "code", "codeop", "pickle", "marshal", "copyreg"),
}
# IPython's own names: get_ipython() runs cells and magics given as strings.
IPYTHON_NAMES = {"get_ipython", "In", "Out", "exit", "quit"}
SAFE_DUNDERS = {"__init__", "__name__", "__doc__"}
FRAME_PREFIXES = ("f_", "gi_", "cr_", "ag_", "tb_", "co_")
# Magics that change no name: %matplotlib, and shell commands (`!ls`).
HARMLESS_MAGICS = {"system", "getoutput"}


class Cell(NamedTuple):
    label: str  # "cell 4"
    tree: ast.Module
    raised: object  # truthy if it stopped with an exception: its later bindings may not have run


class Code(NamedTuple):  # a def, lambda or class: its body runs when it is called
    node: ast.AST
    label: str
    parent: "Scope | None" = None  # the function it is defined in, whose names it can read


class Path(NamedTuple):  # a module or something in one: "torch.func.grad", "builtins.eval"
    dotted: str


class Value(NamedTuple):  # what an expression evaluated to
    node: ast.expr
    label: str


class Unknown(NamedTuple):  # a binding the text cannot resolve
    why: str


class CallSite(NamedTuple):
    tools: (
        frozenset  # what a library callee is known by: its attribute name, dotted path, last part
    )
    functions: frozenset  # the notebook's own function it calls, by name
    in_loop: bool
    where: str


class Reached:
    """What a function reaches, each finding described as "`.backward` in f (cell 3, line 2)"."""

    def __init__(self):
        self.autograd = []  # autograd constructs (attributes, `requires_grad=`, autograd modules)
        self.calls = []  # CallSite of every call in code that runs
        self.uses = {}  # every name, attribute and dotted path used -> where first
        self.data = []  # uses of `.data`, which changes tensors behind autograd's back
        self.dynamic = []  # code the autograder cannot see into
        self.stub = False  # the function still raises NotImplementedError

    def differentiates(self):
        """Whether a call that lets autograd differentiate runs."""
        return any(
            "backward" in call.tools
            or any(
                n.startswith(AUTOGRAD_MODULES) and n.rsplit(".", 1)[-1] in DIFFERENTIATING
                for n in call.tools
            )
            for call in self.calls
        )


def reach(cells, name):
    """What the final binding of `name` after `cells` reaches; None if `name` is never bound."""
    env, module_dynamic = module_level(tuple(cells))
    if name not in env:
        return None
    found = Reached()
    found.dynamic += [f"{why}, which can change what names mean" for why in module_dynamic]
    walker = Walker(env, found, strict=True)
    for candidate in env[name]:
        if isinstance(candidate, Code):
            found.stub |= is_stub(candidate.node)
        walker.meaning(candidate, name, called=True, in_loop=False, where=f"`{name}`")
    walker.drain()
    return found


@functools.lru_cache(maxsize=256)
def module_level(cells):
    """(what each name may be bound to, the dynamic code at module level) after `cells`:
    the same for every name a test asks about, so worked out once."""
    env = bindings(cells)
    taint = Walker(env, Reached(), strict=False)
    for cell in cells:
        taint.statements(cell.tree.body, Scope.module(cell.label))
    taint.drain()
    return env, tuple(taint.found.dynamic)


def is_stub(node):
    return any(
        isinstance(n, ast.Raise) and "NotImplementedError" in ast.dump(n.exc or ast.Pass())
        for n in ast.walk(node)
    )


# ---- the module's names after the cells ran -----------------------------------------------


def bindings(cells):
    """{name: candidates}: what each module-level name may be bound to after `cells` ran."""
    env = {}
    for cell in cells:
        bind_statements(cell.tree.body, env, cell.label, sure=not cell.raised)
    for cell in cells:  # names functions assign with `global`, or `:=` at module level
        declared = [
            n for node in ast.walk(cell.tree) if isinstance(node, ast.Global) for n in node.names
        ]
        walrus = [n.target.id for n in own_scope(cell.tree.body) if isinstance(n, ast.NamedExpr)]
        for n in declared + walrus:
            env[n] = env.get(n, ()) + (Unknown(f"`{n}` is assigned inside code ({cell.label})"),)
    return env


def bind(env, name, candidates, sure):
    env[name] = candidates if sure else env.get(name, ()) + candidates


def bind_statements(statements, env, label, sure):
    for stmt in live(statements):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(env, stmt.name, (Code(stmt, label),), sure)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                top = alias.name.split(".")[0]
                bind(env, alias.asname or top, (Path(alias.name if alias.asname else top),), sure)
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if alias.name == "*":
                    env["*"] = env.get("*", ()) + (Path(f"{'.' * stmt.level}{stmt.module}"),)
                else:
                    dotted = f"{'.' * stmt.level}{stmt.module or ''}.{alias.name}"
                    bind(env, alias.asname or alias.name, (Path(dotted),), sure)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                bind_target(target, stmt.value, env, label, sure)
        elif isinstance(stmt, ast.AugAssign):
            for n in stored_names(stmt.target):
                bind(env, n, (Unknown(f"`{n}` is changed with an operator ({label})"),), sure)
        elif isinstance(stmt, ast.If) and truth(stmt.test) is not None:
            bind_statements(stmt.body if truth(stmt.test) else stmt.orelse, env, label, sure)
        elif isinstance(stmt, ast.With):
            for item in stmt.items:
                for n in stored_names(item.optional_vars):
                    bind(env, n, (Unknown(f"`{n}` is bound by `with` ({label})"),), sure)
            bind_statements(stmt.body, env, label, sure)
        elif isinstance(stmt, ast.Delete) and sure:
            for n in stored_names(*stmt.targets):
                env.pop(n, None)
        elif isinstance(stmt, (ast.Expr, ast.AnnAssign, ast.Delete, ast.Pass, ast.Global)):
            continue
        else:  # loops, try, match, undecidable ifs: each binding in them may or may not happen
            for n in stored_names(*getattr(stmt, "targets", []), getattr(stmt, "target", None)):
                bind(env, n, (Unknown(f"`{n}` is bound by a loop ({label})"),), False)
            for handler in getattr(stmt, "handlers", []):
                if handler.name:
                    bind(env, handler.name, (Unknown(f"`{handler.name}` is an exception"),), False)
            for field in ("body", "orelse", "finalbody"):
                bind_statements(getattr(stmt, field, []), env, label, False)
            for part in getattr(stmt, "handlers", []) + getattr(stmt, "cases", []):
                bind_statements(part.body, env, label, False)


def bind_target(target, value, env, label, sure):
    if isinstance(target, ast.Name):
        bind(env, target.id, meaning_at_module(value, env, label), sure)
    elif isinstance(target, (ast.Tuple, ast.List)):
        pairs = isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts)
        for index, element in enumerate(target.elts):
            if pairs and not isinstance(element, ast.Starred):
                bind_target(element, value.elts[index], env, label, sure)
            else:
                for n in stored_names(element):
                    bind(env, n, (Unknown(f"`{n}` is unpacked from a value ({label})"),), sure)


def meaning_at_module(expr, env, label):
    """What `expr` evaluates to, as binding candidates, when module-level code runs it."""
    if isinstance(expr, ast.Name):
        if expr.id in env:
            return env[expr.id]
        return (
            (Path(f"builtins.{expr.id}"),) if hasattr(builtins, expr.id) else (Value(expr, label),)
        )
    if isinstance(expr, ast.Attribute):
        bases = meaning_at_module(expr.value, env, label)
        paths = [Path(f"{b.dotted}.{expr.attr}") for b in bases if isinstance(b, Path)]
        return tuple(paths) if len(paths) == len(bases) else (Value(expr, label),)
    if isinstance(expr, ast.Lambda):
        return (Code(expr, label),)
    return (Value(expr, label),)


def stored_names(*targets):
    return [
        n.id
        for target in targets
        if target is not None
        for n in ast.walk(target)
        if isinstance(n, ast.Name)
    ]


# ---- dead code -----------------------------------------------------------------------------


def live(statements):
    """The statements that can run: none after a return, raise, break or continue."""
    for stmt in statements:
        yield stmt
        if isinstance(stmt, (ast.Return, ast.Raise, ast.Break, ast.Continue)):
            return


COMPARISONS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
UNKNOWN = object()


def constant(expr):
    """The value of an expression made of literal numbers and strings, or UNKNOWN."""
    if isinstance(expr, ast.Constant):
        return expr.value
    if isinstance(expr, ast.UnaryOp):
        value = constant(expr.operand)
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(expr.op, ast.Not):
            return not value
        if isinstance(value, (int, float)):
            return -value if isinstance(expr.op, ast.USub) else +value
    if isinstance(expr, ast.BinOp) and type(expr.op) in ARITHMETIC:
        left, right = constant(expr.left), constant(expr.right)
        numbers = all(type(v) in (int, float, bool) and abs(v) < 1e15 for v in (left, right))
        if numbers:
            try:
                return ARITHMETIC[type(expr.op)](left, right)
            except ArithmeticError:
                return UNKNOWN
    if isinstance(expr, ast.Compare) and all(type(op) in COMPARISONS for op in expr.ops):
        values = [constant(v) for v in (expr.left, *expr.comparators)]
        if UNKNOWN not in values and all(
            isinstance(v, (int, float, str, type(None))) for v in values
        ):
            try:
                return all(
                    COMPARISONS[type(op)](a, b)
                    for op, a, b in zip(expr.ops, values, values[1:], strict=False)
                )
            except TypeError:
                return UNKNOWN
    return UNKNOWN


def truth(expr):
    """True or False when the text decides whether `expr` is true, else None."""
    if isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
        return bool(expr.elts)
    if isinstance(expr, ast.Dict):
        return bool(expr.keys)
    if isinstance(expr, ast.BoolOp):
        values = [truth(v) for v in expr.values]
        decisive = isinstance(expr.op, ast.Or)  # the value that ends the evaluation
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    value = constant(expr)
    return None if value is UNKNOWN else bool(value)


# ---- the walk --------------------------------------------------------------------------------


class Scope(NamedTuple):
    name: str  # "f", "a lambda", or the cell's label for module-level code
    label: str
    local: dict | None  # name -> candidates known for a local name (() when unknown); None: module
    parent: "Scope | None"

    @staticmethod
    def module(label):
        return Scope(label, label, None, None)

    def where(self, node):
        place = f"({self.label}, line {node.lineno})"
        return place if self.local is None else f"in {self.name} {place}"


class Walker:
    """Walks the live code reached from a name, recording what it finds into `found`.

    `strict`: the code is under a rule (every module must be known, every builtin harmless);
    otherwise it is module-level code, where only what can change names' meanings counts.
    """

    def __init__(self, env, found, strict):
        self.env, self.found, self.strict = env, found, strict
        self.todo, self.seen = [], set()

    def drain(self):
        while self.todo:
            reached, in_loop = self.todo.pop()
            key = (id(reached.node), in_loop)
            if key in self.seen:
                continue
            self.seen.add(key)
            if isinstance(reached, Value):
                self.expression(reached.node, Scope.module(reached.label), in_loop)
            else:
                self.function(reached.node, reached.label, reached.parent, in_loop)

    # names and paths

    def resolve(self, name, scope):
        """The candidates `name` may be bound to where `scope` reads it."""
        while scope is not None and scope.local is not None:
            if name in scope.local:
                return scope.local[name]
            scope = scope.parent
        if name in self.env:
            return self.env[name]
        if hasattr(builtins, name):
            return (Path(f"builtins.{name}"),)
        return tuple(Path(f"{star.dotted}.{name}") for star in self.env.get("*", ()))

    def meaning(self, candidate, name, called, in_loop, where):
        """Follow one candidate binding of a name the reached code uses."""
        if isinstance(candidate, Code):
            self.todo.append((candidate, in_loop))
        elif isinstance(candidate, Path):
            self.path(candidate.dotted, where)
        elif isinstance(candidate, Value):
            if called and self.strict and not self.constructed(candidate.node):
                self.dynamic(f"a call of `{name}`, a value it cannot trace", where)
            self.todo.append((candidate, in_loop))
        elif called and self.strict:
            self.dynamic(f"a call of `{name}` ({candidate.why})", where)

    def path(self, dotted, where):
        parts = dotted.split(".")
        self.found.uses.setdefault(dotted, where)
        self.found.uses.setdefault(parts[-1], where)
        if parts[0] == "builtins":
            name = parts[-1]
            allowed = name in SAFE_BUILTINS if self.strict else name not in RENAMING_BUILTINS
        elif self.strict:
            opaque = any(dotted == p or dotted.startswith(p + ".") for p in OPAQUE_TORCH)
            hidden = any(p.startswith("_") for p in parts)
            allowed = parts[0] in SAFE_MODULES and not opaque and not hidden
        else:
            allowed = parts[0] not in RENAMING_MODULES and not any(
                p.startswith("__") for p in parts
            )
        if not allowed:
            self.dynamic(f"`{dotted.removeprefix('builtins.')}`", where)
        if dotted.startswith(AUTOGRAD_MODULES) or any(p in AUTOGRAD_ATTRIBUTES for p in parts[1:]):
            self.found.autograd.append(f"`{dotted}` {where}")

    def dynamic(self, what, where):
        if f"{what} {where}" not in self.found.dynamic:
            self.found.dynamic.append(f"{what} {where}")

    def path_of(self, expr, scope):
        """The dotted path an attribute chain or a name is, when it is one for certain."""
        if isinstance(expr, ast.Name):
            candidates = self.resolve(expr.id, scope)
            if len(candidates) == 1 and isinstance(candidates[0], Path):
                return candidates[0].dotted
        elif isinstance(expr, ast.Attribute):
            base = self.path_of(expr.value, scope)
            return base and f"{base}.{expr.attr}"
        return None

    def constructed(self, expr):
        """Whether `expr` builds an object with a known constructor (`torch.nn.MSELoss()`),
        so that calling it runs that object's known code."""
        return isinstance(expr, ast.Call) and self.path_of(expr.func, Scope.module("")) is not None

    # statements

    def statements(self, statements, scope, in_loop=False):
        for stmt in live(statements):
            self.statement(stmt, scope, in_loop)

    def statement(self, stmt, scope, in_loop):
        if isinstance(stmt, ast.If) and truth(stmt.test) is not None:
            self.statements(stmt.body if truth(stmt.test) else stmt.orelse, scope, in_loop)
        elif isinstance(stmt, ast.While):
            if truth(stmt.test) is not False:
                self.expression(stmt.test, scope, in_loop)
                self.statements(stmt.body, scope, True)
            self.statements(stmt.orelse, scope, in_loop)
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            self.expression(stmt.iter, scope, in_loop)
            if not self.empty(stmt.iter, scope):
                self.expression(stmt.target, scope, True)
                self.statements(stmt.body, scope, True)
            self.statements(stmt.orelse, scope, in_loop)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.definition(stmt, stmt.name, scope, in_loop)
        elif (
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.value, ast.Lambda)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            self.definition(stmt.value, stmt.targets[0].id, scope, in_loop)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            module = f"{'.' * getattr(stmt, 'level', 0)}{getattr(stmt, 'module', None) or ''}"
            for alias in stmt.names:
                self.path(f"{module}.{alias.name}" if module else alias.name, scope.where(stmt))
        else:
            for child in ast.iter_child_nodes(stmt):
                if not isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                    self.expression(child, scope, in_loop)
            for handler in getattr(stmt, "handlers", []):
                self.expression(handler.type, scope, in_loop)
                self.statements(handler.body, scope, in_loop)
            for case in getattr(stmt, "cases", []):
                self.expression(case.guard, scope, in_loop)
                self.statements(case.body, scope, in_loop)
            for field in ("body", "orelse", "finalbody"):
                self.statements(getattr(stmt, field, []), scope, in_loop)

    def definition(self, node, name, scope, in_loop):
        """A def, class or named lambda: what runs where it is defined. Its body runs when it is
        called, so it is reached through its name (a class body runs right away)."""
        if isinstance(node, ast.ClassDef):
            parts = node.bases + node.keywords
        else:
            parts = node.args.defaults + [d for d in node.args.kw_defaults if d]
        for part in parts:
            self.expression(part, scope, in_loop)
        for decorator in getattr(node, "decorator_list", []):  # called with the function
            self.call_of(decorator, (), scope, in_loop, node)
        if isinstance(node, ast.ClassDef):
            self.function(node, scope.label, scope if scope.local is not None else None, in_loop)

    def function(self, node, label, parent, in_loop):
        """The body of a def, lambda or class, read in a scope of its own."""
        local = {}
        scope = Scope(
            "a lambda" if isinstance(node, ast.Lambda) else node.name, label, local, parent
        )
        local.update(self.local_meanings(node, scope))
        if isinstance(node, ast.Lambda):
            self.expression(node.body, scope, in_loop)
        elif isinstance(node, ast.ClassDef):  # every method may run: instances call them
            for stmt in node.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.todo.append((Code(stmt, label, parent), in_loop))
                else:
                    self.statement(stmt, scope, in_loop)
        else:
            self.statements(node.body, scope, in_loop)

    def local_meanings(self, node, scope):
        """{name: candidates} for the names local to a def, lambda or class body: imports and
        aliases of paths, nested functions and lambdas; () for any other local."""
        local = {}

        def add(name, candidate):
            local[name] = local.get(name, ()) + (candidate,)

        if not isinstance(node, ast.ClassDef):
            arguments = node.args
            for arg in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
                local[arg.arg] = ()
            for arg in (arguments.vararg, arguments.kwarg):
                if arg:
                    local[arg.arg] = ()
        body = [node.body] if isinstance(node, ast.Lambda) else node.body
        declared = set()
        for child in own_scope(body):
            if isinstance(child, (ast.Global, ast.Nonlocal)):
                declared |= set(child.names)
            elif isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
                local.setdefault(child.id, ())
            elif isinstance(child, ast.ExceptHandler) and child.name:
                local.setdefault(child.name, ())
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                add(child.name, Code(child, scope.label, scope))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    top = alias.name.split(".")[0]
                    add(alias.asname or top, Path(alias.name if alias.asname else top))
            elif isinstance(child, ast.ImportFrom):
                module = f"{'.' * child.level}{child.module or ''}"
                for alias in child.names:
                    add(alias.asname or alias.name, Path(f"{module}.{alias.name}"))
        lookup = scope._replace(local=local)
        for child in own_scope(body):  # aliases: `ag = torch.autograd`, `step = lambda ...`
            if isinstance(child, ast.Assign) and len(child.targets) == 1:
                target = child.targets[0]
                if isinstance(target, ast.Name) and isinstance(child.value, ast.Lambda):
                    add(target.id, Code(child.value, scope.label, scope))
                elif isinstance(target, ast.Name) and self.path_of(child.value, lookup):
                    add(target.id, Path(self.path_of(child.value, lookup)))
        for name in declared:
            local.pop(name, None)
        return local

    # expressions

    def expression(self, node, scope, in_loop):
        if node is None or isinstance(node, (ast.Constant, ast.expr_context)):
            return
        if isinstance(node, ast.Name):
            self.name(node, scope, in_loop, called=False)
        elif isinstance(node, ast.Attribute):
            self.attribute(node, scope, in_loop)
        elif isinstance(node, ast.Call):
            self.call_of(node.func, node.args, scope, in_loop, node)
            for part in node.args + node.keywords:
                self.expression(part, scope, in_loop)
        elif isinstance(node, ast.Lambda):  # an unnamed lambda is passed on to be called
            self.definition(node, None, scope, in_loop)
            self.function(node, scope.label, scope, in_loop)
        elif isinstance(node, ast.keyword):
            if node.arg == "requires_grad":
                self.found.autograd.append(f"`requires_grad=` {scope.where(node.value)}")
            self.expression(node.value, scope, in_loop)
        elif isinstance(node, ast.IfExp) and truth(node.test) is not None:
            self.expression(node.body if truth(node.test) else node.orelse, scope, in_loop)
        elif isinstance(node, ast.BoolOp):
            decisive = isinstance(node.op, ast.Or)
            for value in node.values:
                self.expression(value, scope, in_loop)
                if truth(value) is decisive:
                    break  # the rest never runs
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            self.comprehension(node, scope, in_loop)
        else:
            for child in ast.iter_child_nodes(node):
                self.expression(child, scope, in_loop)

    def comprehension(self, node, scope, in_loop):
        for generator in node.generators:
            self.expression(generator.iter, scope, in_loop)
            if self.empty(generator.iter, scope) or any(truth(t) is False for t in generator.ifs):
                return  # the element is never computed
            for part in [generator.target, *generator.ifs]:
                self.expression(part, scope, True)
        for field in ("elt", "key", "value"):
            self.expression(getattr(node, field, None), scope, True)

    def empty(self, iterable, scope):
        """Whether looping over `iterable` runs nothing, as the text says."""
        if isinstance(iterable, (ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Constant)):
            return truth(iterable) is False
        if (
            isinstance(iterable, ast.Call)
            and isinstance(iterable.func, ast.Name)
            and self.resolve(iterable.func.id, scope) == (Path("builtins.range"),)
            and not iterable.keywords
            and 1 <= len(iterable.args) <= 3
        ):
            bounds = [constant(a) for a in iterable.args]
            if all(type(b) is int and abs(b) < 1e15 for b in bounds):
                try:
                    return len(range(*bounds)) == 0
                except ValueError:
                    return False
        return False

    def name(self, node, scope, in_loop, called):
        if not isinstance(node.ctx, ast.Load):
            return  # binding a name runs nothing
        where = scope.where(node)
        self.found.uses.setdefault(node.id, where)
        candidates = self.resolve(node.id, scope)
        if not candidates and (node.id in IPYTHON_NAMES or node.id.startswith("_")):
            self.dynamic(f"`{node.id}`", where)
        for candidate in candidates:
            self.meaning(candidate, node.id, called, in_loop, where)

    def attribute(self, node, scope, in_loop):
        where = scope.where(node)
        dotted = self.path_of(node, scope)
        if dotted is not None:
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                self.dynamic(f"a change to `{dotted}`", where)
            self.path(dotted, where)
            return
        self.found.uses.setdefault(node.attr, where)
        self.attribute_name(node.attr, where)
        self.expression(node.value, scope, in_loop)

    def attribute_name(self, attr, where):
        if attr in AUTOGRAD_ATTRIBUTES:
            self.found.autograd.append(f"`.{attr}` {where}")
        if attr == "data":
            self.found.data.append(f"`.data` {where}")
        if (attr.startswith("__") and attr not in SAFE_DUNDERS) or attr.startswith(FRAME_PREFIXES):
            self.dynamic(f"`.{attr}`", where)

    def call_of(self, func, args, scope, in_loop, node):
        """Record a call of `func` with positional `args` at `node`, and walk `func` itself."""
        where = scope.where(node)
        tools, functions = set(), set()
        read = self.constant_getattr(func, args, scope)
        if read is not None:  # getattr(x, "name") reads x.name
            tools.add(read)
            self.found.uses.setdefault(read, where)
            self.attribute_name(read, where)
        elif isinstance(func, ast.Name):
            for candidate in self.resolve(func.id, scope):
                if isinstance(candidate, Path):
                    tools |= {candidate.dotted, candidate.dotted.rsplit(".", 1)[-1]}
                elif isinstance(candidate, Code):
                    functions.add(func.id)
            self.name(func, scope, in_loop, called=True)
        elif self.harmless_magic(node, scope):
            return
        else:
            if isinstance(func, ast.Attribute):
                tools |= {func.attr, self.path_of(func, scope)} - {None}
            self.expression(func, scope, in_loop)
        self.found.calls.append(CallSite(frozenset(tools), frozenset(functions), in_loop, where))

    def constant_getattr(self, func, args, scope):
        """The name `getattr(x, "name")` reads; None for any other call."""
        if (
            isinstance(func, ast.Name)
            and func.id == "getattr"
            and self.resolve("getattr", scope) == (Path("builtins.getattr"),)
            and len(args) >= 2
            and isinstance(args[1], ast.Constant)
            and isinstance(args[1].value, str)
        ):
            return args[1].value
        return None

    def harmless_magic(self, node, scope):
        """Whether `node` is IPython running %matplotlib or a shell command (`!ls`): module-level
        code that changes no name."""
        if (
            self.strict
            or not isinstance(node, ast.Call)
            or not isinstance(node.func, ast.Attribute)
        ):
            return False
        owner, method = node.func.value, node.func.attr
        magic = method in HARMLESS_MAGICS or (
            method == "run_line_magic" and node.args and constant(node.args[0]) == "matplotlib"
        )
        return bool(
            magic
            and isinstance(owner, ast.Call)
            and isinstance(owner.func, ast.Name)
            and owner.func.id == "get_ipython"
            and self.resolve("get_ipython", scope) in ((), (Path("builtins.get_ipython"),))
            and all(isinstance(a, ast.Constant) for a in node.args)
        )


def own_scope(body):
    """The nodes of a scope's body, without the bodies of the functions and classes in it."""
    todo = list(body)
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        todo.extend(ast.iter_child_nodes(node))
