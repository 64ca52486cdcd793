"""Central finite differences: a third opinion, independent of both gradient functions.

At each chosen (weight, point) pair the loss is differenced with the step of :func:`fd_step`,
and the error of that estimate is measured from steps ``2h`` and ``h/2`` (and never put below
the loss's own rounding divided by the step), so a reader sees how far to trust it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from audit.gradients import NUDGES, nudged
from audit.layout import cast_floats, flat_points, n_points, unflatten
from audit.points import PointGroup, by_group
from audit.tiers import compile_ahead, tiered, traced_once, work

__all__ = [
    "ROUNDOFF_NOISE",
    "ROUNDOFF_ULPS",
    "VMAP_STEPS_MAX",
    "fd_step",
    "finite_differences",
    "finite_differences_ahead",
]

# units in the last place of the loss a central difference's error estimate allows for at
# least: the loss's own rounding, divided by the step
ROUNDOFF_ULPS = 32
# with measured=True: the loss's spread under the reference's one-ulp nudges of the point
# (audit.gradients.nudged), times ROUNDOFF_NOISE, also bounds the error (3 more loss
# evaluations a difference)
ROUNDOFF_NOISE = 8
# parameters up to which the six steps of a difference go through one vmapped loss
VMAP_STEPS_MAX = 1 << 12
# differences computed side by side (a vmap) hold at most about this many parameters
# between them, and at most FD_BATCH_MAX differences: 512 differences of a 64-256-256-10
# network (84,490 parameters) took 1.48 s 64 at a time, 1.14 s 12 at a time (both compiled
# in one process and called in turn)
FD_BATCH_VALUES = 1 << 20
FD_BATCH_MAX = 64


def fd_step(p: jax.Array) -> jax.Array:
    """Central-difference step: ``eps^(1/3) * max(1, |p|)``, the balance of truncation
    (``h^2``) and roundoff (``eps / h``) error, exactly representable as ``(p + h) - p``."""
    eps = jnp.finfo(p.dtype).eps
    h = eps ** (1 / 3) * jnp.maximum(1, jnp.abs(p))
    return (p + h) - p


def finite_differences(
    loss_fn: Callable,
    groups: list[PointGroup],
    weights: np.ndarray,
    points: np.ndarray,
    *,
    dtype,
    measured: bool = False,
) -> np.ndarray:
    """Central differences of ``loss_fn`` for chosen (weight, point) pairs.

    Args:
      loss_fn: ``(params, x, y) -> scalar``.
      groups: the point groups; ``points`` index their concatenation.
      weights, points: ``(m,)`` ints, flat weight index and point index of each pair.
      dtype: the dtype to difference in (float64 when available).

    Returns:
      ``(estimates, error)``, each ``(m,)``: the central difference ``D(h)`` and an
      estimate of its error, ``max(|D(2h) - D(h)|, |D(h/2) - D(h)|)``: truncation grows
      with the step and roundoff shrinks with it, so one of the two neighbours shows each
      (a loss that cancels, like a log-sum-exp near its maximum, has far more roundoff
      than its own size suggests); at least :data:`ROUNDOFF_ULPS` units in the last place
      of the loss divided by ``h``, since the loss's values lie on a grid that two steps
      can share exactly.
    """
    out = np.full((2, len(weights)), np.nan)
    for k, here, local in by_group([g.size for g in groups], points):
        out[:, here] = _fd_group(loss_fn, groups[k], weights[here], local, dtype, measured)
    return out[0], out[1]


def _fd_args(loss_fn, g: PointGroup, widx, local, dtype, measured=False, *,
             shapes_only: bool = False) -> tuple:  # fmt: skip
    """The program's arguments: only the ``m`` points the pairs difference at, taken on the
    host (a gather on the device would compile once per leaf shape), so a call costs the
    same whatever the number of points the audit compared. ``shapes_only``: their shapes
    and dtypes (``jax.ShapeDtypeStruct``), enough to compile for."""
    treedef = jax.tree.structure(g.params)
    shapes = tuple(tuple(leaf.shape[1:]) for leaf in jax.tree.leaves(g.params))

    def taken(a):
        if shapes_only:
            return jax.ShapeDtypeStruct((len(local), *np.shape(a)[1:]), a.dtype)
        return np.asarray(a)[local]

    params, x, y = jax.tree.map(taken, (g.params, g.x, g.y))
    at = np.arange(len(local), dtype=np.int32)
    n_params = sum(int(np.prod(s)) for s in shapes)
    batch = max(1, min(FD_BATCH_MAX, FD_BATCH_VALUES // max(n_params, 1)))
    return loss_fn, treedef, shapes, jnp.dtype(dtype).name, measured, batch, params, x, y, widx, at


def _fd_program(g: PointGroup, m: int) -> Callable:
    """The compiled form (:mod:`audit.tiers`) for ``m`` differences at points of ``g``."""
    return _fd_jit.pick(work(g.params, g.batch, m))


def _fd_group(loss_fn, g: PointGroup, widx, local, dtype, measured=False) -> np.ndarray:
    args = _fd_args(loss_fn, g, widx, local, dtype, measured)
    return np.asarray(_fd_program(g, len(widx))(*args))


def finite_differences_ahead(loss_fn: Callable, group: PointGroup, m: int, *, dtype):
    """Start compiling :func:`finite_differences` for ``m`` (weight, point) pairs of one
    group, while the caller goes on (:func:`compile_ahead`). Only the arguments' shapes are
    made: the points themselves would be read back from the device at every call."""
    args = _fd_args(loss_fn, group, np.zeros(m, np.int64), np.zeros(m, np.int32), dtype,
                    shapes_only=True)  # fmt: skip
    return compile_ahead(_fd_program(group, m), *args)


@tiered(static_argnames=("loss_fn", "treedef", "shapes", "dtype", "measured", "batch"))
def _fd_jit(loss_fn, treedef, shapes, dtype, measured, batch, params, x, y, widx, local):
    # cast and flatten here: outside, each leaf shape would cost a compilation of its own
    loss_fn = traced_once(loss_fn)  # the trace the reference's gradient starts from, reused
    flat = flat_points(cast_floats(params, dtype), n_points(params))
    x, y = cast_floats((x, y), dtype)

    def unravel(v):
        return unflatten(v, treedef, shapes)

    def one(args):
        i, k = args
        p = flat[k]
        xk, yk = jax.tree.map(lambda a: a[k], (x, y))
        h = fd_step(p[i])
        steps = jnp.stack([h, -h, 2 * h, -2 * h, h / 2, -h / 2])

        def moved(s):
            return loss_fn(unravel(p.at[i].add(s)), xk, yk)

        if p.shape[0] <= VMAP_STEPS_MAX:
            # one vmapped copy of the loss: half the compile time of six, for a small network,
            # whose first call is mostly compiling
            losses = jax.vmap(moved)(steps)
        else:
            # six copies: a vmap would hold six moved copies of a wide network's params at
            # once, and a loop over one copy runs slower
            losses = jnp.stack([moved(steps[k]) for k in range(6)])
        up, down = losses[0::2], losses[1::2]
        diffs = (up - down) / (2 * steps[0::2])  # D(h), D(2h), D(h/2)
        d = diffs[0]
        size = jnp.maximum(jnp.abs(up[0]), jnp.abs(down[0]))
        # the loss is known to a few units in its last place: differences of it are multiples
        # of that grid, which two neighbouring steps can happen to share exactly
        grid = ROUNDOFF_ULPS * jnp.finfo(d.dtype).eps * size / h
        err = jnp.maximum(jnp.abs(diffs[1] - d), jnp.abs(diffs[2] - d))
        err = jnp.maximum(err, grid)
        if measured:
            # a loss that sums terms of both signs is known to the terms' last place, not
            # its own: how far it moves when the point is nudged by one ulp shows that
            err = jnp.maximum(err, ROUNDOFF_NOISE * loss_spread(p, xk, yk) / h)
        return jnp.stack([d, err])

    def loss_spread(p, xk, yk):
        copies = [(p, xk, yk)] + [nudged(p, xk, yk, b) for b in range(NUDGES)]
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *copies)
        losses = jax.vmap(lambda q, xq, yq: loss_fn(unravel(q), xq, yq))(*stacked)
        return jnp.max(jnp.abs(losses[1:] - losses[0]))

    return jax.lax.map(one, (widx, local), batch_size=batch).T
