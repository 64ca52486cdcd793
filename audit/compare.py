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
(float64 audits), ``roundoff`` is 0 and this clause passes nothing.

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
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DEFAULT_TOLERANCES", "Tolerance", "compare", "default_tolerance", "worst_over_points"]


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
    allowed: jax.Array  # the largest abs_err that passes there
    score: jax.Array  # abs_err / allowed: <= 1 passes, inf for NaN/Inf
    passed: jax.Array


def compare(
    manual: jax.Array,
    reference: jax.Array,
    roundoff: jax.Array | None,
    segments: np.ndarray,
    n_segments: int,
    tol: Tolerance,
) -> Comparison:
    """Compare flat gradients at many points.

    Args:
      manual, reference: ``(n_points, P)`` float; compared in the wider of the two dtypes.
      roundoff: ``(n_points, P)`` the reference's own error in ``manual``'s dtype (see the
        module docstring), or None when the reference already is in that dtype.
      segments: ``(P,)`` int, the tensor (leaf) each element belongs to.
      n_segments: number of tensors.
      tol: the thresholds.

    Returns:
      A :class:`Comparison` of ``(n_points, P)`` arrays.
    """
    dt = jnp.promote_types(manual.dtype, reference.dtype)
    m, r = manual.astype(dt), reference.astype(dt)
    finite = jnp.isfinite(m) & jnp.isfinite(r)
    r_abs = jnp.where(jnp.isfinite(r), jnp.abs(r), 0)
    scale = jax.vmap(lambda v: jax.ops.segment_max(v, segments, n_segments))(r_abs)
    floor = tol.floor * scale[:, segments]
    tiny = jnp.finfo(dt).tiny
    denom = jnp.maximum(jnp.maximum(jnp.abs(m), jnp.abs(r)), jnp.maximum(floor, tiny))
    abs_err = jnp.where(finite, jnp.abs(m - r), jnp.inf)
    rel_err = jnp.where(finite, abs_err / denom, jnp.inf)
    allowed = jnp.maximum(tol.rtol * denom, tol.atol)
    if roundoff is not None:
        noise = roundoff.astype(dt)
        allowed = jnp.maximum(allowed, tol.noise * jnp.where(jnp.isfinite(noise), noise, 0))
    allowed = jnp.maximum(allowed, tiny)  # rtol * tiny is subnormal: flushed to 0 on CPU
    score = jnp.where(finite, jnp.where(abs_err == 0, 0.0, abs_err / allowed), jnp.inf)
    passed = finite & (score <= 1)
    return Comparison(abs_err, rel_err, allowed, score, passed)


class Worst(NamedTuple):
    """Per element, over all points: the worst case and where it happened. All ``(P,)``."""

    index: jax.Array  # point with the largest score
    manual: jax.Array
    reference: jax.Array
    abs_err: jax.Array
    rel_err: jax.Array
    allowed: jax.Array
    score: jax.Array
    n_failed: jax.Array  # points at which the element failed

    def values_at(self, i: int) -> dict:
        """Element ``i``'s worst-case values as the report writes them (NaN/Inf as strings)."""
        from audit.result import number  # result imports nothing from here; keeps it light

        return dict(
            manual=number(self.manual[i]),
            reference=number(self.reference[i]),
            abs_err=number(self.abs_err[i]),
            rel_err=number(self.rel_err[i]),
            allowed_err=number(self.allowed[i]),
            score=number(self.score[i]),
        )


def worst_over_points(manual, reference, cmp: Comparison) -> Worst:
    """Reduce a :class:`Comparison` over the points axis, keeping each element's worst case.

    Runs in NumPy on the host (the arrays are already there for the report). The worst point
    has the largest ``score`` (NaN/Inf count as infinite); ties go to the first point.
    """
    score = np.nan_to_num(np.asarray(cmp.score, np.float64), nan=np.inf)
    idx = np.argmax(score, axis=0)

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
        np.sum(~np.asarray(cmp.passed), axis=0),
    )


def concat(parts: list[Comparison]) -> Comparison:
    """Join the comparisons of several point groups along the points axis (on the host)."""
    return Comparison(*(np.concatenate([np.asarray(p[f]) for p in parts]) for f in range(5)))
