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
    diagnosis: str | None = None  # the misconception their messages must name, if any


AUTOGRAD_CUBIC = """x = torch.tensor(x0, requires_grad=True)
    (2 * x**3 + 1).backward()
    return x.grad"""

AUTOGRAD_MEAN_CUBE = """x = torch.tensor(values, requires_grad=True)
    (x**3).mean().backward()
    return x.grad"""

AUTOGRAD_BCE = """w = torch.tensor(w, requires_grad=True)
    b = torch.tensor(b, requires_grad=True)
    binary_cross_entropy(torch.sigmoid(w * x + b), torch.tensor(y)).backward()
    return w.grad, b.grad"""

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
    # 04_vector_gradients
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
    ),
    Mutant(
        "04_vector_gradients",
        "mean instead of sum over the points",
        "ex5_bowl_gradients",
        "tilted_bowl(P).sum()",
        "tilted_bowl(P).mean()",
        {"test_ex5_bowl_gradients"},
    ),
    # 05_gradient_accumulation
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
    # 06_disabling_gradient_tracking
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
    # 07_training_loop
    Mutant(
        "07_training_loop",
        "no_grad missing in the update",
        "ex1_sgd_update",
        "with torch.no_grad():\n        for p in params:\n            p -= lr * p.grad",
        "for p in params:\n        p -= lr * p.grad",
        {"test_ex1_sgd_update"},
    ),
    Mutant(
        "07_training_loop",
        "gradients not cleared",
        "ex1_sgd_update",
        "p.grad = None",
        "pass",
        {"test_ex1_sgd_update"},
    ),
    Mutant(
        "07_training_loop",
        "the name rebound instead of the tensor updated in place",
        "ex1_sgd_update",
        "p -= lr * p.grad",
        "p = p - lr * p.grad",
        {"test_ex1_sgd_update"},
    ),
    Mutant(
        "07_training_loop",
        "sign flipped",
        "ex2_train",
        "w -= lr * w.grad",
        "w += lr * w.grad",
        {"test_ex2_train"},
    ),
    Mutant(
        "07_training_loop",
        "gradients not cleared (summed over epochs)",
        "ex2_train",
        "w.grad.zero_()\n        b.grad.zero_()",
        "pass",
        {"test_ex2_train"},
    ),
    Mutant(
        "07_training_loop",
        "sum instead of mean",
        "ex2_train",
        ".mean()",
        ".sum()",
        {"test_ex2_train"},
    ),
    Mutant(
        "07_training_loop",
        "the worked example's data hard-coded",
        "ex2_train",
        "x = torch.tensor(xs)\n    y = torch.tensor(ys)",
        "x = torch.tensor([1.0, 2.0, 3.0, 4.0])\n    y = torch.tensor([3.0, 5.0, 7.0, 9.0])",
        {"test_ex2_train"},
    ),
    Mutant(
        "07_training_loop",
        "gradients cleared anyway",
        "ex3_grads_without_clearing",
        "b -= lr * b.grad",
        "b -= lr * b.grad\n        w.grad.zero_()\n        b.grad.zero_()",
        {"test_ex3_grads_without_clearing"},
    ),
    # 03_bce_manual_vs_autograd
    Mutant(
        "03_bce_manual_vs_autograd",
        "sign flipped in dL/dy_hat",
        "ex1_local_derivatives",
        "(y_hat - y) / (y_hat * (1 - y_hat))",
        "(y - y_hat) / (y_hat * (1 - y_hat))",
        {"test_ex1_local_derivatives", "test_ex2_bce_grads_by_hand"},
        "sign",
    ),
    Mutant(
        "03_bce_manual_vs_autograd",
        "dz/dw taken as 1 instead of x",
        "ex1_local_derivatives",
        "return x, 1.0",
        "return 1.0, 1.0",
        {"test_ex1_local_derivatives", "test_ex2_bce_grads_by_hand"},
        "missing_chain_factor",
    ),
    Mutant(
        "03_bce_manual_vs_autograd",
        "missing chain-rule factor (the sigmoid's derivative)",
        "ex2_bce_grads_by_hand",
        "dloss_dyhat(y_hat, y) * dyhat_dz(z)",
        "dloss_dyhat(y_hat, y)",
        {"test_ex2_bce_grads_by_hand"},
    ),
    Mutant(
        "03_bce_manual_vs_autograd",
        "autograd used in a by-hand exercise",
        "ex2_bce_grads_by_hand",
        "return dl_dz * dz_dw, dl_dz * dz_db",
        AUTOGRAD_BCE,
        {"test_ex2_bce_grads_by_hand"},
    ),
    Mutant(
        "03_bce_manual_vs_autograd",
        "requires_grad never set on b",
        "ex3_bce_grads_autograd",
        "torch.tensor(b, requires_grad=True)",
        "torch.tensor(b)",
        {"test_ex3_bce_grads_autograd"},
    ),
    Mutant(
        "03_bce_manual_vs_autograd",
        "the seeds' numbers hard-coded",
        "ex3_bce_grads_autograd",
        "return w.grad, b.grad",
        "return torch.tensor(6.6918), torch.tensor(0.9988)",
        {"test_ex3_bce_grads_autograd"},
    ),
    Mutant(
        "03_bce_manual_vs_autograd",
        "sign flipped in y_hat - y",
        "ex4_bce_grads_shortcut",
        "y_hat - y",
        "y - y_hat",
        {"test_ex4_bce_grads_shortcut"},
        "sign",
    ),
    Mutant(
        "03_bce_manual_vs_autograd",
        "naive (unstable) loss: sigmoid, then the clamped log",
        "ex5_stable_bce_with_logits",
        "F.softplus(z) - y * z",
        "binary_cross_entropy(torch.sigmoid(z), y)",
        {"test_ex5_stable_bce_with_logits"},
    ),
    Mutant(
        "07_training_loop",
        "loss tensors kept (and their graphs) instead of loss.item()",
        "ex2_train",
        "losses.append(loss.item())",
        "losses.append(loss)",
        {"test_ex2_train"},
    ),
]
