"""jaxbp's handwritten gradients inside your own jitted train step, with an optax chain.

``jaxbp.fit`` is optional: params and grads are ordinary pytrees (a list of
``{"W", "b"}`` dicts), so a gradient function from jaxbp drops into any JAX training loop.
Here a 2-16-1 network (tanh hidden, sigmoid output, binary cross-entropy) learns two moons
with ``optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))``; the gradient is
``jaxbp.closed_form(activation="tanh", loss="bce")``, the delta rule written by hand.

The script prints the pytree structure of params and grads, checks the first gradient
against ``jax.grad`` leaf by leaf with ``jax.tree.map``, prints loss and gradient norm
(``optax.global_norm``) at milestones, and the accuracy on a fresh test draw.

Run it with::

    python examples/optax_pipeline.py                 # 2000 steps
    JAXBP_QUICK=1 python examples/optax_pipeline.py   # 300 steps
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import optax

import jaxbp

NET = dict(activation="tanh", loss="bce")
grad_fn = jaxbp.closed_form(**NET)  # grad_fn(params, x, y) -> grads, same pytree as params
optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))


@jax.jit
def train_step(params, opt_state, x, y):
    """One update; returns ``(params, opt_state, loss, grad_norm)``."""
    loss = jaxbp.batch_loss(params, x, y, **NET)
    grads = grad_fn(params, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, optax.global_norm(grads)


@jax.jit
def accuracy(params, x, y):
    """Fraction of ``x: (n, 2)`` on the right side of probability 0.5; ``y: (n, 1)`` in {0, 1}."""
    probs = jaxbp.forward(params, x, **NET)
    return jnp.mean((probs > 0.5) == (y > 0.5))


def largest_leaf_difference(a, b) -> float:
    """Largest absolute difference over every leaf of two pytrees of one structure."""
    return float(max(jax.tree.leaves(jax.tree.map(lambda u, v: jnp.max(jnp.abs(u - v)), a, b))))


if __name__ == "__main__":
    steps = 300 if os.environ.get("JAXBP_QUICK") == "1" else 2000
    k_train, k_test, k_init = jax.random.split(jax.random.key(0), 3)
    x, y = jaxbp.two_moons(512, key=k_train, noise=0.1)
    x_test, y_test = jaxbp.two_moons(512, key=k_test, noise=0.1)
    params = jaxbp.init((2, 16, 1), key=k_init)
    opt_state = optimizer.init(params)

    grads = grad_fn(params, x, y)
    print("params:", jax.tree.map(jnp.shape, params))
    print("grads: ", jax.tree.map(jnp.shape, grads))
    print("same structure:", jax.tree.structure(params) == jax.tree.structure(grads))
    diff = largest_leaf_difference(grads, jaxbp.autodiff_grads(params, x, y, **NET))
    print(f"first gradient vs jax.grad, largest leaf difference: {diff:.1e}")

    print(f"\ntwo moons, 2-16-1 tanh/bce, clip_by_global_norm(1.0) + adam(1e-2), {steps} steps")
    print(f"{'step':>5}  {'loss':>8}  {'|grad|':>8}")
    marks = {0, 10, 50, 100, 200, *range(500, steps, 500), steps - 1}
    losses = []
    for t in range(steps):
        params, opt_state, loss, norm = train_step(params, opt_state, x, y)
        losses.append(loss)  # kept on the device; read back only at milestones
        if t in marks:
            print(f"{t:>5}  {float(loss):8.5f}  {float(norm):8.5f}")
    print(f"loss fell from {float(losses[0]):.5f} to {float(losses[-1]):.5f}")
    train_acc, test_acc = accuracy(params, x, y), accuracy(params, x_test, y_test)
    print(f"accuracy: train {float(train_acc):.4f}, test {float(test_acc):.4f}")
