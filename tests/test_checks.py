"""The checking functions on right and typically wrong answers, with real torch."""

import math

import pytest
import torch

from autograder import (
    CheckFailed,
    check_calls,
    check_gradient,
    check_graph,
    check_no_autograd,
    check_uses_autograd,
    check_value,
    random_inputs,
    run_student,
)

SEED_INPUT = [3.0]
RANDOM = random_inputs(5, seed=1, low=-3, high=3)


def sin_square(x):
    return torch.sin(x**2)


def right_by_hand(x0):
    return math.cos(x0**2) * 2 * x0


def right_by_autograd(x0):
    x = torch.tensor(x0, requires_grad=True)
    sin_square(x).backward()
    return x.grad


def doubled(x0):
    return 2 * right_by_hand(x0)


def missing_inner_factor(x0):
    return math.cos(x0**2)


def hard_coded_seed(x0):
    return -5.4668


def returns_nan(x0):
    return float("nan")


def returns_none(x0):
    return None


def stub(x0):
    raise NotImplementedError()


def crashes(x0):
    return undefined_name  # noqa: F821


def helper_with_autograd(x0):
    return right_by_autograd(x0)


def test_right_answers_pass_on_seed_and_random_inputs():
    check_gradient(right_by_hand, sin_square, SEED_INPUT + RANDOM)
    check_gradient(right_by_autograd, sin_square, SEED_INPUT + RANDOM)


@pytest.mark.parametrize("wrong", [doubled, missing_inner_factor])
def test_wrong_by_a_factor_fails_and_says_how_far_off(wrong):
    with pytest.raises(CheckFailed, match=r"is off by a relative error of"):
        check_gradient(wrong, sin_square, SEED_INPUT)


def test_hard_coded_seed_value_passes_the_seed_but_not_random_inputs():
    check_gradient(hard_coded_seed, sin_square, SEED_INPUT, rtol=1e-4, atol=1e-3)
    with pytest.raises(CheckFailed):
        check_gradient(hard_coded_seed, sin_square, RANDOM)


def test_message_never_shows_the_expected_value():
    with pytest.raises(CheckFailed) as failure:
        check_gradient(missing_inner_factor, sin_square, SEED_INPUT)
    expected = f"{right_by_hand(3.0):.4f}"
    assert expected not in str(failure.value)
    assert expected.rstrip("0") not in str(failure.value)


def test_nan_and_none_are_explained():
    with pytest.raises(CheckFailed, match="NaN"):
        check_gradient(returns_nan, sin_square, SEED_INPUT)
    with pytest.raises(CheckFailed, match="is None"):
        check_gradient(returns_none, sin_square, SEED_INPUT)


def test_wrong_shape_is_reported_with_both_shapes():
    def first_two(values):
        return torch.tensor(values[:2]) * 2

    with pytest.raises(CheckFailed, match=r"has shape \(2,\), but it should have shape \(3,\)"):
        check_gradient(first_two, lambda x: (x**2).sum(), [[1.0, 2.0, 3.0]])


def test_wrong_element_of_a_vector_is_located():
    def last_wrong(values):
        grad = 2 * torch.tensor(values)
        grad[2] += 1
        return grad

    with pytest.raises(CheckFailed, match="at index 2"):
        check_gradient(last_wrong, lambda x: (x**2).sum(), [[1.0, 2.0, 3.0]])


def test_several_gradients_come_back_as_a_tuple_in_wrt_order():
    def grads(a, b):
        return b, a  # d(ab)/da = b, d(ab)/db = a

    check_gradient(grads, lambda a, b: a * b, [(2.0, 5.0)], wrt=(0, 1))
    with pytest.raises(CheckFailed, match="part 1 of 2"):
        check_gradient(lambda a, b: (a, b), lambda a, b: a * b, [(2.0, 5.0)], wrt=(0, 1))
    with pytest.raises(CheckFailed, match="tuple of 2 gradients"):
        check_gradient(lambda a, b: b, lambda a, b: a * b, [(2.0, 5.0)], wrt=(0, 1))


def test_float32_rounding_is_within_tolerance():
    def float32_answer(x0):
        return right_by_autograd(x0).to(torch.float32)

    check_gradient(float32_answer, sin_square, RANDOM)


def test_stub_and_crash_get_friendly_messages():
    with pytest.raises(CheckFailed, match="stub is not written yet"):
        check_gradient(stub, sin_square, SEED_INPUT)
    with pytest.raises(CheckFailed, match="stub is not written yet"):
        check_no_autograd(stub)
    with pytest.raises(CheckFailed, match=r"crashes\(3\) raised NameError"):
        check_gradient(crashes, sin_square, SEED_INPUT)


def test_by_hand_rule_catches_autograd_even_inside_a_helper():
    check_no_autograd(right_by_hand)
    with pytest.raises(CheckFailed, match=r"uses autograd \(`\.backward`|uses autograd"):
        check_no_autograd(right_by_autograd)
    with pytest.raises(CheckFailed, match="in right_by_autograd"):
        check_no_autograd(helper_with_autograd)


def test_autograd_rule_requires_backward():
    check_uses_autograd(right_by_autograd)
    with pytest.raises(CheckFailed, match="must let autograd find the gradient"):
        check_uses_autograd(right_by_hand)


def test_check_value_and_check_graph():
    check_value("x.grad", torch.tensor(6.0), 6.0)
    with pytest.raises(CheckFailed, match="x.grad is off"):
        check_value("x.grad", torch.tensor(6.5), 6.0)
    x = torch.tensor(2.0, requires_grad=True)
    check_graph("y", x**2)
    with pytest.raises(CheckFailed, match="no grad_fn"):
        check_graph("y", (x**2).detach())
    with pytest.raises(CheckFailed, match="should be a tensor"):
        check_graph("y", 4.0)


def test_run_student_reports_a_crash_as_a_failed_check():
    with pytest.raises(CheckFailed, match="not written yet"):
        run_student(stub, 1.0)


def test_random_inputs_are_repeatable_and_seed_dependent():
    assert random_inputs(3, seed=5) == random_inputs(3, seed=5)
    assert random_inputs(3, seed=5) != random_inputs(3, seed=6)
    vectors = random_inputs(2, seed=5, size=4, low=0, high=1)
    assert len(vectors) == 2 and all(len(v) == 4 and all(0 <= x < 1 for x in v) for v in vectors)


def test_check_calls_finds_the_named_function_or_explains():
    check_calls(right_by_autograd, "backward", "let autograd do it")
    check_calls(helper_with_autograd, "backward", "let autograd do it")
    with pytest.raises(CheckFailed, match="right_by_hand should call jacobian: to build J"):
        check_calls(right_by_hand, "jacobian", "to build J")
