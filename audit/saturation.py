"""Saturated units: where a sigmoid or tanh slope is near 0, relative error means little.

For each weight, the audit flags whether the unit it feeds is saturated at the weight's worst
point (its slope below ``SATURATION`` of the activation's largest slope for every example).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from audit.points import PointGroup, by_group, subset_points
from audit.tiers import tiered, work
from jaxbp.core import OutputSpec, forward_example
from jaxbp.params import target_units

__all__ = ["SATURATION", "saturation_fn"]

SATURATION = 1e-3  # f'(z) below this fraction of its maximum: a saturated unit


@tiered(static_argnames=("spec",))
def _unit_slopes(params, x, *, spec: OutputSpec) -> jax.Array:
    """``(n_points, units)``: per point, the largest ``f'(z) / max f'`` over its batch.

    Units whose activation has no bounded slope (relu, identity) get 1. One compiled call
    per point shape, instead of one small compilation per operation and shape.
    """
    act, out_act, _ = spec.names
    peak = {"sigmoid": 0.25, "tanh": 1.0}

    def fprime(params, x):
        zs, As = forward_example(params, x, spec)
        out = []
        for l, (z, a) in enumerate(zip(zs, As[1:], strict=True)):
            name = out_act if l == len(zs) - 1 else act
            if name in peak:
                out.append(spec.hidden.df(z, a) / peak[name] if name == act else
                           spec.output.df(z, a) / peak[name])  # fmt: skip
            else:
                out.append(jnp.ones_like(z))
        return jnp.concatenate(out)

    return jnp.max(jax.vmap(jax.vmap(fprime, (None, 0)))(params, x), axis=1)


def saturation_fn(spec: OutputSpec, groups: list[PointGroup], sizes: tuple[int, ...]):
    """For each weight, whether its target unit is saturated at a given point.

    The slopes are computed when asked, at the points asked for alone (each weight's worst
    point: at most one a weight), not at every point of the audit: at 262,144 points that
    had cost 16 ms a call for a handful of rows read.
    """
    act, out_act, _ = spec.names
    if act not in ("sigmoid", "tanh") and out_act not in ("sigmoid", "tanh"):
        return None
    unit_of = target_units(sizes) - 1  # column of the slopes: units numbered from 0

    def saturated(weights: np.ndarray, points: np.ndarray) -> np.ndarray:
        weights = np.asarray(weights)
        out = np.zeros(np.shape(points), bool)
        for k, here, local in by_group([g.size for g in groups], points):
            slopes = _slopes_at(groups[k], local, spec)  # (here.size, units)
            out[here] = slopes[np.arange(here.size), unit_of[weights[here]]] < SATURATION
        return out

    return saturated


def _slopes_at(g: PointGroup, local: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """``(len(local), units)``: :func:`_unit_slopes` at the points ``local`` of ``g``, each
    distinct point computed once (:func:`audit.points.subset_points`)."""
    unique, inverse = np.unique(local, return_inverse=True)
    params, x = subset_points((g.params, g.x), unique)
    slopes = _unit_slopes.pick(work(params, g.batch))(params, x, spec=spec)
    return np.asarray(slopes)[inverse]
