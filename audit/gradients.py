"""Evaluate handwritten and reference gradients at every point, compare, keep the worst.

Works on any params pytree and any scalar ``loss_fn(params, x, y)``: the handwritten
``grad_fn(params, x, y)`` must return the same pytree. Gradients are flattened in
``jax.tree.leaves`` order, each leaf raveled row-major.

A large call compiles one program: the gradients, the rule (:mod:`audit.compare`) and its
summary over the points. A small one (:func:`on_host`) compiles only the gradients and the
estimates the rule needs (:func:`raw_rows`), and applies the rule in NumPy
(:func:`host_judged`): the same code in the same dtypes, with nothing more to compile, so a
small audit's first call is not spent compiling the rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from audit.budget import SMALL_CALL, points_per_call, recent_budget, traced_bytes
from audit.compare import (
    DEFAULT_TOLERANCES,
    Comparison,
    Summary,
    Tolerance,
    compare,
    empty_summary,
    joined,
    merge,
    merge_traced,
    namespace,
    summarize,
    worst_of,
)
from audit.layout import Layout, cast_floats, flat_points, n_points
from audit.placement import shard_points, to_host
from audit.plain_pass import applies, plain_pass
from audit.points import PointGroup, by_group, subset_points, take_points
from audit.program_cache import kept_value
from audit.tiers import tiered, traced_once, work
from jaxbp.checks import check_grads_like

__all__ = [
    "EVALUATIONS",
    "HOST_VALUES",
    "NUDGES",
    "Evaluation",
    "RawRows",
    "audit_program",
    "block_points",
    "blocked",
    "bytes_per_point",
    "detail_rows",
    "evaluate",
    "finish",
    "host_judged",
    "in_two_passes",
    "judge",
    "judged_rows",
    "nudged",
    "on_host",
    "pass_options",
    "plan_calls",
    "point_shapes",
    "raw_rows",
    "runs_in",
    "second_look",
]

_UNTRACEABLE = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


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
        shapes = _shapes_of(grad_fn, (params, x, y))
        traced = True
    except _UNTRACEABLE:
        params, x, y = jax.tree.map(jnp.asarray, _point(group, 0))  # JAX arrays, as at others
        shapes = jax.tree.map(jnp.asarray, grad_fn(params, x, y))
        traced = False
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}(params, x, y) failed on the first audit point: {e}") from e
    check_grads_like(params, shapes, who)
    return traced


def _shapes_of(fn: Callable, args: tuple):
    """``jax.eval_shape(fn, *args)`` for ``jax.ShapeDtypeStruct`` arguments, traced once per
    function, shapes and 64-bit setting (a failure is raised each time, never kept)."""
    leaves, treedef = jax.tree.flatten(args)
    x64 = bool(jax.config.jax_enable_x64)
    named = tuple((a.shape, str(a.dtype), bool(a.weak_type)) for a in leaves)
    # a trace of fn: kept with the CLI's programs, which need none
    return kept_value(_shapes_of, (fn, treedef, named, x64),
                      lambda: _shapes_cached(fn, treedef, tuple(leaves), x64))  # fmt: skip


@functools.lru_cache(maxsize=256)
def _shapes_cached(fn, treedef, leaves, x64: bool):
    del x64  # part of the key: the shapes depend on it
    return jax.eval_shape(traced_once(fn), *jax.tree.unflatten(treedef, list(leaves)))


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
        if all(isinstance(a, jax.ShapeDtypeStruct) for a in jax.tree.leaves(wide)):
            out = _shapes_of(fn, wide)
        else:
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
        rows.append(flat_points(jax.tree.map(lambda a: a[None], g), 1)[0])
    return jnp.stack(rows)


class Evaluation(NamedTuple):
    """The worst case per element over every point, and how to look closer at some points.

    ``worst`` holds NumPy ``(P,)`` fields; ``nonzero``: whether a judged reference value is
    non-zero anywhere; ``unjudged_rows``: how many points hold a non-finite reference;
    ``first_unjudged``: ``(point, element, manual, reference)`` of the first one (point -1
    when none). ``rows(points)`` evaluates again at the given point indices and returns
    ``(manual, reference, failed)`` as ``(len(points), P)`` NumPy arrays, for the diagnosis.
    ``points_per_call``: the most points one compiled call evaluated (the memory budget).
    """

    worst: object  # compare.Worst
    nonzero: bool
    unjudged_rows: int
    first_unjudged: np.ndarray
    rows: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    points_per_call: int


def _cast_group(g: PointGroup, dtype) -> PointGroup:
    return g._replace(
        params=cast_floats(g.params, dtype), x=cast_floats(g.x, dtype), y=cast_floats(g.y, dtype)
    )


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


class RawRows(NamedTuple):
    """What :func:`audit.compare.compare` judges, over ``(rows, P)``: both sides, and the
    roundoff, recheck and spread estimates the rule asks for (None where it asks for none)."""

    manual: jax.Array
    reference: jax.Array
    roundoff: jax.Array | None
    recheck: jax.Array | None
    recheck_roundoff: jax.Array | None
    spread: jax.Array | None


def raw_rows(
    manual_fn,
    ref_fn,
    manual,
    params,
    x,
    y,
    *,
    ref_dtype,
    look=None,
    wide=None,
    full=True,
    widen_recheck=True,
    manual_x64=None,
) -> RawRows:
    """Traced body shared by the gradient and factor audits for one point group: every
    value the rule needs, before the rule (:func:`judge`).

    ``manual_fn``/``ref_fn`` map ``(params, x, y)`` stacked over points to ``(rows, P)``;
    ``manual`` is given instead of ``manual_fn`` for a function JAX cannot trace, and then
    ``wide`` is its value in ``ref_dtype`` (or None). ``look`` is :func:`second_look`'s answer.
    ``full=False`` is the first pass of :func:`in_two_passes`: the plain rule only, without
    the reference's roundoff and the second look, which can only turn a failure into a pass.
    The full rule counts the reference's roundoff in the audited dtype, and for the float64
    rule (a float64 audit's, or the second look's) both sides' spread under nudges in float64.
    ``widen_recheck=False`` leaves out that float64 spread where it only widens the second
    look's rule (``look="recheck"``): six float64 evaluations, which can only turn a failure
    into a pass, so only the points that still fail need them (see :func:`in_two_passes`).
    ``manual_x64`` (a bool) traces ``manual_fn`` in the audited dtype with 64-bit types on
    or off, as the caller's own code runs it; None: as the program is traced. The second
    look's float64 evaluation always has them on.
    """
    own = manual_fn if manual_fn is None or manual_x64 is None else _with_x64(manual_fn, manual_x64)
    if manual is None:
        manual = own(params, x, y)
    wide_args = cast_floats((params, x, y), ref_dtype)
    reference = ref_fn(*wide_args)
    rnd = recheck = spread = rnd_wide = None
    narrower = jax.tree.leaves(params)[0].dtype != jnp.dtype(ref_dtype)
    if not full:
        look, narrower = None, False
    if narrower:
        rnd = roundoff(ref_fn, params, x, y, reference)
    if look == "recheck":
        recheck = wide if manual_fn is None else manual_fn(*wide_args)
    if full and (not narrower or (look == "recheck" and widen_recheck)):
        # the float64 rule's roundoff: how far each side moves under one-ulp nudges of the
        # inputs in float64. A value that is 0 in exact arithmetic (a softmax's max shift, a
        # bias that batch norm subtracts back out) is cancellation residue on both sides, of
        # that size whatever its tensor's scale; a wrong formula is off by far more.
        rnd_wide = roundoff(ref_fn, *wide_args, reference)
        if manual_fn is not None:
            hand = (manual_fn, *wide_args, recheck) if look == "recheck" else (
                own, params, x, y, manual)  # fmt: skip
            rnd_wide = jnp.maximum(rnd_wide, roundoff(*hand).astype(rnd_wide.dtype))
        if not narrower:
            rnd = rnd_wide
    elif look == "spread" and manual_fn is not None:
        spread = roundoff(own, params, x, y, manual)
        if not narrower:  # the reference runs in the audited dtype too: count its own spread
            spread = jnp.maximum(spread, roundoff(ref_fn, params, x, y, reference))
    return RawRows(manual, reference, rnd, recheck, rnd_wide, spread)


def judge(raw: RawRows, segments: np.ndarray, tol: Tolerance):
    """``(manual, reference, Comparison)`` of :func:`raw_rows`' values by the audit's rule,
    traced or in NumPy (:func:`audit.compare.namespace`); ``segments``: ``(P,)`` the tensor
    of each element."""
    segments = np.asarray(segments)
    cmp = compare(
        raw.manual, raw.reference, raw.roundoff, segments, int(segments.max()) + 1, tol,
        recheck=raw.recheck, recheck_tol=DEFAULT_TOLERANCES["float64"],
        recheck_roundoff=raw.recheck_roundoff, spread=raw.spread,
    )  # fmt: skip
    return raw.manual, raw.reference, cmp


def _with_x64(fn: Callable, on: bool) -> Callable:
    """``fn`` traced with 64-bit types ``on`` (or off) whatever the surrounding trace uses."""

    def run(*args):
        with jax.enable_x64(on):
            return fn(*args)

    return run


def pass_options(mode: str) -> dict:
    """:func:`raw_rows`' options for a pass of :func:`in_two_passes` (``mode``): the plain
    rule (``"first"``), the rule less the float64 spread that widens the second look
    (``"narrow"``), or the whole rule (``"second"``, ``"detail"``)."""
    return dict(full=mode != "first", widen_recheck=mode != "narrow")


def finish(result, valid, *, mode: str, rows_per_point: int, offset=0):
    """Tail of every audit program, traced or in NumPy (:func:`host_judged`): the whole
    comparison (``mode="detail"``), or its :class:`audit.compare.Summary` (``"first"``,
    ``"narrow"``, ``"second"``; see :func:`in_two_passes`). The summary of ``"first"`` and
    ``"narrow"`` leaves out the points where an element fails, and returns them, ``(points,)``.

    ``valid`` is the number of real rows; rows past it pad the points. ``offset``: the
    global index of the first row, for a block of a scan (:func:`blocked`).
    """
    manual, reference, cmp = result
    if mode == "detail":
        return result
    xp = namespace(manual)
    n_rows = manual.shape[0]
    ok = xp.arange(n_rows) + offset < valid
    if mode == "second":
        return _shifted(summarize(manual, reference, cmp, ok, ok), offset), None
    failed = cmp.judged & ~cmp.passed & ok[:, None]
    bad = xp.any(failed.reshape(n_rows // rows_per_point, -1), axis=1)
    keep = ok & ~xp.repeat(bad, rows_per_point, axis=0)
    return _shifted(summarize(manual, reference, cmp, keep, ok), offset), bad


def _shifted(s: Summary, offset) -> Summary:
    """``s`` with its row indices counted from ``offset``."""
    if isinstance(offset, int) and offset == 0:
        return s
    off = jnp.asarray(offset).astype(jnp.int32)
    first = s.first_unjudged
    row = jnp.where(first[0] >= 0, first[0] + off.astype(first.dtype), first[0])
    return s._replace(index=s.index + off, first_unjudged=first.at[0].set(row))


BLOCK_VALUES = 1 << 16  # compared values (rows x elements) one step of the scan holds


WIDE_STEP_VALUES = 1 << 19  # values one step holds when one point holds more than BLOCK_VALUES


def _wide(values_per_point: int) -> bool:
    """Whether a point of this many values is a wide network's: its gradients are computed
    point after point (:func:`_flat_of`), and a step holds :data:`WIDE_STEP_VALUES`."""
    return int(values_per_point) > BLOCK_VALUES


def block_points(values_per_point: int, n: int, mesh=None) -> int | None:
    """Points one step of :func:`blocked` evaluates at once: as many as keep about
    :data:`BLOCK_VALUES` values; for a point of more values than that (a wide network's,
    whose gradients go point after point, :func:`_flat_of`), as many as keep about
    :data:`WIDE_STEP_VALUES`; at least 1. None (one vectorised step) for a ``mesh``, whose
    devices each take a share of the points, or when all ``n`` fit."""
    values = max(int(values_per_point), 1)
    block = max(1, (WIDE_STEP_VALUES if _wide(values) else BLOCK_VALUES) // values)
    return None if mesh is not None or block >= n else block


def _summary(rows_fn: Callable, part, valid, *, mode: str, rows_per_point: int, offset=0,
             plain: Callable | None = None):  # fmt: skip
    """:func:`finish` of ``rows_fn(part)``; the first pass by ``plain(part, ok)`` where given
    (:func:`audit.plain_pass.plain_pass`, the same summary computed faster), unless it
    returns None."""
    if mode != "first" or plain is None:
        return finish(rows_fn(part), valid, mode=mode, rows_per_point=rows_per_point,
                      offset=offset)  # fmt: skip
    n = next(a.shape[0] for a in jax.tree.leaves(part))
    ok = jnp.arange(n * rows_per_point) + offset < valid
    out = plain(part, ok)
    if out is None:
        return finish(rows_fn(part), valid, mode=mode, rows_per_point=rows_per_point,
                      offset=offset)  # fmt: skip
    summary, bad = out
    return _shifted(summary, offset), bad


def blocked(rows_fn: Callable, tree, valid, *, mode: str, rows_per_point: int, block,
            plain: Callable | None = None):  # fmt: skip
    """:func:`finish` of ``rows_fn(tree)``, computed ``block`` points at a time.

    ``rows_fn(tree) -> (manual, reference, Comparison)`` compares stacked points. Over a
    large network, comparing every point of a call at once holds a dozen ``(points, P)``
    arrays and runs the gradients as batched products, which XLA:CPU computes at a fraction
    of its speed on one point; a ``lax.scan`` over blocks keeps one block's arrays and each
    element's running worst case (:func:`audit.compare.merge_traced`) instead. The verdict,
    worst points and counts are the same as in one step (ties still go to the first row).
    ``block`` None, or ``mode="detail"``: one step. ``plain(part, ok) -> (Summary, bad)``
    computes the first pass's summary of ``part`` faster (see :func:`_summary`).
    """
    n = next(a.shape[0] for a in jax.tree.leaves(tree))
    if mode == "detail" or block is None or block >= n:
        return _summary(rows_fn, tree, valid, mode=mode, rows_per_point=rows_per_point,
                        plain=plain)  # fmt: skip
    steps = -(-n // block)
    pad = steps * block - n

    def split(a):
        if pad:  # the last point repeated; its rows lie past ``valid`` and count nowhere
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])
        return a.reshape(steps, block, *a.shape[1:])

    blocks = jax.tree.map(split, tree)
    rows = block * rows_per_point

    def local(part, k):
        return _summary(rows_fn, part, valid, mode=mode, rows_per_point=rows_per_point,
                        offset=k * rows, plain=plain)  # fmt: skip

    like = jax.eval_shape(local, jax.tree.map(lambda a: a[0], blocks), jnp.int32(1))[0]

    def step(carry, xs):
        part, k = xs
        summary, bad = local(part, k)
        summary = jax.lax.optimization_barrier(summary)
        return merge_traced(carry, summary), bad

    ks = jnp.arange(steps, dtype=jnp.int32)
    total, bad = jax.lax.scan(step, empty_summary(like), (blocks, ks))
    return total, None if bad is None else bad.reshape(-1)[:n]


@tiered(
    static_argnames=(
        "grad_fn", "ref_grad_fn", "ref_dtype", "shapes", "tol", "look", "traced", "mode",
        "own_x64", "block", "host",
    ),
)  # fmt: skip
def _evaluate_group(
    tree, valid, *, grad_fn, ref_grad_fn, ref_dtype, shapes, tol, look, traced, mode,
    own_x64=None, block=None, host=False,
):  # fmt: skip
    def raw(part):
        manual, wide, params, x, y = part
        return raw_rows(
            _flat_of(grad_fn) if traced else None, _flat_of(ref_grad_fn), manual, params, x, y,
            ref_dtype=ref_dtype, look=look, wide=wide, manual_x64=own_x64, **pass_options(mode),
        )  # fmt: skip

    return judged_rows(raw, tree, valid, segments=_segments(shapes), tol=tol, mode=mode,
                       rows_per_point=1, block=block, host=host)  # fmt: skip


def judged_rows(raw: Callable, tree, valid, *, segments, tol: Tolerance, mode: str,
                rows_per_point: int, block, host: bool):  # fmt: skip
    """Traced tail every audit program shares: ``raw(tree)`` (:class:`RawRows`) as it is,
    for :func:`host_judged` to judge on the host (``host``), else judged here by the rule
    and finished, ``block`` points a step (:func:`blocked`)."""
    if host:
        return raw(tree)

    def plain(part, ok):
        if not applies(segments):  # decided before raw is traced, not after
            return None
        rows = raw(part)
        if any(a is not None for a in rows[2:]):  # pass_options("first") asks for none
            raise ValueError("a first pass's rows hold more than the plain rule judges")
        return plain_pass(rows.manual, rows.reference, segments, tol, ok, rows_per_point)

    return blocked(lambda part: judge(raw(part), segments, tol), tree, valid, mode=mode,
                   rows_per_point=rows_per_point, block=block, plain=plain)  # fmt: skip


def _segments(shapes) -> np.ndarray:
    """``(P,)``: the leaf each element of a flat gradient belongs to."""
    return np.repeat(np.arange(len(shapes)), [int(np.prod(s)) for s in shapes])


HOST_VALUES = 1 << 15  # compared values (rows x elements) of a call judged on the host


def on_host(values: int, mesh=None) -> bool:
    """Whether a call comparing ``values`` values is judged in NumPy on the host
    (:func:`host_judged`): a small one without a ``mesh``. Compiling the rule and its
    summary takes XLA about half a second; NumPy judges a few thousand values in a
    millisecond, so a small audit's first call is not spent compiling."""
    return mesh is None and int(values) <= HOST_VALUES


