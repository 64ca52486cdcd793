"""The first pass computed by :func:`audit.plain_pass.plain_pass` is the general form's
(:func:`audit.compare.compare`, then :func:`audit.gradients.finish`), field by field and bit
by bit, in both layouts and in every case the general form handles: failures, ties, NaN,
a reference that is not finite, exact zeros, padding rows, several rows a point, no point
kept at all.
"""

import jax
import numpy as np
import pytest

from audit.compare import DEFAULT_TOLERANCES, Summary, compare
from audit.gradients import RawRows, blocked, finish, judge
from audit.plain_pass import applies, plain_pass

TOL = DEFAULT_TOLERANCES["float32"]


def _values(n_rows, widths, *, seed, unjudged=True, fail_all=False):
    """``(manual float32, reference float64)``, ``(n_rows, sum(widths))``: agreement to a
    few float32 ulps, repeated errors (ties in score), two failures, a NaN handwritten value,
    an infinite and a NaN reference (unless ``unjudged`` is False), an exact zero row;
    ``fail_all``: a failure at every row."""
    rng = np.random.default_rng(seed)
    p = sum(widths)
    r = rng.normal(size=(n_rows, p)) * 10.0 ** rng.integers(-3, 3, size=(1, p))
    m = (r * (1 + 1e-7 * rng.integers(-3, 4, size=r.shape))).astype(np.float32)
    m[1, p - 1] = np.float32(r[1, p - 1] + 10 * np.abs(r[1]).max())  # fails at any scale
    m[n_rows // 2, 0] = np.nan
    if unjudged:
        r[3, p // 2] = np.inf
        r[n_rows - 3, 0] = np.nan
    r[n_rows - 2] = 0.0
    m[n_rows - 2] = 0.0
    if unjudged:
        r[:, p - 2] = np.inf  # an element the reference judges nowhere
    if fail_all:
        m[:, p // 2] += (1 + 10 * np.abs(r).max(axis=1)).astype(np.float32)
    return m, r


def _general(segments, rows_per_point):
    def run(m, r, valid):
        raw = RawRows(m, r, None, None, None, None)
        return finish(judge(raw, segments, TOL), valid, mode="first",
                      rows_per_point=rows_per_point)  # fmt: skip

    return jax.jit(run)


def _plain(segments, rows_per_point):
    def run(m, r, valid):
        ok = jax.numpy.arange(m.shape[0]) < valid
        return plain_pass(m, r, segments, TOL, ok, rows_per_point)

    return jax.jit(run)


def _assert_same(a, b):
    (sa, bad_a), (sb, bad_b) = a, b
    for name, x, y in zip(Summary._fields, sa, sb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    np.testing.assert_array_equal(np.asarray(bad_a), np.asarray(bad_b))


CASES = {  # rows x widths
    # more rows than values, laid out values x rows
    "points_long": (240, [4, 2, 2, 1]),
    "one_tensor": (50, [7]),
    "wide_tensor": (300, [20, 3]),  # a tensor past NARROW values reduced, not unrolled
    # no more rows than values (a wide network's step of a few points), rows x values
    "values_long": (12, [40, 8, 30]),
    "few_rows": (8, [3, 9]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("rows_per_point", [1, 2])
@pytest.mark.parametrize(
    "kind",
    ["usual", "unjudged", "all_fail", "zero"],
    ids=["all_judged", "not_finite", "none_kept", "zero_but_padding"],
)
def test_the_plain_pass_summarizes_as_the_general_form(case, rows_per_point, kind):
    n_rows, widths = CASES[case]
    segments = np.repeat(np.arange(len(widths)), widths)
    m, r = _values(n_rows, widths, seed=len(widths) + rows_per_point,
                   unjudged=kind == "unjudged", fail_all=kind == "all_fail")  # fmt: skip
    valid = n_rows - rows_per_point  # the last point pads: it counts nowhere
    assert applies(segments)
    if kind == "zero":  # no real row depends on the parameters; only the padding does
        m[:valid], r[:valid] = 0, 0
    with jax.enable_x64(True):
        general = _general(segments, rows_per_point)(m, r, valid)
        plain = _plain(segments, rows_per_point)(m, r, valid)
    _assert_same(general, plain)
    summary, bad = (Summary(*(np.asarray(f) for f in general[0])), np.asarray(general[1]))
    if kind == "all_fail":
        assert bad[: valid // rows_per_point].all() and (summary.rank == -1).all()
    elif kind == "zero":
        assert not summary.nonzero and not bad.any()
    else:
        assert bad.any() and not bad.all() and (summary.rank >= 0).all()
    assert (summary.unjudged_rows > 0) == (kind == "unjudged")
    if kind == "unjudged":
        assert (summary.rank == 0).sum() == 1  # judged nowhere: shown at its first kept row


@pytest.mark.parametrize("rows", [12, 200])
def test_tensors_not_in_one_run_are_left_to_the_general_form(rows):
    # a tensor's values not in one run: the plain pass declines, and the audit program takes
    # the general form (a scan checks it)
    segments = np.array([1, 0, 1, 0, 0, 2])
    m, r = _values(rows, [segments.size], seed=3)
    ok = np.ones(rows, bool)
    assert not applies(segments)
    with jax.enable_x64(True):
        assert plain_pass(m, r, segments, TOL, ok, 1) is None


def test_agreement_everywhere_is_summarized_as_the_general_form():
    # the usual case of a correct gradient: nothing fails, so every point is kept
    segments = np.repeat(np.arange(4), [4, 2, 2, 1])
    rng = np.random.default_rng(8)
    r = rng.normal(size=(1000, 9))
    m = (r * (1 + 1e-6 * rng.normal(size=r.shape))).astype(np.float32)
    with jax.enable_x64(True):
        general = _general(segments, 1)(m, r, 1000)
        _assert_same(general, _plain(segments, 1)(m, r, 1000))
    assert not np.asarray(general[1]).any()


@pytest.mark.parametrize("block", [1, 7, 64, None])
def test_a_scan_of_plain_passes_summarizes_as_one_general_pass(block):
    # the audit program's path: blocks of points, each block's rows counted from its offset
    segments = np.repeat(np.arange(3), [2, 3, 1])
    n, rows_per_point = 45, 2
    m, r = _values(n * rows_per_point, [2, 3, 1], seed=11)
    tree = (m.reshape(n, -1), r.reshape(n, -1))
    valid = (n - 1) * rows_per_point
    tol = TOL

    def rows(tree):
        mm, rr = (a.reshape(-1, 6) for a in tree)
        return mm, rr, compare(mm, rr, None, segments, 3, tol)

    def plain(tree, ok):
        mm, rr = (a.reshape(-1, 6) for a in tree)
        return plain_pass(mm, rr, segments, tol, ok, rows_per_point)

    with jax.enable_x64(True):
        general = jax.jit(
            lambda t, v: blocked(rows, t, v, mode="first", rows_per_point=rows_per_point,
                                 block=None)
        )  # fmt: skip
        scanned = jax.jit(
            lambda t, v: blocked(rows, t, v, mode="first", rows_per_point=rows_per_point,
                                 block=block, plain=plain)
        )  # fmt: skip
        _assert_same(general(tree, valid), scanned(tree, valid))
