"""Mutants of 03_bce_manual_vs_autograd: typical mistakes, one small edit of a solution each."""

from mutants import Mutant

AUTOGRAD_BCE = """w = torch.tensor(w, requires_grad=True)
    b = torch.tensor(b, requires_grad=True)
    binary_cross_entropy(torch.sigmoid(w * x + b), torch.tensor(y)).backward()
    return w.grad, b.grad"""

MUTANTS = [
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
]