def host_judged(raw_program: Callable, segments: np.ndarray, tol: Tolerance,
                rows_per_point: int) -> Callable:  # fmt: skip
    """``program(tree, valid, mode=...)`` as :func:`in_two_passes` takes it, which gets the
    rule's inputs from the compiled ``raw_program`` (its :class:`RawRows`) and applies the
    rule and :func:`finish` in NumPy: the same operations in the same dtypes as the traced
    form (:func:`audit.compare.namespace`), with nothing to compile."""

    def program(tree, valid, *, mode):
        raw = raw_program(tree, valid, mode=mode)
        raw = RawRows(*(None if a is None else np.asarray(a) for a in raw))
        with np.errstate(all="ignore"):  # inf and NaN as IEEE arithmetic (and XLA) gives them
            result = judge(raw, segments, tol)
            return finish(result, int(valid), mode=mode, rows_per_point=rows_per_point)

    return program


def audit_program(
    grad_fn: Callable, ref_grad_fn: Callable, *, ref_dtype, shapes, tol: Tolerance,
    look: str | None, traced: bool, own_x64: bool | None = None, work: int = 0,
    block: int | None = None, host: bool = False,
) -> Callable:  # fmt: skip
    """The compiled audit of one point group, ``program(tree, valid, mode=...)``, as
    :func:`in_two_passes` and :func:`detail_rows` take it.

    ``tree`` is ``(given, wide, params, x, y)`` over stacked points (``given``/``wide``: the
    handwritten gradients computed outside JAX, None when ``traced``); ``shapes`` the leaf
    shapes of one point's params; ``own_x64`` the 64-bit setting the handwritten side is
    traced with (None: as the caller has it); ``work`` the size of a call, which picks the
    compiled form (:mod:`audit.tiers`); ``block`` the points of one step (:func:`blocked`);
    ``host`` judges on the host (:func:`on_host`, :func:`host_judged`).
    """
    program = functools.partial(
        _evaluate_group.pick(work), grad_fn=grad_fn, ref_grad_fn=ref_grad_fn,
        ref_dtype=jnp.dtype(ref_dtype).name, shapes=tuple(shapes), tol=tol, look=look,
        traced=traced, own_x64=own_x64, block=block, host=host,
    )  # fmt: skip
    return host_judged(program, _segments(shapes), tol, 1) if host else program


