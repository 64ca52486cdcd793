"""The seed note's 2-2-1 backpropagation, written literally, one equation a line.

Put this file beside the note: every name below is the note's own. Network: inputs x1, x2;
hidden neurons 1, 2; output neuron 3; sigmoid everywhere; ``E = 1/2 (A3 - yt)^2``. The
note writes no biases but ends with "updating weights & bias", so b1, b2, b3 are included
(they enter z1, z2, z3 with dz/db = 1).

Everything here is for ONE example; :func:`seed_grads` batches it with ``vmap`` and
averages, as the batch loss does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.checks import check_data, check_seed_network
from jaxbp.params import Params, seed_params

__all__ = [
    "seed_example",
    "seed_factors",
    "seed_forward",
    "seed_grads",
    "seed_grads_example",
    "seed_weights",
    "sigma",
]


def sigma(z: jax.Array) -> jax.Array:
    """A = sigma(z) = 1 / (1 + e^-z)."""
    return 1 / (1 + jnp.exp(-z))


def seed_weights(params: Params) -> dict[str, jax.Array]:
    """The 2-2-1 pytree's nine scalars under the note's names (``w11`` ... ``b3``), traceable
    (:func:`jaxbp.to_named` is the host-side, any-size counterpart)."""
    (W1, b1), (W2, b2) = (params[0]["W"], params[0]["b"]), (params[1]["W"], params[1]["b"])
    return dict(
        w11=W1[0, 0], w12=W1[0, 1], w21=W1[1, 0], w22=W1[1, 1], b1=b1[0], b2=b1[1],
        w31=W2[0, 0], w32=W2[0, 1], b3=b2[0],
    )  # fmt: skip


def _check_example(params: Params, x: jax.Array, yt: jax.Array) -> None:
    """One example of the note's network: shapes only, so it also runs under ``vmap``/``jit``."""
    check_seed_network(params)
    for what, a, want, meaning in (("x", x, (2,), "x1, x2"), ("yt", yt, (1,), "the target")):
        shape = getattr(a, "shape", None)
        if shape != want:
            raise ValueError(
                f"{what} has shape {shape}, expected {want} ({meaning}) for one example; "
                "for a batch use jaxbp.seed_grads(params, x, y) with x (batch, 2), y (batch, 1)"
            )


def seed_forward(params: Params, x: jax.Array, yt: jax.Array) -> dict[str, jax.Array]:
    """The note's forward pass for one example.

    Args:
      params: a 2-2-1 parameter pytree (see :func:`jaxbp.seed_params`).
      x: ``(2,)`` the inputs x1, x2.
      yt: ``(1,)`` the target.

    Returns:
      Scalars ``z1, A1, z2, A2, z3, A3, E``.
    """
    _check_example(params, x, yt)
    p = seed_weights(params)
    x1, x2 = x[0], x[1]
    z1 = x1 * p["w11"] + x2 * p["w12"] + p["b1"]
    A1 = sigma(z1)
    z2 = x1 * p["w21"] + x2 * p["w22"] + p["b2"]
    A2 = sigma(z2)
    z3 = A1 * p["w31"] + A2 * p["w32"] + p["b3"]
    A3 = sigma(z3)  # the prediction
    E = 0.5 * (A3 - yt[0]) ** 2
    return dict(z1=z1, A1=A1, z2=z2, A2=A2, z3=z3, A3=A3, E=E)


def seed_factors(params: Params, x: jax.Array, yt: jax.Array) -> dict[str, jax.Array]:
    """Every chain factor the note writes, for one example, under the note's names.

    Returns:
      Scalars keyed ``"dE/dA3"``, ``"dA3/dz3"``, ``"dz3/dw31"``, ``"dz3/dw32"``,
      ``"dz3/dA1"``, ``"dz3/dA2"``, ``"dA1/dz1"``, ``"dA2/dz2"``, ``"dz1/dw11"``,
      ``"dz1/dw12"``, ``"dz2/dw21"``, ``"dz2/dw22"``, and the bias factors ``"dz3/db3"``,
      ``"dz1/db1"``, ``"dz2/db2"`` (each 1).
    """
    p = seed_weights(params)
    f = seed_forward(params, x, yt)
    A1, A2, A3 = f["A1"], f["A2"], f["A3"]
    x1, x2 = x[0], x[1]
    one = jnp.ones_like(A3)
    return {
        "dE/dA3": A3 - yt[0],  # (1)  d(1/2 (A3 - yt)^2)/dA3 = 1/2 * 2 (A3 - yt)
        "dA3/dz3": A3 * (1 - A3),  # (2)  sigma(z3)(1 - sigma(z3))
        "dz3/dw31": A1,  # (3)  d(A1 w31 + A2 w32)/dw31
        "dz3/dw32": A2,  #      d(A2 w32 + A1 w31)/dw32
        "dz3/db3": one,
        "dz3/dA1": p["w31"],  # d(A1 w31 + A2 w32)/dA1
        "dz3/dA2": p["w32"],  # d(A1 w31 + A2 w32)/dA2
        "dA1/dz1": A1 * (1 - A1),  # sigma(z1)(1 - sigma(z1))
        "dA2/dz2": A2 * (1 - A2),  # sigma(z2)(1 - sigma(z2))
        "dz1/dw11": x1,  # d(x1 w11 + x2 w12)/dw11
        "dz1/dw12": x2,  # d(x1 w11 + x2 w12)/dw12
        "dz1/db1": one,
        "dz2/dw21": x1,  # d(x1 w21 + x2 w22)/dw21
        "dz2/dw22": x2,  # d(x1 w21 + x2 w22)/dw22
        "dz2/db2": one,
    }


