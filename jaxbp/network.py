"""Forward pass and batch loss of an MLP as pure functions.

Written for one example and batched with ``jax.vmap``; the batch loss is the mean of the
per-example loss, so a batch of one is exactly the seed note's ``E = 1/2 (A3 - yt)^2``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbp.checks import check_data
from jaxbp.losses import OutputSpec, check_output_units, resolve_output
from jaxbp.params import Params

__all__ = ["batch_loss", "forward", "forward_example", "mean_loss", "per_example_loss"]


def forward_example(
    params: Params, x: jax.Array, spec: OutputSpec, z_shift: list[jax.Array] | None = None
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Every pre-activation and activation of one example.

    Args:
      params: ``L`` layers ``{"W": (n_l, n_{l-1}), "b": (n_l,)}``.
      x: ``(n_0,)`` one input.
      spec: from :func:`jaxbp.losses.resolve_output`.
      z_shift: optional ``L`` arrays ``(n_l,)`` added to each ``z_l``; differentiating with
        respect to them at zero gives ``dE/dz_l`` (used by the reference deltas).

    Returns:
      ``(zs, As)``: ``zs[l]: (n_{l+1},)`` for the L layers; ``As[0] = x`` and
      ``As[l+1] = f(zs[l])``, so ``As`` has ``L + 1`` entries.
    """
    # every loss, delta and reference goes through here, so it is checked once per trace
    check_output_units(spec, params[-1]["W"].shape[0])
    zs, As = [], [x]
    last = len(params) - 1
    for l, layer in enumerate(params):
        z = layer["W"] @ As[-1] + layer["b"]  # z_i = sum_j w_ij A_j + b_i
        if z_shift is not None:
            z = z + z_shift[l]
        act = spec.output if l == last else spec.hidden
        zs.append(z)
        As.append(act.f(z))
    return zs, As


def per_example_loss(params: Params, x: jax.Array, y: jax.Array, spec: OutputSpec) -> jax.Array:
    """Loss ``E`` of one example: ``x: (n_0,)``, ``y: (n_L,)``; returns a scalar."""
    zs, As = forward_example(params, x, spec)
    return spec.loss.value(zs[-1], As[-1], y)


def mean_loss(params: Params, x: jax.Array, y: jax.Array, spec: OutputSpec) -> jax.Array:
    """:func:`batch_loss` on a resolved ``spec`` (:func:`jaxbp.losses.resolve_output`): the mean
    of :func:`per_example_loss` over ``x: (n, n_0)``, ``y: (n, n_L)``; what training and the
    audit differentiate."""
    per = jax.vmap(per_example_loss, in_axes=(None, 0, 0, None))(params, x, y, spec)
    return jnp.mean(per)


def forward(
    params: Params,
    x: jax.Array,
    *,
    activation: str = "sigmoid",
    loss: str = "mse",
    output_activation: str | None = None,
) -> jax.Array:
    """Network outputs for a batch.

    Args:
      params: the parameter pytree (see :mod:`jaxbp.params`).
      x: ``(batch, n_0)`` float, same dtype as ``params``.
      activation: hidden activation, one of ``sigmoid, tanh, relu, identity``.
      loss: decides the default output activation (see :func:`resolve_output`).
      output_activation: overrides the output activation for ``mse``.

    Returns:
      ``(batch, n_L)`` activations of the last layer (probabilities for ``bce`` and
      ``softmax_ce``).
    """
    spec = resolve_output(activation, loss, output_activation)
    check_data(params, x)
    check_output_units(spec, params[-1]["W"].shape[0])
    return jax.vmap(lambda xi: forward_example(params, xi, spec)[1][-1])(x)


def batch_loss(
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    activation: str = "sigmoid",
    loss: str = "mse",
    output_activation: str | None = None,
) -> jax.Array:
    """Mean over the batch of the per-example loss.

    Args:
      params: the parameter pytree.
      x: ``(batch, n_0)`` float.
      y: ``(batch, n_L)`` float targets; a ``(batch,)`` target is refused, never broadcast.
      activation, loss, output_activation: see :func:`forward`.

    Returns:
      A scalar of the params' dtype.

    Example:
      >>> p = jaxbp.seed_params(w11=.15, w12=.2, w21=.25, w22=.3, w31=.4, w32=.45)
      >>> x, yt = jnp.array([[.05, .1]], jnp.float32), jnp.array([[.01]], jnp.float32)
      >>> batch_loss(p, x, yt)  # E for one example, biases 0
      Array(0.17789282, dtype=float32)
    """
    spec = resolve_output(activation, loss, output_activation)
    check_data(params, x, y)
    check_output_units(spec, params[-1]["W"].shape[0])
    return mean_loss(params, x, y, spec)
