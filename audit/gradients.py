"""Evaluate handwritten and reference gradients at every point, compare, keep the worst.

Works on any params pytree and any scalar ``loss_fn(params, x, y)``: the handwritten
``grad_fn(params, x, y)`` must return the same pytree. Gradients are flattened in
``jax.tree.leaves`` order, each leaf raveled row-major.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from audit.compare import Comparison, Tolerance, compare, concat, worst_over_points
from audit.points import PointGroup, shard_points, to_host
from jaxbp._validate import check_grads_like

__all__ = ["Evaluation", "Layout", "evaluate", "finite_differences", "layout_of"]

_UNTRACEABLE = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


class Layout(NamedTuple):
    """How a flat gradient vector maps back to the pytree."""

    segments: np.ndarray  # (P,) leaf index of each element
    n_segments: int
    shapes: tuple[tuple[int, ...], ...]  # per leaf
    offsets: tuple[int, ...]  # per leaf, first flat index


def layout_of(params) -> Layout:
    """The flat layout of one point's params (no leading points axis)."""
    shapes = tuple(tuple(leaf.shape) for leaf in jax.tree.leaves(params))
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = tuple(int(o) for o in np.cumsum([0, *sizes[:-1]]))
    segments = np.repeat(np.arange(len(shapes)), sizes)
    return Layout(segments, len(shapes), shapes, offsets)


def _flat(tree, n: int) -> jax.Array:
    return jnp.concatenate([leaf.reshape(n, -1) for leaf in jax.tree.leaves(tree)], axis=1)


def _flat_grads(fn, params, x, y):
    return _flat(jax.vmap(fn)(params, x, y), x.shape[0])


def _point(group: PointGroup, i: int):
    return jax.tree.map(lambda a: a[i], group.params), group.x[i], group.y[i]


def is_traceable(grad_fn: Callable, group: PointGroup) -> bool:
    """Check ``grad_fn``'s output pytree on the first point; False if it cannot be traced.

    Raises:
      ValueError: the gradients' structure or shapes differ from the params (naming the
        leaves), or ``grad_fn`` fails for another reason.
    """
    params, x, y = _point(group, 0)
    who = getattr(grad_fn, "__name__", "grad_fn")
    try:
        shapes = jax.eval_shape(grad_fn, params, x, y)
        traced = True
    except _UNTRACEABLE:
        shapes = jax.tree.map(jnp.asarray, grad_fn(params, x, y))
        traced = False
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}(params, x, y) failed on the first audit point: {e}") from e
    check_grads_like(params, shapes, who)
    return traced


def _flat_grads_loop(grad_fn: Callable, group: PointGroup) -> jax.Array:
    rows = []
    for i in range(group.size):
        g = jax.tree.map(jnp.asarray, grad_fn(*_point(group, i)))
        rows.append(_flat(jax.tree.map(lambda a: a[None], g), 1)[0])
    return jnp.stack(rows)


class Evaluation(NamedTuple):
    """Every point's flat gradients, their comparison, and the worst case per element.

    All arrays are NumPy, ``(n_points, P)`` except ``worst`` (``P`` per field).
    """

    manual: np.ndarray
    reference: np.ndarray
    comparison: Comparison
    worst: object  # compare.Worst


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype), tree)


NUDGES = 2  # extra low-precision reference evaluations for the roundoff estimate


def nudged(params, x, y, i: int):
    """The point with every input moved by one unit in the last place.

    The signs follow bit ``i`` of each element's flat index (alternating for ``i = 0``, in
    pairs for ``i = 1``): deterministic, and cheap to compile unlike a random draw.
    """
    leaves, treedef = jax.tree.flatten((params, x, y))
    out = []
    for a in leaves:
        bit = (jnp.arange(a.size).reshape(a.shape) >> i) & 1
        sign = (1 - 2 * bit).astype(a.dtype)
        out.append(a * (1 + sign * jnp.finfo(a.dtype).eps))
    return jax.tree.unflatten(treedef, out)


def roundoff(flat_fn: Callable, params, x, y, reference: jax.Array) -> jax.Array:
    """``max_k |flat_fn(point_k) - reference|`` over the point and its nudged copies.

    ``flat_fn(params, x, y) -> (n, P)`` evaluates the reference in the audited dtype.
    """
    copies = [(params, x, y)] + [nudged(params, x, y, i) for i in range(NUDGES)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *copies)
    again = jax.vmap(flat_fn)(*stacked).astype(reference.dtype)  # one graph for all copies
    return jnp.max(jnp.abs(again - reference[None]), axis=0)


