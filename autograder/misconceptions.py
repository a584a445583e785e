"""Typical wrong gradients, recognised from the answers alone.

Each misconception is a way of getting a gradient wrong that can be computed from the right
one: twice it, minus it, n times it, zero, its transpose, the gradient of another variable, or
the right gradient with a factor of the chain rule left out (autograd gives those too: they are
the gradients of the output with respect to the intermediate results). When a wrong answer
equals one of them on every input a check tried, the check names it, with a hint that points
at the concept without giving the answer.
"""

from typing import NamedTuple

import torch

# How close a wrong answer must be to a misconception's prediction to be called one.
RTOL, ATOL = 1e-3, 1e-6


class Misconception(NamedTuple):
    key: str
    diagnosis: str
    hint: str


CATALOGUE = [
    Misconception(
        "zero",
        "Your gradient is zero everywhere.",
        "No gradient flowed back: the graph was cut by detach(), torch.no_grad(), .item() or a "
        "new torch.tensor(...) built from values.",
    ),
    Misconception(
        "sign",
        "Your gradient has the wrong sign on every input tried.",
        "A minus sign went astray: check the sign of every factor of the chain rule.",
    ),
    Misconception(
        "doubled",
        "Your gradient is exactly twice the right one on every input tried.",
        "If backward() ran twice, the two gradients added up in .grad: clear it "
        "(x.grad.zero_()) in between. Otherwise look for a factor counted twice.",
    ),
    Misconception(
        "half",
        "Your gradient is exactly half the right one on every input tried.",
        "A factor 2 is missing, as in the power rule: d/dx x² = 2x.",
    ),
    Misconception(
        "sum_not_mean",
        "Your gradient is n times the right one, n the number of elements.",
        "A mean divides by n, so every element of its gradient carries a factor 1/n; a sum's "
        "does not. Did you use sum() where the mean was asked?",
    ),
    Misconception(
        "mean_not_sum",
        "Your gradient is the right one divided by n, the number of elements.",
        "A sum's gradient has no factor 1/n. Did you use mean() where a sum was asked?",
    ),
    Misconception(
        "missing_chain_factor",
        "Your gradient is the derivative of an outer function only: a factor of the chain rule "
        "is missing.",
        "The chain rule multiplies the outer derivative by the inner one: "
        "d/dx f(g(x)) = f'(g(x)) · g'(x).",
    ),
    Misconception(
        "multiple",
        "Your gradient is the same whole multiple of the right one on every input tried.",
        "Gradients add up over backward() calls that are not cleared in between, and a term "
        "counted k times multiplies the gradient by k.",
    ),
    Misconception(
        "transposed",
        "Your gradient is the transpose of the right one.",
        "x.grad has the shape of x, and backward(v) computes Jᵀv, not Jv.",
    ),
    Misconception(
        "swapped",
        "Your gradients are those of the other variables: the order is mixed up.",
        "Return the gradients in the order the exercise names the variables.",
    ),
]
BY_KEY = {m.key: m for m in CATALOGUE}


class Case(NamedTuple):
    """One input a check tried: the student's answer and what autograd knows of the right one."""

    answers: list  # one float64 tensor per differentiated argument (None if unusable)
    expected: list  # the right gradients, float64
    sizes: list  # number of elements of each differentiated argument
    partial: list  # per argument: the output's gradients w.r.t. intermediates of its shape
    mistaken: dict  # the exercise's own mistakes: key -> the answers each leads to


def predictions(key, case):
    """What the answers would be under misconception `key`: a list of candidate answer lists."""
    expected = case.expected
    if key in case.mistaken:
        return [case.mistaken[key]]
    if key == "zero":
        return [[torch.zeros_like(e) for e in expected]]
    if key == "sign":
        return [[-e for e in expected]]
    if key == "doubled":
        return [[2 * e for e in expected]]
    if key == "half":
        return [[e / 2 for e in expected]]
    if key == "sum_not_mean":
        return [[e * n for e, n in zip(expected, case.sizes, strict=True)]]
    if key == "mean_not_sum":
        return [[e / n for e, n in zip(expected, case.sizes, strict=True)]]
    if key == "multiple":
        return [[k * e for e in expected] for k in range(3, 11)]
    if key == "transposed":
        return [[e.T for e in expected]] if all(e.dim() == 2 for e in expected) else []
    if key == "swapped":
        return [list(reversed(expected))] if len(expected) > 1 else []
    if key == "missing_chain_factor":
        # one candidate per (argument, intermediate of its shape): that argument's gradient
        # replaced by the output's gradient with respect to the intermediate
        return [
            expected[:j] + [partial] + expected[j + 1 :]
            for j, partials in enumerate(case.partial)
            for partial in partials
        ]
    raise KeyError(key)


def close(answers, candidate):
    return len(answers) == len(candidate) and all(
        a is not None and a.shape == c.shape and torch.allclose(a, c, rtol=RTOL, atol=ATOL)
        for a, c in zip(answers, candidate, strict=True)
    )


class Mistake(NamedTuple):
    """A misconception of one exercise, given by a test cell: the answer it leads to is the
    gradient of `function` (a wrong version of the exercise's function)."""

    key: str
    function: object
    diagnosis: str
    hint: str


class WrongValue(NamedTuple):
    """A misconception of one exercise, given by a test cell to check_value: `matches(answer)`
    tells whether a wrong answer is the one it leads to (see equal_to)."""

    key: str
    matches: object
    diagnosis: str
    hint: str


class RaisedError(NamedTuple):
    """A misconception of one exercise that makes the student's function raise, given by a test
    cell to run_student: `says` is part of the exception's message (torch's own words)."""

    key: str
    says: str
    diagnosis: str
    hint: str


def equal_to(wrong):
    """`matches` of a misconception that leads to the value `wrong` (None: to no value at all),
    computed by the test cell on the same inputs."""
    if wrong is None:
        return lambda answer: answer is None
    wrong = torch.as_tensor(wrong, dtype=torch.float64)

    def matches(answer):
        try:
            value = torch.as_tensor(answer).detach().to(torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return False
        return close([value], [wrong])

    return matches


def diagnose_value(answer, expected, mistakes):
    """The first of `mistakes` (WrongValue) that the wrong `answer` matches and the right value
    `expected` does not (a mistake the right answer shows too explains nothing), or None."""
    return next((m for m in mistakes if m.matches(answer) and not m.matches(expected)), None)


def diagnose(cases, mistakes=()):
    """The misconception that explains the answers on every case, or None: the exercise's own
    `mistakes` first, then the catalogue.

    A candidate must differ from the right answer somewhere, or it explains nothing.
    """
    for misconception in [*mistakes, *CATALOGUE]:
        per_case = [predictions(misconception.key, case) for case in cases]
        options = min((len(p) for p in per_case), default=0)
        for option in range(options):
            candidates = [p[option] for p in per_case]
            explains = all(
                close(c.answers, cand) for c, cand in zip(cases, candidates, strict=True)
            )
            differs = any(
                not close(cand, c.expected) for c, cand in zip(cases, candidates, strict=True)
            )
            if explains and differs:
                return misconception
    return None
