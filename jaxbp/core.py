"""The spec-level core: one example's forward pass, its loss and the delta rule, on a resolved spec.

Everything else in jaxbp and the audit is built on these functions. The public functions
that take string choices (:func:`jaxbp.forward`, :func:`jaxbp.batch_loss`,
:func:`jaxbp.closed_form_grads`, :func:`jaxbp.autodiff_grads`) check their arguments, call
:func:`resolve_output` once and then call in here; the audit calls in here directly with
the spec it resolved, so a name is checked once and every compiled program sees a hashable
:class:`OutputSpec`.

For one example, with ``A_0 = x``, ``z_l = W_l A_{l-1} + b_l`` and ``A_l = f_l(z_l)``::

    delta_L = dE/dz_L                              (from the loss, see jaxbp.losses)
    delta_l = (W_{l+1}^T delta_{l+1}) * f_l'(z_l)  (l = L-1, ..., 1)
    dE/dW_l = delta_l A_{l-1}^T                    (outer product)
    dE/db_l = delta_l

The note's matrix form ``[dE/dw31, dE/dw32]^T = diag((A3 - yt) A3(1 - A3)) [A1, A2]^T`` is
the first line and the third for its output layer. The per-example deltas come from
``vmap``; the batch-mean loss then averages the outer products, done as one contraction
``delta^T A / batch`` so it runs as a matrix multiply. Every derivative is written by hand.

Example:
  >>> spec = resolve_output("sigmoid", "mse")
  >>> p = jaxbp.seed_params(w11=.15, w12=.2, w21=.25, w22=.3, w31=.4, w32=.45)
  >>> x, y = jnp.array([[.05, .1]], jnp.float32), jnp.array([[.01]], jnp.float32)
  >>> out = backprop_batch(p, x, y, spec)
  >>> float(out.loss) == float(mean_loss(p, x, y, spec))
  True
  >>> [d.shape for d in out.deltas]  # dE/dz of the hidden layer and of the output, per example
  [(1, 2), (1, 1)]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbp.activations import ACTIVATIONS, Activation, get_activation
from jaxbp.losses import LOSSES, Loss
from jaxbp.params import Params

__all__ = [
    "OUTPUT_ACTIVATIONS",
    "Backprop",
    "OutputSpec",
    "backprop_batch",
    "bind_choices",
    "check_output_units",
    "deltas_example",
    "forward_example",
    "grads_from_deltas",
    "hidden_deltas",
    "mean_loss",
    "per_example_loss",
    "resolve_output",
]

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

    Example:
      >>> resolve_output("tanh", "softmax_ce").names
      ('tanh', 'softmax', 'softmax_ce')
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

    Example:
      >>> g = bind_choices(jaxbp.closed_form_grads, "closed_form", "tanh", "mse", None)
      >>> g.__name__, g is bind_choices(jaxbp.closed_form_grads, "closed_form", "tanh", "mse", None)
      ('closed_form_tanh_mse', True)
    """
    resolve_output(activation, loss, output_activation)

    def grad_fn(params, x, y):
        return fn(
            params, x, y, activation=activation, loss=loss, output_activation=output_activation
        )

    grad_fn.__name__ = f"{prefix}_{activation}_{loss}"
    return grad_fn


