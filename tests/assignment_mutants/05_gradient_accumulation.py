"""Mutants of 05_gradient_accumulation: typical mistakes, one small edit of a solution each."""

from mutants import Mutant

MUTANTS = [
    Mutant(
        "05_gradient_accumulation",
        "requires_grad never set",
        "ex1_two_backwards",
        "torch.tensor(x0, requires_grad=True)",
        "torch.tensor(x0)",
        {"test_ex1_two_backwards"},
    ),
    Mutant(
        "05_gradient_accumulation",
        "gradients not cleared (doubled)",
        "ex2_grads_per_step",
        "w.grad.zero_()",
        "pass",
        {"test_ex2_grads_per_step"},
        "not_cleared",
    ),
    Mutant(
        "05_gradient_accumulation",
        "forgetting to divide by k",
        "ex3_accumulated_gradient",
        " / k",
        "",
        {"test_ex3_accumulated_gradient"},
    ),
    Mutant(
        "05_gradient_accumulation",
        "sum instead of mean",
        "ex3_accumulated_gradient",
        ".mean()",
        ".sum()",
        {"test_ex3_accumulated_gradient"},
    ),
    Mutant(
        "05_gradient_accumulation",
        "the worked example's k hard-coded",
        "ex3_accumulated_gradient",
        "/ k",
        "/ 3",
        {"test_ex3_accumulated_gradient"},
    ),
    Mutant(
        "05_gradient_accumulation",
        "detach in the wrong place",
        "ex3_accumulated_gradient",
        "(w * x_part + b - y_part)",
        "(w * x_part + b.detach() - y_part)",
        {"test_ex3_accumulated_gradient"},
    ),
    Mutant(
        "05_gradient_accumulation",
        "no_grad missing in the update",
        "ex4_descend",
        "with torch.no_grad():\n            w -= lr * w.grad",
        "w -= lr * w.grad",
        {"test_ex4_descend"},
    ),
    Mutant(
        "05_gradient_accumulation",
        "sign flipped",
        "ex4_descend",
        "w -= lr * w.grad",
        "w += lr * w.grad",
        {"test_ex4_descend"},
    ),
]
