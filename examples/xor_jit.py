"""XOR on the note's 2-2-1 network, trained under ``jit`` with handwritten and with JAX gradients.

Two runs from the same initial parameters (``jaxbp.init((2, 2, 1), key=jax.random.key(0),
scale="normal")``), plain gradient descent with learning rate 2.0 on the four XOR rows:

- ``grad="seed"``: the note's formulas, ``dE/dw31 = (A3 - yt) A3(1 - A3) A1`` and the rest;
- ``grad="autodiff"``: ``jax.grad`` of the same loss.

``jaxbp.fit`` compiles each run as one ``lax.scan``. The script prints both loss curves at a
few milestones side by side, their largest difference over all steps, and the trained
network's predictions against the targets, then draws both curves into a PNG.

Run it with::

    python examples/xor_jit.py                  # 5000 steps, writes examples/xor_loss.png
    python examples/xor_jit.py /tmp/xor.png     # the picture goes elsewhere
    JAXBP_QUICK=1 python examples/xor_jit.py    # 1000 steps

The picture's path is the first argument, else ``$JAXBP_XOR_PNG``, else
``examples/xor_loss.png`` beside this file.
"""

from __future__ import annotations

import os
import pathlib
import sys

import jax
import numpy as np
from matplotlib.figure import Figure

import jaxbp

LEARNING_RATE = 2.0
FULL_STEPS, QUICK_STEPS = 5000, 1000


def train_both(steps: int) -> dict[str, jaxbp.FitResult]:
    """XOR trained with the seed's gradients and with ``jax.grad``, from one initialisation."""
    x, y = jaxbp.truth_table("xor")
    p0 = jaxbp.init((2, 2, 1), key=jax.random.key(0), scale="normal")
    return {
        grad: jaxbp.fit(p0, x, y, steps=steps, grad=grad, learning_rate=LEARNING_RATE)
        for grad in ("seed", "autodiff")
    }


def milestones(steps: int) -> list[int]:
    """Steps worth printing: 0, 10, 100, every 1000th, and the last."""
    marks = {0, 10, 100, 500, *range(1000, steps, 1000), steps - 1}
    return sorted(m for m in marks if m < steps)


def loss_figure(losses: dict[str, np.ndarray]) -> Figure:
    """Both loss curves on a log scale (no pyplot, so it runs headless)."""
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    styles = {"seed": dict(lw=3, alpha=0.5), "autodiff": dict(lw=1, ls="--", color="k")}
    for name, curve in losses.items():
        ax.semilogy(curve, label=f'grad="{name}"', **styles[name])
    ax.set(xlabel="step", ylabel="batch loss E", title="XOR, 2-2-1 sigmoid net, lr 2.0")
    ax.legend()
    return fig


def output_path(argv: list[str]) -> pathlib.Path:
    """Where the picture goes: argv, then ``$JAXBP_XOR_PNG``, then beside this file."""
    if len(argv) > 1:
        return pathlib.Path(argv[1])
    default = pathlib.Path(__file__).with_name("xor_loss.png")
    return pathlib.Path(os.environ.get("JAXBP_XOR_PNG", default))


if __name__ == "__main__":
    quick = os.environ.get("JAXBP_QUICK") == "1"
    steps = QUICK_STEPS if quick else FULL_STEPS
    results = train_both(steps)
    losses = {name: np.asarray(r.losses) for name, r in results.items()}

    print(f"XOR, 2-2-1 sigmoid network, gradient descent lr={LEARNING_RATE}, {steps} steps")
    print(f"{'step':>6}  {'grad=seed':>12}  {'grad=autodiff':>13}")
    for t in milestones(steps):
        print(f"{t:>6}  {losses['seed'][t]:12.8f}  {losses['autodiff'][t]:13.8f}")
    diff = np.max(np.abs(losses["seed"] - losses["autodiff"]))
    print(f"largest difference between the curves: {diff:.2e} ({losses['seed'].dtype})")

    x, y = jaxbp.truth_table("xor")
    preds = {name: np.asarray(jaxbp.forward(r.params, x))[:, 0] for name, r in results.items()}
    print(f"\n{'x1':>4} {'x2':>4} {'target':>7} {'seed':>8} {'autodiff':>9}")
    for i in range(4):
        row = f"{x[i, 0]:4.0f} {x[i, 1]:4.0f} {y[i, 0]:7.0f}"
        print(f"{row} {preds['seed'][i]:8.4f} {preds['autodiff'][i]:9.4f}")
    target = np.asarray(y)[:, 0]
    correct = {name: int(np.sum((p > 0.5) == (target > 0.5))) for name, p in preds.items()}
    print(
        f"correct after thresholding at 0.5: seed {correct['seed']}/4, "
        f"autodiff {correct['autodiff']}/4"
    )

    path = output_path(sys.argv)
    loss_figure(losses).savefig(path, dpi=100)
    print(f"loss curves saved to {path}")
