"""Mutants of 01_basic_autograd: typical mistakes, one small edit of a solution each."""

from mutants import Mutant

MUTANTS = [
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
        "sign",
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
        "grad_not_retained",
    ),
    Mutant(
        "01_basic_autograd",
        "sign flipped in the intercept",
        "ex5_tangent_line",
        "y.item() - slope * x0",
        "y.item() + slope * x0",
        {"test_ex5_tangent_line"},
    ),
]