def forward_example(
    params: Params, x: jax.Array, spec: OutputSpec, z_shift: list[jax.Array] | None = None
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Every pre-activation and activation of one example.

    Args:
      params: ``L`` layers ``{"W": (n_l, n_{l-1}), "b": (n_l,)}``.
      x: ``(n_0,)`` one input.
      spec: from :func:`resolve_output`.
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
    """:func:`jaxbp.batch_loss` on a resolved ``spec``: the mean of :func:`per_example_loss`
    over ``x: (n, n_0)``, ``y: (n, n_L)``; what training and the audit differentiate."""
    per = jax.vmap(per_example_loss, in_axes=(None, 0, 0, None))(params, x, y, spec)
    return jnp.mean(per)


def hidden_deltas(
    params: Params,
    zs: list[jax.Array],
    As: list[jax.Array],
    delta_out: jax.Array,
    df: Callable[[int, jax.Array, jax.Array], jax.Array],
) -> list[jax.Array]:
    """The delta rule's backward sweep for one example, from the output delta down.

    Args:
      params: ``L`` layers; zs, As: from :func:`forward_example`.
      delta_out: ``(n_L,)`` the output delta ``dE/dz_L``.
      df: ``(l, z_l, A_l) -> (n_l,)`` the derivative ``f_l'(z_l)`` of hidden layer ``l``
        (``l = 0`` is the first hidden layer); usually ``spec.hidden.df``, and anything else
        when a caller wants the sweep with one factor changed.

    Returns:
      ``L`` arrays ``deltas[l]: (n_{l+1},)``, ``deltas[-1] = delta_out``.
    """
    deltas = [delta_out]
    for l in range(len(params) - 2, -1, -1):
        dE_dA = params[l + 1]["W"].T @ deltas[0]  # dz_{l+1}/dA_l = W_{l+1}
        deltas.insert(0, dE_dA * df(l, zs[l], As[l + 1]))  # dA_l/dz_l = f'(z_l)
    return deltas


def deltas_example(
    params: Params, x: jax.Array, y: jax.Array, spec: OutputSpec
) -> tuple[jax.Array, list[jax.Array], list[jax.Array]]:
    """Loss, deltas and activations for one example.

    Args:
      params: ``L`` layers; x: ``(n_0,)``; y: ``(n_L,)``; spec: resolved activations and loss.

    Returns:
      ``(E, deltas, As)``: scalar loss, ``deltas[l]: (n_{l+1},)`` for each layer, and the
      activations ``As`` (``L + 1`` entries, ``As[0] = x``).
    """
    zs, As = forward_example(params, x, spec)
    E = spec.loss.value(zs[-1], As[-1], y)
    delta = spec.loss.delta(zs[-1], As[-1], y, spec.output)  # delta_L = dE/dz_L
    deltas = hidden_deltas(params, zs, As, delta, lambda l, z, a: spec.hidden.df(z, a))
    return E, deltas, As


class Backprop(NamedTuple):
    """Everything one closed-form backward pass produces.

    Attributes:
      loss: scalar, the batch-mean loss.
      grads: same pytree as ``params``.
      deltas: ``L`` arrays ``(batch, n_l)``: ``delta_l = dE/dz_l`` of each example's own loss
        (the gradient of the batch-SUM loss with respect to ``z_l``).
    """

    loss: jax.Array
    grads: Params
    deltas: list[jax.Array]


_FAST_PATH_WORK = 1 << 16  # multiply-adds of d^T a above which the transpose pays off


def _sum_over_batch(d: jax.Array, a: jax.Array) -> jax.Array:
    """``sum_b d[b]^T a[b]``, i.e. ``d^T a`` for ``d: (batch, n_l)``, ``a: (batch, n_{l-1})``.

    XLA's CPU backend runs a matmul whose operands are both contracted over their leading
    axis on a slower generic path. Transposing ``d`` first, behind a barrier so that XLA
    cannot fold the transpose back into the matmul, hands it to the fast row-major kernel:
    a 64-256-256-10 training step at batch 512 takes about 15% less time
    (``python -m benchmarks --only mlp``). The sums are the same, up to float rounding.
    """
    if jax.default_backend() != "cpu" or d.size * a.shape[-1] < _FAST_PATH_WORK:
        return d.T @ a  # only XLA:CPU needs it; small products gain less than the copy costs
    return jax.lax.optimization_barrier(d.T) @ a


def grads_from_deltas(deltas: list[jax.Array], As: list[jax.Array]) -> Params:
    """The batch-mean gradient from a batch's deltas: ``dE/dW_l = mean_b delta_l A_{l-1}^T``
    and ``dE/db_l = mean_b delta_l``.

    Args:
      deltas: ``L`` arrays ``(n, n_l)``; As: the activations, ``L + 1`` arrays ``(n, n_l)``.

    Returns:
      ``L`` layers ``{"W": (n_l, n_{l-1}), "b": (n_l,)}``.
    """
    n = deltas[0].shape[0]
    return [
        # mean over the batch of delta_l A_{l-1}^T, as one contraction over the batch axis
        {"W": _sum_over_batch(d, a) / n, "b": jnp.mean(d, axis=0)}
        for d, a in zip(deltas, As[:-1], strict=True)
    ]


def backprop_batch(params: Params, x: jax.Array, y: jax.Array, spec: OutputSpec) -> Backprop:
    """The closed-form backward pass over a batch ``x: (n, n_0)``, ``y: (n, n_L)`` on a resolved
    ``spec``: the mean loss, every layer's deltas ``(n, n_l)`` and the mean gradients."""
    E, deltas, As = jax.vmap(deltas_example, in_axes=(None, 0, 0, None))(params, x, y, spec)
    return Backprop(jnp.mean(E), grads_from_deltas(deltas, As), deltas)
