"""Element-by-element comparison of handwritten and reference gradients, and its tolerances.

The rule, for every element at every point::

    abs_err = |m - r|
    rel_err = abs_err / max(|m|, |r|, floor * scale, tiny)
    passed  = m and r finite  and  (rel_err <= rtol  or  abs_err <= atol
                                    or abs_err <= noise * |r_same - r|)

``scale`` is the largest ``|r|`` of the same tensor (leaf) at the same point, so an element
that is tiny next to its neighbours is judged against the tensor's size rather than its own:
roundoff there cannot raise a false alarm, while a small gradient that is off by a factor 2
still fails as long as it is above ``floor`` of its tensor. NaN or Inf on either side always
fails (its errors are reported as ``inf``). ``atol`` defaults to 0: the floor already covers
exact and near-zero gradients.

``r_same`` is the reference computed again in the handwritten gradient's own dtype. Where the
value itself cannot be computed to ``rtol`` in that dtype (a difference of two nearly equal
numbers, such as ``A3 - yt`` when a float32 sigmoid saturates), ``|r_same - r|`` measures the
roundoff that even ``jax.grad`` makes there, and a handwritten value within ``noise`` times
that is not called wrong. In float64 (``r_same = r``) this clause never passes anything.

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
    passed: jax.Array


def compare(
    manual: jax.Array,
    reference: jax.Array,
    reference_same: jax.Array | None,
    segments: np.ndarray,
    n_segments: int,
    tol: Tolerance,
) -> Comparison:
    """Compare flat gradients at many points.

    Args:
      manual, reference: ``(n_points, P)`` float; compared in the wider of the two dtypes.
      reference_same: ``(n_points, P)`` the reference in ``manual``'s dtype, or None when
        the reference already is in that dtype.
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
    ok = (rel_err <= tol.rtol) | (abs_err <= tol.atol)
    if reference_same is not None:
        noise = jnp.abs(reference_same.astype(dt) - r)
        ok = ok | (abs_err <= tol.noise * jnp.where(jnp.isfinite(noise), noise, 0))
    passed = finite & ok
    return Comparison(abs_err, rel_err, passed)


class Worst(NamedTuple):
    """Per element, over all points: the worst case and where it happened. All ``(P,)``."""

    index: jax.Array  # point with the largest rel_err (failures first)
    manual: jax.Array
    reference: jax.Array
    abs_err: jax.Array
    rel_err: jax.Array
    n_failed: jax.Array  # points at which the element failed


def worst_over_points(manual: jax.Array, reference: jax.Array, cmp: Comparison) -> Worst:
    """Reduce a :class:`Comparison` over the points axis, keeping each element's worst case.

    A failed point outranks any passing one (so an ``atol`` pass with a large rel_err is not
    picked over a real failure); among equals the larger rel_err wins, ties the first point.
    """
    key = jnp.where(cmp.passed, 0.0, 1.0) + jnp.where(
        jnp.isfinite(cmp.rel_err), cmp.rel_err / (1 + cmp.rel_err), 1.0
    )  # failures in (1, 2], passes in [0, 1): one order for both
    idx = jnp.argmax(key, axis=0)

    def at(a):
        return jnp.take_along_axis(a, idx[None, :], axis=0)[0]

    return Worst(
        idx,
        at(manual),
        at(reference),
        at(cmp.abs_err),
        at(cmp.rel_err),
        jnp.sum(~cmp.passed, axis=0),
    )
