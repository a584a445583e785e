"""Mutants of 09_autograd_error_clinic: typical mistakes, one small edit of a solution each.

Each exercise has two graded parts: the prediction (which outcome the snippet has) and the fix.
A wrong prediction costs the prediction's point only, a wrong fix the fix's two points only.
"""

from mutants import Mutant

A = "09_autograd_error_clinic"

MUTANTS = [
    # predictions: the outcome most often confused with the right one
    Mutant(
        A,
        "a broken graph taken for a non-leaf's .grad",
        "ex1_predict",
        '"A"',
        '"H"',
        {"test_ex1_predict"},
    ),
    Mutant(
        A,
        "a second backward taken to just add up",
        "ex2_predict",
        '"B"',
        '"none"',
        {"test_ex2_predict"},
    ),
    Mutant(
        A,
        "a saved output changed in place taken for a leaf",
        "ex3_predict",
        '"C"',
        '"D"',
        {"test_ex3_predict"},
    ),
    Mutant(
        A,
        "a vector backward taken to sum by itself",
        "ex4_predict",
        '"E"',
        '"none"',
        {"test_ex4_predict"},
    ),
    Mutant(
        A,
        "numpy() on a graph taken for a broken graph",
        "ex5_predict",
        '"F"',
        '"A"',
        {"test_ex5_predict"},
    ),
    Mutant(
        A,
        ".data taken to be caught by the version counter",
        "ex6_predict",
        '"none"',
        '"C"',
        {"test_ex6_predict"},
    ),
    # fixes
    Mutant(
        A,
        "requires_grad on the rebuilt output instead of a tracked graph (no gradient arrives)",
        "ex1_fix",
        "y = torch.sin(x) ** 2",
        "y = torch.tensor(math.sin(x.item()) ** 2, requires_grad=True)",
        {"test_ex1_fix"},
    ),
    Mutant(
        A,
        "the fit's gradient cleared before the penalty's backward",
        "ex2_fix",
        "    penalty.backward()",
        "    w.grad = None\n    penalty.backward()",
        {"test_ex2_fix"},
        "penalty_only",
    ),
    Mutant(
        A,
        "retain_graph not added (backward through the graph twice)",
        "ex2_fix",
        "fit.backward(retain_graph=True)",
        "fit.backward()",
        {"test_ex2_fix"},
    ),
    Mutant(
        A,
        "the in-place change hidden behind .data",
        "ex3_fix",
        "e = torch.exp(x) + 1",
        "e = torch.exp(x)\n    e.data += 1",
        {"test_ex3_fix"},
        "changed_saved_output",
    ),
    Mutant(
        A,
        "the in-place change moved under no_grad (the version counter still sees it)",
        "ex3_fix",
        "e = torch.exp(x) + 1",
        "e = torch.exp(x)\n    with torch.no_grad():\n        e += 1",
        {"test_ex3_fix"},
    ),
    Mutant(
        A,
        "reduced with sum where the mean was asked",
        "ex4_fix",
        "losses.mean().backward()",
        "losses.sum().backward()",
        {"test_ex4_fix"},
        "summed_losses",
    ),
    Mutant(
        A,
        "backward(gradient=ones): the sum again",
        "ex4_fix",
        "losses.mean().backward()",
        "losses.backward(torch.ones_like(losses))",
        {"test_ex4_fix"},
        "summed_losses",
    ),
    Mutant(
        A,
        "the line returned still requiring grad",
        "ex5_fix",
        "return line.detach()",
        "return line",
        {"test_ex5_fix"},
    ),
    Mutant(
        A,
        "a numpy array returned",
        "ex5_fix",
        "return line.detach()",
        "return line.detach().numpy()",
        {"test_ex5_fix"},
    ),
    Mutant(
        A,
        "the squeeze kept behind .data",
        "ex6_fix",
        "p = 0.9 * torch.sigmoid(x) + 0.05",
        "p = torch.sigmoid(x)\n    p.data.mul_(0.9).add_(0.05)",
        {"test_ex6_fix"},
        "changed_saved_output",
    ),
]
