"""Activation functions, each beside its derivative written by hand.

Each derivative takes ``(z, a)`` with ``a = f(z)`` already computed, so the sigmoid's can be
written as the seed note writes it, through the output: ``sigma'(z) = A (1 - A)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "Activation", "get_activation"]


class Activation(NamedTuple):
    """An elementwise activation ``a = f(z)`` and its derivative ``f'(z)``.

    Attributes:
      f: ``z -> a``, any shape.
      df: ``(z, a) -> f'(z)``, same shape as ``z``; written by hand.
    """

    f: Callable[[jax.Array], jax.Array]
    df: Callable[[jax.Array, jax.Array], jax.Array]


def _sigmoid(z: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(z)  # 1 / (1 + e^-z), stable for large |z|


def _dsigmoid(z: jax.Array, a: jax.Array) -> jax.Array:
    return a * (1 - a)  # the note's (2): sigma(z)(1 - sigma(z)) = A(1 - A)


def _dtanh(z: jax.Array, a: jax.Array) -> jax.Array:
    return 1 - a * a  # tanh' = 1 - tanh^2


def _drelu(z: jax.Array, a: jax.Array) -> jax.Array:
    return (z > 0).astype(z.dtype)  # 0 at z = 0, the convention jax.nn.relu uses


def _didentity(z: jax.Array, a: jax.Array) -> jax.Array:
    return jnp.ones_like(z)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(_sigmoid, _dsigmoid),
    "tanh": Activation(jnp.tanh, _dtanh),
    "relu": Activation(jax.nn.relu, _drelu),
    "identity": Activation(lambda z: z, _didentity),
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; the error lists the valid names."""
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation={name!r} is not known; expected one of {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]
