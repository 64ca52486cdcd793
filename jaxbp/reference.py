"""Reference derivatives by automatic differentiation: what the closed forms are checked against.

Nothing here is handwritten: each function asks ``jax.grad`` for the derivative of the same
forward computation the closed forms differentiate by hand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbp.checks import check_data, check_seed_network
from jaxbp.core import OutputSpec, bind_choices, forward_example, mean_loss, resolve_output
from jaxbp.params import Params
from jaxbp.seed import seed_weights, sigma

__all__ = [
    "autodiff",
    "autodiff_deltas",
    "autodiff_grads",
    "deltas_by_jax_grad",
    "seed_factors_autodiff",
]


def autodiff_grads(
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    activation: str = "sigmoid",
    loss: str = "mse",
    output_activation: str | None = None,
) -> Params:
    """``jax.grad`` of :func:`jaxbp.batch_loss`; same arguments and pytree as the closed forms."""
    spec = resolve_output(activation, loss, output_activation)
    check_data(params, x, y)
    return jax.grad(mean_loss)(params, x, y, spec)


def autodiff(
    *, activation: str = "sigmoid", loss: str = "mse", output_activation: str | None = None
):
    """A ``grad_fn(params, x, y) -> grads`` that is ``jax.grad`` of the batch loss.

    The same choices return the same function, so compiled code is reused.
    """
    return bind_choices(autodiff_grads, "autodiff", activation, loss, output_activation)


def deltas_by_jax_grad(
    params: Params, x: jax.Array, y: jax.Array, spec: OutputSpec
) -> list[jax.Array]:
    """Every layer's delta ``dE/dz_l`` as ``jax.grad`` of each example's loss with respect to a
    shift of ``z_l``, on a resolved ``spec``: ``L`` arrays ``(n, n_l)``, the reference for
    :func:`jaxbp.core.backprop_batch`'s deltas."""

    def loss_of_shift(shift, xi, yi):
        zs, As = forward_example(params, xi, spec, z_shift=shift)
        return spec.loss.value(zs[-1], As[-1], yi)

    zero = [jnp.zeros_like(p["b"]) for p in params]
    return jax.vmap(jax.grad(loss_of_shift), in_axes=(None, 0, 0))(zero, x, y)


def autodiff_deltas(
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    activation: str = "sigmoid",
    loss: str = "mse",
    output_activation: str | None = None,
) -> list[jax.Array]:
    """``dE/dz_l`` of each example's loss by ``jax.grad``, for every layer.

    Returns:
      ``L`` arrays ``(batch, n_l)``, comparable to ``closed_form_grads(..., return_deltas=True)``.
    """
    spec = resolve_output(activation, loss, output_activation)
    check_data(params, x, y)
    return deltas_by_jax_grad(params, x, y, spec)


def seed_factors_autodiff(params: Params, x: jax.Array, yt: jax.Array) -> dict[str, jax.Array]:
    """JAX's derivative of each sub-expression the note differentiates, for one example.

    Same keys as :func:`jaxbp.seed_factors`. Each factor is ``jax.grad`` of that factor's own
    expression (``dz3/dA1`` is the derivative of ``A1 w31 + A2 w32 + b3`` in ``A1``), evaluated
    at the example's forward values, so a wrong factor is found on its own.
    """
    check_seed_network(params)
    p = seed_weights(params)
    x1, x2 = x[0], x[1]

    def z1_of(w11, w12, b1, x1, x2):
        return x1 * w11 + x2 * w12 + b1

    def z2_of(w21, w22, b2, x1, x2):
        return x1 * w21 + x2 * w22 + b2

    def z3_of(w31, w32, b3, A1, A2):
        return A1 * w31 + A2 * w32 + b3

    def E_of(A3):
        return 0.5 * (A3 - yt[0]) ** 2

    z1 = z1_of(p["w11"], p["w12"], p["b1"], x1, x2)
    z2 = z2_of(p["w21"], p["w22"], p["b2"], x1, x2)
    A1, A2 = sigma(z1), sigma(z2)
    z3 = z3_of(p["w31"], p["w32"], p["b3"], A1, A2)
    A3 = sigma(z3)
    d1 = jax.grad(z1_of, argnums=(0, 1, 2))(p["w11"], p["w12"], p["b1"], x1, x2)
    d2 = jax.grad(z2_of, argnums=(0, 1, 2))(p["w21"], p["w22"], p["b2"], x1, x2)
    d3 = jax.grad(z3_of, argnums=(0, 1, 2, 3, 4))(p["w31"], p["w32"], p["b3"], A1, A2)
    return {
        "dE/dA3": jax.grad(E_of)(A3),
        "dA3/dz3": jax.grad(sigma)(z3),
        "dz3/dw31": d3[0],
        "dz3/dw32": d3[1],
        "dz3/db3": d3[2],
        "dz3/dA1": d3[3],
        "dz3/dA2": d3[4],
        "dA1/dz1": jax.grad(sigma)(z1),
        "dA2/dz2": jax.grad(sigma)(z2),
        "dz1/dw11": d1[0],
        "dz1/dw12": d1[1],
        "dz1/db1": d1[2],
        "dz2/dw21": d2[0],
        "dz2/dw22": d2[1],
        "dz2/db2": d2[2],
    }
