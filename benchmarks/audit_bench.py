"""The gradient audit as users call it, beside the limit and the plain alternatives.

A case is a network, its examples and ``n`` points (parameter settings) at which the
handwritten gradients are checked against ``jax.grad``. The columns are timed round robin in
one process: medians after a warm-up, with the first call (compilation included) apart.

- ``check_gradients``: ``audit.check_gradients(grad_fn, loss_fn, params, x, y,
  points=n - 1, key=key)`` as a user writes it (finite differences on, the default), and
  ``check_gradients_no_fd``, the same with ``fd=False``. It draws its ``n - 1`` perturbed
  points itself, so drawing them is in its time.
- ``audit_network``: ``audit_network("seed", points=n)`` for the 2-2-1 network, with its
  defaults (the seed example, 5,000 training steps and their checkpoints, the chain
  factors), and ``audit_network("closed_form", sizes=..., data=(x, y), points=n, steps=0)``
  for the MLP. Its rate counts every point it audits (``result.points["total"]``).
- ``limit``: one jitted ``jax.vmap`` of the handwritten gradients and of ``jax.grad`` of the
  loss over the same ``n`` points, drawn beforehand (``chunk`` points at a time), reduced to
  the largest absolute difference: no tolerance, no report, float32 on both sides.
- ``limit_f64``: the same with ``jax.grad`` on the points cast to float64, as the audit's
  rule requires (its reference is always float64): the most a float64-reference check can
  reach on this machine.
- ``naive_loop``: a Python loop over the points of two jitted calls (handwritten, jax.grad)
  and ``np.allclose`` per point at the audit's float32 tolerance, with the points sliced
  beforehand; timed on the first ``m`` points and extrapolated to ``n``.
- ``check_grads_loop``: ``jax.test_util.check_grads(loss, (params,), order=1,
  modes=["rev"])`` in float64, one call per point, timed on a few points of the network's
  smallest case and shown for all its sizes.

``vs_limit``, ``vs_limit_f64`` and ``vs_naive`` divide a public call's points per second by
the limit's, the float64 limit's and the naive loop's. A public call whose two smaller sizes
predict more than ``MAX_CALL_S`` seconds per call is not run at the next size, and one the
audit refuses (its memory check) is not timed; the row says why. ``peak_rss_mb`` is this
process's peak resident memory so far.

:func:`first_call` times the first ``check_gradients`` call on a 2-2-1 network with 16
points in a fresh Python process, imports timed apart: the latency a user's test suite pays.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np

import audit
import jaxbp
from benchmarks.data import mlp_data, perturbed
from benchmarks.timing import machine, measure_round_robin

__all__ = [
    "MAX_CALL_S",
    "MIN_TIMED",
    "PUBLIC",
    "Net",
    "estimate_s",
    "first_call",
    "first_vjp_call",
    "mlp_net",
    "plan_calls",
    "run_audit",
    "time_case",
    "xor_net",
]

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_CALL_S = 60.0  # a public call predicted slower than this is not run (full mode)
CASE_BUDGET_S = 120.0  # timed calls per case are cut to fit this (full mode)
MIN_TIMED = 3  # but never below this many
LIMIT_CHUNK_PARAMS = 2**22  # parameters the limit maps at once (16 MB of float32)
PUBLIC = ("check_gradients", "check_gradients_no_fd", "audit_network")


class Net(NamedTuple):
    """A network to audit: its gradients, loss, a given point and how audit_network runs it."""

    name: str
    sizes: tuple[int, ...]
    grad_fn: Callable  # (params, x, y) -> grads
    loss_fn: Callable  # (params, x, y) -> scalar
    params: Any  # float32 params pytree
    x: jax.Array  # (batch, n_0) float32
    y: jax.Array  # (batch, n_L) float32
    audit_network: Callable[[int], audit.AuditResult]  # points -> result
    audit_network_call: str


def _loss(params, x, y):
    return jaxbp.batch_loss(params, x, y, activation="sigmoid", loss="mse")


def xor_net() -> Net:
    """The seed's 2-2-1 sigmoid network on the XOR truth table (batch 4), its own formulas."""
    x, y = jaxbp.truth_table("xor")
    params = mlp_data((2, 2, 1), 4, scale=False)[0]
    return Net(
        "2-2-1 XOR",
        (2, 2, 1),
        jaxbp.seed_grads,
        _loss,
        params,
        x,
        y,
        lambda n: audit.audit_network("seed", points=n),
        'audit_network("seed", points=n)',
    )