def seed_grads_example(params: Params, x: jax.Array, yt: jax.Array) -> Params:
    """Every dE/dw and dE/db for one example, as the products the note writes.

    Args:
      params: a 2-2-1 parameter pytree.
      x: ``(2,)``; yt: ``(1,)``.

    Returns:
      The same pytree as ``params``, holding the gradients.
    """
    c = seed_factors(params, x, yt)
    # (4)/(5): dE/dw3j = dE/dA3 . dA3/dz3 . dz3/dw3j
    dE_dw31 = c["dE/dA3"] * c["dA3/dz3"] * c["dz3/dw31"]
    dE_dw32 = c["dE/dA3"] * c["dA3/dz3"] * c["dz3/dw32"]
    dE_db3 = c["dE/dA3"] * c["dA3/dz3"] * c["dz3/db3"]
    # dE/dw1k = dE/dA3 . dA3/dz3 . dz3/dA1 . dA1/dz1 . dz1/dw1k
    dE_dw11 = c["dE/dA3"] * c["dA3/dz3"] * c["dz3/dA1"] * c["dA1/dz1"] * c["dz1/dw11"]
    dE_dw12 = c["dE/dA3"] * c["dA3/dz3"] * c["dz3/dA1"] * c["dA1/dz1"] * c["dz1/dw12"]
    dE_db1 = c["dE/dA3"] * c["dA3/dz3"] * c["dz3/dA1"] * c["dA1/dz1"] * c["dz1/db1"]
    # dE/dw2k = dE/dA3 . dA3/dz3 . dz3/dA2 . dA2/dz2 . dz2/dw2k
    dE_dw21 = c["dE/dA3"] * c["dA3/dz3"] * c["dz3/dA2"] * c["dA2/dz2"] * c["dz2/dw21"]
    dE_dw22 = c["dE/dA3"] * c["dA3/dz3"] * c["dz3/dA2"] * c["dA2/dz2"] * c["dz2/dw22"]
    dE_db2 = c["dE/dA3"] * c["dA3/dz3"] * c["dz3/dA2"] * c["dA2/dz2"] * c["dz2/db2"]
    return [
        {
            "W": jnp.stack([jnp.stack([dE_dw11, dE_dw12]), jnp.stack([dE_dw21, dE_dw22])]),
            "b": jnp.stack([dE_db1, dE_db2]),
        },
        {"W": jnp.stack([dE_dw31, dE_dw32])[None, :], "b": jnp.stack([dE_db3])},
    ]


def seed_grads(params: Params, x: jax.Array, y: jax.Array) -> Params:
    """Gradient of the batch-mean loss by the seed's formulas.

    Args:
      params: a 2-2-1 parameter pytree.
      x: ``(batch, 2)`` float; y: ``(batch, 1)`` float.

    Returns:
      The same pytree as ``params``: the mean over the batch of each example's dE/dp, which
      equals :func:`jaxbp.autodiff_grads` (autodiff of ``jaxbp.batch_loss``) with sigmoid and MSE.
    """
    check_data(params, x, y)
    check_seed_network(params)
    per = jax.vmap(seed_grads_example, in_axes=(None, 0, 0))(params, x, y)
    return jax.tree.map(lambda g: jnp.mean(g, axis=0), per)


def seed_example(*, dtype: jnp.dtype = jnp.float32) -> tuple[Params, jax.Array, jax.Array]:
    """A worked example with concrete numbers for the note's network.

    x1 = 0.05, x2 = 0.10, yt = 0.01; w11 = 0.15, w12 = 0.20, w21 = 0.25, w22 = 0.30,
    w31 = 0.40, w32 = 0.45, b1 = 0.35, b2 = 0.35, b3 = 0.60 (small values that keep every
    sigmoid away from saturation, so each factor is clearly non-zero).

    Returns:
      ``(params, x: (1, 2), y: (1, 1))``.
    """
    params = seed_params(
        w11=0.15, w12=0.20, w21=0.25, w22=0.30, w31=0.40, w32=0.45,
        b1=0.35, b2=0.35, b3=0.60, dtype=dtype,
    )  # fmt: skip
    dtype = params[0]["W"].dtype  # checked by seed_params
    x, y = np.array([[0.05, 0.10]], dtype), np.array([[0.01]], dtype)
    return params, jax.device_put(x), jax.device_put(y)
