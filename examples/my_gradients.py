"""A user's own handwritten gradients for the note's 2-2-1 sigmoid network with MSE.

Two gradient functions ``grad_fn(params, x, y) -> grads`` of the batch-mean loss
``mean over the batch of E = 1/2 (A3 - yt)^2``, written with plain ``jax.numpy`` and every
derivative by hand (no ``jax.grad``, ``vjp`` or ``jvp``):

- :func:`correct_grads`: the note's chain rule, right;
- :func:`buggy_grads`: the same numbers with one deliberate slip: dE/dw12 and dE/dw21 are
  stored in each other's places (see the comment there).

``examples/audit_my_gradient.py`` audits both. Arguments, for both functions:

    params: [{"W": (2, 2), "b": (2,)}, {"W": (1, 2), "b": (1,)}], e.g. jaxbp.seed_params(...)
            W[0] = [[w11, w12], [w21, w22]]: w_ij is the weight INTO neuron i FROM input j
    x: (batch, 2) float, the inputs x1, x2
    y: (batch, 1) float, the targets yt

and both return the same pytree as ``params``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _chain_rule(params, x, y) -> dict[str, jax.Array]:
    """Every dE/dw and dE/db of the batch-mean loss, keyed by the note's names."""
    (w11, w12), (w21, w22) = params[0]["W"]
    b1, b2 = params[0]["b"]
    ((w31, w32),) = params[1]["W"]
    (b3,) = params[1]["b"]
    x1, x2, yt = x[:, 0], x[:, 1], y[:, 0]  # each (batch,)

    # forward, as the note writes it
    z1 = x1 * w11 + x2 * w12 + b1
    A1 = 1 / (1 + jnp.exp(-z1))
    z2 = x1 * w21 + x2 * w22 + b2
    A2 = 1 / (1 + jnp.exp(-z2))
    z3 = A1 * w31 + A2 * w32 + b3
    A3 = 1 / (1 + jnp.exp(-z3))

    # backward: dE/dz3, then down through w31 and w32 to dE/dz1 and dE/dz2
    dE_dA3 = A3 - yt  # (1)
    dA3_dz3 = A3 * (1 - A3)  # (2)
    dE_dz3 = dE_dA3 * dA3_dz3
    dE_dz1 = dE_dz3 * w31 * A1 * (1 - A1)  # dz3/dA1 = w31, dA1/dz1 = A1(1 - A1)
    dE_dz2 = dE_dz3 * w32 * A2 * (1 - A2)  # dz3/dA2 = w32, dA2/dz2 = A2(1 - A2)

    # each example's dE/dp, averaged because the batch loss is the mean of E
    return {
        "w31": jnp.mean(dE_dz3 * A1),  # (3) dz3/dw31 = A1, (5)
        "w32": jnp.mean(dE_dz3 * A2),
        "b3": jnp.mean(dE_dz3),
        "w11": jnp.mean(dE_dz1 * x1),
        "w12": jnp.mean(dE_dz1 * x2),
        "b1": jnp.mean(dE_dz1),
        "w21": jnp.mean(dE_dz2 * x1),
        "w22": jnp.mean(dE_dz2 * x2),
        "b2": jnp.mean(dE_dz2),
    }


def correct_grads(params, x, y):
    """The note's gradients, each in its own weight's place."""
    g = _chain_rule(params, x, y)
    return [
        {
            "W": jnp.stack([jnp.stack([g["w11"], g["w12"]]), jnp.stack([g["w21"], g["w22"]])]),
            "b": jnp.stack([g["b1"], g["b2"]]),
        },
        {"W": jnp.stack([g["w31"], g["w32"]])[None, :], "b": jnp.stack([g["b3"]])},
    ]


def buggy_grads(params, x, y):
    """The same gradients with dE/dw12 and dE/dw21 swapped: a deliberate mistake."""
    g = _chain_rule(params, x, y)
    return [
        {
            # MISTAKE (on purpose): the hidden layer is filled in source by source, as if
            # w_ij meant "from i into j", so row 0 gets [w11, w21] and row 1 [w12, w22]. The
            # project's convention is "into neuron i from input j": row 0 must be [w11, w12].
            # w11 and w22 land in the right place by luck; w12 and w21 trade places.
            "W": jnp.stack([jnp.stack([g["w11"], g["w21"]]), jnp.stack([g["w12"], g["w22"]])]),
            "b": jnp.stack([g["b1"], g["b2"]]),
        },
        {"W": jnp.stack([g["w31"], g["w32"]])[None, :], "b": jnp.stack([g["b3"]])},
    ]
