"""The audit's false-alarm rate at scale: correct gradients audited at many random points.

``python -m benchmarks.false_alarms --points 1000000`` audits the note's formulas and the
closed form for every activation and loss (2-2-1 nets, 2-2-2 for softmax) at that many random
float32 points (``--dtype float64`` for the other dtype), and prints, per case, whether it
passed, the weights or factors that failed (there should be none) and those that passed only
as rounding (``PASS*``) with the number of points where they did. Exit status 1 when any
correct gradient failed.

``--forms`` audits instead the right custom rules and backward passes the project ships (the
softplus and layer norm of ``examples/custom_vjp.py``, the note's chain and an MLP's deltas
from :mod:`jaxbp.taps`, and the backward pass of ``examples/backprop_ninja.py``) at that many
random points, finite differences off.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import jax

ACTS = ("sigmoid", "tanh", "relu", "identity")
LOSSES = ("mse", "bce", "softmax_ce")


def cases() -> list[tuple[str, str, str, tuple[int, ...]]]:
    """``(grad, activation, loss, sizes)`` of every audited case."""
    out = [("seed", "sigmoid", "mse", (2, 2, 1))]
    for act, loss in itertools.product(ACTS, LOSSES):
        out.append(("closed_form", act, loss, (2, 2, 2) if loss == "softmax_ce" else (2, 2, 1)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.false_alarms")
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--forms", action="store_true",
                   help="audit the shipped custom rules and backward passes instead")  # fmt: skip
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    import audit
    import jaxbp

    if args.forms:
        return _forms(args, audit)

    failed = False
    print(f"{args.points} random points a case, {args.dtype}, seed {args.seed}, "
          f"jax {jax.__version__} on {jax.default_backend()}")  # fmt: skip
    for grad, act, loss, sizes in cases():
        xs, ys = jaxbp.truth_table("xor", dtype=args.dtype)
        if loss == "softmax_ce":
            ys = jaxbp.one_hot(ys[:, 0].astype(int), 2, dtype=args.dtype)
        t0 = time.perf_counter()
        r = audit.audit_network(
            grad, sizes=sizes, activation=act, loss=loss, points=args.points, steps=0,
            fd=False, dtype=args.dtype, data=(xs, ys), seed=args.seed,
        )  # fmt: skip
        rows = r.weights + r.factors
        bad = [e["name"] for e in rows if e["status"] == "fail"]
        flagged = [(e["name"], e["precision"]["points"]) for e in rows
                   if e["status"] == "precision"]  # fmt: skip
        failed |= not r.passed
        print(f"{grad:12s} {act:9s} {loss:11s} passed={r.passed} failing={bad} "
              f"rounding={flagged} {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    return 1 if failed else 0


def form_audits(points: int, dtype: str, key: jax.Array) -> dict:
    """``{name: thunk}``: each right rule or backward pass the project ships, audited at
    ``points`` random points in ``dtype`` when called."""
    import jax.numpy as jnp

    import audit
    import jaxbp
    from examples import backprop_ninja as ninja
    from examples.custom_vjp import layer_norm_inputs, right_layer_norm, softplus

    x, gain, bias = (a.astype(dtype) for a in layer_norm_inputs(32))
    kw = dict(points=points, key=key, fd=False)
    params, xs, ys = jaxbp.seed_example(dtype=dtype)
    spec = jaxbp.resolve_output("tanh", "softmax_ce")
    mlp = jaxbp.init((4, 16, 3), key=jax.random.key(1), dtype=dtype)
    mx = jax.random.normal(jax.random.key(2), (16, 4), dtype)
    my = jax.nn.one_hot(jnp.arange(16) % 3, 3, dtype=dtype)
    X, Y, vocab = ninja.make_dataset(ninja.make_words(300))
    Xb, Yb = ninja.batch(X, Y, 32, key=jax.random.key(2))
    nparams = ninja.init_params(len(vocab), dtype, key=jax.random.key(3))
    return {
        "softplus (custom_vjp)": lambda: audit.check_vjp(softplus, x * 4, spread=1.0, **kw),
        "layer norm (custom_vjp)": lambda: audit.check_vjp(right_layer_norm, x, gain, bias, **kw),
        "seed chain (taps)": lambda: audit.check_backward(
            jaxbp.seed_loss_tapped, jaxbp.seed_backward, params, xs[0], ys[0], **kw
        ),
        "4-16-3 deltas (taps)": lambda: audit.check_backward(
            lambda tap, p, a, b: jaxbp.mlp_loss_tapped(tap, p, a, b, spec),
            lambda p, a, b: jaxbp.mlp_deltas_backward(p, a, b, spec),
            mlp,
            mx,
            my,
            **kw,
        ),
        "backprop ninja (taps)": lambda: audit.check_backward(
            lambda tap, p: ninja.forward(tap, p, Xb, Yb),
            lambda p: ninja.backward(p, Xb, Yb),
            nparams,
            **kw,
        ),
    }


def _forms(args, audit) -> int:
    failed = False
    print(f"{args.points} random points a form, {args.dtype}, seed {args.seed}, "
          f"jax {jax.__version__} on {jax.default_backend()}")  # fmt: skip
    for name, run in form_audits(args.points, args.dtype, jax.random.key(args.seed)).items():
        t0 = time.perf_counter()
        r = run()
        bad = [e["name"] for e in r.weights if e["status"] == "fail"]
        flagged = sum(e["status"] == "precision" for e in r.weights)
        failed |= not r.passed
        print(f"{name:24s} passed={r.passed} elements={len(r.weights)} failing={bad[:8]} "
              f"rounding={flagged} not_judged={r.counts['weights']['not_judged']} "
              f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