def mlp_net(sizes: tuple[int, ...], batch: int) -> Net:
    """A sigmoid MSE MLP on ``batch`` random examples, checked with the general closed form."""
    params, x, y = mlp_data(sizes, batch)
    name = "-".join(map(str, sizes))
    return Net(
        name,
        sizes,
        jaxbp.closed_form(),
        _loss,
        params,
        x,
        y,
        lambda n: audit.audit_network("closed_form", sizes=sizes, data=(x, y), points=n, steps=0),
        'audit_network("closed_form", sizes=sizes, data=(x, y), points=n, steps=0)',
    )


def _highest(fn: Callable) -> Callable:
    """``fn`` with float32 products at full precision, as the audit computes them."""

    @functools.wraps(fn)
    def run(*args):
        with jax.default_matmul_precision("highest"):
            return fn(*args)

    return run


def limit_fn(net: Net, n: int, wide: bool = False) -> tuple[Callable, int]:
    """``stack -> max |handwritten - jax.grad|`` over ``n`` stacked points, one jitted program,
    and the points it maps at once. ``wide``: ``jax.grad`` runs on the points cast to
    float64 (with 64-bit types on), as the audit's rule has it.

    The points go through ``jax.vmap`` in chunks of at most ``LIMIT_CHUNK_PARAMS``
    parameters (``jax.lax.map`` with ``batch_size``): one vmap over 1,024 points of a
    64-256-256-10 network ran at half the speed of 64-point chunks.
    """
    ref = jax.grad(net.loss_fn)
    n_params = sum(int(np.size(a)) for a in jax.tree.leaves(net.params))
    chunk = min(n, max(1, LIMIT_CHUNK_PARAMS // n_params))

    def one(p, x, y):
        r = ref(*jax.tree.map(lambda a: a.astype(jnp.float64), (p, x, y))) if wide else ref(p, x, y)
        diffs = jax.tree.map(
            lambda a, b: jnp.max(jnp.abs(a.astype(b.dtype) - b)), net.grad_fn(p, x, y), r
        )
        return jnp.max(jnp.stack(jax.tree.leaves(diffs)))

    def many(ps, x, y):
        if chunk == n:
            return jnp.max(jax.vmap(one, in_axes=(0, None, None))(ps, x, y))
        return jnp.max(jax.lax.map(lambda p: one(p, x, y), ps, batch_size=chunk))

    run = _highest(jax.jit(many))
    if not wide:
        return run, chunk

    def run_wide(*args):
        with jax.enable_x64(True):
            return run(*args)

    return run_wide, chunk


def naive_fn(net: Net, stack, m: int) -> Callable[[], int]:
    """A loop over the first ``m`` points: two jitted gradients and ``np.allclose`` each."""
    hand, ref = jax.jit(net.grad_fn), jax.jit(jax.grad(net.loss_fn))
    tol = audit.default_tolerance(jnp.float32)
    pts = [jax.tree.map(lambda a, i=i: jnp.asarray(a[i]), stack) for i in range(m)]

    def loop() -> int:
        agree = 0
        for p in pts:
            g, r = hand(p, net.x, net.y), ref(p, net.x, net.y)
            agree += all(
                np.allclose(a, b, rtol=tol.rtol, atol=tol.atol)
                for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(r), strict=True)
            )
        return agree

    return _highest(loop)


def check_grads_rate(net: Net, stack, m: int) -> dict[str, Any]:
    """Points per second of a float64 ``check_grads`` loop on points ``1..m`` of ``stack``,
    after point 0 as a warm-up."""

    def one(i: int) -> bool:
        params = jax.tree.map(lambda a: jnp.asarray(a[i], jnp.float64), stack)
        x, y = net.x.astype(jnp.float64), net.y.astype(jnp.float64)
        try:
            jax.test_util.check_grads(
                lambda p: net.loss_fn(p, x, y), (params,), order=1, modes=["rev"]
            )
        except AssertionError:
            return False
        return True

    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        one(0)
        t0 = time.perf_counter()
        agree = sum(one(i) for i in range(1, m + 1))
        elapsed = time.perf_counter() - t0
    return dict(points_timed=m, seconds=elapsed, points_per_s=m / elapsed, agree=agree)


def estimate_s(history: list[tuple[int, float]], n: int) -> tuple[float | None, bool]:
    """Seconds per call at ``n`` points, and whether two smaller sizes gave it.

    Two sizes: on the line through them. One: scaled in proportion to the points, which
    overstates it when fixed costs dominate the smaller size (good enough to plan repeats).
    """
    if not history:
        return None, False
    if len(history) == 1:
        (n1, t1) = history[0]
        return t1 * max(n / n1, 1.0), False
    (n0, t0), (n1, t1) = history[-2:]
    slope = max((t1 - t0) / (n1 - n0), 0.0) if n1 != n0 else 0.0
    return t1 + slope * (n - n1), True


def plan_calls(estimates: dict[str, float], repeats: int) -> tuple[int, int]:
    """Timed calls and warm-up calls per column so that a case fits ``CASE_BUDGET_S``, with
    at least ``MIN_TIMED`` timed calls (or ``repeats``, if fewer): a median of one call is
    one sample, and on a shared machine one call ran at half the speed of the next."""
    per_round = sum(estimates.values())
    if per_round <= 0:
        return repeats, 1
    rounds = int(CASE_BUDGET_S / per_round)
    timed = min(repeats, max(MIN_TIMED, rounds - 2))
    return timed, 1 if rounds >= timed + 2 else 0


def time_case(
    net: Net, n: int, *, repeats: int, naive_points: int, history: dict, quick: bool
) -> dict[str, Any]:
    """One row: every column at ``n`` points of ``net``."""
    stack = perturbed(net.params, n, seed=1)
    stack_dev = jax.tree.map(jnp.asarray, stack)
    limit, chunk = limit_fn(net, n)
    limit64, _ = limit_fn(net, n, wide=True)
    m = min(naive_points, n)
    key = jax.random.key(0)
    seen: dict[str, tuple[bool, int]] = {}  # verdict and points audited, not the whole result
    refused: dict[str, str] = {}

    def public(name: str, call: Callable[[], audit.AuditResult]) -> Callable[[], bool]:
        def run() -> bool:
            if name in refused:
                return False
            try:
                r = call()
            except ValueError as e:  # the audit refuses points it estimates will not fit
                refused[name] = str(e)
                return False
            seen[name] = bool(r.passed), int(r.points["total"])
            return r.passed

        return run

    fns = {
        "check_gradients": public(
            "check_gradients",
            lambda: audit.check_gradients(
                net.grad_fn, net.loss_fn, net.params, net.x, net.y, points=n - 1, key=key
            ),
        ),
        "check_gradients_no_fd": public(
            "check_gradients_no_fd",
            lambda: audit.check_gradients(
                net.grad_fn, net.loss_fn, net.params, net.x, net.y, points=n - 1, key=key, fd=False
            ),
        ),
        "audit_network": public("audit_network", lambda: net.audit_network(n)),
        "limit": lambda: limit(stack_dev, net.x, net.y),
        "limit_f64": lambda: limit64(stack_dev, net.x, net.y),
        "naive_loop": naive_fn(net, stack, m),
    }
    run_points = dict.fromkeys(fns, n) | {"naive_loop": m}
    estimates = {k: estimate_s(history.get(k, []), run_points[k]) for k in fns}
    skipped = {
        k: e
        for k, (e, sure) in estimates.items()
        if k in PUBLIC and sure and e > MAX_CALL_S and not quick
    }
    for k in skipped:
        del fns[k]
    known = {k: e for k, (e, _) in estimates.items() if k in fns and e is not None}
    timed, warmup = plan_calls(known, repeats) if not quick else (repeats, 1)
    t = measure_round_robin(fns, repeats=timed, warmup=warmup)

    cols: dict[str, dict[str, Any]] = {}
    lim = n / t["limit"].median_s
    naive = m / t["naive_loop"].median_s
    lim64 = n / t["limit_f64"].median_s
    cols["limit_f64"] = dict(points=n, points_per_s=lim64, chunk=chunk, **t["limit_f64"].as_dict())
    cols["limit"] = dict(
        points=n,
        points_per_s=lim,
        chunk=chunk,
        max_abs_diff=float(limit(stack_dev, net.x, net.y)),
        **t["limit"].as_dict(),
    )
    cols["naive_loop"] = dict(
        points=n,
        points_timed=m,
        points_per_s=naive,
        extrapolated_s=n / naive,
        **t["naive_loop"].as_dict(),
    )
    for k in PUBLIC:
        if k in skipped:
            cols[k] = dict(
                skipped=f"predicted {skipped[k]:.0f} s per call from the two smaller "
                f"sizes, over {MAX_CALL_S:.0f} s",
                estimated_s_per_call=skipped[k],
            )
            continue
        if k in refused:  # its timings, partly of refusals, mean nothing
            cols[k] = dict(skipped="refused: " + refused[k].split(": ")[0], error=refused[k])
            del t[k]
            continue
        passed, total = seen[k]
        rate = total / t[k].median_s
        cols[k] = dict(
            points=total,
            points_per_s=rate,
            passed=passed,
            vs_limit=rate / lim,
            vs_limit_f64=rate / lim64,
            vs_naive=rate / naive,
            **t[k].as_dict(),
        )
    for k, timing in t.items():
        history.setdefault(k, []).append((run_points[k], timing.median_s))
    n_params = sum(int(np.size(a)) for a in jax.tree.leaves(net.params))
    return dict(
        net=net.name,
        sizes=list(net.sizes),
        examples=int(net.x.shape[0]),
        points=n,
        params=n_params,
        repeats=timed,
        warmup=warmup,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        columns=cols,
    )


_FIRST_CALL = """
import json, time
t0 = time.perf_counter()
import jax
t1 = time.perf_counter()
import numpy as np
import audit, jaxbp
t2 = time.perf_counter()
from benchmarks.timing import compile_log

def loss_fn(params, x, y):
    return jaxbp.batch_loss(params, x, y, activation="sigmoid", loss="mse")

rng = np.random.default_rng(0)
params = [{"W": rng.standard_normal((2, 2), np.float32), "b": rng.standard_normal(2, np.float32)},
          {"W": rng.standard_normal((1, 2), np.float32), "b": rng.standard_normal(1, np.float32)}]
x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
y = np.array([[0], [1], [1], [0]], np.float32)
calls = []
for _ in range(2):
    with compile_log() as log:
        t = time.perf_counter()
        r = audit.check_gradients(jaxbp.seed_grads, loss_fn, params, x, y, points=15,
                                  key=jax.random.key(0))
        calls.append(dict(seconds=time.perf_counter() - t, passed=bool(r.passed),
                          compiles=log().count, compiling_s=log().total_s))
print(json.dumps(dict(import_jax_s=t1 - t0, import_audit_jaxbp_s=t2 - t1, first=calls[0],
                      second=calls[1], cache_dir=jax.config.jax_compilation_cache_dir)))
"""


_FIRST_VJP = """
import json, time
t0 = time.perf_counter()
import jax
t1 = time.perf_counter()
import audit
from examples.custom_vjp import softplus, softplus_inputs
t2 = time.perf_counter()
from benchmarks.timing import compile_log

args = softplus_inputs()
calls = []
for _ in range(2):
    with compile_log() as log:
        t = time.perf_counter()
        audit.assert_vjp(softplus, *args, key=jax.random.key(0))  # raises if it disagrees
        calls.append(dict(seconds=time.perf_counter() - t, passed=True,
                          compiles=log().count, compiling_s=log().total_s))
print(json.dumps(dict(import_jax_s=t1 - t0, import_audit_jaxbp_s=t2 - t1, first=calls[0],
                      second=calls[1], cache_dir=jax.config.jax_compilation_cache_dir)))
"""


def first_call(
    processes: int = 1, *, script: str = _FIRST_CALL, call: str | None = None
) -> dict[str, Any]:
    """The first call of ``script`` (default: ``check_gradients`` on a 2-2-1 network, 16
    points) in ``processes`` fresh processes.

    Each process times ``import jax``, the project's imports, then the first and second
    calls with their compilations. ``JAX_COMPILATION_CACHE_DIR`` is removed from its
    environment, so every process starts cold; ``cache_dir`` is JAX's persistent cache as the
    process saw it (None: off). ``first_s`` is the fastest first call of the processes,
    ``median_s`` their median.
    """
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    runs = []
    with tempfile.TemporaryDirectory() as cwd:  # no stray files in the user's folder
        for _ in range(processes):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", script],
                capture_output=True,
                text=True,
                env=env,
                cwd=cwd,
                timeout=600,
                check=False,
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"first-call process failed: {proc.stderr[-1500:]}")
            runs.append(dict(json.loads(proc.stdout.strip().splitlines()[-1]), wall_s=wall))
    return dict(
        call=call
        or "check_gradients(seed_grads, loss_fn, params, x, y, points=15, "
        "key=jax.random.key(0)), 2-2-1 on XOR, 16 points",
        target_s=1.0,
        runs=runs,
        first_s=min(r["first"]["seconds"] for r in runs),
        median_s=statistics.median(r["first"]["seconds"] for r in runs),
    )


