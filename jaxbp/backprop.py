"""General closed-form backpropagation by the names of its choices: the delta rule for any
depth and width.

The rule itself, written out by hand for one example and averaged over a batch, is
:func:`jaxbp.core.backprop_batch`; see :mod:`jaxbp.core` for its equations.
"""

from __future__ import annotations

import jax

from jaxbp.checks import check_data
from jaxbp.core import Backprop, backprop_batch, bind_choices, check_output_units, resolve_output
from jaxbp.params import Params

__all__ = ["closed_form", "closed_form_grads"]


def closed_form_grads(
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    activation: str = "sigmoid",
    loss: str = "mse",
    output_activation: str | None = None,
    return_deltas: bool = False,
) -> Params | Backprop:
    """Gradient of the batch-mean loss by the delta rule.

    Args:
      params: the parameter pytree, any sizes.
      x: ``(batch, n_0)`` float; y: ``(batch, n_L)`` float.
      activation: hidden activation (``sigmoid, tanh, relu, identity``).
      loss: ``mse`` (with the 1/2), ``bce`` (sigmoid output) or ``softmax_ce``.
      output_activation: output activation for ``mse``; defaults to ``activation``.
      return_deltas: also return the loss and every layer's deltas.

    Returns:
      The gradient pytree, the same structure as ``params``; or a :class:`Backprop` with
      ``loss``, ``grads`` and ``deltas`` when ``return_deltas`` is true.

    Example:
      >>> p = jaxbp.init((2, 3, 1), key=jax.random.key(0))
      >>> x, y = jaxbp.truth_table("xor")
      >>> g = closed_form_grads(p, x, y)
      >>> jax.tree.map(jnp.shape, g)
      [{'W': (3, 2), 'b': (3,)}, {'W': (1, 3), 'b': (1,)}]
    """
    spec = resolve_output(activation, loss, output_activation)
    check_data(params, x, y)
    check_output_units(spec, params[-1]["W"].shape[0])
    out = backprop_batch(params, x, y, spec)
    return out if return_deltas else out.grads


def closed_form(
    *, activation: str = "sigmoid", loss: str = "mse", output_activation: str | None = None
):
    """A ``grad_fn(params, x, y) -> grads`` for the delta rule with these choices.

    Names are checked now, shapes at each call (at trace time under ``jit``); the same
    choices return the same function, so compiled code is reused.
    """
    return bind_choices(closed_form_grads, "closed_form", activation, loss, output_activation)
