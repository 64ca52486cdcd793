"""The first pass of every audit program (:func:`audit.gradients.in_two_passes`), compiled
for the shape it usually has: every point compared by the plain rule, the points with a
failing element set apart, each element's worst point among the others.

:func:`audit.compare.compare` and :func:`audit.compare.summarize` compute a dozen
``(rows, P)`` arrays and reduce each over the rows. XLA:CPU runs that at a fraction of its
speed when ``P`` is small: on a 2-2-1 network (9 values a point) at 262,144 points the rule
and its summary took 60 ms of a 120 ms program, the gradients the rest. Most of it went to
reductions over rows of 9 values and to arrays laid out 9 values wide.

:func:`plain_pass` computes the same summary in the layout that keeps the long axis inside
(values x points when there are more points than values, else points x values as the
gradients come), computes the rule's score once,
reduces it twice (the failing points, then each element's worst row) and works the other
fields out again at the worst row alone, with the same function
(:func:`audit.compare.scored`), so every number is the bit the general form gives. In the
first pass nothing is flagged and no kept row fails, which is what makes one reduction
enough. The tests compare both forms field by field, in every case the general form
handles (a reference not finite, no point kept, padding rows). The 2-2-1 program, both
forms compiled in one process and called in turn: 105 ms became 75 ms at 262,144 points,
1.52 ms became 1.07 ms at 4,096. A wide network's scan takes a few points a step
(:func:`audit.gradients.block_points`) and judges them here together: the general form's
gathers at each element's worst row, and a running worst case merged once a point, had cost
more than a third of the 64-256-256-10's program (a profile: 38 of 110 ms at 64 points in
selects alone); its call at 512 points went from 1.46 to 1.29 s (median of three processes
each, old and new code in turn). Where a tensor's values are not in one run it returns None
and the general form runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from audit.compare import Summary, Tolerance, scored

__all__ = ["NARROW", "applies", "plain_pass"]

# a tensor of at most this many values takes its largest |reference| as an elementwise
# maximum of its values' rows: XLA:CPU reduces over a few values at a time far slower
NARROW = 16


def _runs(segments: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal values in ``segments`` (``(P,)``), in order."""
    starts = np.flatnonzero(np.diff(segments, prepend=-1)).tolist()
    return list(zip(starts, [*starts[1:], segments.size][: len(starts)], strict=True))


def _segment_tops(r_abs: jax.Array, segments: np.ndarray, rows_inside: bool) -> list[jax.Array]:
    """One ``(rows,)`` array per tensor: the largest value of ``r_abs`` over that tensor's
    values, for tensors in consecutive runs of ``segments`` (``(P,)``, as every flat
    gradient lays them). ``r_abs`` is ``(P, rows)`` when ``rows_inside``, else ``(rows, P)``."""
    tops = []
    for a, b in _runs(segments):
        if not rows_inside:
            top = jnp.max(r_abs[:, a:b], axis=1)
        elif b - a <= NARROW:
            top = r_abs[a]
            for j in range(a + 1, b):
                top = jnp.maximum(top, r_abs[j])
        else:
            top = jnp.max(r_abs[a:b], axis=0)
        tops.append(top)
    return tops


def _spread(tops: jax.Array, segments: np.ndarray) -> jax.Array:
    """``(rows, P)``: each value's tensor's entry of ``tops`` (``(S, rows)``), laid out
    tensor by tensor."""
    rows = tops.shape[1]
    return jnp.concatenate(
        [jnp.broadcast_to(tops[k][:, None], (rows, b - a))
         for k, (a, b) in enumerate(_runs(segments))],
        axis=1,
    )  # fmt: skip


def applies(segments: np.ndarray) -> bool:
    """Whether :func:`plain_pass` computes rows of values in ``segments`` (``(P,)``, the
    tensor of each value): tensor ``k`` the ``k``-th run of values, as every flat gradient
    lays them. Known from the shapes alone, before anything is traced."""
    segments = np.asarray(segments)
    starts = [a for a, _ in _runs(segments)]
    return bool(np.array_equal(segments[starts], np.arange(len(starts))))


