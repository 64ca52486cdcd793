"""Tests for audit.fd_verdict: the rule when finite differences decide, on numbers chosen
by hand, and which points they judge."""

import numpy as np
import pytest

from audit.compare import Tolerance
from audit.fd_verdict import (
    EVALS_PER_DIFFERENCE,
    FD_LOSS_EVALS,
    check_reference,
    fd_points,
    fd_verdict,
)

TOL = Tolerance(rtol=1e-3, atol=0.0, floor=1e-2)
ONE_LEAF = np.zeros(3, np.int64)


def _judge(manual, fd, err, autodiff=None):
    manual, fd, err = (np.asarray(a, np.float64)[None] for a in (manual, fd, err))
    autodiff = fd if autodiff is None else np.asarray(autodiff, np.float64)[None]
    return fd_verdict(manual, autodiff, fd, err, ONE_LEAF, 1, TOL)


def test_the_error_estimate_widens_what_passes_and_no_more():
    # fd = (1, 2, 4): allowed = 1e-3 * max(|m|, |fd|, 1e-2 * 4); err 0.01 on each
    fd, err = [1.0, 2.0, 4.0], [0.01, 0.01, 0.01]
    inside = [1.0 + 0.0105, 2.0 - 0.0115, 4.0 + 0.0135]  # below 1e-3 * |m| + 0.01
    outside = [1.0 + 0.0115, 2.0 - 0.0125, 4.0 + 0.0145]  # beyond it
    v = _judge(inside, fd, err)
    assert v.n_failed.tolist() == [0, 0, 0]
    v = _judge(outside, fd, err)
    assert v.n_failed.tolist() == [1, 1, 1]
    np.testing.assert_allclose(v.allowed, [1e-3 * 1.0115 + 0.01, 2e-3 + 0.01, 1e-3 * 4.0145 + 0.01])


def test_an_element_near_zero_is_judged_against_its_tensor_not_itself():
    # the floor: 1e-2 * max |fd| of the tensor = 0.04, so allowed = 4e-5 there
    v = _judge([3e-5, 2.0, 4.0], [0.0, 2.0, 4.0], [0.0, 0.0, 0.0])
    assert v.n_failed.tolist() == [0, 0, 0]
    v = _judge([5e-5, 2.0, 4.0], [0.0, 2.0, 4.0], [0.0, 0.0, 0.0])
    assert v.n_failed.tolist() == [1, 0, 0]


def test_a_non_finite_difference_is_not_judged_and_a_non_finite_value_fails():
    v = _judge([1.0, np.nan, 4.0], [np.nan, 2.0, 4.0], [0.0, 0.0, np.inf])
    assert v.n_unjudged.tolist() == [1, 0, 1]
    assert v.n_failed.tolist() == [0, 1, 0]


def test_references_that_disagree_beyond_the_error_are_marked():
    v = _judge([1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [0.01, 0.01, 0.01], autodiff=[1.0, 2.5, 4.011])
    assert v.disagree.tolist() == [False, True, False]


def test_the_worst_point_is_the_failing_one_with_the_largest_score():
    manual = np.array([[1.0], [1.5], [1.2]])
    fd = np.ones((3, 1))
    v = fd_verdict(manual, fd, fd, np.zeros((3, 1)), np.zeros(1, np.int64), 1, TOL)
    assert v.index.tolist() == [1] and v.n_failed.tolist() == [2]
    assert v.failed_at[:, 0].tolist() == [False, True, True]


@pytest.mark.parametrize(("n_points", "n_elements"), [(1, 5), (8, 5), (1000, 7), (300, 10**6)])
def test_the_points_judged_start_at_the_given_point_and_keep_to_the_budget(n_points, n_elements):
    rows = fd_points(n_points, n_elements)
    assert rows[0] == 0 and np.all(np.diff(rows) > 0) and rows[-1] < n_points
    more = FD_LOSS_EVALS // (EVALS_PER_DIFFERENCE * n_elements)
    assert len(rows) == 1 + min(n_points - 1, more)
    if len(rows) > 1:
        assert rows[-1] == n_points - 1  # spread over all of them, the last included


@pytest.mark.parametrize("bad", ["FD", "", None, 1, "finite differences"])
def test_an_unknown_reference_lists_the_valid_ones(bad):
    with pytest.raises(ValueError, match=r"expected one of 'autodiff', 'fd', 'both'"):
        check_reference(bad)
