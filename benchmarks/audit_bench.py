"""Audit throughput: points whose every weight is checked against ``jax.grad``, per second.

The engine's vectorised path, :func:`audit.gradients.evaluate`, computes the handwritten
gradients (float32) and the ``jax.grad`` reference (float64, as the CLI runs it) at every
point, compares them element by element and keeps each weight's worst case. "With finite
differences" adds what :func:`audit.audit_network` adds: central differences in float64 for
up to ``fd_max`` weights, each at its worst point. The baseline is a Python loop of
``jax.test_util.check_grads(f, (params,), order=1, modes=["rev"])``, one call per point, timed
on a few points and extrapolated.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np

import jaxbp
from audit.compare import default_tolerance
from audit.gradients import evaluate, finite_differences, layout_of
from benchmarks.data import points
from benchmarks.timing import measure, measure_round_robin

__all__ = ["audit_case", "run_audit", "x64"]

FD_MAX = 512  # audit_network's default


@contextlib.contextmanager
def x64() -> Iterator[None]:
    """64-bit mode on inside the block, as the CLI runs the audit (float64 references)."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def audit_case(sizes: tuple[int, ...], n: int, *, seed: int = 0) -> dict[str, Any]:
    """The pieces of one audit: ``n`` random points of a sigmoid MSE network of ``sizes``."""
    group = points(sizes, n, seed=seed)
    grad_fn = jaxbp.seed_grads if tuple(sizes) == (2, 2, 1) else jaxbp.closed_form()
    return dict(
        group=group,
        grad_fn=grad_fn,
        ref_grad_fn=jaxbp.autodiff(),
        loss_fn=functools.partial(jaxbp.batch_loss, activation="sigmoid", loss="mse"),
        layout=layout_of(jax.tree.map(lambda a: a[0], group.params)),
        tol=default_tolerance(jnp.float32),
    )


def _evaluate(case: dict[str, Any]):
    return evaluate(
        case["grad_fn"], case["ref_grad_fn"], [case["group"]], traced=True,
        ref_dtype=jnp.float64, tol=case["tol"], layout=case["layout"],
    )  # fmt: skip


def _evaluate_fd(case: dict[str, Any]):
    """``evaluate``, then central differences for up to ``FD_MAX`` weights at their worst point.

    The engine picks the worst weights first; which ones does not change the cost.
    """
    ev = _evaluate(case)
    sel = np.arange(min(case["layout"].segments.size, FD_MAX))
    index = np.asarray(ev.worst.index)[sel]
    fd = finite_differences(case["loss_fn"], [case["group"]], sel, index, dtype=jnp.float64)
    return ev, jax.tree.map(jnp.asarray, fd)


def _check_grads_rate(case: dict[str, Any], n: int) -> dict[str, Any]:
    """Points per second of a ``check_grads`` loop, from ``n`` points after one warm-up point."""
    g = case["group"]
    loss_fn = case["loss_fn"]

    def one(i: int) -> bool:
        params = jax.tree.map(lambda a: a[i].astype(jnp.float64), g.params)
        x, y = g.x[i].astype(jnp.float64), g.y[i].astype(jnp.float64)
        try:
            jax.test_util.check_grads(lambda p: loss_fn(p, x, y), (params,), order=1, modes=["rev"])
        except AssertionError:
            return False
        return True

    one(0)
    t0 = time.perf_counter()
    ok = sum(one(1 + i) for i in range(n))
    elapsed = time.perf_counter() - t0
    return dict(points_timed=n, seconds=elapsed, points_per_s=n / elapsed, passed=ok)


def run_audit(*, quick: bool, repeats: int) -> dict[str, Any]:
    """Points per second of the vectorised audit, with and without finite differences."""
    cases = (
        [((2, 2, 1), 100), ((16, 32, 32, 8), 10)]
        if quick
        else [((2, 2, 1), 10_000), ((2, 2, 1), 100_000), ((64, 256, 256, 10), 100)]
    )
    loop_points = 5 if quick else 50
    out = []
    with x64():
        for sizes, n in cases:
            case = audit_case(sizes, n)
            n_params = int(case["layout"].segments.size)
            jax.clear_caches()
            t = measure_round_robin(
                {
                    "evaluate": lambda c=case: _evaluate(c),
                    "with_fd": lambda c=case: _evaluate_fd(c),
                },
                repeats=repeats,
            )
            loop = _check_grads_rate(case, min(loop_points, n - 1))
            row = dict(sizes=list(sizes), points=n, params=n_params, check_grads_loop=loop)
            for name, timing in t.items():
                rate = n / timing.median_s
                row[name] = dict(
                    points_per_s=rate, vs_check_grads=rate / loop["points_per_s"],
                    **timing.as_dict(),
                )  # fmt: skip
            out.append(row)
    return dict(
        dtype="float32 audited, float64 reference",
        batch_per_point=int(case["group"].x.shape[1]),
        fd_max=FD_MAX,
        results=out,
    )


def evaluate_timing(sizes: tuple[int, ...], n: int, *, repeats: int):
    """Steady-state timing of ``evaluate`` alone (for the scaling table)."""
    with x64():
        case = audit_case(sizes, n)
        return measure(lambda: _evaluate(case), repeats=repeats)
