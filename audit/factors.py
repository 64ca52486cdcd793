"""Factor audit: each chain factor of the note, or each layer's delta, against JAX.

A wrong gradient is wrong somewhere along the chain. Checking every factor the note writes
(``dE/dA3``, ``dA3/dz3``, ``dz3/dw31``, ...) against JAX's derivative of that very
sub-expression, or every layer's ``delta_l = dE/dz_l`` against ``jax.grad`` with respect to
``z_l``, names the first link that disagrees. Factors are listed in chain order, from the
loss backwards, so the first failure is where the error enters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from audit.compare import Summary, Tolerance, joined, unjudged_note, worst_of
from audit.gradients import (
    host_judged,
    in_two_passes,
    judged_rows,
    on_host,
    pass_options,
    plan_calls,
    raw_rows,
    runs_in,
    second_look,
)
from audit.memo import ShapeMemo, shape_key
from audit.points import Labels, PointGroup, joined_labels
from audit.tiers import Tiered, tiered, work
from jaxbp.core import OutputSpec, backprop_batch
from jaxbp.reference import deltas_by_jax_grad, seed_factors_autodiff

__all__ = ["delta_factors", "seed_factor_audit"]


@functools.lru_cache(maxsize=64)
def _seed_rows(fn, names):
    """``(params, x, y)`` over points -> ``(points * examples, F)`` factor values."""

    def rows(params, x, y):
        vals = jax.vmap(jax.vmap(fn, in_axes=(None, 0, 0)))(params, x, y)  # {name: (n, B)}
        return jnp.stack([vals[k].reshape(-1) for k in names], axis=1)

    return rows


@functools.lru_cache(maxsize=64)
def _delta_rows(spec: OutputSpec, manual: bool):
    """``(params, x, y)`` over points -> ``(points * examples, sum n_l)`` deltas."""

    def rows(params, x, y):
        def one(p, xi, yi):
            d = (
                backprop_batch(p, xi, yi, spec).deltas
                if manual
                else deltas_by_jax_grad(p, xi, yi, spec)
            )
            return jnp.concatenate(d, axis=1)  # (B, sum n_l)

        out = jax.vmap(one)(params, x, y)
        return out.reshape(-1, out.shape[-1])

    return rows


@tiered(
    static_argnames=("factors_fn", "names", "ref_dtype", "tol", "look", "mode", "block", "host")
)
def _seed_group(tree, valid, *, factors_fn, names, ref_dtype, tol, look, mode, block=None,
                host=False):  # fmt: skip
    def raw(part):
        params, x, y = part
        return raw_rows(
            _seed_rows(factors_fn, names), _seed_rows(seed_factors_autodiff, names), None,
            params, x, y, ref_dtype=ref_dtype, look=look, **pass_options(mode),
        )  # fmt: skip

    return judged_rows(raw, tree, valid, segments=np.arange(len(names)), tol=tol, mode=mode,
                       rows_per_point=tree[1].shape[1], block=block, host=host)  # fmt: skip


@tiered(static_argnames=("spec", "widths", "ref_dtype", "tol", "look", "mode", "block", "host"))
def _delta_group(tree, valid, *, spec, widths, ref_dtype, tol, look, mode, block=None,
                 host=False):  # fmt: skip
    def raw(part):
        params, x, y = part
        return raw_rows(
            _delta_rows(spec, True), _delta_rows(spec, False), None, params, x, y,
            ref_dtype=ref_dtype, look=look, **pass_options(mode),
        )  # fmt: skip

    segments = np.repeat(np.arange(len(widths)), widths)
    return judged_rows(raw, tree, valid, segments=segments, tol=tol, mode=mode,
                       rows_per_point=tree[1].shape[1], block=block, host=host)  # fmt: skip


def _summaries(
    program: Tiered, options: dict, groups: list[PointGroup], mesh, memory, ref_rows,
    segments: np.ndarray,
) -> Summary:  # fmt: skip
    """Every group's rows, compared in two passes by ``program`` (with the static
    ``options``) and summarized as one; each call takes as many points as fit in ``memory``
    bytes (None: the default budget) by the estimate of
    :func:`audit.gradients.plan_calls` for the reference ``ref_rows``, and runs the
    program compiled for its size (:mod:`audit.tiers`), or judges a small call on the host
    (:func:`audit.gradients.on_host`). ``segments``: ``(F,)`` the tensor of each column."""
    parts = []
    for g in groups:
        chunk, block = plan_calls(ref_rows, g, options["ref_dtype"], memory, mesh)
        size = g.size if chunk is None else min(chunk, g.size)
        rows_per_point = int(g.x.shape[1])
        host = on_host(size * rows_per_point * segments.size, mesh)
        run = functools.partial(program.pick(work(g.params, g.batch, size)), **options,
                                block=block, host=host)  # fmt: skip
        if host:
            run = host_judged(run, segments, options["tol"], rows_per_point)
        tree = (g.params, g.x, g.y)
        parts.append(in_two_passes(run, tree, g.size, rows_per_point, mesh, chunk,
                                   narrow=options["look"] == "recheck"))  # fmt: skip
    return joined(parts, [g.size * int(g.x.shape[1]) for g in groups])


def _cause(name: str) -> str:
    """The likely source of a right factor's lost digits, by the note's factor names."""
    if name.startswith("dA") and "/dz" in name:
        return "cancellation in 1 - A near saturation"
    if name == "dE/dA3":
        return "cancellation in A3 - yt near the target"
    return "rounding"


def _entries(names, segments, summary: Summary, groups, *, dtype) -> tuple[list[dict], list[str]]:
    """One entry per factor, its worst (point, example) over all rows of all groups; notes."""
    w = worst_of(summary)
    score = np.asarray(w.score, np.float64)
    rank = w.rank()
    # rows are (point, example) pairs in group order; labels are made only when shown
    batches = [int(g.x.shape[1]) for g in groups]
    starts = np.cumsum([0] + [g.size for g in groups[:-1]])
    row_point = np.concatenate([
        start + np.repeat(np.arange(g.size), b)
        for g, b, start in zip(groups, batches, starts, strict=True)
    ])  # fmt: skip
    sources = joined_labels([g.sources for g in groups])
    row_label = joined_labels([
        Labels(lambda r, g=g, b=b: f"{g.labels[r // b]}, example {r % b}", g.size * b)
        for g, b in zip(groups, batches, strict=True)
    ])  # fmt: skip
    out = []
    for f, name in enumerate(names):
        cols = np.flatnonzero(segments == f)
        c = int(cols[np.lexsort((score[cols], rank[cols]))[-1]])  # the factor's worst element
        row = int(w.index[c])
        verdict = w.verdict_at(c, dtype, _cause(name) if len(cols) == 1 else "rounding")
        verdict["not_judgeable"] = int(np.max(w.n_unjudged[cols]))
        out.append(
            dict(
                name=name,
                **w.values_at(c),
                **verdict,
                worst_point=dict(
                    index=int(row_point[row]), source=sources[row_point[row]], label=row_label[row]
                ),
            )
        )
    col_names = [
        names[f] if np.sum(segments == f) == 1 else f"{names[f]}[{int(np.sum(segments[:c] == f))}]"
        for c, f in enumerate(segments)
    ]
    note = unjudged_note(int(summary.unjudged_rows), len(row_label), summary.first_unjudged,
                         row_label, col_names)  # fmt: skip
    return out, [note.replace("jax.grad", "JAX's factor")] if note else []


# per factor function and point shapes: the factors it returns, and its second look
_FOUND = ShapeMemo()


def _factor_names_and_look(factors_fn: Callable, g0: PointGroup, dt: str):
    """``(names, look)``: the note's factors ``factors_fn`` returns at one point of ``g0``,
    in chain order, and :func:`second_look`'s answer for it; found from shapes alone."""
    first = (
        jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), g0.params),
        *(jax.ShapeDtypeStruct(a.shape[2:], a.dtype) for a in (g0.x, g0.y)),
    )
    sample = jax.eval_shape(factors_fn, *first)
    ref_names = list(jax.eval_shape(seed_factors_autodiff, *first).keys())
    ref_names = [k for k in _NOTE_ORDER if k in ref_names]
    names = tuple(k for k in ref_names if k in sample)
    if not names:
        raise ValueError(
            f"factors_fn returned keys {sorted(sample)}; expected some of the note's factor "
            f"names {ref_names}"
        )
    return names, second_look(g0.x.dtype, dt, runs_in(factors_fn, first, dt))


