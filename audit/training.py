"""Training comparison: the same init trained with the handwritten gradients and jax.grad.

The audit trains both, records both loss histories and the largest loss and parameter
differences, and audits the gradients at checkpoints of the ``jax.grad`` run; checkpoints
where that run has diverged are dropped with a note.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np

import jaxbp
from audit.points import stack_points
from audit.result import json_number, json_numbers
from audit.tiers import tiered, work
from jaxbp.core import mean_loss

__all__ = ["compare_training", "finite_checkpoints"]


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b|``; NaN when either side has a NaN/Inf (no warning)."""
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(a - b)
    return float(np.max(d)) if np.all(np.isfinite(d)) else float("nan")


def compare_training(
    manual_grad, grad_name, traced, params0, x, y, *, spec, steps, lr, checkpoints, progress
):
    """Train the same init with the handwritten gradients and with ``jax.grad``.

    Both runs use plain gradient descent and are cut into ``checkpoints`` equal segments
    (one compiled loop each, reused); the ``jax.grad`` run's parameters at every boundary
    become audit points.

    Args:
      manual_grad: ``"seed"``, ``"closed_form"`` or a traceable ``grad_fn`` for :func:`jaxbp.fit`.
      grad_name: how the report names it.
      traced: False for a function JAX cannot trace: only the ``jax.grad`` run happens.
      params0: the shared initialisation; ``x, y``: the data.
      spec: resolved activations and loss; steps: total steps (0: no training).
      lr: learning rate; checkpoints: segments; progress: status callback or None.

    Returns:
      ``(bounds, params at each bound, training dict or None)``.
    """
    if steps == 0:
        return [0], [params0], None
    act, out_act, loss = spec.names
    common = dict(activation=act, loss=loss, output_activation=out_act, learning_rate=lr)
    bounds = sorted({round(steps * c / checkpoints) for c in range(checkpoints + 1)})
    ckpt_auto, ckpt_manual = [params0], [params0]
    loss_auto, loss_manual = [], []
    for a, b in itertools.pairwise(bounds):
        if progress is not None:
            progress(f"training steps {a}-{b} of {steps}")
        r = jaxbp.fit(ckpt_auto[-1], x, y, steps=b - a, grad="autodiff", **common)
        ckpt_auto.append(r.params)
        loss_auto.append(r.losses)
        if traced:
            r = jaxbp.fit(ckpt_manual[-1], x, y, steps=b - a, grad=manual_grad, **common)
            ckpt_manual.append(r.params)
            loss_manual.append(r.losses)
    la = np.concatenate([np.asarray(v, np.float64) for v in loss_auto])
    if not traced:
        return bounds, ckpt_auto, None
    lm = np.concatenate([np.asarray(v, np.float64) for v in loss_manual])
    # on the host: in JAX each leaf shape would cost a compilation of its own
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in JAX
        param_diff = max(
            float(max(np.max(np.abs(np.asarray(p) - np.asarray(q))) for p, q in
                      zip(jax.tree.leaves(pa), jax.tree.leaves(pm), strict=True)))
            for pa, pm in zip(ckpt_auto, ckpt_manual, strict=True)
        )  # fmt: skip
    training = dict(
        steps=steps,
        grad=grad_name,
        optimizer="gradient descent",
        learning_rate=lr,
        checkpoints=bounds,
        loss_manual=json_numbers(lm),
        loss_autodiff=json_numbers(la),
        max_loss_diff=json_number(_max_abs_diff(lm, la)),
        max_param_diff=json_number(param_diff),
    )
    return bounds, ckpt_auto, training


@tiered(static_argnames=("spec",))
def _stacked_loss(params, x, y, *, spec):
    """Batch loss at each of a stack of parameter sets, on the same data."""
    return jax.vmap(lambda p: mean_loss(p, x, y, spec))(params)


def finite_checkpoints(bounds, ckpts, x, y, *, spec):
    """Drop the checkpoints where the loss is not finite (a diverged run).

    Returns:
      ``(bounds, ckpts, notes)`` with the finite ones kept and a note when any was dropped.
    """
    stacked = stack_points("trajectory", [(p, x, y) for p in ckpts], [])
    finite = np.isfinite(
        np.asarray(
            _stacked_loss.pick(work(stacked.params, x.shape[0]))(stacked.params, x, y, spec=spec)
        )
    ).tolist()
    if all(finite):
        return bounds, ckpts, []
    first = finite.index(False)
    note = (
        f"training with jax.grad diverged (loss not finite) by step {bounds[first]}: the "
        f"{len(ckpts) - sum(finite)} checkpoint(s) from there on were not audited; "
        "lower the learning rate"
    )
    keep = [i for i, ok in enumerate(finite) if ok]
    return [bounds[i] for i in keep], [ckpts[i] for i in keep], [note]
