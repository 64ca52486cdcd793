"""Compiled training: the note's "updating weights & bias", run as one ``lax.scan``.

The step is ``p <- optimizer(p, dE/dp)``; by default plain gradient descent,
``p <- p - eta dE/dp`` on every weight and bias. Gradients come from the seed's formulas,
the general closed form, ``jax.grad``, or any ``grad_fn(params, x, y) -> grads``.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbp.checks import (
    check_data,
    check_grads_like,
    check_int,
    check_key,
    check_learning_rate,
    check_seed_choices,
    check_seed_network,
)
from jaxbp.core import (
    OutputSpec,
    backprop_batch,
    check_output_units,
    mean_loss,
    resolve_output,
)
from jaxbp.params import Params
from jaxbp.seed import (
    seed_forward,
    seed_grads_example,
)
from jaxbp.sharding import DATA, check_divisible, data_size, replicate, shard_batch

__all__ = ["GRADS", "FitResult", "compiled_loops", "fit", "gradient_descent"]

GRADS = ("seed", "closed_form", "autodiff")

# One transformation object for every learning rate: the rate lives in the optimizer state,
# so a new rate reuses the compiled loop instead of compiling again.
_GD = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)


# check_data reads x and y on the host to look for NaN/Inf: it waits for them, copies them
# over, and takes longer than a short compiled run. Its verdict depends only on the params'
# layout (containers, leaf types, shapes, dtypes) and on x and y, and a jax.Array never
# changes, so the last inputs that passed are remembered (x and y by weak reference, so
# nothing is kept alive) and the same inputs again skip the copy. NumPy arrays, which can
# change in place, and tracers are checked every time.
_passed: dict[str, tuple[Any, weakref.ref, weakref.ref]] = {}


def _check_data(params: Any, x: Any, y: Any) -> None:
    """:func:`check_data`, skipped for the very inputs that passed it last time."""
    leaves, treedef = jax.tree.flatten(params)
    layout = (treedef, tuple((type(v), getattr(v, "shape", None), getattr(v, "dtype", None))
                             for v in leaves))  # fmt: skip
    last = _passed.get("fit")
    if last is not None and last[0] == layout and last[1]() is x and last[2]() is y:
        return
    check_data(params, x, y)
    if all(isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer) for a in (x, y)):
        _passed["fit"] = (layout, weakref.ref(x), weakref.ref(y))


def gradient_descent(learning_rate: float) -> optax.GradientTransformation:
    """Plain gradient descent ``p <- p - learning_rate * dE/dp`` (the note's update).

    Raises:
      ValueError: ``learning_rate`` is NaN, infinite, zero or negative.
    """
    return optax.sgd(check_learning_rate(learning_rate))


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the parameters after the last step (same pytree as the input).
      losses: ``(steps,)`` the batch loss at every step, computed before that step's update.
      opt_state: the optimizer state after the last step.
    """

    params: Params
    losses: jax.Array
    opt_state: Any


def _seed_loss_and_grads(params: Params, x: jax.Array, yt: jax.Array) -> tuple[jax.Array, Params]:
    """The note's E and every dE/dp for one example (the two forward passes are one after CSE)."""
    return seed_forward(params, x, yt)["E"], seed_grads_example(params, x, yt)


def _value_and_grad(
    params: Params, x: jax.Array, y: jax.Array, spec: OutputSpec, grad: str | Callable
) -> tuple[jax.Array, Params]:
    if grad == "closed_form":
        out = backprop_batch(params, x, y, spec)
        return out.loss, out.grads
    if grad == "autodiff":
        return jax.value_and_grad(mean_loss)(params, x, y, spec)
    if grad == "seed":
        # the loss from the note's own forward pass, which its gradients already run: one
        # forward per step instead of two (the note's E is the batch loss's per-example term)
        per_loss, per = jax.vmap(_seed_loss_and_grads, in_axes=(None, 0, 0))(params, x, y)
        return jnp.mean(per_loss), jax.tree.map(lambda g: jnp.mean(g, axis=0), per)
    grads = grad(params, x, y)
    # at trace time: jit traces again whenever the params' or data's shapes change
    check_grads_like(params, grads, getattr(grad, "__name__", "grad_fn"))
    return mean_loss(params, x, y, spec), grads


def _minibatch(x, y, key, t, batch_size, sharding):
    """Examples for step ``t``: a reshuffle every epoch, then consecutive slices of it.

    With a ``sharding`` (a mesh's ``"data"`` split) the minibatch is split the same way, so
    each device works on its share of the rows, as with the full batch.
    """
    if batch_size is None:
        return x, y
    n = x.shape[0]
    per_epoch = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, t // per_epoch), n)
    idx = jax.lax.dynamic_slice(perm, ((t % per_epoch) * batch_size,), (batch_size,))
    xb, yb = x[idx], y[idx]
    if sharding is not None:
        xb, yb = jax.lax.with_sharding_constraint((xb, yb), sharding)
    return xb, yb


@functools.partial(
    jax.jit, static_argnames=("names", "grad", "optimizer", "length", "batch_size", "sharding")
)
def _run_chunk(
    params, opt_state, x, y, key, start, rate, *, names, grad, optimizer, length, batch_size,
    sharding,
):  # fmt: skip
    """``length`` steps from ``params`` in one compiled call.

    Everything a call needs is made in here, so that :func:`fit` dispatches one compiled
    program and nothing else: ``opt_state=None`` is a fresh ``optimizer.init(params)``, and
    ``rate`` (the default optimizer's learning rate, None for any other optimizer) is written
    into a new state rather than the caller's. ``key`` and ``start`` are None for the full
    batch, which draws nothing. ``names`` are the resolved ``(activation, output_activation,
    loss)``: plain strings, which the jit cache hashes and compares faster than functions.
    """
    activation, output_activation, loss = names
    spec = resolve_output(activation, loss, output_activation)
    if opt_state is None:
        opt_state = optimizer.init(params)
        if sharding is not None:  # replicated, like the params it was made from
            opt_state = jax.lax.with_sharding_constraint(
                opt_state, NamedSharding(sharding.mesh, P())
            )
    if rate is not None:
        hyper = opt_state.hyperparams
        rate = jnp.asarray(rate, hyper["learning_rate"].dtype)
        opt_state = opt_state._replace(hyperparams={**hyper, "learning_rate": rate})

    def step(carry, t):
        params, opt_state = carry
        xb, yb = _minibatch(x, y, key, t, batch_size, sharding)
        loss, grads = _value_and_grad(params, xb, yb, spec, grad)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    ts = None if batch_size is None else start + jnp.arange(length)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), ts, length=length)
    return params, opt_state, losses


