"""Mutants of 04_vector_gradients: typical mistakes, one small edit of a solution each."""

from mutants import Mutant

AUTOGRAD_MEAN_CUBE = """x = torch.tensor(values, requires_grad=True)
    (x**3).mean().backward()
    return x.grad"""

MUTANTS = [
    Mutant(
        "04_vector_gradients",
        "sum instead of mean",
        "ex1_mean_square_grad",
        "(x**2).mean()",
        "(x**2).sum()",
        {"test_ex1_mean_square_grad"},
        "sum_not_mean",
    ),
    Mutant(
        "04_vector_gradients",
        "requires_grad never set",
        "ex1_mean_square_grad",
        "torch.tensor(values, requires_grad=True)",
        "torch.tensor(values)",
        {"test_ex1_mean_square_grad"},
    ),
    Mutant(
        "04_vector_gradients",
        "missing power-rule factor",
        "ex2_mean_cube_by_hand",
        "3 * x**2",
        "x**2",
        {"test_ex2_mean_cube_by_hand"},
    ),
    Mutant(
        "04_vector_gradients",
        "the worked example's length hard-coded",
        "ex2_mean_cube_by_hand",
        "/ len(values)",
        "/ 4",
        {"test_ex2_mean_cube_by_hand"},
    ),
    Mutant(
        "04_vector_gradients",
        "autograd used in a by-hand exercise",
        "ex2_mean_cube_by_hand",
        "x = torch.tensor(values)\n    return 3 * x**2 / len(values)",
        AUTOGRAD_MEAN_CUBE,
        {"test_ex2_mean_cube_by_hand"},
    ),
    Mutant(
        "04_vector_gradients",
        "backward with ones instead of the weights",
        "ex3_weighted_backward",
        "gradient=torch.tensor(weights)",
        "gradient=torch.ones_like(y)",
        {"test_ex3_weighted_backward"},
    ),
    Mutant(
        "04_vector_gradients",
        "J @ v instead of J.T @ v",
        "ex4_vjp_from_jacobian",
        "J.T @ v",
        "J @ v",
        {"test_ex4_vjp_from_jacobian"},
        "jacobian_not_transposed",
    ),
    Mutant(
        "04_vector_gradients",
        "mean instead of sum over the points",
        "ex5_bowl_gradients",
        "tilted_bowl(P).sum()",
        "tilted_bowl(P).mean()",
        {"test_ex5_bowl_gradients"},
        "mean_over_points",
    ),
]
