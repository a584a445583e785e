"""Method rules (work by hand, use autograd, call or do not call a tool) judged on what a
student's function really reaches, not on one `def`'s text.

One grading run holds one submission per attack: the source notebook (every answer right)
with the attack in one exercise, so that only that exercise's rule can cost points, and
honest variants that must keep full marks. Below it, the same rules on more variants, read
from cells as the grader reads them (autograder.reach).
"""

import json

import nbformat
import pytest
from conftest import copy_course, notebook_path, run_cli, write_submission

from autograder import (
    CheckFailed,
    check_calls,
    check_in_loop,
    check_no_autograd,
    check_not_calls,
    check_uses_autograd,
)
from autograder.verdict import Notebook, StudentFunction

A1, A2, A3 = "01_basic_autograd", "02_chain_rule", "03_bce_manual_vs_autograd"
A4, A6 = "04_vector_gradients", "06_disabling_gradient_tracking"

BY_HAND_SIN_SQUARE = "def sin_square_grad_by_hand(x0):\n    return math.cos(x0**2) * 2 * x0\n"
AUTOGRAD_SIN_SQUARE = (
    "def autograd_sin_square(x0):\n"
    "    x = torch.tensor(x0, requires_grad=True)\n"
    "    torch.sin(x**2).backward()\n"
    "    return x.grad\n"
)
STABLE_BCE_GRAD = (
    "def stable_bce_grad(z, y):\n"
    "    z = torch.tensor(z, requires_grad=True)\n"
    "    stable_bce_with_logits(z, torch.tensor(y)).backward()\n"
    "    return z.grad\n"
)