def plain_pass(
    manual: jax.Array,
    reference: jax.Array,
    segments: np.ndarray,
    tol: Tolerance,
    ok: jax.Array,
    rows_per_point: int,
) -> tuple[Summary, jax.Array] | None:
    """The first pass's ``(Summary, bad)``, traced: what :func:`audit.gradients.finish`
    returns for ``mode="first"`` from the plain rule's comparison of ``manual`` and
    ``reference`` (``(rows, P)`` each), every field the same. None where a tensor's values
    are not in one run (:func:`applies`).

    ``segments``: ``(P,)`` the tensor of each value; ``ok``: ``(rows,)`` the real rows
    (the rest pad the points); ``rows_per_point`` rows make a point. ``bad``: ``(points,)``
    the points where an element fails. Row indices count from the call's first row.
    """
    segments = np.asarray(segments)
    n_rows, n_values = manual.shape
    if not applies(segments):
        return None
    dt = jnp.promote_types(manual.dtype, reference.dtype)
    # the long axis inside, where XLA:CPU computes many values per instruction: values x
    # rows when rows outnumber values, else rows x values as given
    inside = n_rows > n_values
    m, r = manual.astype(dt), reference.astype(dt)
    if inside:
        m, r = m.T, r.T
    along, across = (1, 0) if inside else (0, 1)  # axes of the rows and of the values
    judged = jnp.isfinite(r)
    finite = jnp.isfinite(m) & judged
    r_abs = jnp.where(judged, jnp.abs(r), 0)
    tops = jnp.stack(_segment_tops(r_abs, segments, inside))  # (S, rows)
    score = scored(m, r, finite, tops[segments] if inside else _spread(tops, segments), tol)[3]
    score = jax.lax.optimization_barrier(score)  # computed once, reduced twice

    def by_row(a):  # (rows,) broadcast along the values
        return a[None, :] if inside else a[:, None]

    ok_b = by_row(ok)
    failed = judged & ~(finite & (score <= 1)) & ok_b
    per_row = jnp.any(failed, axis=across)
    bad = jnp.any(per_row.reshape(n_rows // rows_per_point, rows_per_point), axis=1)
    keep = ok & ~jnp.repeat(bad, rows_per_point, axis=0)
    any_keep = jnp.any(keep)
    keep_b = by_row(keep)
    # each element's worst row: its largest score among the kept rows where the reference
    # is finite (rank 1), else its first kept row (rank 0: the reference not finite at any
    # kept row, a score of inf at each), else, when no row is kept, its largest score
    key = jnp.where(keep_b, jnp.where(judged, score, -1.0), -2.0)
    idx = jnp.argmax(jnp.where(any_keep, key, score), axis=along)  # (P,)
    values = np.arange(n_values)
    m_at, r_at = manual[idx, values], reference[idx, values]
    m1, r1 = m_at.astype(dt), r_at.astype(dt)
    judged_at = jnp.isfinite(r1)
    abs_err, rel_err, allowed, score_at = scored(
        m1, r1, jnp.isfinite(m1) & judged_at, tops[segments, idx], tol
    )
    rank = jnp.where(keep[idx], jnp.where(judged_at, 1, 0), -1).astype(jnp.int8)
    zeros = jnp.zeros(n_values, jnp.int32)

    def unjudged_fields(r, keep_b):  # the reference not finite at some real row
        unjudged = ~jnp.isfinite(r) & ok_b
        in_row = jnp.any(unjudged, axis=across)  # (rows,)
        row = jnp.argmax(in_row)
        col = jnp.argmax(unjudged[:, row] if inside else unjudged[row])
        return (
            jnp.sum(unjudged & keep_b, axis=along, dtype=jnp.int32),
            jnp.sum(in_row, dtype=jnp.int32),
            jnp.stack([row.astype(jnp.float64), col.astype(jnp.float64),
                       manual[row, col].astype(jnp.float64),
                       reference[row, col].astype(jnp.float64)]),
        )  # fmt: skip

    def all_judged(r, keep_b):
        first = jnp.stack([jnp.float64(-1), jnp.float64(0), manual[0, 0].astype(jnp.float64),
                           reference[0, 0].astype(jnp.float64)])  # fmt: skip
        return zeros, jnp.int32(0), first

    n_unjudged, unjudged_rows, first_unjudged = jax.lax.cond(
        jnp.all(judged | ~ok_b), all_judged, unjudged_fields, r, keep_b
    )
    summary = Summary(
        idx.astype(jnp.int32), rank, m_at, r_at, abs_err, rel_err, allowed, score_at,
        jnp.zeros(n_values, jnp.int8), zeros, zeros, n_unjudged,
        jnp.any(judged & ok_b & (r != 0)), unjudged_rows, first_unjudged,
    )  # fmt: skip
    return summary, bad