def _chunks(n: int, chunk: int | None):
    """``(start, stop)`` of consecutive calls of at most ``chunk`` points (None: one call)."""
    step = n if chunk is None else max(int(chunk), 1)
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def in_two_passes(
    program: Callable, tree, n: int, rows_per_point: int, mesh=None, chunk: int | None = None,
    *, narrow: bool = False,
) -> Summary:  # fmt: skip
    """Compare every point with the plain rule, then give only the failing points the rest.

    ``program(tree, valid, mode=...)`` is a jitted function ending in :func:`finish`, over
    stacked points (``n`` on every leaf's leading axis; None leaves allowed) with
    ``rows_per_point`` rows each. The first pass (``mode="first"``) skips the reference's
    roundoff estimate and the second look; both can only turn a failure into a pass, so the
    points where nothing fails are already judged exactly as the full rule judges them. Only
    the others run again (``mode="second"``), and the summaries merge. Correct gradients
    rarely fail the plain rule, so most audits pay for two gradient evaluations per point,
    not a dozen, and nothing of size ``n * P`` leaves the device.

    ``narrow`` (the second look recomputes the handwritten side in float64): the failing
    points first get the rule less the float64 spread that can only widen that second look
    (``mode="narrow"``, six float64 evaluations fewer), and only the points that still fail
    get the whole rule. An element that passes without the widening passes with it, so every
    point is judged as the whole rule judges it. Saturated sigmoid units send about half of
    a wide network's points to the second pass through their layer deltas; their second
    look rarely needs the widening.

    ``chunk`` (a power of two, see :func:`audit.budget.points_per_call`) caps the points of
    one call, so the device holds at most that many points' values at once; the last call is
    padded to the same size, and all calls share one program. None: one call.

    Returns:
      The merged :class:`audit.compare.Summary` (NumPy), row indices counted over all points.
    """
    if chunk is None or chunk >= n:
        return _passes(program, tree, n, rows_per_point, mesh, narrow)
    tree = jax.tree.map(np.asarray, tree)  # one host copy to take every call's points from
    total = None
    for a, b in _chunks(n, chunk):
        part = _passes(program, take_points(tree, np.arange(a, b), chunk), b - a,
                       rows_per_point, mesh, narrow)  # fmt: skip
        # merged as it comes: a summary per call kept until the end would grow with the points
        rows = a * rows_per_point
        total = part if total is None else joined([total, part], [rows, (b - a) * rows_per_point])
    return total