def compare_rows(manual_fn, ref_fn, manual, params, x, y, *, ref_dtype, segments, tol):
    """Traced body shared by the gradient and factor audits for one point group.

    ``manual_fn``/``ref_fn`` map ``(params, x, y)`` stacked over points to ``(rows, P)``;
    ``manual`` is given instead of ``manual_fn`` for a function JAX cannot trace.
    """
    if manual is None:
        manual = manual_fn(params, x, y)
    reference = ref_fn(_cast(params, ref_dtype), x.astype(ref_dtype), y.astype(ref_dtype))
    rnd = None
    if x.dtype != jnp.dtype(ref_dtype):
        rnd = roundoff(ref_fn, params, x, y, reference)
    cmp = compare(manual, reference, rnd, segments, int(segments.max()) + 1, tol)
    return manual, reference, cmp


@functools.partial(
    jax.jit, static_argnames=("grad_fn", "ref_grad_fn", "ref_dtype", "shapes", "tol")
)
def _evaluate_group(manual, params, x, y, *, grad_fn, ref_grad_fn, ref_dtype, shapes, tol):
    segments = np.repeat(np.arange(len(shapes)), [int(np.prod(s)) for s in shapes])

    def flat_of(fn):
        return lambda p, xx, yy: _flat(jax.vmap(fn)(p, xx, yy), xx.shape[0])

    return compare_rows(
        flat_of(grad_fn), flat_of(ref_grad_fn), manual, params, x, y,
        ref_dtype=ref_dtype, segments=segments, tol=tol,
    )  # fmt: skip


def evaluate(
    grad_fn: Callable,
    ref_grad_fn: Callable,
    groups: list[PointGroup],
    *,
    traced: bool,
    ref_dtype,
    tol: Tolerance,
    layout: Layout,
    mesh: jax.sharding.Mesh | None = None,
) -> Evaluation:
    """Handwritten and reference gradients at every point of every group, compared.

    One compiled call per group computes the handwritten gradients, the reference (on the
    points cast to ``ref_dtype``, float64 when 64-bit mode is on), the reference's roundoff
    in the audited dtype, and the comparison. With a ``mesh`` the points are split over its
    ``"data"`` devices (see :func:`audit.points.shard_points`).
    """
    manual, reference, parts = [], [], []
    for g in groups:
        given = None if traced else _flat_grads_loop(grad_fn, g)
        m, r, cmp = _evaluate_group(
            *shard_points(mesh, (given, g.params, g.x, g.y)), grad_fn=grad_fn,
            ref_grad_fn=ref_grad_fn, ref_dtype=jnp.dtype(ref_dtype).name, shapes=layout.shapes,
            tol=tol,
        )  # fmt: skip
        manual.append(to_host(m, g.size))
        reference.append(to_host(r, g.size))
        parts.append(Comparison(*(to_host(a, g.size) for a in cmp)))
    manual_all, ref_all = np.concatenate(manual), np.concatenate(reference)
    cmp_all = concat(parts)
    return Evaluation(manual_all, ref_all, cmp_all, worst_over_points(manual_all, ref_all, cmp_all))


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
      than its own size suggests).
    """
    out = np.full((2, len(weights)), np.nan)
    start = 0
    for g in groups:
        sel = (points >= start) & (points < start + g.size)
        if sel.any():
            out[:, sel] = _fd_group(loss_fn, g, weights[sel], points[sel] - start, dtype)
        start += g.size
    return out[0], out[1]


def _fd_group(loss_fn, g: PointGroup, widx, local, dtype) -> np.ndarray:
    treedef = jax.tree.structure(g.params)
    shapes = tuple(tuple(leaf.shape[1:]) for leaf in jax.tree.leaves(g.params))
    dtype = jnp.dtype(dtype).name
    return np.asarray(_fd_jit(loss_fn, treedef, shapes, dtype, g.params, g.x, g.y, widx, local))


def unflatten(vec: jax.Array, treedef, shapes: tuple[tuple[int, ...], ...]):
    """Inverse of the flat layout for one point: ``(P,)`` back to the pytree."""
    leaves, pos = [], 0
    for s in shapes:
        n = int(np.prod(s))
        leaves.append(vec[pos : pos + n].reshape(s))
        pos += n
    return jax.tree.unflatten(treedef, leaves)


@functools.partial(jax.jit, static_argnames=("loss_fn", "treedef", "shapes", "dtype"))
def _fd_jit(loss_fn, treedef, shapes, dtype, params, x, y, widx, local):
    # cast and flatten here: outside, each leaf shape would cost a compilation of its own
    flat = _flat(_cast(params, dtype), x.shape[0])
    x, y = x.astype(dtype), y.astype(dtype)

    def unravel(v):
        return unflatten(v, treedef, shapes)

    def one(args):
        i, k = args
        p = flat[k]
        h = fd_step(p[i])

        def central(step):
            up = loss_fn(unravel(p.at[i].add(step)), x[k], y[k])
            down = loss_fn(unravel(p.at[i].add(-step)), x[k], y[k])
            return (up - down) / (2 * step)

        d = central(h)
        err = jnp.maximum(jnp.abs(central(2 * h) - d), jnp.abs(central(h / 2) - d))
        return jnp.stack([d, err])

    return jax.lax.map(one, (widx, local), batch_size=64).T
