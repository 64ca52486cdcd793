"""Gradients as a common mistake would compute them, for the diagnosis to match against.

Each is the delta rule of :mod:`jaxbp.core` with one activation derivative left out:
forgetting ``dA/dz`` (the note's ``A(1 - A)`` factors) is the classic slip of a hand
derivation. Only used to name a failure, never as a reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from audit.tiers import tiered, work
from jaxbp.core import OutputSpec, forward_example, grads_from_deltas, hidden_deltas
from jaxbp.params import target_units

__all__ = ["missing_derivative_grads"]


def _grads_without(params, x, y, spec: OutputSpec, skip: int):
    """Delta-rule gradient of the batch-mean loss with ``f'(z_skip)`` replaced by 1."""

    def one(xi, yi):
        zs, As = forward_example(params, xi, spec)
        if skip == len(params) - 1:  # output layer: dE/dz_L = dE/dA_L without dA_L/dz_L (mse)
            delta = As[-1] - yi
        else:
            delta = spec.loss.delta(zs[-1], As[-1], yi, spec.output)

        def df(l, z, a):
            return jnp.ones_like(z) if l == skip else spec.hidden.df(z, a)

        return hidden_deltas(params, zs, As, delta, df), As

    deltas, As = jax.vmap(one)(x, y)
    return grads_from_deltas(deltas, As)


@tiered(static_argnames=("spec", "skip"))
def _flat_candidates(params, x, y, *, spec, skip):
    g = jax.vmap(lambda p, xi, yi: _grads_without(p, xi, yi, spec, skip))(params, x, y)
    n = x.shape[0]
    return jnp.concatenate([leaf.reshape(n, -1) for leaf in jax.tree.leaves(g)], axis=1)


def missing_derivative_grads(
    spec: OutputSpec, groups, sizes
) -> dict[str, tuple[jax.Array, list[str], str]]:
    """For each layer, the gradient without its ``f'(z_l)``, a hint for every weight and one
    for a tensor.

    Returns:
      ``{layer: ((n_points, P) gradients, P hints, tensor hint)}``. A weight into layer ``l``
      is told the derivative of its own unit (``dA1/dz1``); a weight below it, those of
      layer ``l``; a tensor, the layer's derivative.
      The output layer is included only for MSE (``bce``/``softmax_ce`` have no separate
      ``dA/dz`` factor in their delta), hidden layers only for non-identity activations.
    """
    out = {}
    act, out_act, loss = spec.names
    n_layers = len(sizes) - 1
    ends = np.cumsum(sizes[1:])  # the last unit number of each layer
    units = [list(range(int(e) - n + 1, int(e) + 1)) for e, n in zip(ends, sizes[1:], strict=True)]
    unit = target_units(sizes)  # the unit every weight feeds, numbered from 1 as in the note
    layer_of = list(zip(np.searchsorted(ends, unit).tolist(), unit.tolist(), strict=True))
    for skip in range(n_layers):
        is_out = skip == n_layers - 1
        if (is_out and (loss != "mse" or out_act == "identity")) or (
            not is_out and act == "identity"
        ):
            continue
        which = out_act if is_out else act
        what = "A(1 - A)" if which == "sigmoid" else f"{which}'(z)"
        terms = [f"dA{i}/dz{i}" for i in units[skip]]
        layer_terms = ", ".join(terms) if len(terms) <= 3 else f"{terms[0]} ... {terms[-1]}"
        texts = [
            f"missing the activation derivative "
            f"{f'dA{u}/dz{u}' if l == skip else layer_terms} = {what} (layer {skip + 1})"
            for l, u in layer_of
        ]
        grads = jnp.concatenate([
            _flat_candidates.pick(work(g.params, g.batch))(g.params, g.x, g.y, spec=spec, skip=skip)
            for g in groups
        ])  # fmt: skip
        out[f"layer {skip + 1}"] = (
            grads, texts, f"missing the activation derivative {what} of layer {skip + 1}"
        )  # fmt: skip
    return out
