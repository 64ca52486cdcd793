"""Per-example losses, each beside its output delta ``dE/dz_L`` written by hand.

``E`` is the loss of ONE example; a batch's loss is the mean of ``E`` over the batch.

- ``mse`` (any elementwise output, the seed's): ``E = 1/2 sum_k (A_k - y_k)^2``,
  ``dE/dz_L = (A - y) * f'(z_L)``.
- ``bce`` (sigmoid output): ``E = -sum_k y_k log A_k + (1 - y_k) log(1 - A_k)``,
  ``dE/dz_L = A - y``.
- ``softmax_ce`` (softmax output): ``E = -sum_k y_k log softmax(z_L)_k``,
  ``dE/dz_L = softmax(z_L) sum_k y_k - y``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbp.activations import ACTIVATIONS, Activation, get_activation

__all__ = [
    "LOSSES",
    "OUTPUT_ACTIVATIONS",
    "Loss",
    "OutputSpec",
    "bind_choices",
    "check_output_units",
    "resolve_output",
]


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

_SOFTMAX = Activation(jax.nn.softmax, lambda z, a: None)  # only used through its loss's delta
OUTPUT_ACTIVATIONS = (*ACTIVATIONS, "softmax")  # what resolve_output takes for the output layer


class OutputSpec(NamedTuple):
    """The resolved choice of hidden activation, output activation and loss."""

    hidden: Activation
    output: Activation
    loss: Loss
    names: tuple[str, str, str]  # (activation, output_activation, loss)


def resolve_output(activation: str, loss: str, output_activation: str | None = None) -> OutputSpec:
    """Check the names and settle the output activation.

    ``output_activation=None`` means: the hidden ``activation`` for ``mse``, ``sigmoid`` for
    ``bce``, ``softmax`` for ``softmax_ce``. Any other pairing with ``bce``/``softmax_ce`` is
    an error, since their deltas are derived for that output only.
    """
    hidden = get_activation(activation)
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not known; expected one of {', '.join(LOSSES)}")
    spec = LOSSES[loss]
    if output_activation is None:
        output_activation = spec.output or activation
    if spec.output is not None and output_activation != spec.output:
        raise ValueError(
            f"loss={loss!r} needs output_activation={spec.output!r}, got {output_activation!r}; "
            f"leave output_activation unset or use loss='mse'"
        )
    if spec.output is None and output_activation not in ACTIVATIONS:
        raise ValueError(
            f"output_activation={output_activation!r} is not known for loss='mse'; expected one "
            f"of {', '.join(ACTIVATIONS)}"
        )
    out = _SOFTMAX if output_activation == "softmax" else ACTIVATIONS[output_activation]
    return OutputSpec(hidden, out, spec, (activation, output_activation, loss))


def check_output_units(spec: OutputSpec, n_out: int) -> None:
    """Refuses an output layer the loss cannot learn from: softmax over a single unit.

    ``softmax`` of one unit is 1 whatever its input, so ``softmax_ce`` is 0 and every
    gradient is 0 for any weights: training learns nothing, and an audit would pass a
    gradient function that returns zeros. Shapes only, so it runs at trace time.

    Args:
      spec: from :func:`resolve_output`.
      n_out: width of the output layer, ``sizes[-1]`` or ``params[-1]["W"].shape[0]``.

    Raises:
      ValueError: the output is softmax and ``n_out < 2``.

    Example:
      >>> check_output_units(resolve_output("sigmoid", "softmax_ce"), 1)
      Traceback (most recent call last):
      ...
      ValueError: loss='softmax_ce' with 1 output unit: softmax over a single unit is 1 ...
    """
    if spec.names[1] == "softmax" and n_out < 2:
        raise ValueError(
            f"loss={spec.names[2]!r} with {n_out} output unit: softmax over a single unit is "
            "1 whatever its input, so the loss is 0 and every gradient is 0, and nothing can "
            "be trained or checked; give the network one output unit per class (2 or more, "
            "with one-hot targets from jaxbp.one_hot), or use loss='bce' for one yes/no output"
        )


@functools.lru_cache(maxsize=256)
def bind_choices(
    fn: Callable, prefix: str, activation: str, loss: str, output_activation: str | None
) -> Callable:
    """``grad_fn(params, x, y)``: ``fn`` with its activation and loss choices bound.

    Names are checked now, shapes at each call. The same choices give the same function
    object, so ``jit`` (in :func:`jaxbp.fit`, in the audit) reuses what it compiled for it.
    """
    resolve_output(activation, loss, output_activation)

    def grad_fn(params, x, y):
        return fn(
            params, x, y, activation=activation, loss=loss, output_activation=output_activation
        )

    grad_fn.__name__ = f"{prefix}_{activation}_{loss}"
    return grad_fn
