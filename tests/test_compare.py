"""The comparison rule, checked on hand-made numbers."""

import jax.numpy as jnp
import numpy as np
import pytest

from audit.compare import (
    DEFAULT_TOLERANCES,
    Comparison,
    Tolerance,
    compare,
    default_tolerance,
    worst_over_points,
)

TOL = Tolerance(rtol=1e-3, atol=0.0, floor=1e-2)


def run(manual, reference, roundoff=None, segments=None, tol=TOL):
    m = jnp.asarray([manual], jnp.float64)
    r = jnp.asarray([reference], jnp.float64)
    seg = np.zeros(m.shape[1], int) if segments is None else np.asarray(segments)
    rnd = None if roundoff is None else jnp.asarray([roundoff], jnp.float64)
    out = compare(m, r, rnd, seg, int(seg.max()) + 1, tol)
    return Comparison(*(np.asarray(a)[0] for a in out))


def test_exact_match_passes_also_at_zero():
    c = run([0.0, 1.5, -2.0], [0.0, 1.5, -2.0])
    assert c.passed.all()
    assert (c.score == 0).all()


def test_relative_error_uses_the_larger_magnitude():
    # |1.001 - 1| / 1.001 = 9.99e-4 <= 1e-3 passes; |1.002 - 1| / 1.002 = 1.996e-3 fails
    c = run([1.001, 1.002], [1.0, 1.0], segments=[0, 1])
    np.testing.assert_allclose(c.rel_err, [0.001 / 1.001, 0.002 / 1.002], rtol=1e-9)
    assert c.passed.tolist() == [True, False]


def test_small_element_off_by_two_fails_above_the_floor():
    # tensor scale 1 -> floor 1e-2; element 0.05 doubled: rel = 0.05 / 0.1 = 0.5
    c = run([1.0, 0.1], [1.0, 0.05])
    assert c.passed.tolist() == [True, False]
    assert c.rel_err[1] == pytest.approx(0.5)


def test_roundoff_sized_error_on_a_tiny_element_passes():
    # element 1e-9 next to an element 1: error 1e-9 is 1e-9 / max(1e-9, 1e-2) = 1e-7 relative
    c = run([1.0, 2e-9], [1.0, 1e-9])
    assert c.passed.all()
    assert c.rel_err[1] == pytest.approx(1e-7)


def test_the_floor_is_per_tensor():
    # same numbers, but the tiny element is alone in its tensor: judged on its own scale
    c = run([1.0, 2e-9], [1.0, 1e-9], segments=[0, 1])
    assert c.passed.tolist() == [True, False]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["manual", "reference"])
def test_nan_and_inf_always_fail(bad, side):
    m, r = [1.0, bad], [1.0, 1.0]
    if side == "reference":
        m, r = r, m
    huge = Tolerance(rtol=1e30, atol=1e30, floor=1.0)
    c = run(m, r, roundoff=[0.0, 1e30], tol=huge)
    assert c.passed.tolist() == [True, False]
    assert np.isinf(c.score[1]) and np.isinf(c.rel_err[1]) and np.isinf(c.abs_err[1])


def test_nan_on_both_sides_fails():
    c = run([np.nan], [np.nan])
    assert not c.passed[0]


def test_atol_passes_small_absolute_errors():
    tol = Tolerance(rtol=1e-3, atol=1e-6, floor=1e-2)
    c = run([1.0, 5e-7], [1.0, 0.0], tol=tol)
    assert c.passed.all()
    c = run([1.0, 5e-7], [1.0, 0.0])  # atol 0: 5e-7 / max(5e-7, 1e-2) = 5e-5 passes by rtol
    assert c.passed.all()
    c = run([1.0, 2e-5], [1.0, 0.0])  # 2e-5 / 1e-2 = 2e-3 > rtol
    assert not c.passed[1]


def test_roundoff_clause_allows_what_the_reference_itself_gets_wrong():
    # error 0.01 on a value 1: fails by rtol, passes when the reference's own roundoff is
    # 0.002 (noise 8 x 0.002 = 0.016 >= 0.01), fails again when roundoff is 0.001
    assert run([1.01], [1.0], roundoff=[0.002]).passed[0]
    assert not run([1.01], [1.0], roundoff=[0.001]).passed[0]
    assert not run([1.01], [1.0]).passed[0]


def test_score_is_error_over_allowed():
    c = run([1.002], [1.0])
    assert c.allowed == pytest.approx(1e-3 * 1.002)
    assert c.score == pytest.approx(0.002 / (1e-3 * 1.002))


def test_worst_over_points_picks_the_largest_score_and_nan_first():
    m = np.array([[1.0, 1.0], [1.5, np.nan], [1.2, 1.0]])
    r = np.ones((3, 2))
    seg = np.array([0, 1])
    cmp = compare(jnp.asarray(m), jnp.asarray(r), None, seg, 2, TOL)
    w = worst_over_points(m, r, cmp)
    assert w.index.tolist() == [1, 1]
    assert w.n_failed.tolist() == [2, 1]
    assert w.manual[0] == 1.5


def test_default_tolerances_by_dtype():
    assert default_tolerance(jnp.float32) == DEFAULT_TOLERANCES["float32"]
    assert default_tolerance("float64").rtol == 1e-7
    t = default_tolerance("float32", rtol=0.5, atol=1e-3)
    assert (t.rtol, t.atol, t.floor) == (0.5, 1e-3, DEFAULT_TOLERANCES["float32"].floor)


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_bad_tolerances_are_refused(bad):
    with pytest.raises(ValueError, match=r"rtol=.*expected a finite number >= 0"):
        default_tolerance("float32", rtol=bad)


def test_unknown_dtype_has_no_default():
    with pytest.raises(ValueError, match="no default tolerance for dtype int32"):
        default_tolerance("int32")
