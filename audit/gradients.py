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

from audit.compare import (
    DEFAULT_TOLERANCES,
    Comparison,
    Tolerance,
    compare,
    concat,
    worst_over_points,
)
from audit.points import PointGroup, shard_points, to_host
from jaxbp._validate import check_grads_like

__all__ = [
    "Evaluation",
    "Layout",
    "evaluate",
    "finite_differences",
    "in_two_passes",
    "layout_of",
    "point_shapes",
    "runs_in",
    "second_look",
]

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


def _n_points(params) -> int:
    return int(jax.tree.leaves(params)[0].shape[0])


def _point(group: PointGroup, i: int):
    return jax.tree.map(lambda a: a[i], (group.params, group.x, group.y))


def point_shapes(group: PointGroup):
    """Shapes and dtypes of one point ``(params, x, y)``: enough to trace, nothing to compute."""
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), (group.params, group.x, group.y)
    )


def is_traceable(grad_fn: Callable, group: PointGroup) -> bool:
    """Check ``grad_fn``'s output pytree on the first point; False if it cannot be traced.

    Raises:
      ValueError: the gradients' structure or shapes differ from the params (naming the
        leaves), or ``grad_fn`` fails for another reason.
    """
    params, x, y = point_shapes(group)
    who = getattr(grad_fn, "__name__", "grad_fn")
    try:
        shapes = jax.eval_shape(grad_fn, params, x, y)
        traced = True
    except _UNTRACEABLE:
        params, x, y = _point(group, 0)
        shapes = jax.tree.map(jnp.asarray, grad_fn(params, x, y))
        traced = False
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}(params, x, y) failed on the first audit point: {e}") from e
    check_grads_like(params, shapes, who)
    return traced


