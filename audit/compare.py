"""Element-by-element comparison of handwritten and reference gradients, and its tolerances.

The rule, for every element at every point::

    abs_err = |m - r|
    rel_err = abs_err / max(|m|, |r|, floor * scale, tiny)
    allowed = max(rtol * max(|m|, |r|, floor * scale, tiny), atol, noise * roundoff)
    score   = abs_err / allowed          (inf when either side is NaN/Inf)
    passed  = score <= 1

which is ``rel_err <= rtol or abs_err <= atol or abs_err <= noise * roundoff`` in one number.
A weight's worst point is the one with the largest ``score``: where it came closest to
failing, or failed by most.

``scale`` is the largest ``|r|`` of the same tensor (leaf) at the same point, so an element
that is tiny next to its neighbours is judged against the tensor's size rather than its own:
roundoff there cannot raise a false alarm, while a small gradient that is off by a factor 2
still fails as long as it is above ``floor`` of its tensor. NaN or Inf on either side always
fails (its errors are reported as ``inf``). ``atol`` defaults to 0: the floor already covers
exact and near-zero gradients.

``roundoff`` is what ``jax.grad`` itself gets wrong in the handwritten gradient's own dtype:
the largest ``|r_same - r|`` over three evaluations of the reference in that dtype (at the
point, and at two copies with every input nudged by one unit in the last place). Where a
value cannot be computed to ``rtol`` in that dtype at all (a difference of two nearly equal
numbers, such as ``1 - p`` when a float32 softmax saturates), a handwritten value within
``noise`` times that is not called wrong. When the audited dtype is the reference dtype
(float64 audits), ``roundoff`` is the reference's own spread over the point and its two
nudged copies in float64; the float64 rule of the second look (below) counts it the same way.
A value that is 0 in exact arithmetic (the gradient of a softmax's max shift, of a bias that
batch norm subtracts back out) is roundoff on both sides, of that size whatever its tensor's
scale: the floor alone, tied to a tensor that is itself roundoff, would call it wrong.

Defaults by the dtype of the handwritten gradients (the reference runs in float64 whenever
64-bit mode is on):

=========  ======  =======  =====
dtype      rtol    floor    atol
=========  ======  =======  =====
float64    1e-7    1e-6     0
float32    1e-3    1e-2     0
16-bit     5e-2    1e-1     0
=========  ======  =======  =====

With float32 roundoff about 1e-7 of a tensor's scale, the float32 floor and rtol leave a
margin of about 80 ulps before a false alarm; float64 leaves far more.

**Rounding in a right formula is not a wrong formula.** A handwritten expression can be
right and still lose digits in float32 that ``jax.grad`` keeps: ``A * (1 - A)`` cancels when a
sigmoid saturates, where ``jax.grad`` computes ``A * sigmoid(-z)``. So an element that fails
in the audited dtype is judged once more from the handwritten function evaluated again in
float64 at the same point (``recheck``), against the float64 rule. If it agrees there, the
disagreement was rounding: the element passes with a precision flag (:data:`ROUNDING`) and
the report says how many digits it lost. A function that only runs in its own dtype cannot
be re-evaluated; its tolerance is widened instead by ``noise`` times its measured spread
under one-ulp nudges of its inputs (``spread``, flag :data:`WIDENED`), and the report says so.

**A point the reference cannot judge** (``r`` NaN or Inf: ``jax.grad`` itself overflowed)
is neither a pass nor a failure: ``judged`` is False there and the element is reported apart.
A non-finite handwritten value where the reference is finite always fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "DEFAULT_TOLERANCES",
    "ROUNDING",
    "RULE",
    "WIDENED",
    "Summary",
    "Tolerance",
    "compare",
    "default_tolerance",
    "empty_summary",
    "joined",
    "merge",
    "merge_traced",
    "namespace",
    "scored",
    "summarize",
    "tolerance_dict",
    "worst_of",
    "worst_over_points",
]

# Precision flags of an element that passed only on a second look (``Comparison.flag``).
ROUNDING = 1  # agrees with the reference when the handwritten function runs in float64
WIDENED = 2  # within a tolerance widened by the handwritten function's measured spread


class Tolerance(NamedTuple):
    """Pass/fail thresholds (see the module docstring for the rule)."""

    rtol: float
    atol: float
    floor: float
    noise: float = 8.0


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(1e-7, 0.0, 1e-6),
    "float32": Tolerance(1e-3, 0.0, 1e-2),
    "float16": Tolerance(5e-2, 0.0, 1e-1),
    "bfloat16": Tolerance(5e-2, 0.0, 1e-1),
}


def default_tolerance(dtype, rtol: float | None = None, atol: float | None = None) -> Tolerance:
    """The default tolerance for ``dtype``, with ``rtol``/``atol`` overriding when given."""
    name = jnp.dtype(dtype).name
    if name not in DEFAULT_TOLERANCES:
        raise ValueError(
            f"no default tolerance for dtype {name}; expected one of "
            f"{', '.join(DEFAULT_TOLERANCES)}"
        )
    base = DEFAULT_TOLERANCES[name]
    for what, v in (("rtol", rtol), ("atol", atol)):
        if v is not None and not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{what}={v!r}, expected a finite number >= 0")
    return Tolerance(
        base.rtol if rtol is None else float(rtol),
        base.atol if atol is None else float(atol),
        base.floor,
    )


class Comparison(NamedTuple):
    """Per-element comparison at a stack of points; every field ``(n_points, P)``."""

    abs_err: jax.Array
    rel_err: jax.Array
    allowed: jax.Array  # the largest abs_err that passes there in the audited dtype
    score: jax.Array  # abs_err / allowed: <= 1 passes outright, inf for NaN/Inf
    passed: jax.Array  # score <= 1, or flagged below
    flag: jax.Array  # int8: 0, or ROUNDING / WIDENED for a pass on the second look
    judged: jax.Array  # the reference is finite: False means "not judgeable", never a pass


def namespace(a) -> object:
    """The array module that computes on ``a``: NumPy for NumPy arrays (a comparison judged
    on the host, with nothing to compile), ``jax.numpy`` for anything else (JAX arrays,
    tracers). The rule is written once for both."""
    return np if isinstance(a, np.ndarray | np.generic) else jnp


def compare(
    manual: jax.Array,
    reference: jax.Array,
    roundoff: jax.Array | None,
    segments: np.ndarray,
    n_segments: int,
    tol: Tolerance,
    *,
    recheck: jax.Array | None = None,
    recheck_tol: Tolerance | None = None,
    recheck_roundoff: jax.Array | None = None,
    spread: jax.Array | None = None,
) -> Comparison:
    """Compare flat gradients at many points.

    Args:
      manual, reference: ``(n_points, P)`` float; compared in the wider of the two dtypes.
      roundoff: ``(n_points, P)`` the reference's own error in ``manual``'s dtype (see the
        module docstring), or None when the reference already is in that dtype.
      segments: ``(P,)`` int, the tensor (leaf) each element belongs to.
      n_segments: number of tensors.
      tol: the thresholds.
      recheck: ``(n_points, P)`` the handwritten function evaluated again in the reference's
        dtype, or None; judged by ``recheck_tol`` where ``manual`` fails (flag ROUNDING).
      recheck_roundoff: ``(n_points, P)`` the reference's roundoff in its own dtype, or
        None; ``noise`` times it widens the recheck's ``allowed``, as ``roundoff`` does the
        direct rule's.
      spread: ``(n_points, P)`` the handwritten function's measured spread in its own dtype,
        or None; ``noise * spread`` widens ``allowed`` where ``manual`` fails (flag WIDENED).

    Returns:
      A :class:`Comparison` of ``(n_points, P)`` arrays.
    """
    xp = namespace(manual)
    dt = jnp.promote_types(manual.dtype, reference.dtype)
    m, r = manual.astype(dt), reference.astype(dt)
    judged = xp.isfinite(r)
    finite = xp.isfinite(m) & judged
    scale = _tensor_scale(r, segments, n_segments)  # (n_points, P): each element's tensor's
    abs_err, rel_err, allowed, score = scored(m, r, finite, scale, tol, roundoff)
    direct = finite & (score <= 1)
    flag = xp.zeros(score.shape, np.int8)
    if recheck is not None:
        wide_dt = jnp.promote_types(recheck.dtype, dt)
        m64, r64 = recheck.astype(wide_dt), reference.astype(wide_dt)
        ok64 = xp.isfinite(m64) & judged
        wide_tol = recheck_tol or tol
        err64, _, allowed64 = _errors(m64, r64, ok64, scale.astype(wide_dt), wide_tol)
        if recheck_roundoff is not None:
            own = recheck_roundoff.astype(wide_dt)
            allowed64 = xp.maximum(allowed64, wide_tol.noise * xp.where(xp.isfinite(own), own, 0))
        rounding = finite & ~direct & ok64 & (err64 <= xp.maximum(allowed64, 0))
        flag = xp.where(rounding, np.int8(ROUNDING), flag)
    if spread is not None:
        sp = xp.where(xp.isfinite(spread), spread.astype(dt), 0)
        widened = finite & ~direct & (flag == 0) & (abs_err <= tol.noise * sp)
        flag = xp.where(widened, np.int8(WIDENED), flag)
    passed = direct | (flag > 0)
    return Comparison(abs_err, rel_err, allowed, score, passed, flag, judged)


def scored(m, r, finite, scale, tol: Tolerance, roundoff=None):
    """``(abs_err, rel_err, allowed, score)`` of the rule (the module docstring) for ``m``
    and ``r`` in one dtype, elementwise, with ``finite`` (both sides finite), ``scale`` (the
    largest finite ``|r|`` of each element's tensor at its point) and ``roundoff`` (or None)
    broadcast to them. Traced or in NumPy (:func:`namespace`); every form of the rule
    computes its numbers here, so they agree to the bit."""
    xp = namespace(m)
    dt = m.dtype
    abs_err, rel_err, allowed = _errors(m, r, finite, scale, tol)
    if roundoff is not None:
        noise = roundoff.astype(dt)
        allowed = xp.maximum(allowed, tol.noise * xp.where(xp.isfinite(noise), noise, 0))
    allowed = xp.maximum(allowed, jnp.finfo(dt).tiny)  # rtol * tiny is subnormal: flushed to 0
    score = xp.where(finite, xp.where(abs_err == 0, 0.0, abs_err / allowed), np.inf)
    return abs_err, rel_err, allowed, score


def _tensor_scale(r: jax.Array, segments: np.ndarray, n_segments: int) -> jax.Array:
    """``(n_points, P)``: the largest finite ``|r|`` of each element's tensor at each point.

    Tensors that lie in consecutive runs of ``segments`` (every flat gradient does) are
    reduced slice by slice and broadcast back; XLA:CPU runs that several times faster than
    the scatter and gather a general ``segment_max`` needs.
    """
    xp = namespace(r)
    r_abs = xp.where(xp.isfinite(r), xp.abs(r), 0)
    segments = np.asarray(segments)
    starts = np.flatnonzero(np.diff(segments, prepend=-1))
    if len(starts) != n_segments or np.any(segments[starts] != np.arange(n_segments)):
        if xp is np:
            per = np.stack([r_abs[:, segments == k].max(axis=1) for k in range(n_segments)], 1)
        else:
            per = jax.vmap(lambda v: jax.ops.segment_max(v, segments, n_segments))(r_abs)
        return per[:, segments]
    ends = [*starts[1:].tolist(), segments.size]
    return xp.concatenate(
        [
            xp.broadcast_to(xp.max(r_abs[:, a:b], axis=1, keepdims=True), (r.shape[0], b - a))
            for a, b in zip(starts.tolist(), ends, strict=True)
        ],
        axis=1,
    )


def _errors(m, r, finite, scale, tol: Tolerance):
    """``(abs_err, rel_err, allowed)`` of the rule, before the roundoff clause."""
    xp = namespace(m)
    tiny = jnp.finfo(m.dtype).tiny
    denom = xp.maximum(xp.maximum(xp.abs(m), xp.abs(r)), xp.maximum(tol.floor * scale, tiny))
    abs_err = xp.where(finite, xp.abs(m - r), np.inf)
    rel_err = xp.where(finite, abs_err / denom, np.inf)
    return abs_err, rel_err, xp.maximum(tol.rtol * denom, tol.atol)


class Worst(NamedTuple):
    """Per element, over all points: the worst case and where it happened. All ``(P,)``.

    The worst point is the failing one with the largest score; with no failure, the flagged
    one (a pass on the second look) with the largest score; else the largest score. Points
    the reference cannot judge are chosen only when no point could be judged.
    """

    index: jax.Array  # the worst point
    manual: jax.Array
    reference: jax.Array
    abs_err: jax.Array
    rel_err: jax.Array
    allowed: jax.Array
    score: jax.Array
    n_failed: jax.Array  # judgeable points at which the element failed
    flag: jax.Array  # the precision flag at the worst point (0 when none)
    n_flagged: jax.Array  # points at which it passed only on the second look
    n_unjudged: jax.Array  # points at which the reference was not finite

    def values_at(self, i: int) -> dict:
        """Element ``i``'s worst-case values as the report writes them (NaN/Inf as strings)."""
        from audit.result import json_number  # result imports nothing from here; keeps it light

        return dict(
            manual=json_number(self.manual[i]),
            reference=json_number(self.reference[i]),
            abs_err=json_number(self.abs_err[i]),
            rel_err=json_number(self.rel_err[i]),
            allowed_err=json_number(self.allowed[i]),
            score=json_number(self.score[i]),
        )

    def rank(self) -> np.ndarray:
        """``(P,)``: 3 failing, 2 passing on the second look, 1 passing, 0 never judged."""
        return np.where(
            self.n_failed > 0,
            3,
            np.where(self.n_flagged > 0, 2, np.where(np.isfinite(self.reference), 1, 0)),
        )

    def verdict_at(self, i: int, dtype, cause: str | None = None) -> dict:
        """Element ``i``'s verdict fields: ``passed``, ``status``, ``precision``, ``not_judgeable``.

        ``status`` is ``"pass"``, ``"precision"`` (passed only on the second look; ``precision``
        then says how many digits the audited dtype lost and why, ``cause`` naming the
        likely source), ``"fail"``, or ``"not_judged"`` (the reference was not finite at any
        point). ``not_judgeable`` counts the points where the reference was not finite.
        """
        n_unjudged = int(self.n_unjudged[i])
        if self.n_failed[i]:
            status = "fail"
        elif not np.isfinite(self.reference[i]):  # only unjudgeable points to choose from
            status = "not_judged"
        elif self.n_flagged[i]:
            status = "precision"
        else:
            status = "pass"
        precision = None
        if status == "precision":
            name = jnp.dtype(dtype).name
            eps = float(jnp.finfo(dtype).eps)
            digits = max(1, round(float(np.log10(max(float(self.rel_err[i]), eps) / eps))))
            how = (
                "agrees with the reference when evaluated in float64"
                if int(self.flag[i]) == ROUNDING
                else "passes within a tolerance widened to noise x its measured spread under "
                f"one-ulp nudges: it computes only in {name}, so rounding cannot be told "
                "from a wrong formula"
            )
            text = f"loses {digits} digits in {name} here"
            text += f": {cause}; {how}" if cause else f"; {how}"
            precision = dict(
                digits_lost=digits,
                points=int(self.n_flagged[i]),
                how="float64" if int(self.flag[i]) == ROUNDING else "widened",
                text=text,
            )
        return dict(
            passed=status in ("pass", "precision"),
            status=status,
            precision=precision,
            not_judgeable=n_unjudged,
        )


def unjudged_note(
    n_rows: int,
    total: int,
    first: np.ndarray,
    labels: Sequence[str],
    names: Sequence[str],
) -> str | None:
    """A note on the points where the reference was not finite, or None when there are none.

    ``n_rows`` of ``total`` points hold a non-finite reference; ``first`` is
    ``(point, element, manual, reference)`` of the first (point -1 when none); ``labels``
    name the points and ``names`` the elements.
    """
    if not n_rows or first[0] < 0:
        return None
    k, j = int(first[0]), int(first[1])
    return (
        f"jax.grad was not finite at {n_rows} of {total} points (first: {labels[k]}, "
        f"{names[j]}: jax.grad {float(first[3]):.4g}, handwritten {float(first[2]):.4g}); "
        "there the reference cannot judge, so those values are neither passed nor failed"
    )


def worst_over_points(manual, reference, cmp: Comparison) -> Worst:
    """Reduce a :class:`Comparison` over the points axis, keeping each element's worst case.

    Runs in NumPy on the host (the arrays are already there for the report). Ties go to the
    first point.
    """
    score = np.asarray(cmp.score)  # never NaN: inf where either side is not finite
    passed, judged = np.asarray(cmp.passed), np.asarray(cmp.judged)
    flag = np.asarray(cmp.flag)
    failed = judged & ~passed
    if judged.all() and passed.all() and not flag.any():  # the common case: all plain passes
        idx = np.argmax(score, axis=0)
    else:
        # rank: failing 3 > flagged 2 > passing 1 > not judgeable 0; the worst point has the
        # largest rank, then the largest score
        rank = np.where(failed, 3, np.where(flag > 0, 2, np.where(judged, 1, 0)))
        top = rank == rank.max(axis=0, keepdims=True)
        idx = np.argmax(np.where(top, score, -1.0), axis=0)

    def at(a):
        return np.take_along_axis(np.asarray(a), idx[None, :], axis=0)[0]

    return Worst(
        idx,
        at(manual),
        at(reference),
        at(cmp.abs_err),
        at(cmp.rel_err),
        at(cmp.allowed),
        at(cmp.score),
        np.sum(failed, axis=0),
        at(flag),
        np.sum(flag > 0, axis=0),
        np.sum(~judged, axis=0),
    )


class Summary(NamedTuple):
    """A comparison reduced over its rows on the device: what the report needs, ``(P,)`` each.

    ``rank`` is 3 failing, 2 passing on the second look, 1 passing, 0 not judgeable, -1 no
    row counted; ``index`` is the worst row (largest rank, then largest score, first on
    ties) and the value fields are that row's. The last three fields are global: whether a
    judged reference is non-zero anywhere, how many rows hold a non-finite reference, and
    the first such (row, element) with its handwritten and reference values.
    """

    index: jax.Array
    rank: jax.Array
    manual: jax.Array
    reference: jax.Array
    abs_err: jax.Array
    rel_err: jax.Array
    allowed: jax.Array
    score: jax.Array
    flag: jax.Array
    n_failed: jax.Array
    n_flagged: jax.Array
    n_unjudged: jax.Array
    nonzero: jax.Array  # ()
    unjudged_rows: jax.Array  # ()
    first_unjudged: jax.Array  # (4,) row, element, manual, reference; row -1 when none


def summarize(manual, reference, cmp: Comparison, keep, valid) -> Summary:
    """Reduce ``(rows, P)`` over its rows, counting only rows where ``keep`` (``(rows,)``).

    ``valid`` marks the real rows (the rest pad the points to fill devices or a program's
    size): the global fields count every valid row, the per-element ones only kept rows.
    Traced, one pass over the arrays so that nothing of size ``rows * P`` leaves the
    device; or in NumPy, for rows judged on the host (:func:`namespace`).
    """
    xp = namespace(manual)
    keep2, valid2 = keep[:, None], valid[:, None]
    failed = cmp.judged & ~cmp.passed & keep2
    rank = xp.where(
        ~keep2, -1, xp.where(failed, 3, xp.where(cmp.flag > 0, 2, xp.where(cmp.judged, 1, 0)))
    ).astype(np.int8)
    if rank.shape[0] == 1:  # one row, as a wide network's scan steps: nothing to choose
        top, idx = rank[0], xp.zeros(rank.shape[1:], np.int32)

        def at(a):
            return a[0]

    else:
        top = xp.max(rank, axis=0)
        idx = xp.argmax(xp.where(rank == top[None], cmp.score, -1.0), axis=0)

        def at(a):
            return xp.take_along_axis(a, idx[None, :], axis=0)[0]

    unjudged = ~cmp.judged & valid2
    first = _first_true(unjudged.ravel())
    row, col = first // unjudged.shape[1], first % unjudged.shape[1]
    any_unjudged = unjudged.ravel()[first]
    return Summary(
        idx.astype(np.int32), top, at(manual), at(reference), at(cmp.abs_err),
        at(cmp.rel_err), at(cmp.allowed), at(cmp.score), at(cmp.flag),
        xp.sum(failed, axis=0, dtype=np.int32),
        xp.sum((cmp.flag > 0) & keep2, axis=0, dtype=np.int32),
        xp.sum(~cmp.judged & keep2, axis=0, dtype=np.int32),
        xp.any(cmp.judged & valid2 & (reference != 0)),
        xp.sum(xp.any(unjudged, axis=1), dtype=np.int32),
        xp.stack([
            xp.where(any_unjudged, row, -1).astype(np.float64),
            col.astype(np.float64),
            manual[row, col].astype(np.float64),
            reference[row, col].astype(np.float64),
        ]),
    )  # fmt: skip


def _first_true(flags):
    """The index of the first True of ``flags`` (1-D), 0 when there is none, as ``argmax``
    finds it; traced, the search runs only when some flag is set: XLA:CPU's argmax goes
    value by value, and a wide network's scan paid it at every step for a reference that
    is finite everywhere."""
    if namespace(flags) is np:
        return np.argmax(flags)
    found = jax.eval_shape(jnp.argmax, flags)
    return jax.lax.cond(
        jnp.any(flags), jnp.argmax, lambda f: jnp.zeros(found.shape, found.dtype), flags
    )


def merge(a: Summary, b: Summary) -> Summary:
    """Two summaries of disjoint rows (NumPy, row indices already global) as one."""
    a = Summary(*(np.asarray(f) for f in a))
    b = Summary(*(np.asarray(f) for f in b))
    take_b = (b.rank > a.rank) | (
        (b.rank == a.rank) & ((b.score > a.score) | ((b.score == a.score) & (b.index < a.index)))
    )
    picked = [np.where(take_b, fb, fa) for fa, fb in zip(a[:9], b[:9], strict=True)]
    counts = [fa + fb for fa, fb in zip(a[9:12], b[9:12], strict=True)]
    return Summary(*picked, *counts, a.nonzero, a.unjudged_rows, a.first_unjudged)


def merge_traced(a: Summary, b: Summary) -> Summary:
    """:func:`joined` of two traced summaries, ``a``'s rows before ``b``'s (row indices
    already global): the running worst case of a scan over blocks of points."""
    take_b = (b.rank > a.rank) | (
        (b.rank == a.rank) & ((b.score > a.score) | ((b.score == a.score) & (b.index < a.index)))
    )
    picked = [jnp.where(take_b, fb, fa) for fa, fb in zip(a[:9], b[:9], strict=True)]
    counts = [fa + fb for fa, fb in zip(a[9:12], b[9:12], strict=True)]
    first = jnp.where(a.first_unjudged[0] >= 0, a.first_unjudged, b.first_unjudged)
    return Summary(*picked, *counts, a.nonzero | b.nonzero, a.unjudged_rows + b.unjudged_rows,
                   first)  # fmt: skip


def empty_summary(like: Summary) -> Summary:
    """A summary of no rows shaped and typed as ``like`` (arrays or ``ShapeDtypeStruct``):
    rank -2, below any counted or uncounted row, so the first block replaces every field."""
    zeros = [jnp.zeros(f.shape, f.dtype) for f in like]
    out = Summary(*zeros)
    return out._replace(
        rank=jnp.full(like.rank.shape, -2, like.rank.dtype),
        first_unjudged=jnp.array([-1.0, 0.0, 0.0, 0.0], like.first_unjudged.dtype),
    )


def joined(parts: Sequence[Summary], rows: Sequence[int]) -> Summary:
    """Summaries of consecutive blocks of ``rows[k]`` rows each, as one over all of them."""
    total = None
    offset = 0
    for s, n in zip(parts, rows, strict=True):
        s = Summary(*(np.asarray(f) for f in s))
        first = s.first_unjudged.copy()
        if first[0] >= 0:
            first[0] += offset
        s = s._replace(index=s.index + offset, first_unjudged=first)
        if total is None:
            total = s
        else:
            total = merge(total, s)._replace(
                nonzero=total.nonzero | s.nonzero,
                unjudged_rows=total.unjudged_rows + s.unjudged_rows,
                first_unjudged=total.first_unjudged if total.first_unjudged[0] >= 0 else first,
            )
        offset += n
    return total


def worst_of(s: Summary) -> Worst:
    """The :class:`Worst` of a (host) summary."""
    s = Summary(*(np.asarray(f) for f in s))
    return Worst(
        s.index, s.manual, s.reference, s.abs_err, s.rel_err, s.allowed, s.score,
        s.n_failed, s.flag, s.n_flagged, s.n_unjudged,
    )  # fmt: skip


# The comparison rule in words, as every report states it (the numbers sit beside it).
RULE = (
    "an element passes when both values are finite and abs_err <= allowed, with allowed = "
    "max(rtol * max(|m|, |r|, floor * max|r| of the same tensor at the same point), atol, "
    "noise * roundoff of jax.grad in the audited dtype); score = abs_err / allowed. One "
    "that fails in a dtype narrower than float64 passes as PASS* when the handwritten "
    "function agrees with jax.grad in float64 there (rounding, not a wrong formula); where "
    "jax.grad is not finite the point is not judged. Each weight is shown at its worst "
    "point (a failure, else a PASS*, else the largest score)"
)


def tolerance_dict(tol: Tolerance) -> dict:
    """The tolerance as a report states it: its numbers and :data:`RULE`."""
    return dict(rtol=tol.rtol, atol=tol.atol, floor=tol.floor, noise=tol.noise, rule=RULE)