def _passes(program: Callable, tree, n: int, rows_per_point: int, mesh, narrow: bool) -> Summary:
    s, bad = program(shard_points(mesh, tree), n * rows_per_point, mode="first")
    total = Summary(*(np.asarray(f) for f in s))
    points = np.flatnonzero(to_host(bad, n))  # the points that still fail
    for mode in ("narrow", "second") if narrow else ("second",):
        if not points.size:
            break
        s, bad = program(shard_points(mesh, subset_points(tree, points)), points.size *
                         rows_per_point, mode=mode)  # fmt: skip
        s = Summary(*(np.asarray(f) for f in s))
        # an element none of this call's rows counted (rank -1: every point it was seen at
        # still fails) may name a padding row; a later pass replaces it
        local = np.minimum(s.index, points.size * rows_per_point - 1)
        global_rows = points[local // rows_per_point] * rows_per_point + local % rows_per_point
        total = merge(total, s._replace(index=global_rows))
        points = points[:0] if bad is None else points[np.flatnonzero(to_host(bad, points.size))]
    return total


def detail_rows(
    program: Callable, tree, points: np.ndarray, rows_per_point: int, mesh=None,
    chunk: int | None = None,
):  # fmt: skip
    """``(manual, reference, Comparison)`` rows of the given points, the full rule applied,
    at most ``chunk`` points a call (None: one call)."""
    parts = []
    if chunk is not None and chunk < points.size:
        tree = jax.tree.map(np.asarray, tree)
    for a, b in _chunks(points.size, chunk):
        some = points[a:b]
        k = some.size * rows_per_point
        m, r, cmp = program(shard_points(mesh, subset_points(tree, some)), k, mode="detail")
        parts.append((to_host(m, k), to_host(r, k), Comparison(*(to_host(c, k) for c in cmp))))
    if len(parts) == 1:
        return parts[0]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        Comparison(*(np.concatenate(f) for f in zip(*(p[2] for p in parts), strict=True))),
    )