def first_vjp_call(processes: int = 1) -> dict[str, Any]:
    """The first ``assert_vjp`` on the 32-vector softplus of ``examples/custom_vjp.py`` in
    ``processes`` fresh processes (see :func:`first_call`)."""
    return first_call(
        processes,
        script=_FIRST_VJP,
        call="assert_vjp(softplus, x, key=jax.random.key(0)), examples/custom_vjp.py, "
        "a 32-vector, 256 points",
    )


def run_audit(*, quick: bool, repeats: int) -> dict[str, Any]:
    """Points per second of the public audit calls beside the limit, a naive loop and
    ``check_grads``, for the 2-2-1 XOR network and a 64-256-256-10 MLP; the first call."""
    if quick:
        plan = [(xor_net(), [16]), (mlp_net((8, 16, 16, 4), 8), [4])]
        naive_points, grads_points = 4, 2
    else:
        plan = [(xor_net(), [16, 4_096, 262_144]), (mlp_net((64, 256, 256, 10), 64), [16, 1_024])]
        naive_points, grads_points = 256, 8
    rows = []
    for net, sizes in plan:
        history: dict[str, list] = {}
        net_rows = [
            time_case(
                net, n, repeats=repeats, naive_points=naive_points, history=history, quick=quick
            )
            for n in sizes
        ]
        stack = perturbed(net.params, grads_points + 1, seed=1)
        loop = dict(check_grads_rate(net, stack, grads_points), measured_at=sizes[0])
        for r in net_rows:
            r["columns"]["check_grads_loop"] = loop
        rows += net_rows
    return dict(
        machine=machine(),
        dtype="float32 audited; public calls compare with a float64 jax.grad, the limit and "
        "the naive loop with float32",
        notes=[
            "naive_loop is timed on points_timed points and extrapolated to points",
            "check_grads_loop is timed on a few points of the smallest case of each network",
            f"a public call predicted over {MAX_CALL_S:.0f} s per call is not run (full mode)",
        ],
        results=rows,
        first_call=first_call(1 if quick else 5),
        first_vjp_call=first_vjp_call(1 if quick else 5),
    )