def seed_factor_audit(
    factors_fn: Callable,
    groups: list[PointGroup],
    *,
    ref_dtype,
    tol: Tolerance,
    mesh: jax.sharding.Mesh | None = None,
    memory: int | None = None,
) -> tuple[list[dict], list[str]]:
    """Check ``factors_fn(params, x, yt) -> {name: scalar}`` (one example) for every example.

    Factors are those of :func:`jaxbp.seed_factors_autodiff` that ``factors_fn`` returns, in
    the note's chain order. With a ``mesh`` the points are split over its devices; each
    compiled call takes as many points as fit in ``memory`` bytes (None: the default budget).

    Returns:
      ``(entries, notes)``: one entry per factor, and notes on points where JAX's own factor
      was not finite.
    """
    g0 = groups[0]
    dt = jnp.dtype(ref_dtype).name
    found_key = shape_key(factors_fn, dt, trees=(g0.params, g0.x, g0.y), stacked=True)
    found = _FOUND.get(found_key)
    if found is None:
        found = _factor_names_and_look(factors_fn, g0, dt)
        _FOUND.put(found_key, found)
    names, look = found
    options = dict(factors_fn=factors_fn, names=names, ref_dtype=dt, tol=tol, look=look)
    segments = np.arange(len(names))
    results = _summaries(_seed_group, options, groups, mesh, memory,
                         _seed_rows(seed_factors_autodiff, names), segments)  # fmt: skip
    return _entries(list(names), segments, results, groups, dtype=g0.x.dtype)


