"""Saturated units: where a sigmoid or tanh slope is near 0, relative error means little.

For each weight, the audit flags whether the unit it feeds is saturated at the weight's worst
point (its slope below ``SATURATION`` of the activation's largest slope for every example).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from audit.points import PointGroup
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
    """For each weight, whether its target unit is saturated at a given point."""
    act, out_act, _ = spec.names
    if act not in ("sigmoid", "tanh") and out_act not in ("sigmoid", "tanh"):
        return None
    # per point, per unit: saturated for every example of the point's batch
    slopes = [_unit_slopes.pick(work(g.params, g.batch))(g.params, g.x, spec=spec) for g in groups]
    sat = np.concatenate([np.asarray(s) < SATURATION for s in slopes])
    unit_of = target_units(sizes) - 1  # column of the slopes: units numbered from 0

    def saturated(weights: np.ndarray, points: np.ndarray) -> np.ndarray:
        return sat[points, unit_of[weights]]

    return saturated
