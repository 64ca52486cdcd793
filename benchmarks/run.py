"""``python -m benchmarks``: time jaxbp's training, the audit and the CLI; write results.json.

Sections (``--only`` takes a comma-separated subset):

- ``seed``: the 2-2-1 network on XOR, steps per second through :func:`jaxbp.fit` for every
  gradient, beside a bare ``lax.scan`` + ``jax.grad`` loop: 5,000-step calls (what
  ``jaxbp-audit`` runs, where the cost of a call shows), one long call, and 500 calls in a
  row (does a call cost more the more calls came before it?).
- ``mlp``: a 64-256-256-10 sigmoid MLP, batch 512: time per step and FLOP/s against the
  machine's float32 matmul throughput.
- ``audit``: points per second of the public audit calls, beside the limit, a naive loop and
  a ``check_grads`` loop; the first call's latency.
- ``cli``: wall time and peak memory of the default ``python -m audit`` run, a first run (empty
  compilation cache) and one with the cache warm, beside a bare
  ``python -c "import jax, optax, matplotlib"``; where the time of each goes.
- ``scaling``: time against batch size, width and audit points; recompilation counts.
- ``big``: one audit of a 784-1024-1024-10 network (4,096 examples, 64 points) within a
  4 GiB budget per compiled call: wall time and peak memory (minutes on a 2-core CPU; not
  part of the default run).

Every figure is a median after a warm-up; compile time is reported apart.

Example:
    $ python -m benchmarks                  # everything, about ten minutes on two cores
    $ python -m benchmarks --quick --out /tmp/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import traceback
from collections.abc import Sequence

if __package__ in (None, ""):  # run as a file: python benchmarks/run.py
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks.audit_bench import run_audit
from benchmarks.big_audit import run_big
from benchmarks.cli_bench import run_cli
from benchmarks.report import format_table, rows, targets
from benchmarks.scaling import run_scaling
from benchmarks.timing import machine
from benchmarks.training import run_mlp, run_seed

__all__ = ["SECTIONS", "main"]

SECTIONS = {
    "seed": run_seed,
    "mlp": run_mlp,
    "audit": run_audit,
    "cli": run_cli,
    "scaling": run_scaling,
    "big": run_big,
}
DEFAULT_SECTIONS = ["seed", "mlp", "audit", "cli", "scaling"]
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results.json"


def _sections(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown section {', '.join(bad) or '(none given)'}; expected a "
            f"comma-separated subset of {', '.join(SECTIONS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time jaxbp's training loops, the gradient audit and the audit CLI.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (smoke test)")
    p.add_argument("--only", type=_sections, default=DEFAULT_SECTIONS, metavar="NAME[,NAME]",
                   help=f"run only these sections: {', '.join(SECTIONS)} (default all but "
                   "big)")  # fmt: skip
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, metavar="PATH",
                   help="where to write the json (default benchmarks/results.json)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed calls per figure (default 9, 2 with --quick)")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections, print the table, write the json; 1 if a section failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 9)
    results = {
        "command": " ".join(["python -m benchmarks", *argv]),
        "quick": args.quick,
        "repeats": repeats,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "sections": {},
    }
    failed = False
    for name in args.only:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        print(f"[{name}] load {load:.2f} ...", file=sys.stderr, flush=True)
        try:
            sec = SECTIONS[name](quick=args.quick, repeats=repeats)
        except Exception as e:  # keep the other sections' figures
            traceback.print_exc()
            sec = {"error": f"{type(e).__name__}: {e}"}
            failed = True
        sec["load_average_before"] = round(load, 2)
        sec["load_average_after"] = round(os.getloadavg()[0], 2)
        sec["seconds"] = round(time.perf_counter() - t0, 1)
        results["sections"][name] = sec
    results["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    # the targets are for the full sizes: tiny ones only measure the per-call overhead
    results["targets"] = [] if args.quick else targets(results)
    m = results["machine"]
    print(
        f"{m['cpu']}, {m['cores']} cores; jax {m['jax']} {m['backend']} {m['devices']}; "
        f"load {m['load_average'][0]:.2f} at start, {m['load_average_end'][0]:.2f} at end"
    )
    print(format_table(rows(results)))
    print()
    if args.quick:
        print("quick mode: sizes too small to judge against the targets")
    for t in results["targets"]:
        print(f"{'met    ' if t['met'] else 'NOT MET'}  {t['target']}: {t['measured']} "
              f"(goal {t['goal']})")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
