"""Per-example losses, each beside its output delta ``dE/dz_L`` written by hand.

``E`` is the loss of ONE example; a batch's loss is the mean of ``E`` over the batch.

- ``mse`` (any elementwise output, the seed's): ``E = 1/2 sum_k (A_k - y_k)^2``,
  ``dE/dz_L = (A - y) * f'(z_L)``.
- ``bce`` (sigmoid output): ``E = -sum_k y_k log A_k + (1 - y_k) log(1 - A_k)``,
  ``dE/dz_L = A - y``.
- ``softmax_ce`` (softmax output): ``E = -sum_k y_k log softmax(z_L)_k``,
  ``dE/dz_L = softmax(z_L) sum_k y_k - y``.

Which output activation each loss takes is settled by :func:`jaxbp.core.resolve_output`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["LOSSES", "Loss"]


class Loss(NamedTuple):
    """A per-example loss and its hand-derived delta at the output pre-activation.

    Attributes:
      value: ``(z, a, y) -> E`` for one example; ``z, a, y: (n_out,)``; returns a scalar.
      delta: ``(z, a, y, act) -> dE/dz: (n_out,)``; ``act`` is the output activation.
      output: the output activation this loss requires, or ``None`` for any elementwise one.
    """

    value: Callable[..., jax.Array]
    delta: Callable[..., jax.Array]
    output: str | None


def _mse(z, a, y):
    return 0.5 * jnp.sum((a - y) ** 2)  # E = 1/2 (A3 - yt)^2


def _mse_delta(z, a, y, act):
    dE_dA = a - y  # (1)  dE/dA = 1/2 * 2 (A - yt)
    dA_dz = act.df(z, a)  # (2)  dA/dz = f'(z)
    return dE_dA * dA_dz


def _bce(z, a, y):
    # -[y log sigma(z) + (1 - y) log(1 - sigma(z))] = softplus(z) - y z, stable for any z
    return jnp.sum(jax.nn.softplus(z) - y * z)


def _bce_delta(z, a, y, act):
    # d/dz [softplus(z) - y z] = sigma(z) - y: the sigmoid's A(1 - A) cancels dE/dA's denominator
    return a - y


def _softmax_ce(z, a, y):
    # -sum_k y_k (z_k - logsumexp(z)); targets need not sum to 1
    return jnp.sum(y) * jax.nn.logsumexp(z) - jnp.sum(y * z)


def _softmax_ce_delta(z, a, y, act):
    # d logsumexp(z)/dz_k = softmax(z)_k = a_k
    return a * jnp.sum(y) - y


LOSSES: dict[str, Loss] = {
    "mse": Loss(_mse, _mse_delta, None),
    "bce": Loss(_bce, _bce_delta, "sigmoid"),
    "softmax_ce": Loss(_softmax_ce, _softmax_ce_delta, "softmax"),
}
