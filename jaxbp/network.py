"""Forward pass and batch loss of an MLP, by the names of its choices.

Each function checks its arguments, resolves the choice names once and runs the one-example
functions of :mod:`jaxbp.core` batched with ``jax.vmap``; the batch loss is the mean of the
per-example loss, so a batch of one is exactly the seed note's ``E = 1/2 (A3 - yt)^2``.
"""

from __future__ import annotations

import jax

from jaxbp.checks import check_data
from jaxbp.core import check_output_units, forward_example, mean_loss, resolve_output
from jaxbp.params import Params

__all__ = ["batch_loss", "forward"]


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
      loss: decides the default output activation (see :func:`jaxbp.core.resolve_output`).
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
