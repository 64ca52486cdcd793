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

from audit.compare import Tolerance, compare, worst_over_points
from audit.gradients import roundoff
from audit.points import PointGroup
from audit.result import number
from jaxbp.backprop import _backprop
from jaxbp.losses import OutputSpec
from jaxbp.reference import _deltas, seed_factors_autodiff

__all__ = ["delta_factors", "seed_factor_audit"]


def _per_example(fn):
    """``fn(params, x_i, y_i) -> {name: scalar}`` over points and their examples."""
    return jax.vmap(jax.vmap(fn, in_axes=(None, 0, 0)))


@functools.partial(jax.jit, static_argnames=("fn", "names"))
def _seed_rows(fn, names, params, x, y):
    vals = _per_example(fn)(params, x, y)  # {name: (n, B)}
    return jnp.stack([vals[k].reshape(-1) for k in names], axis=1)  # (n * B, F)


@functools.partial(jax.jit, static_argnames=("spec", "manual"))
def _delta_rows(params, x, y, *, spec: OutputSpec, manual: bool):
    def one(p, xi, yi):
        d = _backprop(p, xi, yi, spec).deltas if manual else _deltas(p, xi, yi, spec)
        return jnp.concatenate(d, axis=1)  # (B, sum n_l)

    rows = jax.vmap(one)(params, x, y)
    return rows.reshape(-1, rows.shape[-1])


def _cast(g: PointGroup, dtype):
    return jax.tree.map(lambda a: a.astype(dtype), g.params), g.x.astype(dtype), g.y.astype(dtype)


def _entries(names, segments, manual, reference, same, groups, tol):
    """One entry per factor: its worst (point, example) over all rows."""
    cmp = compare(manual, reference, same, segments, len(names), tol)
    w = worst_over_points(manual, reference, cmp)
    score = np.nan_to_num(np.asarray(w.score, np.float64), nan=np.inf)
    failed = np.asarray(w.n_failed) > 0
    # rows are (point, example) pairs in group order
    row_point, row_label = [], []
    start = 0
    for g in groups:
        b = g.x.shape[1]
        for i in range(g.size):
            row_point += [start + i] * b
            row_label += [f"{g.labels[i]}, example {e}" for e in range(b)]
        start += g.size
    out = []
    for f, name in enumerate(names):
        cols = np.flatnonzero(segments == f)
        c = int(cols[np.argmax(score[cols])])  # the factor's worst element
        row = int(np.asarray(w.index)[c])
        out.append(
            dict(
                name=name,
                manual=number(w.manual[c]),
                reference=number(w.reference[c]),
                abs_err=number(w.abs_err[c]),
                rel_err=number(w.rel_err[c]),
                allowed_err=number(w.allowed[c]),
                score=number(w.score[c]),
                passed=not bool(failed[cols].any()),
                worst_point=dict(index=row_point[row], label=row_label[row]),
            )
        )
    return out


def seed_factor_audit(
    factors_fn: Callable, groups: list[PointGroup], *, ref_dtype, tol: Tolerance
) -> list[dict]:
    """Check ``factors_fn(params, x, yt) -> {name: scalar}`` (one example) for every example.

    Factors are those of :func:`jaxbp.seed_factors_autodiff` that ``factors_fn`` returns, in
    the note's chain order.
    """
    g0 = groups[0]
    sample = jax.eval_shape(
        factors_fn, jax.tree.map(lambda a: a[0], g0.params), g0.x[0, 0], g0.y[0, 0]
    )
    ref_names = list(seed_factors_autodiff(*_first(g0)))  # a dict in the note's chain order
    names = tuple(k for k in ref_names if k in sample)
    if not names:
        raise ValueError(
            f"factors_fn returned keys {sorted(sample)}; expected some of the note's factor "
            f"names {ref_names}"
        )
    manual, reference, same = [], [], []
    for g in groups:
        manual.append(_seed_rows(factors_fn, names, g.params, g.x, g.y))
        reference.append(_seed_rows(seed_factors_autodiff, names, *_cast(g, ref_dtype)))
        if g.x.dtype != jnp.dtype(ref_dtype):
            rows = functools.partial(_seed_rows, seed_factors_autodiff, names)
            same.append(roundoff(rows, g.params, g.x, g.y, reference[-1]))
    segments = np.arange(len(names))
    return _entries(
        list(names), segments, *_joined(manual, reference, same, groups, ref_dtype), groups, tol
    )


def _first(g: PointGroup):
    return jax.tree.map(lambda a: a[0], g.params), g.x[0, 0], g.y[0, 0]


def _joined(manual, reference, same, groups, ref_dtype):
    m, r = jnp.concatenate(manual), jnp.concatenate(reference)
    s = jnp.concatenate(same) if same else None
    return m, r, s


def delta_factors(
    spec: OutputSpec, groups: list[PointGroup], *, ref_dtype, tol: Tolerance
) -> list[dict]:
    """Check every layer's closed-form delta against ``jax.grad`` with respect to ``z_l``.

    Entries are named ``delta_l (dE/dz_l)`` and listed from the output layer backwards.
    """
    widths = [leaf.shape[1] for leaf in jax.tree.leaves(groups[0].params)[1::2]]
    n_layers = len(widths)
    manual, reference, same = [], [], []
    for g in groups:
        manual.append(_delta_rows(g.params, g.x, g.y, spec=spec, manual=True))
        reference.append(_delta_rows(*_cast(g, ref_dtype), spec=spec, manual=False))
        if g.x.dtype != jnp.dtype(ref_dtype):
            rows = functools.partial(_delta_rows, spec=spec, manual=False)
            same.append(roundoff(rows, g.params, g.x, g.y, reference[-1]))
    segments = np.repeat(np.arange(n_layers), widths)
    names = [f"delta_{l + 1} (dE/dz_{l + 1})" for l in range(n_layers)]
    entries = _entries(
        names, segments, *_joined(manual, reference, same, groups, ref_dtype), groups, tol
    )
    return entries[::-1]