# student: (assignment, {solution grade_id: new code}, {solution grade_id: cell added before it},
#           the test that must lose all its points, what its message must say)
ATTACKS = {
    "rebound_in_another_cell": (
        A2,
        {"ex1_sin_square_by_hand": "sin_square_grad_by_hand = autograd_sin_square"},
        {"ex1_sin_square_by_hand": BY_HAND_SIN_SQUARE + "\n\n" + AUTOGRAD_SIN_SQUARE},
        "test_ex1_sin_square_by_hand",
        "`.backward` in autograd_sin_square",
    ),
    "lambda_from_another_cell": (
        A2,
        {"ex3_cubic_by_hand": "def cubic_grad_by_hand(x0):\n    return cubic_slope(x0)"},
        {
            "ex3_cubic_by_hand": "cubic_slope = lambda x0: "
            "torch.func.grad(lambda x: 2 * x**3 + 1)(torch.tensor(x0))"
        },
        "test_ex3_cubic_by_hand",
        "uses autograd (`torch.func.grad` in a lambda",
    ),
    "import_alias": (
        A2,
        {
            "ex4_mean_square_by_hand": "def mean_square_grad_by_hand(values):\n"
            "    return G(lambda x: (3 * (x + 2) ** 2).mean())(torch.tensor(values))"
        },
        {"ex4_mean_square_by_hand": "from torch.func import grad as G"},
        "test_ex4_mean_square_by_hand",
        "uses autograd (`torch.func.grad` in mean_square_grad_by_hand",
    ),
    "computed_getattr": (
        A2,
        {
            "ex1_sin_square_by_hand": "def sin_square_grad_by_hand(x0):\n"
            "    x = torch.tensor(x0)\n"
            '    getattr(x, "requires_grad" + "_")()\n'
            '    getattr(torch.sin(x**2), "back" + "ward")()\n'
            '    return getattr(x, "gr" + "ad")'
        },
        {},
        "test_ex1_sin_square_by_hand",
        "the autograder cannot see what it runs: `getattr` in sin_square_grad_by_hand",
    ),
    "eval_of_a_string": (
        A2,
        {
            "ex3_cubic_by_hand": "def cubic_grad_by_hand(x0):\n"
            '    code = "(lambda t: torch.autograd.grad(2 * t**3 + 1, t)[0])'
            '(torch.tensor(x0, requires_grad=True))"\n'
            '    return eval(code, {"torch": torch, "x0": x0})'
        },
        {},
        "test_ex3_cubic_by_hand",
        "the autograder cannot see what it runs: `eval` in cubic_grad_by_hand",
    ),
    "backward_under_if_false": (
        A2,
        {
            "ex2_sin_square_autograd": "def sin_square_grad_autograd(x0):\n"
            "    x = torch.tensor(x0, requires_grad=True)\n"
            "    if False:\n"
            "        torch.sin(x**2).backward()\n"
            "    return math.cos(x0**2) * 2 * x0"
        },
        {},
        "test_ex2_sin_square_autograd",
        "call .backward() on it, in code that runs",
    ),
    "backward_after_return": (
        A1,
        {
            "ex1_slope_of_square": "def slope_of_square(x0):\n"
            "    x = torch.tensor(x0, requires_grad=True)\n"
            "    return 2 * x0\n"
            "    (x**2).backward()"
        },
        {},
        "test_ex1_slope_of_square",
        "call .backward() on it, in code that runs",
    ),
    "central_differences": (
        A1,
        {
            "ex2_slope_of_quadratic": "def slope_of_quadratic(x0):\n"
            "    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)\n"
            "    h = 1e-4\n"
            "    with torch.autograd.no_grad():\n"
            "        f = lambda t: t**2 + 3 * t + 1\n"
            "        return (f(x + h) - f(x - h)) / (2 * h)"
        },
        {},
        "test_ex2_slope_of_quadratic",
        "must let autograd find the gradient",
    ),
    "backward_in_a_loop_that_never_runs": (
        A4,
        {
            "ex1_mean_square_grad": "def mean_square_grad(values):\n"
            "    x = torch.tensor(values, requires_grad=True)\n"
            "    while 0:\n"
            "        (x**2).mean().backward()\n"
            "    return 2 * x.detach() / len(values)"
        },
        {},
        "test_ex1_mean_square_grad",
        "call .backward() on it, in code that runs",
    ),
    "jacobian_named_never_called": (
        A4,
        {
            "ex4_vjp_from_jacobian": "def vjp_from_jacobian(values, weights):\n"
            "    jacobian = None\n"
            "    x, v = torch.tensor(values), torch.tensor(weights)\n"
            "    return 2 * x * torch.flip(torch.cumsum(torch.flip(v, [0]), 0), [0])"
        },
        {},
        "test_ex4_vjp_from_jacobian",
        "should call jacobian",
    ),
    "loss_module_for_the_forbidden_function": (
        A3,
        {
            "ex5_stable_bce_with_logits": "def stable_bce_with_logits(z, y):\n"
            '    return torch.nn.BCEWithLogitsLoss(reduction="none")(z, y)\n\n\n' + STABLE_BCE_GRAD
        },
        {},
        "test_ex5_stable_bce_with_logits",
        "nor torch.nn.BCEWithLogitsLoss in stable_bce_with_logits",
    ),
    "forbidden_function_imported_under_another_name": (
        A3,
        {
            "ex5_stable_bce_with_logits": "def stable_bce_with_logits(z, y):\n"
            '    return safe_loss(z, y, reduction="none")\n\n\n' + STABLE_BCE_GRAD
        },
        {
            "ex5_stable_bce_with_logits": "from torch.nn.functional import "
            "binary_cross_entropy_with_logits as safe_loss"
        },
        "test_ex5_stable_bce_with_logits",
        "should not use binary_cross_entropy_with_logits",
    ),
    "data_instead_of_no_grad": (
        A6,
        {
            "ex3_predict_without_graph": "def predict_without_graph(w, xs):\n"
            "    with torch.no_grad():\n"
            "        pass\n"
            "    return w.data * torch.tensor(xs)"
        },
        {},
        "test_ex3_predict_without_graph",
        "uses `.data` in predict_without_graph (cell",
    ),
}
HONEST = {
    "redefined_in_a_later_cell": (
        A2,
        {},
        {"ex1_sin_square_by_hand": AUTOGRAD_SIN_SQUARE.replace("autograd_sin", "sin")},
    ),
    "by_hand_helper_in_another_cell": (
        A2,
        {"ex3_cubic_by_hand": "def cubic_grad_by_hand(x0):\n    return power_rule(2, 3, x0)"},
        {
            "ex3_cubic_by_hand": "def power_rule(coefficient, power, x):\n"
            "    return coefficient * power * x ** (power - 1)"
        },
    ),
    "math_imported_as_m_and_a_magic": (
        A2,
        {"ex1_sin_square_by_hand": BY_HAND_SIN_SQUARE.replace("math.", "m.")},
        {"ex1_sin_square_by_hand": "%matplotlib inline\nimport math as m"},
    ),
    "the_solutions": (A3, {}, {}),
}


