"""The comparison rule, checked on hand-made numbers."""

import jax.numpy as jnp
import numpy as np
import pytest

from audit.compare import (
    DEFAULT_TOLERANCES,
    ROUNDING,
    WIDENED,
    Comparison,
    Tolerance,
    compare,
    default_tolerance,
    merge,
    summarize,
    unjudged_note,
    worst_of,
    worst_over_points,
)

TOL = Tolerance(rtol=1e-3, atol=0.0, floor=1e-2)


def run(manual, reference, roundoff=None, segments=None, tol=TOL, recheck=None, spread=None):
    m = jnp.asarray([manual], jnp.float64)
    r = jnp.asarray([reference], jnp.float64)
    seg = np.zeros(m.shape[1], int) if segments is None else np.asarray(segments)

    def row(v):
        return None if v is None else jnp.asarray([v], jnp.float64)

    out = compare(
        m, r, row(roundoff), seg, int(seg.max()) + 1, tol, recheck=row(recheck),
        recheck_tol=DEFAULT_TOLERANCES["float64"], spread=row(spread),
    )  # fmt: skip
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


# --- the second look: rounding in a right formula is not a wrong formula ---------------------


def test_a_float32_slip_that_vanishes_in_float64_passes_flagged():
    # 2.1696e-05 against 2.1650e-05: relative 2.1e-3, over rtol 1e-3, as A(1 - A) near
    # saturation gives in float32; the same formula in float64 agrees to 1e-12
    c = run([2.1696e-05], [2.1650e-05], recheck=[2.1650e-05 * (1 + 1e-12)])
    assert c.score[0] > 1  # it does fail the float32 rule
    assert c.passed[0] and c.flag[0] == ROUNDING


def test_a_wrong_formula_stays_wrong_in_float64():
    # x2 in float32 and in float64: the second look must not excuse it
    c = run([2.0, 1.0021], [1.0, 1.0], recheck=[2.0, 1.0 + 2e-6])
    assert not c.passed.any()
    assert (c.flag == 0).all()


def test_nan_in_the_audited_dtype_never_passes_even_when_float64_agrees():
    c = run([np.nan, np.inf], [1.0, 1.0], recheck=[1.0, 1.0], spread=[1e9, 1e9])
    assert not c.passed.any() and (c.flag == 0).all()
    assert c.judged.all()


def test_a_widened_tolerance_is_its_own_flag_and_has_a_limit():
    # noise 8 x spread 0.001 = 0.008 allowed on the second look
    c = run([1.005, 1.02], [1.0, 1.0], spread=[0.001, 0.001])
    assert c.passed.tolist() == [True, False]
    assert c.flag.tolist() == [WIDENED, 0]


def test_a_non_finite_reference_is_not_judged_never_a_pass_or_a_failure():
    c = run([0.0, 1.0, np.nan], [np.nan, np.inf, 1.0])
    assert c.judged.tolist() == [False, False, True]
    assert not c.passed.any()  # not a pass
    w = worst_over_points(np.array([[0.0, 1.0, np.nan]]), np.array([[np.nan, np.inf, 1.0]]),
                          Comparison(*(a[None] for a in c)))  # fmt: skip
    assert w.n_failed.tolist() == [0, 0, 1]  # and not a failure either
    assert w.n_unjudged.tolist() == [1, 1, 0]
    assert [w.verdict_at(i, "float32")["status"] for i in range(3)] == [
        "not_judged",
        "not_judged",
        "fail",
    ]


def test_the_worst_point_prefers_failures_then_flags_then_the_largest_score():
    m = np.array([[1.0005, 5.0, 1.0], [1.0021, 1.0, 1.0], [1.0009, 1.0, 1.0]])
    r = np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    recheck = jnp.ones((3, 3))
    f64 = DEFAULT_TOLERANCES["float64"]
    cmp = compare(jnp.asarray(m), jnp.asarray(r), None, np.arange(3), 3, TOL,
                  recheck=recheck, recheck_tol=f64)  # fmt: skip
    w = worst_over_points(m, r, cmp)
    # element 0: flagged at point 1 (score 2.1) beats passing point 2 (score 0.9)
    assert w.index[0] == 1 and w.flag[0] == ROUNDING and w.n_flagged[0] == 1
    v = w.verdict_at(0, "float32", "cancellation in 1 - A near saturation")
    assert v["status"] == "precision" and v["passed"]
    # log10(rel 2.1e-3 / eps 1.19e-7) = 4.25: four digits of float32 lost
    assert v["precision"]["digits_lost"] == 4
    assert v["precision"]["text"].startswith(
        "loses 4 digits in float32 here: cancellation in 1 - A near saturation; agrees"
    )
    # element 1: its only non-finite reference is never chosen over a judged point
    assert w.index[1] != 0 and w.n_unjudged[1] == 1
    assert w.verdict_at(1, "float32") == dict(
        passed=True, status="pass", precision=None, not_judgeable=1
    )


def test_the_unjudged_note_names_the_point_the_element_and_both_sides():
    first = np.array([1, 1, 0.0, np.nan])  # point 1, element 1: handwritten 0, jax.grad nan
    note = unjudged_note(1, 2, first, ["random draw 0", "step 5000"], ["w11", "dA3/dz3"])
    assert note.startswith(
        "jax.grad was not finite at 1 of 2 points (first: step 5000, dA3/dz3: jax.grad nan, "
        "handwritten 0)"
    )
    assert unjudged_note(0, 2, np.array([-1, 0, 0, 0.0]), ["a", "b"], ["x", "y"]) is None


def test_the_device_summary_equals_the_host_reduction():
    # the reduction that runs on the device against worst_over_points in NumPy, on values
    # with failures, NaN on either side, flags, ties and rows that are not counted
    rng = np.random.default_rng(0)
    r = rng.normal(size=(40, 6))
    m = r * (1 + rng.choice([0, 1e-4, 3e-3, 2e-2], size=r.shape))
    m[rng.random(r.shape) < 0.05] = np.nan
    r[rng.random(r.shape) < 0.05] = np.inf
    m[:, 5] = r[:, 5]  # exact everywhere: ties at score 0 go to the first point
    recheck = np.where(rng.random(r.shape) < 0.5, r, m)
    seg = np.array([0, 0, 1, 1, 2, 2])
    cmp = compare(jnp.asarray(m), jnp.asarray(r), None, seg, 3, TOL, recheck=jnp.asarray(recheck),
                  recheck_tol=DEFAULT_TOLERANCES["float64"])  # fmt: skip
    keep = np.ones(40, bool)
    host = worst_over_points(m, r, cmp)
    dev = worst_of(summarize(jnp.asarray(m), jnp.asarray(r), cmp, jnp.asarray(keep),
                             jnp.asarray(keep)))  # fmt: skip
    for field in ("index", "n_failed", "n_flagged", "n_unjudged", "flag"):
        np.testing.assert_array_equal(getattr(dev, field), getattr(host, field), err_msg=field)
    np.testing.assert_array_equal(dev.score, host.score)
    # rows left out count nowhere, and merging two halves gives the whole
    a = summarize(jnp.asarray(m), jnp.asarray(r), cmp, jnp.arange(40) < 25, jnp.ones(40, bool))
    b = summarize(jnp.asarray(m), jnp.asarray(r), cmp, jnp.arange(40) >= 25, jnp.ones(40, bool))
    both = worst_of(merge(a, b))
    for field in ("index", "n_failed", "n_flagged", "n_unjudged", "flag"):
        np.testing.assert_array_equal(getattr(both, field), getattr(host, field), err_msg=field)