# the note's chain order, from the loss backwards
_NOTE_ORDER = (
    "dE/dA3", "dA3/dz3", "dz3/dw31", "dz3/dw32", "dz3/db3", "dz3/dA1", "dz3/dA2",
    "dA1/dz1", "dA2/dz2", "dz1/dw11", "dz1/dw12", "dz1/db1", "dz2/dw21", "dz2/dw22", "dz2/db2",
)  # fmt: skip


def delta_factors(
    spec: OutputSpec,
    groups: list[PointGroup],
    *,
    ref_dtype,
    tol: Tolerance,
    mesh: jax.sharding.Mesh | None = None,
    memory: int | None = None,
) -> tuple[list[dict], list[str]]:
    """Check every layer's closed-form delta against ``jax.grad`` with respect to ``z_l``.

    Entries are named ``delta_l (dE/dz_l)`` and listed from the output layer backwards.
    ``mesh`` and ``memory`` as in :func:`seed_factor_audit`. Returns ``(entries, notes)`` as
    :func:`seed_factor_audit` does.
    """
    widths = tuple(int(leaf.shape[1]) for leaf in jax.tree.leaves(groups[0].params)[1::2])
    dt = jnp.dtype(ref_dtype).name
    look = second_look(groups[0].x.dtype, dt, True)  # the closed form is dtype-generic
    options = dict(spec=spec, widths=widths, ref_dtype=dt, tol=tol, look=look)
    segments = np.repeat(np.arange(len(widths)), widths)
    results = _summaries(_delta_group, options, groups, mesh, memory, _delta_rows(spec, False),
                         segments)  # fmt: skip
    names = [f"delta_{l + 1} (dE/dz_{l + 1})" for l in range(len(widths))]
    entries, notes = _entries(names, segments, results, groups, dtype=groups[0].x.dtype)
    return entries[::-1], notes
