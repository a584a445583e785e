"""Mutants of 02_chain_rule: typical mistakes, one small edit of a solution each."""

from mutants import Mutant

AUTOGRAD_CUBIC = """x = torch.tensor(x0, requires_grad=True)
    (2 * x**3 + 1).backward()
    return x.grad"""

MUTANTS = [
    Mutant(
        "02_chain_rule",
        "missing chain-rule factor",
        "ex1_sin_square_by_hand",
        "math.cos(x0**2) * 2 * x0",
        "math.cos(x0**2)",
        {"test_ex1_sin_square_by_hand"},
        "missing_chain_factor",
    ),
    Mutant(
        "02_chain_rule",
        "sign flipped",
        "ex2_sin_square_autograd",
        "return x.grad",
        "return -x.grad",
        {"test_ex2_sin_square_autograd"},
        "sign",
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
        "sum_not_mean",
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
