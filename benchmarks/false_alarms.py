"""The audit's false-alarm rate at scale: correct gradients audited at many random points.

``python -m benchmarks.false_alarms --points 1000000`` audits the note's formulas and the
closed form for every activation and loss (2-2-1 nets, 2-2-2 for softmax) at that many random
float32 points (``--dtype float64`` for the other dtype), and prints, per case, whether it
passed, the weights or factors that failed (there should be none) and those that passed only
as rounding (``PASS*``) with the number of points where they did. Exit status 1 when any
correct gradient failed.
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
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    import audit
    import jaxbp

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


if __name__ == "__main__":
    sys.exit(main())
