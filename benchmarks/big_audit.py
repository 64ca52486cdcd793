"""A big network's audit within a memory budget: 784-1024-1024-10, 4,096 examples.

``audit.check_gradients`` of the closed form against ``jax.grad`` at 64 points (the given
parameters and 63 perturbations; finite differences off), run in a fresh process with
``memory=`` set, so the points go through the device in calls of as many as the budget holds.
Printed: the wall time of the call (compilation included: one call is what a user runs), the
points each compiled call took, the process's own peak resident memory (``VmHWM``) beside the
budget, and the verdict (correct gradients: it must pass).

Example:
    $ python -m benchmarks --only big
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from benchmarks.timing import machine

__all__ = ["SIZES", "run_big"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZES = (784, 1024, 1024, 10)
EXAMPLES = 4096
POINTS = 64
BUDGET = "4GiB"

_DRIVER = r"""
import json, sys, time
import jax, jax.numpy as jnp
import audit, jaxbp
from audit.budget import parse_bytes
sizes, examples, points, budget = json.loads(sys.argv[1])
params = jaxbp.init(sizes, key=jax.random.key(0), scale="normal")
x = jax.random.normal(jax.random.key(1), (examples, sizes[0]), jnp.float32)
labels = jax.random.randint(jax.random.key(2), (examples,), 0, sizes[-1])
y = jax.nn.one_hot(labels, sizes[-1], dtype=jnp.float32)
def loss_fn(p, x, y):
    return jaxbp.batch_loss(p, x, y, activation="sigmoid", loss="mse")
grad_fn = jaxbp.closed_form(activation="sigmoid", loss="mse")
def high_water():  # this process's own peak (ru_maxrss would carry the parent's across exec)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))
rss0 = high_water()
t = time.perf_counter()
r = audit.check_gradients(grad_fn, loss_fn, params, x, y, points=points - 1,
                          key=jax.random.key(3), fd=False, memory=parse_bytes(budget))
wall = time.perf_counter() - t
print(json.dumps(dict(
    wall_s=wall, passed=bool(r.passed), weights=len(r.weights),
    points_per_call=r.config["points_per_call"], memory_budget_bytes=parse_bytes(budget),
    rss_before_call_bytes=rss0,
    peak_rss_bytes=high_water(),
    timing=r.timing, backend=jax.default_backend(),
)))
"""


def run_big(*, quick: bool, repeats: int) -> dict[str, Any]:
    """One audit of the big network in a fresh process (``quick``: a 64-128-128-10 one)."""
    del repeats  # one call: a user runs it once
    sizes, examples = (SIZES, EXAMPLES) if not quick else ((64, 128, 128, 10), 256)
    args = json.dumps([list(sizes), examples, POINTS, BUDGET])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, args], capture_output=True, text=True, env=env,
        timeout=3600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"the big audit exited {proc.returncode}: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(
        machine=machine(),
        case=dict(sizes=list(sizes), examples=examples, points=POINTS, fd=False, budget=BUDGET),
        process_wall_s=time.perf_counter() - t0,
        **result,
    )