def submission(assignment, answers, added):
    """The source notebook with some solution cells replaced and code cells added before some."""
    notebook = nbformat.read(notebook_path("source", assignment), as_version=4)
    cells = []
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in added:
            cells.append(nbformat.v4.new_code_cell(added[grade_id]))
        if grade_id in answers:
            cell.source = answers[grade_id]
        cells.append(cell)
    notebook.cells = cells
    return notebook


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    for student, (assignment, answers, added, *_) in {**ATTACKS, **HONEST}.items():
        notebook = submission(assignment, answers, added)
        write_submission(course / "submissions", student, assignment, notebook)
    result = run_cli("grade", "submissions", "--json", "grades.json", cwd=course)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((course / "grades.json").read_text())["students"]


@pytest.mark.parametrize("student", sorted(ATTACKS))
def test_an_attack_on_a_rule_loses_exactly_that_exercise(graded, student):
    assignment, _, _, broken, why = ATTACKS[student]
    outcome = graded[student][assignment]
    assert outcome["error"] is None
    for grade_id, test in outcome["tests"].items():
        if grade_id == broken:
            assert test["score"] == 0, f"{student} kept the points of {grade_id}"
            assert why in test["message"], test["message"]
        else:
            assert test["score"] == test["max_score"], f"{grade_id}: {test['message']}"


@pytest.mark.parametrize("student", sorted(HONEST))
def test_honest_variants_keep_full_marks(graded, student):
    assignment = HONEST[student][0]
    outcome = graded[student][assignment]
    failed = {g: t["message"] for g, t in outcome["tests"].items() if not t["passed"]}
    assert failed == {}
    assert outcome["score"] == outcome["max_score"]


# ---- the same rules on more variants, read from cells as the grader reads them ------------


def function(name, *cells):
    """The student's `name` after `cells` ran (none raised), as a test cell sees it."""
    notebook = Notebook(None, None, None, {}, {})
    for index, source in enumerate(["import math\nimport torch", *cells]):
        notebook.ran.append((index, source))
        notebook.cell_results[index] = {"output": "", "error": None}
    return StudentFunction(notebook, name)


BY_HAND = "def f(x0):\n    return 2 * x0"
BACKWARD = "def f(x0):\n    x = torch.tensor(x0, requires_grad=True)\n    (x**2).backward()\n"


@pytest.mark.parametrize(
    ("cells", "why"),
    [
        ([BY_HAND, "f = lambda x0: torch.func.grad(lambda x: x**2)(torch.tensor(x0))"], "autograd"),
        ([BY_HAND, BACKWARD.replace("def f", "def g") + "    return x.grad", "f = g"], "autograd"),
        (
            ["import torch.autograd as ag", "def f(x0):\n    return ag.functional.jacobian"],
            "autograd",
        ),
        (["from torch import autograd as a", "def f(x0):\n    return a.grad"], "autograd"),
        (["def f(x0):\n    from torch.func import grad as G\n    return G"], "torch.func.grad"),
        (["def f(x0):\n    return exec('x = 1')"], "`exec`"),
        (["def f(x0):\n    return compile('1', 'f', 'eval')"], "`compile`"),
        (["def f(x0):\n    return __import__('torch')"], "`__import__`"),
        (["import importlib", "def f(x0):\n    return importlib.import_module('torch')"], "import"),
        (["def f(x0):\n    return globals()['g'](x0)"], "`globals`"),
        (["def f(x0):\n    return vars(torch)['autograd']"], "`vars`"),
        (["def f(x0):\n    setattr(torch, 'x', 1)"], "`setattr`"),
        (["def f(x0):\n    return getattr(torch, 'auto' + 'grad')"], "`getattr`"),
        (["def f(x0):\n    return torch.__dict__"], "`torch.__dict__`"),
        (["def f(x0):\n    return (lambda: 0).__globals__"], "`.__globals__`"),
        (["def f(x0):\n    return get_ipython().run_cell('x = 1')"], "`get_ipython`"),
        (["import os", "def f(x0):\n    return os.system('python -c 1')"], "`os.system`"),
        ([BY_HAND, "exec('def f(x0): return 1')"], "`exec`"),
        ([BY_HAND, "torch.Tensor.backward = lambda self: None"], "a change to `torch.Tensor"),
        ([BY_HAND, "for f in [lambda x0: x0]:\n    pass"], "bound by a loop"),
        ([BY_HAND, "f = [g for g in []][0]"], "a value it cannot trace"),
        ([BY_HAND, "def g():\n    global f\n    f = 1"], "assigned inside code"),
    ],
)
def test_by_hand_rule_follows_every_binding_alias_and_dynamic_code(cells, why):
    with pytest.raises(CheckFailed, match="must work the gradient out by hand") as failure:
        check_no_autograd(function("f", *cells))
    assert why in str(failure.value)


