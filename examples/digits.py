"""Handwritten digits with handwritten backpropagation, audited against jax.grad on the way.

scikit-learn's bundled 8x8 digits (1797 images, shipped inside the package, nothing is
downloaded), pixels scaled to [0, 1], split 80/20 into train and test with an explicit key.
A 64-32-10 MLP with tanh hidden units and a softmax output, ``loss="softmax_ce"``, is trained
by ``jaxbp.fit`` under ``jit`` with ``grad="closed_form"`` (the delta rule written by hand),
minibatches of 64 and ``optax.adam(1e-2)``.

Training runs in equal segments; before the first and after each, ``audit.check_gradients``
compares the handwritten gradient on the whole training set with ``jax.grad``'s, weight by
weight, and the script prints the largest relative error of each layer's W and b and the
audit's verdict (finite differences are left out, for speed). Each segment resumes from the
previous one's optimizer state and step (``opt_state=``, ``start_step=``), so pausing to
audit leaves training exactly as one long run. At the end the held-out accuracy is printed.

Run it with::

    pip install -e ".[examples]"          # scikit-learn
    python examples/digits.py             # 30 epochs
    JAXBP_QUICK=1 python examples/digits.py   # 6 epochs
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import audit
import jaxbp

SIZES = (64, 32, 10)
NET = dict(activation="tanh", loss="softmax_ce")
BATCH_SIZE = 64
OPTIMIZER = optax.adam(1e-2)
GRAD_FN = jaxbp.closed_form(**NET)  # grad_fn(params, x, y) -> grads, the delta rule


def split(
    x: jax.Array, labels: np.ndarray, *, key: jax.Array, test_fraction: float = 0.2
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Shuffle with ``key`` and cut: ``(x_train, y_train, x_test, labels_test)``.

    ``x: (n, 64)`` float; ``labels: (n,)`` int. ``y_train`` is one-hot ``(n_train, 10)``.
    """
    perm = np.asarray(jax.random.permutation(key, x.shape[0]))
    n_test = int(x.shape[0] * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return x[train], jaxbp.one_hot(labels[train], 10), x[test], jnp.asarray(labels[test])


def accuracy(params: jaxbp.Params, x: jax.Array, labels: jax.Array) -> float:
    """Fraction of ``x: (n, 64)`` whose most probable class is ``labels: (n,)``."""
    probs = jaxbp.forward(params, x, **NET)
    return float(jnp.mean(jnp.argmax(probs, axis=1) == labels))


@jax.jit
def loss_fn(params: jaxbp.Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean cross-entropy over ``x: (n, 64)``, ``y: (n, 10)`` one-hot."""
    return jaxbp.batch_loss(params, x, y, **NET)


def audit_layers(params: jaxbp.Params, x: jax.Array, y: jax.Array) -> tuple[bool, dict]:
    """Audit the closed form against ``jax.grad`` at ``params``; worst rel. error per leaf.

    Returns:
      ``(passed, {"layer 1 W": rel_err, ...})``: the audit's verdict over every weight, and
      each leaf's largest relative error (in flatten order, the order of ``result.weights``).
    """
    # GPUs multiply float32 matrices in TF32 by default (10 mantissa bits): ~1e-3 relative
    # noise in both gradients, as large as the audit's float32 tolerance. Audit at full
    # precision; training keeps the fast default.
    with jax.default_matmul_precision("highest"):
        result = audit.check_gradients(
            GRAD_FN, loss_fn, params, x, y, fd=False, names=jaxbp.param_names(SIZES)
        )
    worst, start = {}, 0
    for l, layer in enumerate(params, start=1):
        for leaf in ("W", "b"):  # jax.tree flattens each layer's dict in sorted key order
            rows = result.weights[start : start + layer[leaf].size]
            start += layer[leaf].size
            worst[f"layer {l} {leaf}"] = max(float(r["rel_err"]) for r in rows)
    return result.passed, worst


def checkpoint(epoch: int, params: jaxbp.Params, x: jax.Array, y: jax.Array) -> str:
    """Audit the gradients at ``params`` on ``(x, y)`` and describe it in one line."""
    passed, worst = audit_layers(params, x, y)
    cells = "  ".join(f"{name} {err:.1e}" for name, err in worst.items())
    loss = float(loss_fn(params, x, y))
    return f"{epoch:>5}  {loss:10.4f}   {cells}  {'pass' if passed else 'FAIL'}"


if __name__ == "__main__":
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit(
            "examples/digits.py needs scikit-learn for its bundled 8x8 digits; "
            'install it with: pip install -e ".[examples]"'
        ) from None

    quick = os.environ.get("JAXBP_QUICK") == "1"
    segments, epochs_per_segment = (3, 2) if quick else (3, 10)

    digits = load_digits()
    x = jnp.asarray(digits.data / 16.0, jnp.float32)  # pixels are 0..16
    k_split, k_init, k_batches = jax.random.split(jax.random.key(0), 3)
    x_train, y_train, x_test, labels_test = split(x, digits.target, key=k_split)
    params = jaxbp.init(SIZES, key=k_init)
    steps = epochs_per_segment * (x_train.shape[0] // BATCH_SIZE)

    print(
        f"8x8 digits: {x_train.shape[0]} train, {x_test.shape[0]} test; MLP {SIZES}, "
        f"{NET['activation']} hidden, softmax output\ngrad='closed_form' under jit, "
        f"minibatch {BATCH_SIZE}, optax.adam(1e-2), "
        f"{segments * epochs_per_segment} epochs"
    )
    print("at each checkpoint, on the training set: the loss, and audit.check_gradients'")
    print("largest relative error of the handwritten gradient against jax.grad, per layer")
    print(f"{'epoch':>5}  {'train loss':>10}")
    print(checkpoint(0, params, x_train, y_train))
    opt_state = None
    for seg in range(1, segments + 1):
        result = jaxbp.fit(
            params, x_train, y_train, steps=steps, grad="closed_form", optimizer=OPTIMIZER,
            batch_size=BATCH_SIZE, key=k_batches, opt_state=opt_state,
            start_step=(seg - 1) * steps, **NET,
        )  # fmt: skip
        params, opt_state = result.params, result.opt_state
        print(checkpoint(seg * epochs_per_segment, params, x_train, y_train))
    print(f"held-out accuracy: {accuracy(params, x_test, labels_test):.4f}")