@functools.lru_cache(maxsize=64)
def _flat_of(fn):
    """``fn`` over stacked points, flattened to ``(points, P)``; one object per ``fn``.

    A point of more than :data:`BLOCK_VALUES` parameters (a wide network's) is computed
    after the other (``lax.map``), not side by side (``vmap``): XLA:CPU runs a batch of
    products more slowly than each alone, and each point's gradient comes out the same
    bits whichever points it is computed with (a first pass's step, a second pass's few)."""
    one = traced_once(fn)  # traced once per point shapes, whatever else uses it

    def run(p, x, y):
        n = n_points(p)
        if _wide(sum(int(np.prod(np.shape(a)[1:])) for a in jax.tree.leaves(p))):
            return flat_points(jax.lax.map(lambda a: one(*a), (p, x, y)), n)
        return flat_points(jax.vmap(one)(p, x, y), n)

    return run


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
    memory: int | None = None,
) -> Evaluation:
    """Handwritten and reference gradients at every point of every group, compared.

    Per group, one compiled call computes the handwritten gradients, the reference (on the
    points cast to ``ref_dtype``), the comparison and its reduction to each element's worst
    case; the points where something fails get the reference's roundoff in the audited dtype
    and the second look (``look``, :func:`second_look`'s answer for ``grad_fn``) in a second
    call (:func:`in_two_passes`). The reference side always runs with 64-bit types on; the
    handwritten gradients are traced with them on or off as the caller has them, as the
    caller's own code would compute them. With a ``mesh`` the points are split over its ``"data"``
    devices (see :func:`audit.points.shard_points`). Each call takes at most as many points
    as fit in ``memory`` bytes (None: :func:`audit.budget.default_budget`), as
    :func:`bytes_per_point` estimates them.
    """
    own_x64 = jax.config.jax_enable_x64
    summaries, trees, programs, chunks = [], [], [], []
    for g in groups:
        given = wide = None
        chunk, block = plan_calls(_flat_of(ref_grad_fn), g, ref_dtype, memory, mesh)
        if not traced:
            given = _flat_grads_loop(grad_fn, g)
        chunks.append(chunk)
        with jax.enable_x64(True):
            if not traced and look == "recheck":
                wide = _flat_grads_loop(grad_fn, _cast_group(g, ref_dtype))
            size = g.size if chunk is None else min(chunk, g.size)
            program = audit_program(
                grad_fn, ref_grad_fn, ref_dtype=ref_dtype, shapes=layout.shapes, tol=tol,
                look=look, traced=traced, own_x64=own_x64, work=work(g.params, g.batch, size),
                block=block, host=on_host(size * layout.segments.size, mesh),
            )  # fmt: skip
            tree = (given, wide, g.params, g.x, g.y)
            summaries.append(in_two_passes(program, tree, g.size, 1, mesh, chunk,
                                           narrow=look == "recheck"))  # fmt: skip
        trees.append(tree)
        programs.append(program)
    total = joined(summaries, [g.size for g in groups])

    def rows(points: np.ndarray):
        parts = []
        for k, _, local in by_group([g.size for g in groups], points):
            with jax.enable_x64(True):
                parts.append(detail_rows(programs[k], trees[k], local, 1, mesh, chunks[k]))
        m = np.concatenate([p[0] for p in parts])
        r = np.concatenate([p[1] for p in parts])
        failed = np.concatenate([p[2].judged & ~p[2].passed for p in parts])
        return m, r, failed

    return Evaluation(
        worst_of(total),
        bool(total.nonzero),
        int(total.unjudged_rows),
        total.first_unjudged,
        rows,
        max(chunks),
    )