def runs_in(fn: Callable, args: tuple, dtype) -> bool:
    """Whether ``fn(*args)`` computes in ``dtype`` when its float inputs are cast to it.

    A function that casts to a dtype of its own, or fails on the wider inputs, cannot be
    re-evaluated in ``dtype`` to tell rounding from a wrong formula. ``args`` may be arrays
    or ``jax.ShapeDtypeStruct``; a function JAX cannot trace needs arrays.
    """

    def widen(a):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            return a
        if isinstance(a, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(a.shape, dtype)
        return np.asarray(a).astype(dtype)

    wide = jax.tree.map(widen, args)
    try:
        out = jax.eval_shape(fn, *wide)
    except _UNTRACEABLE:
        try:
            out = jax.tree.map(jnp.asarray, fn(*wide))
        except Exception:  # any failure means "not in this dtype"
            return False
    except Exception:  # as above
        return False
    leaves = [a for a in jax.tree.leaves(out) if jnp.issubdtype(a.dtype, jnp.floating)]
    return bool(leaves) and all(jnp.dtype(a.dtype) == jnp.dtype(dtype) for a in leaves)


def second_look(audited_dtype, ref_dtype, generic: bool) -> str | None:
    """How an element that fails in the audited dtype gets a second look (see audit.compare).

    ``"recheck"``: the handwritten function runs again in the wider reference dtype.
    ``"spread"``: it runs only in its own dtype (or no wider dtype is on): its tolerance is
    widened by its measured spread. None: float64 audits, where nothing is wider.
    """
    audited, ref = jnp.dtype(audited_dtype), jnp.dtype(ref_dtype)
    if audited == jnp.float64:
        return None
    return "recheck" if generic and ref.itemsize > audited.itemsize else "spread"


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
    """Every float leaf of ``tree`` in ``dtype``; integer and other leaves as they are."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _cast_group(g: PointGroup, dtype) -> PointGroup:
    return g._replace(params=_cast(g.params, dtype), x=_cast(g.x, dtype), y=_cast(g.y, dtype))


NUDGES = 2  # extra low-precision reference evaluations for the roundoff estimate


def nudged(params, x, y, i: int):
    """The point with every input moved by one unit in the last place.

    The signs follow bit ``i`` of each element's flat index (alternating for ``i = 0``, in
    pairs for ``i = 1``): deterministic, and cheap to compile unlike a random draw.
    """
    leaves, treedef = jax.tree.flatten((params, x, y))
    out = []
    for a in leaves:
        if not jnp.issubdtype(a.dtype, jnp.floating):  # labels, indices: nothing to round
            out.append(a)
            continue
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


def compare_rows(
    manual_fn,
    ref_fn,
    manual,
    params,
    x,
    y,
    *,
    ref_dtype,
    segments,
    tol,
    look=None,
    wide=None,
    full=True,
):
    """Traced body shared by the gradient and factor audits for one point group.

    ``manual_fn``/``ref_fn`` map ``(params, x, y)`` stacked over points to ``(rows, P)``;
    ``manual`` is given instead of ``manual_fn`` for a function JAX cannot trace, and then
    ``wide`` is its value in ``ref_dtype`` (or None). ``look`` is :func:`second_look`'s answer.
    ``full=False`` is the first pass of :func:`in_two_passes`: the plain rule only, without
    the reference's roundoff and the second look, which can only turn a failure into a pass.
    """
    if manual is None:
        manual = manual_fn(params, x, y)
    wide_args = _cast((params, x, y), ref_dtype)
    reference = ref_fn(*wide_args)
    rnd = recheck = spread = None
    narrower = jax.tree.leaves(params)[0].dtype != jnp.dtype(ref_dtype)
    if not full:
        look, narrower = None, False
    if narrower:
        rnd = roundoff(ref_fn, params, x, y, reference)
    if look == "recheck":
        recheck = wide if manual_fn is None else manual_fn(*wide_args)
    elif look == "spread" and manual_fn is not None:
        spread = roundoff(manual_fn, params, x, y, manual)
        if not narrower:  # the reference runs in the audited dtype too: count its own spread
            spread = jnp.maximum(spread, roundoff(ref_fn, params, x, y, reference))
    cmp = compare(
        manual, reference, rnd, segments, int(segments.max()) + 1, tol, recheck=recheck,
        recheck_tol=DEFAULT_TOLERANCES["float64"], spread=spread,
    )  # fmt: skip
    return manual, reference, cmp


@functools.partial(
    jax.jit,
    static_argnames=(
        "grad_fn", "ref_grad_fn", "ref_dtype", "shapes", "tol", "look", "traced", "full",
    ),
)  # fmt: skip
def _evaluate_group(tree, *, grad_fn, ref_grad_fn, ref_dtype, shapes, tol, look, traced, full):
    manual, wide, params, x, y = tree
    segments = np.repeat(np.arange(len(shapes)), [int(np.prod(s)) for s in shapes])
    return compare_rows(
        _flat_of(grad_fn) if traced else None, _flat_of(ref_grad_fn), manual, params, x, y,
        ref_dtype=ref_dtype, segments=segments, tol=tol, look=look, wide=wide, full=full,
    )  # fmt: skip


def _bucket(n: int) -> int:
    """``n`` rounded up to a power of two, so second passes of nearby sizes share a program."""
    return 1 << max(int(n) - 1, 0).bit_length()


def in_two_passes(program: Callable, tree, n: int, rows_per_point: int, mesh=None):
    """Compare every point with the plain rule, then give only the failing points the rest.

    ``program(tree, full=...)`` maps stacked points (``n`` on every leaf's leading axis;
    None leaves allowed) to ``(manual, reference, Comparison)`` with ``rows_per_point`` rows
    per point. The first pass (``full=False``) skips the reference's roundoff estimate and
    the second look; both can only turn a failure into a pass, so the points where nothing
    fails are already judged exactly as the full rule judges them, and only the others run
    again with ``full=True``. Correct gradients rarely fail the plain rule, so most audits
    pay for two gradient evaluations per point, not six.

    Returns:
      ``(manual, reference, Comparison)`` as NumPy arrays of ``n * rows_per_point`` rows.
    """
    rows = n * rows_per_point
    m, r, cmp = program(shard_points(mesh, tree), full=False)
    m, r = to_host(m, rows), to_host(r, rows)
    cmp = Comparison(*(to_host(a, rows) for a in cmp))
    failed = (cmp.judged & ~cmp.passed).reshape(n, -1).any(axis=1)
    bad = np.flatnonzero(failed)
    if bad.size:
        m, r, cmp = np.array(m), np.array(r), Comparison(*(np.array(a) for a in cmp))  # writable
        idx = np.concatenate([bad, np.repeat(bad[-1:], _bucket(bad.size) - bad.size)])
        sub = jax.tree.map(lambda a: np.asarray(a)[idx], tree)
        m2, r2, cmp2 = program(shard_points(mesh, sub), full=True)
        k = bad.size * rows_per_point
        at = (bad[:, None] * rows_per_point + np.arange(rows_per_point)).ravel()
        m[at], r[at] = to_host(m2, k), to_host(r2, k)
        for whole, part in zip(cmp, cmp2, strict=True):
            whole[at] = to_host(part, k)
    return m, r, cmp


def _flat_of(fn):
    return lambda p, x, y: _flat(jax.vmap(fn)(p, x, y), _n_points(p))


@functools.partial(jax.jit, static_argnames=("grad_fn",))
def _manual_group(params, x, y, *, grad_fn):
    return _flat_of(grad_fn)(params, x, y)


def evaluate(
    grad_fn: Callable,
    ref_grad_fn: Callable,
    groups: list[PointGroup],
    *,
    traced: bool,
    ref_dtype,
    tol: Tolerance,
    layout: Layout,
    look: str | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Evaluation:
    """Handwritten and reference gradients at every point of every group, compared.

    Per group, one compiled call computes the handwritten gradients, the reference (on the
    points cast to ``ref_dtype``) and the comparison; the points where something fails get
    the reference's roundoff in the audited dtype and the second look (``look``,
    :func:`second_look`'s answer for ``grad_fn``) in a second call (:func:`in_two_passes`). The
    reference side always runs with 64-bit types on; when the caller has them off, the
    handwritten gradients are computed first, as the caller's own code would compute them.
    With a ``mesh`` the points are split over its ``"data"`` devices (see
    :func:`audit.points.shard_points`).
    """
    own_x64 = jax.config.jax_enable_x64
    manual, reference, parts = [], [], []
    for g in groups:
        given = wide = None
        if not traced:
            given = _flat_grads_loop(grad_fn, g)
        elif not own_x64:
            given = _manual_group(*shard_points(mesh, (g.params, g.x, g.y)), grad_fn=grad_fn)
        with jax.enable_x64(True):
            if not traced and look == "recheck":
                wide = _flat_grads_loop(grad_fn, _cast_group(g, ref_dtype))
            program = functools.partial(
                _evaluate_group, grad_fn=grad_fn, ref_grad_fn=ref_grad_fn,
                ref_dtype=jnp.dtype(ref_dtype).name, shapes=layout.shapes, tol=tol, look=look,
                traced=traced,
            )  # fmt: skip
            m, r, cmp = in_two_passes(program, (given, wide, g.params, g.x, g.y), g.size, 1, mesh)
        manual.append(m)
        reference.append(r)
        parts.append(cmp)
    manual_all, ref_all = (a[0] if len(a) == 1 else np.concatenate(a) for a in (manual, reference))
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
    flat = _flat(_cast(params, dtype), _n_points(params))
    x, y = _cast((x, y), dtype)

    def unravel(v):
        return unflatten(v, treedef, shapes)

    def one(args):
        i, k = args
        p = flat[k]
        h = fd_step(p[i])

        def central(step):
            xk, yk = jax.tree.map(lambda a: a[k], (x, y))
            up = loss_fn(unravel(p.at[i].add(step)), xk, yk)
            down = loss_fn(unravel(p.at[i].add(-step)), xk, yk)
            return (up - down) / (2 * step)

        d = central(h)
        err = jnp.maximum(jnp.abs(central(2 * h) - d), jnp.abs(central(h / 2) - d))
        return jnp.stack([d, err])

    return jax.lax.map(one, (widx, local), batch_size=64).T
