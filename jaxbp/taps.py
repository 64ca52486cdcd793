"""The note's network and the MLP with their intermediates marked, for auditing a backward pass.

A forward pass here takes ``tap(name, value)`` first and marks each intermediate with it
(``tap`` returns the value); the matching backward pass returns ``dE/d<name>`` for every
marked name, written by hand. :func:`audit.check_backward` compares each with autodiff and
names the first intermediate, in backward order, that disagrees. Nothing here differentiates
anything: the backward passes are the closed forms.

The seed's chain, from the loss back (one example, ``E = 1/2 (A3 - yt)^2``)::

    dE/dA3                                  dE/dz3 = dE/dA3 . dA3/dz3
    dE/dA1 = dE/dz3 . dz3/dA1               dE/dz1 = dE/dA1 . dA1/dz1
    dE/dA2 = dE/dz3 . dz3/dA2               dE/dz2 = dE/dA2 . dA2/dz2

so a slip in one factor first shows at the intermediate whose gradient multiplies it in:
``dA1/dz1`` at ``z1``, ``dz3/dA1`` at ``A1``, ``dA3/dz3`` at ``z3``, ``dE/dA3`` at ``A3``.
For an MLP the intermediates are the pre-activations ``z_l`` and their gradients the layer
deltas, each divided by the batch size since the loss is the batch mean.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxbp.core import OutputSpec, backprop_batch
from jaxbp.params import Params
from jaxbp.seed import seed_factors, seed_weights, sigma

__all__ = ["mlp_deltas_backward", "mlp_loss_tapped", "seed_backward", "seed_loss_tapped"]

Tap = Callable[[str, jax.Array], jax.Array]


def seed_loss_tapped(tap: Tap, params: Params, x: jax.Array, yt: jax.Array) -> jax.Array:
    """The note's forward pass for one example, marking ``z1, A1, z2, A2, z3, A3``.

    Args:
      tap: ``tap(name, value) -> value``.
      params: a 2-2-1 parameter pytree; x: ``(2,)``; yt: ``(1,)``.

    Returns:
      The scalar ``E = 1/2 (A3 - yt)^2``.
    """
    p = seed_weights(params)
    x1, x2 = x[0], x[1]
    z1 = tap("z1", x1 * p["w11"] + x2 * p["w12"] + p["b1"])
    A1 = tap("A1", sigma(z1))
    z2 = tap("z2", x1 * p["w21"] + x2 * p["w22"] + p["b2"])
    A2 = tap("A2", sigma(z2))
    z3 = tap("z3", A1 * p["w31"] + A2 * p["w32"] + p["b3"])
    A3 = tap("A3", sigma(z3))
    return 0.5 * (A3 - yt[0]) ** 2


def seed_backward(
    params: Params,
    x: jax.Array,
    yt: jax.Array,
    *,
    factors: Callable[..., dict[str, jax.Array]] = seed_factors,
) -> dict[str, jax.Array]:
    """``dE/d<name>`` for every intermediate :func:`seed_loss_tapped` marks, as products of
    the note's chain factors.

    Args:
      params, x, yt: as in :func:`seed_loss_tapped`.
      factors: ``factors(params, x, yt) -> {"dE/dA3": ..., ...}``, the note's factors for
        one example (default :func:`jaxbp.seed_factors`); pass your own to audit them.

    Returns:
      Scalars under the keys ``A3, z3, A1, A2, z1, z2``.
    """
    c = factors(params, x, yt)
    dA3 = c["dE/dA3"]
    dz3 = dA3 * c["dA3/dz3"]
    dA1, dA2 = dz3 * c["dz3/dA1"], dz3 * c["dz3/dA2"]
    return {"A3": dA3, "z3": dz3, "A1": dA1, "A2": dA2,
            "z1": dA1 * c["dA1/dz1"], "z2": dA2 * c["dA2/dz2"]}  # fmt: skip


def mlp_loss_tapped(
    tap: Tap, params: Params, x: jax.Array, y: jax.Array, spec: OutputSpec
) -> jax.Array:
    """The batch-mean loss of an MLP, marking every layer's pre-activations ``z1 ... zL``.

    Args:
      tap: ``tap(name, value) -> value``.
      params: ``L`` layers ``{"W": (n_l, n_{l-1}), "b": (n_l,)}``.
      x: ``(n, n_0)``; y: ``(n, n_L)``; spec: from :func:`jaxbp.resolve_output`.

    Returns:
      The scalar mean loss, as :func:`jaxbp.core.mean_loss` computes it.
    """
    A = x
    last = len(params) - 1
    for l, layer in enumerate(params):
        z = tap(f"z{l + 1}", A @ layer["W"].T + layer["b"][None, :])  # (n, n_l)
        A = (spec.output if l == last else spec.hidden).f(z)
    per = jax.vmap(spec.loss.value)(z, A, y)
    return jnp.mean(per)


def mlp_deltas_backward(
    params: Params, x: jax.Array, y: jax.Array, spec: OutputSpec
) -> dict[str, jax.Array]:
    """``dE/dz_l`` of the batch-mean loss for every layer, from the closed-form deltas.

    Returns:
      ``{"z1": (n, n_1), ..., "zL": (n, n_L)}``: each example's delta over the batch size.
    """
    deltas = backprop_batch(params, x, y, spec).deltas
    return {f"z{l + 1}": d / x.shape[0] for l, d in enumerate(deltas)}