def plan_calls(
    rows_fn: Callable, group: PointGroup, ref_dtype, memory, mesh=None
) -> tuple[int, int | None]:
    """``(points per call, points per step)`` for ``group`` within ``memory`` bytes (None:
    :func:`audit.budget.default_budget`).

    A call that steps through its points in blocks (:func:`blocked`) holds every point's
    inputs and one block's working memory (:func:`bytes_per_point` a point); one that takes
    them in a single step holds the working memory of all of them.
    """
    n = group.size
    work_bytes, values = _point_cost(rows_fn, group, ref_dtype)
    block = block_points(values, n, mesh)
    if block is None:
        return points_per_call(work_bytes, memory, n), None
    inputs = sum(
        int(np.prod(a.shape[1:])) * jnp.dtype(a.dtype).itemsize
        for a in jax.tree.leaves((group.params, group.x, group.y))
    )
    per_point = 2 * inputs + 8  # the inputs and their cast to the reference dtype, a flag
    need = per_point * n + block * work_bytes
    if memory is None and need <= SMALL_CALL:
        return n, block
    room = (recent_budget(need) if memory is None else memory) - block * work_bytes
    return points_per_call(per_point, max(room, 1), n), block


EVALUATIONS = 3 + 3 * NUDGES  # gradients one point costs under the full rule: handwritten,
# reference, the recheck, the reference's nudged copies in the audited and in its own dtype,
# and the handwritten side's in float64


