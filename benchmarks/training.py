"""Training throughput: the seed network on XOR, and a mid-size MLP against the matmul roofline.

Every jaxbp figure goes through :func:`jaxbp.fit` (one ``lax.scan`` per call), beside a bare
``lax.scan`` gradient-descent loop written here with ``jax.grad`` inside: the same parameter
pytree, the same loss, the learning rate passed in as an array, the loss of every step
recorded. That loop is the floor of overhead, measured in the same run.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp

import jaxbp
from benchmarks.data import mlp_data, normal
from benchmarks.timing import measure_round_robin

__all__ = ["bare_loop", "mlp_flops", "run_mlp", "run_seed"]

SEED_GRADS = ("seed", "closed_form", "autodiff")
MLP_GRADS = ("closed_form", "autodiff")


def _mse_sigmoid(params, x, y):
    """Batch-mean ``1/2 sum (A_L - y)^2`` of a sigmoid MLP, written batched (no vmap)."""
    a = x
    for layer in params:
        a = jax.nn.sigmoid(a @ layer["W"].T + layer["b"])
    return 0.5 * jnp.mean(jnp.sum((a - y) ** 2, axis=1))


def bare_loop(steps: int):
    """``run(params, x, y, lr) -> (params, losses: (steps,))``: plain GD under one ``lax.scan``."""

    @jax.jit
    def run(params, x, y, lr):
        def step(p, _):
            loss, g = jax.value_and_grad(_mse_sigmoid)(p, x, y)
            return jax.tree.map(lambda a, b: a - lr * b, p, g), loss

        return jax.lax.scan(step, params, None, length=steps)

    return run


def _fits(params, x, y, *, steps: int, grads, learning_rate: float) -> dict[str, Any]:
    fns = {
        g: (lambda g=g: jaxbp.fit(params, x, y, steps=steps, grad=g, learning_rate=learning_rate))
        for g in grads
    }
    bare = bare_loop(steps)
    lr = jnp.asarray(learning_rate, params[0]["W"].dtype)
    fns["bare"] = lambda: bare(params, x, y, lr)
    return fns


def _seed_rows(params, x, y, *, steps: int, repeats: int) -> dict[str, Any]:
    jax.clear_caches()  # the first call of each compiles, so first - median is its compile time
    t = measure_round_robin(
        _fits(params, x, y, steps=steps, grads=SEED_GRADS, learning_rate=2.0), repeats=repeats
    )
    bare = steps / t["bare"].median_s
    rows = {}
    for name in ("bare", *SEED_GRADS):
        rate = steps / t[name].median_s
        rows[name] = dict(
            steps_per_s=rate,
            fraction_of_bare=rate / bare,
            us_per_step=1e6 / rate,
            us_per_call=1e6 * t[name].median_s,
            **t[name].as_dict(),
        )
    return rows


def _per_call_drift(params, x, y, *, steps: int, calls: int) -> dict[str, Any]:
    """``calls`` fit calls in a row: do late calls cost more than early ones?

    A cost that grows with the number of calls (a cache that keeps growing, state piling up)
    shows as a ratio above 1 between the median of the last tenth and of the first tenth.
    """
    from jaxbp.train import compiled_loops

    def call():
        return jaxbp.fit(params, x, y, steps=steps, grad="seed", learning_rate=2.0)

    jax.block_until_ready(call())
    entries = compiled_loops()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    tenth = max(calls // 10, 1)
    first, last = statistics.median(times[:tenth]), statistics.median(times[-tenth:])
    return dict(
        calls=calls,
        steps_per_call=steps,
        first_tenth_median_us=1e6 * first,
        last_tenth_median_us=1e6 * last,
        last_over_first=last / first,
        compiled_loops_added=compiled_loops() - entries,
    )


def run_seed(*, quick: bool, repeats: int) -> dict[str, Any]:
    """SGD steps per second of the 2-2-1 network on XOR, full batch, through ``jaxbp.fit``.

    5,000 steps a call is what ``jaxbp-audit`` runs: there the cost of a call outside the
    compiled loop shows. A long call (100,000 steps) shows the loop's own speed.
    """
    steps = 2_000 if quick else 5_000
    long_steps = 10_000 if quick else 100_000
    x, y = jaxbp.truth_table("xor", dtype=jnp.float32)
    params = mlp_data((2, 2, 1), 4, seed=3, scale=False)[0]
    rows = _seed_rows(params, x, y, steps=steps, repeats=repeats)
    long_rows = _seed_rows(params, x, y, steps=long_steps, repeats=repeats)
    drift = _per_call_drift(params, x, y, steps=steps, calls=50 if quick else 500)
    return dict(
        steps_per_call=steps,
        batch=4,
        dtype="float32",
        results=rows,
        long_call=dict(steps_per_call=long_steps, results=long_rows),
        per_call_drift=drift,
    )


def mlp_flops(sizes, batch: int) -> dict[str, int]:
    """Matmul FLOPs of one training step (elementwise work not counted).

    Forward ``2 B sum n_in n_out``; backward the weight gradients (the same again) and the
    gradients with respect to every hidden activation (every layer but the first), since the
    input needs none.
    """
    pairs = list(itertools.pairwise(sizes))
    forward = 2 * batch * sum(i * o for i, o in pairs)
    backward = forward + 2 * batch * sum(i * o for i, o in pairs[1:])
    return dict(forward=forward, backward=backward, total=forward + backward)


def _step_matmuls(sizes, batch: int, steps: int, dtype):
    """The matmuls of one training step, same shapes, ``steps`` times in a ``lax.scan``."""
    pairs = list(itertools.pairwise(sizes))
    ws = [normal((o, i), seed=10 + l, scale=i**-0.5) for l, (i, o) in enumerate(pairs)]
    acts = [normal((batch, i), seed=20 + l) for l, (i, _) in enumerate(pairs)]

    @jax.jit
    def run(ws, acts):
        def step(c, _):
            a, zs = acts[0] + c, []
            for w in ws:  # forward: z = A W^T
                a = a @ w.T
                zs.append(a)
            out = list(zs)
            # backward: dW = delta^T A (every layer) and dA = delta W (all but the first)
            for l, (w, z) in enumerate(zip(ws, zs, strict=True)):
                out.append(z.T @ acts[l])
                if l > 0:
                    out.append(z @ w)
            return c + sum(jnp.sum(o) for o in out) * 1e-30, None

        return jax.lax.scan(step, jnp.zeros((), dtype), None, length=steps)[0]

    return lambda: run(ws, acts)


def _matmul_chain(m: int, k: int, steps: int, dtype):
    """``steps`` dependent ``(m, k) @ (k, k)`` products in one ``lax.scan`` (no dispatch cost)."""
    a = normal((m, k), seed=2)
    b = normal((k, k), seed=3, scale=k**-0.5)

    @jax.jit
    def run(a, b):
        return jax.lax.scan(lambda c, _: (c @ b, None), a, None, length=steps)[0]

    return lambda: run(a, b)


def _matmul_once(n: int, dtype):
    a = normal((n, n), seed=4)
    b = normal((n, n), seed=5)
    f = jax.jit(jnp.matmul)
    return lambda: f(a, b)


def run_mlp(*, quick: bool, repeats: int) -> dict[str, Any]:
    """Time per step of a sigmoid MSE MLP, as FLOP/s and as a fraction of matmul throughput."""
    sizes, batch, steps = ((16, 64, 64, 8), 64, 10) if quick else ((64, 256, 256, 10), 512, 100)
    dtype = jnp.float32
    params, x, y = mlp_data(sizes, batch)
    flops = mlp_flops(sizes, batch)

    # the machine's float32 matmul throughput, measured in the same round robin
    m, k = batch, sizes[1]
    chain = 10 if quick else 200
    big = 256 if quick else 2048
    mid_name, big_name = f"matmul {m}x{k} @ {k}x{k}", f"matmul {big}x{big} @ {big}x{big}"
    own_name = "the step's own matmuls, alone"
    fns = _fits(params, x, y, steps=steps, grads=MLP_GRADS, learning_rate=0.1)
    fns[mid_name] = _matmul_chain(m, k, chain, dtype)
    fns[big_name] = _matmul_once(big, dtype)
    fns[own_name] = _step_matmuls(sizes, batch, steps, dtype)
    jax.clear_caches()
    t = measure_round_robin(fns, repeats=repeats)
    roof = {
        mid_name: dict(flop_per_s=2 * m * k * k * chain / t[mid_name].median_s),
        big_name: dict(flop_per_s=2 * big**3 / t[big_name].median_s),
        own_name: dict(flop_per_s=flops["total"] * steps / t[own_name].median_s),
    }
    mid, large, own = (roof[n]["flop_per_s"] for n in (mid_name, big_name, own_name))

    rows = {}
    auto = t["autodiff"].median_s
    for name in ("bare", *MLP_GRADS):
        per_step = t[name].median_s / steps
        rate = flops["total"] / per_step
        rows[name] = dict(
            ms_per_step=1e3 * per_step,
            flop_per_s=rate,
            fraction_of_mid_matmul=rate / mid,
            fraction_of_large_matmul=rate / large,
            fraction_of_own_matmuls=rate / own,
            time_vs_autodiff=t[name].median_s / auto,
            **t[name].as_dict(),
        )
    return dict(
        sizes=list(sizes),
        batch=batch,
        dtype="float32",
        steps_per_call=steps,
        flops_per_step=flops,
        roofline=roof,
        results=rows,
    )
