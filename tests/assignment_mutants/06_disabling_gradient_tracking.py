"""Mutants of 06_disabling_gradient_tracking: typical mistakes, one edit of a solution each."""

from mutants import Mutant

MUTANTS = [
    Mutant(
        "06_disabling_gradient_tracking",
        "the worked example's numbers hard-coded",
        "ex1_cube_then_untracked",
        "return x.grad, y4, y5",
        "return torch.tensor(12.0), torch.tensor(16.0), torch.tensor(32.0)",
        {"test_ex1_cube_then_untracked"},
    ),
    Mutant(
        "06_disabling_gradient_tracking",
        "requires_grad never switched off",
        "ex1_cube_then_untracked",
        "x.requires_grad_(False)",
        "pass",
        {"test_ex1_cube_then_untracked"},
    ),
    Mutant(
        "06_disabling_gradient_tracking",
        "detach in the wrong place",
        "ex2_constant_factor",
        "c = (x**2).detach()\n    f = x * c",
        "c = x**2\n    f = x.detach() * c",
        {"test_ex2_constant_factor"},
        "detach_on_the_wrong_factor",
    ),
    Mutant(
        "06_disabling_gradient_tracking",
        "detach forgotten: the constant is tracked",
        "ex2_constant_factor",
        "(x**2).detach()",
        "x**2",
        {"test_ex2_constant_factor"},
        "detach_forgotten",
    ),
    Mutant(
        "06_disabling_gradient_tracking",
        "no_grad missing: autograd records the predictions",
        "ex3_predict_without_graph",
        "with torch.no_grad():\n        return w * torch.tensor(xs)",
        "return w * torch.tensor(xs)",
        {"test_ex3_predict_without_graph"},
    ),
    Mutant(
        "06_disabling_gradient_tracking",
        "flag switched off instead of no_grad",
        "ex3_predict_without_graph",
        "with torch.no_grad():\n        return w * torch.tensor(xs)",
        "w.requires_grad_(False)\n    return w * torch.tensor(xs)",
        {"test_ex3_predict_without_graph"},
    ),
    Mutant(
        "06_disabling_gradient_tracking",
        "a copy zeroed instead of the shared view",
        "ex4_zero_in_place",
        "x.detach().zero_()",
        "x.detach().clone().zero_()",
        {"test_ex4_zero_in_place"},
    ),
    Mutant(
        "06_disabling_gradient_tracking",
        "detach missing: in place on the leaf",
        "ex4_zero_in_place",
        "x.detach().zero_()",
        "x.zero_()",
        {"test_ex4_zero_in_place"},
    ),
]