def compiled_loops() -> int:
    """How many compiled training loops :func:`fit` holds (one per shapes, dtypes and
    choices): a count that repeated calls leave unchanged when they reuse a loop."""
    return _run_chunk._cache_size()


@functools.lru_cache(maxsize=256)
def _state_structure(optimizer, treedef, avals) -> Any:
    """The pytree structure of ``optimizer.init`` for params of these shapes, found once."""
    params = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in avals])
    return jax.tree.structure(jax.eval_shape(optimizer.init, params))


def fit(
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    steps: int,
    grad: str | Callable[[Params, jax.Array, jax.Array], Params] = "closed_form",
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 0.5,
    activation: str = "sigmoid",
    loss: str = "mse",
    output_activation: str | None = None,
    batch_size: int | None = None,
    key: jax.Array | None = None,
    chunk_size: int | None = None,
    on_chunk: Callable[[int, int, float], None] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    opt_state: Any = None,
    start_step: int = 0,
) -> FitResult:
    """Train under ``jit``: ``steps`` updates, compiled as a ``lax.scan``.

    Args:
      params: initial parameter pytree; ``x: (n, n_0)``, ``y: (n, n_L)`` float.
      steps: number of updates, >= 1.
      grad: ``"seed"`` (2-2-1, sigmoid, mse only), ``"closed_form"``, ``"autodiff"``, or a
        callable ``grad_fn(params, x, y) -> grads`` (traced under ``jit``). Pass the same
        callable object again to reuse the compiled loop.
      optimizer: any optax ``GradientTransformation``; default plain gradient descent with
        ``learning_rate`` (reused across rates without recompiling).
      learning_rate: the default optimizer's rate (eta); ignored when ``optimizer`` is given.
      activation, loss, output_activation: as in :func:`jaxbp.batch_loss`.
      batch_size: minibatch size, ``1 <= batch_size <= n``; None for the full batch. Each
        epoch reshuffles with ``key``; a remainder of ``n % batch_size`` examples is left out
        of that epoch.
      key: PRNG key, required with ``batch_size``.
      chunk_size: steps per compiled call (default: all); ``on_chunk`` is called after each.
      on_chunk: ``on_chunk(steps_done, steps, last_loss)``, e.g. to print progress.
      mesh: data parallelism over the devices of a ``jax.sharding.Mesh`` with a ``"data"``
        axis (:func:`jaxbp.data_mesh`): ``x`` and ``y`` are split along it by rows, params
        and optimizer state replicated, and every minibatch is split the same way. ``n`` and
        ``batch_size`` must be multiples of the number of devices. None (default): one
        device. Results equal one device's up to the order of floating-point sums. Over
        several processes (:func:`jaxbp.initialize_distributed`), every process calls ``fit``
        with the same params and key, and ``x``, ``y`` either whole on every process or the
        global arrays of :func:`jaxbp.shard_local_batch`; minibatches are drawn from the
        global batch, so the schedule does not depend on the number of processes.
      opt_state: resume from a previous :class:`FitResult`'s ``opt_state`` (same optimizer
        object; for the default optimizer ``learning_rate`` is set again). None: a fresh
        ``optimizer.init(params)``.
      start_step: number of the first step, so a resumed run continues the minibatch schedule
        (two calls of ``steps=k`` with ``start_step=0`` and ``k`` equal one of ``2k``).

    Returns:
      :class:`FitResult` with the final ``params``, ``losses: (steps,)`` and ``opt_state``.

    Example:
      >>> x, y = jaxbp.truth_table("xor")
      >>> p0 = jaxbp.init((2, 2, 1), key=jax.random.key(3), scale="normal")
      >>> result = fit(p0, x, y, steps=5000, grad="seed", learning_rate=2.0)
    """
    # Checks in plain Python on shapes and types; the one compiled call below does the rest.
    spec = resolve_output(activation, loss, output_activation)
    _check_data(params, x, y)
    check_output_units(spec, params[-1]["W"].shape[0])
    steps = check_int(steps, "steps", 1)
    if optimizer is None:
        check_learning_rate(learning_rate)
    n = x.shape[0]
    batch_size = check_int(batch_size, "batch_size", 1, n, none_ok=True)
    if batch_size is not None and key is None:
        raise ValueError("batch_size is set but key is None; pass key=jax.random.key(seed)")
    if key is not None:
        check_key(key)
    chunk_size = check_int(chunk_size, "chunk_size", 1, none_ok=True) or steps
    start_step = check_int(start_step, "start_step", 0)
    if isinstance(grad, str):
        if grad not in GRADS:
            raise ValueError(
                f"grad={grad!r} is not known; expected one of {', '.join(GRADS)} or a callable "
                "grad_fn(params, x, y) -> grads"
            )
        if grad == "seed":
            check_seed_network(params)
            check_seed_choices((2, 2, 1), spec.names)  # 2-2-1: check_seed_network passed
    elif not callable(grad):
        raise TypeError(f"grad is {type(grad).__name__}, expected one of {GRADS} or a callable")
    # a callable's gradients are checked against params when the loop is traced
    if batch_size == n:
        batch_size = None
    if batch_size is None:
        key = None  # the full batch draws nothing
    sharding = None
    if mesh is not None:
        devices = data_size(mesh)
        check_divisible(n, devices, "batch")
        if batch_size is not None:
            check_divisible(batch_size, devices, "batch_size")
        sharding = NamedSharding(mesh, P(DATA))
    default = optimizer is None
    if default:
        optimizer = _GD
    if opt_state is not None:
        leaves, treedef = jax.tree.flatten(params)
        want = _state_structure(optimizer, treedef, tuple((p.shape, p.dtype) for p in leaves))
        if jax.tree.structure(opt_state) != want:
            raise ValueError(
                f"opt_state has structure {jax.tree.structure(opt_state)}, expected {want} "
                "from this optimizer; pass the opt_state that fit returned for the same optimizer"
            )
    # a Python number keeps one compiled loop for every rate (an int would trace again)
    rate = None
    if default:
        rate = learning_rate if isinstance(learning_rate, jax.Array) else float(learning_rate)
    if mesh is not None:
        x, y = shard_batch(mesh, x, y)
        params, opt_state, key = replicate(mesh, (params, opt_state, key))

    losses = []
    done = 0
    while done < steps:
        length = min(chunk_size, steps - done)
        start = None if batch_size is None else start_step + done
        params, opt_state, chunk = _run_chunk(
            params, opt_state, x, y, key, start, rate, names=spec.names, grad=grad,
            optimizer=optimizer, length=length, batch_size=batch_size, sharding=sharding,
        )  # fmt: skip
        losses.append(chunk)
        done += length
        if on_chunk is not None:
            on_chunk(done, steps, float(chunk[-1]))
    return FitResult(params, losses[0] if len(losses) == 1 else jnp.concatenate(losses), opt_state)
