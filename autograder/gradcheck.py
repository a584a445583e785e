"""Checking a gradient numerically: central differences in float64, and the relative error.

For students: compare the gradient you computed with `numerical_gradient(f, x)`; a relative
error below about 1e-7 means they agree, above 1e-2 means one of them is wrong (CS231n's rule of
thumb for float64).
"""

import torch


def numerical_gradient(f, x, step=1e-6):
    """The gradient of the scalar `f(x)` at `x` by central differences, (f(x+h) - f(x-h)) / 2h.

    `x` is a number, a list or a tensor; the result is a float64 tensor of the same shape.
    """
    point = torch.as_tensor(x, dtype=torch.float64).detach().clone()
    gradient = torch.zeros_like(point)
    flat_point, flat_gradient = point.view(-1), gradient.view(-1)
    with torch.no_grad():
        for index in range(flat_point.numel()):
            original = flat_point[index].item()
            flat_point[index] = original + step
            above = float(f(point))
            flat_point[index] = original - step
            below = float(f(point))
            flat_point[index] = original
            flat_gradient[index] = (above - below) / (2 * step)
    return gradient


def relative_error(a, b):
    """max |a - b| / max(|a|, |b|), element by element; 0 where both are 0."""
    a = torch.as_tensor(a, dtype=torch.float64).detach()
    b = torch.as_tensor(b, dtype=torch.float64).detach()
    scale = torch.maximum(a.abs(), b.abs())
    errors = torch.where(scale > 0, (a - b).abs() / scale.clamp_min(1e-300), torch.zeros_like(a))
    return errors.max().item() if errors.numel() else 0.0