@pytest.mark.parametrize(
    "body",
    [
        "    if False:\n        (x**2).backward()\n",
        "    for _ in []:\n        (x**2).backward()\n",
        "    for _ in range(0):\n        (x**2).backward()\n",
        "    while 0:\n        (x**2).backward()\n",
        "    if 1 > 2:\n        (x**2).backward()\n",
        "    return 2 * x0\n    (x**2).backward()\n",
        "    raise ValueError\n    (x**2).backward()\n",
        "    step = lambda: (x**2).backward()\n",
        "    def step():\n        (x**2).backward()\n",
        "    backward = x.backward\n",
        "    False and (x**2).backward()\n",
        "    [(x**2).backward() for _ in ()]\n",
        "    with torch.autograd.no_grad():\n        pass\n",
    ],
)
def test_a_required_tool_counts_only_when_called_in_code_that_runs(body):
    fn = function("f", f"def f(x0):\n    x = torch.tensor(x0, requires_grad=True)\n{body}")
    with pytest.raises(CheckFailed, match="in code that runs"):
        check_uses_autograd(fn)
    with pytest.raises(CheckFailed, match="should call backward"):
        check_calls(fn, "backward", "so that autograd runs")


def test_tools_called_through_aliases_helpers_and_loops_count():
    check_uses_autograd(function("f", BACKWARD + "    return x.grad"))
    check_uses_autograd(
        function(
            "f",
            "from torch.autograd import grad as G",
            "def f(x0):\n    x = torch.tensor(x0, requires_grad=True)\n    return G(x**2, x)[0]",
        )
    )
    helper = "def step(x):\n    (x**2).backward()"
    looped = "def f(x0):\n    x = torch.tensor(x0, requires_grad=True)\n    for _ in range(2):\n"
    check_in_loop(function("f", helper, looped + "        step(x)"), "backward", "accumulate")
    with pytest.raises(CheckFailed, match="in a loop"):
        check_in_loop(function("f", helper, looped + "        pass\n    step(x)"), "backward", "")
    with pytest.raises(CheckFailed, match="should call no_grad"):  # the student's own no_grad
        check_calls(
            function("f", "def no_grad():\n    pass", "def f(x):\n    no_grad()"), "no_grad", ""
        )


def test_requiring_no_grad_rejects_data_writes():
    sgd = "def f(params, lr):\n    with torch.no_grad():\n        pass\n    for p in params:\n"
    with pytest.raises(CheckFailed, match="uses `.data` in f .* skips its checks"):
        check_calls(function("f", sgd + "        p.data -= lr * p.grad"), "no_grad", "")
    honest = "def f(params, lr):\n    with torch.no_grad():\n        for p in params:\n"
    check_calls(function("f", honest + "            p -= lr * p.grad"), "no_grad", "")


@pytest.mark.parametrize(
    ("cells", "equivalent"),
    [
        (["def f(z, y):\n    return torch.nn.BCEWithLogitsLoss()(z, y)"], "BCEWithLogitsLoss"),
        (["L = torch.nn.BCEWithLogitsLoss()", "def f(z, y):\n    return L(z, y)"], "BCEWith"),
        (["from torch import nn", "def f(z, y):\n    return nn.BCEWithLogitsLoss()(z, y)"], "BCE"),
        (
            [
                "import torch.nn.functional as F",
                "def f(z, y):\n    return F.binary_cross_entropy_with_logits(z, y)",
            ],
            None,
        ),
    ],
)
def test_forbidding_a_function_forbids_its_equivalents_and_aliases(cells, equivalent):
    with pytest.raises(CheckFailed, match="should not use binary_cross_entropy_with_logits") as e:
        check_not_calls(function("f", *cells), "binary_cross_entropy_with_logits", "by hand")
    assert equivalent is None or f"nor torch.nn.{equivalent}" in str(e.value)


@pytest.mark.parametrize(
    "cells",
    [
        [BACKWARD + "    return x.grad", BY_HAND],  # the last definition wins
        ["import math as m", "def f(x0):\n    return m.cos(x0) * 2"],
        ["def helper(x):\n    return 2 * x", "def f(x0):\n    return helper(x0)"],
        ["%matplotlib inline\n!echo hi", "x = torch.tensor(1.0, requires_grad=True)", BY_HAND],
        ["for x, y in [(1, 2)]:\n    print(x, y)", "def f(x0):\n    x = 2 * x0\n    return x"],
        ["def f(x0):\n    if x0 > 0:\n        return 2 * x0\n    return -2.0 * -x0"],
    ],
)
def test_honest_by_hand_code_passes(cells):
    check_no_autograd(function("f", *cells))