def bytes_per_point(rows_fn: Callable, group: PointGroup, ref_dtype) -> int:
    """Working memory one point of ``group`` takes in an audit program, an upper bound.

    ``rows_fn(params, x, y) -> (rows, values)`` is the reference over stacked points (as
    :func:`raw_rows` takes it). Counted: :data:`EVALUATIONS` times what it computes at one
    point in ``ref_dtype`` (:func:`audit.budget.traced_bytes`), plus the comparison's arrays
    (16 float64 numbers per value). Found once per function and point shapes.
    """
    return _point_cost(rows_fn, group, ref_dtype)[0]


def _point_cost(rows_fn: Callable, group: PointGroup, ref_dtype) -> tuple[int, int]:
    """``(bytes_per_point, values compared per point)``, found once per function and shapes."""
    leaves, treedef = jax.tree.flatten((group.params, group.x, group.y))
    avals = tuple((tuple(a.shape[1:]), jnp.dtype(a.dtype).name) for a in leaves)
    args = (rows_fn, treedef, avals, jnp.dtype(ref_dtype).name)
    # a trace of the reference's gradient: kept with the CLI's programs, which need none
    return kept_value(_point_cost, args, lambda: _cost_cached(*args))


@functools.lru_cache(maxsize=256)
def _cost_cached(rows_fn, treedef, avals, ref_dtype: str) -> tuple[int, int]:
    def one(shape, dtype):
        wide = ref_dtype if jnp.issubdtype(dtype, jnp.floating) else dtype
        return jax.ShapeDtypeStruct((1, *shape), wide)

    with jax.enable_x64(True):
        args = jax.tree.unflatten(treedef, [one(s, d) for s, d in avals])
        values = int(np.prod(jax.eval_shape(rows_fn, *args).shape))
        return EVALUATIONS * traced_bytes(rows_fn, *args) + 16 * 8 * values, values
