"""Typical mistakes, each a small edit of one solution, and the test cells it must fail.

A mutant submission is the solution notebook with one edit; grading must take away exactly
the points of the listed test cells and leave every other exercise its full points.
"""

from typing import NamedTuple


class Mutant(NamedTuple):
    assignment: str
    mistake: str
    cell: str  # grade_id of the solution cell that is edited
    old: str  # text of the solution replaced ...
    new: str  # ... by this
    breaks: set  # grade_ids of the test cells that must lose their points


AUTOGRAD_CUBIC = """x = torch.tensor(x0, requires_grad=True)
    (2 * x**3 + 1).backward()
    return x.grad"""

MUTANTS = [
    # 01_basic_autograd
    Mutant(
        "01_basic_autograd",
        "requires_grad never set",
        "ex1_slope_of_square",
        "torch.tensor(x0, requires_grad=True)",
        "torch.tensor(x0)",
        {"test_ex1_slope_of_square"},
    ),
    Mutant(
        "01_basic_autograd",
        "sign flipped",
        "ex2_slope_of_quadratic",
        "return x.grad",
        "return -x.grad",
        {"test_ex2_slope_of_quadratic"},
    ),
    Mutant(
        "01_basic_autograd",
        "the worked example's input hard-coded",
        "ex3_derivative_at",
        "torch.tensor(x0, requires_grad=True)",
        "torch.tensor(2.0, requires_grad=True)",
        {"test_ex3_derivative_at"},
    ),
    Mutant(
        "01_basic_autograd",
        "non-leaf gradient not retained",
        "ex4_leaf_and_intermediate",
        "h.retain_grad()",
        "pass",
        {"test_ex4_leaf_and_intermediate"},
    ),
    Mutant(
        "01_basic_autograd",
        "sign flipped in the intercept",
        "ex5_tangent_line",
        "y.item() - slope * x0",
        "y.item() + slope * x0",
        {"test_ex5_tangent_line"},
    ),
    # 02_chain_rule
    Mutant(
        "02_chain_rule",
        "missing chain-rule factor",
        "ex1_sin_square_by_hand",
        "math.cos(x0**2) * 2 * x0",
        "math.cos(x0**2)",
        {"test_ex1_sin_square_by_hand"},
    ),
    Mutant(
        "02_chain_rule",
        "sign flipped",
        "ex2_sin_square_autograd",
        "return x.grad",
        "return -x.grad",
        {"test_ex2_sin_square_autograd"},
    ),
    Mutant(
        "02_chain_rule",
        "autograd used in a by-hand exercise",
        "ex3_cubic_by_hand",
        "return 2 * 3 * x0**2",
        AUTOGRAD_CUBIC,
        {"test_ex3_cubic_by_hand"},
    ),
    Mutant(
        "02_chain_rule",
        "sum instead of mean",
        "ex4_mean_square_by_hand",
        " / len(values)",
        "",
        {"test_ex4_mean_square_by_hand"},
    ),
    Mutant(
        "02_chain_rule",
        "the worked example's length hard-coded",
        "ex4_mean_square_by_hand",
        "/ len(values)",
        "/ 3",
        {"test_ex4_mean_square_by_hand"},
    ),
    Mutant(
        "02_chain_rule",
        "graph walk stops at the first branch",
        "ex5_graph_ops",
        "for next_node, _ in node.next_functions:",
        "for next_node, _ in node.next_functions[:1]:",
        {"test_ex5_graph_ops"},
    ),
]
