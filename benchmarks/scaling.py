"""Scaling: time against batch size, audit points and network width, and recompilations.

Each sweep should be linear in its size once the size is large enough to hide fixed costs,
and calling again with the same shapes (or another learning rate) must compile nothing.
"""

from __future__ import annotations

from typing import Any

import jax

import audit
import jaxbp
from benchmarks.data import mlp_data
from benchmarks.timing import compile_log, measure
from benchmarks.training import mlp_flops

__all__ = ["run_scaling"]


def _fit_timing(sizes, batch: int, steps: int, repeats: int):
    params, x, y = mlp_data(sizes, batch)
    t = measure(
        lambda: jaxbp.fit(params, x, y, steps=steps, grad="closed_form", learning_rate=0.1),
        repeats=repeats,
    )
    per_step = t.median_s / steps
    return dict(
        steps_per_call=steps,
        ms_per_step=1e3 * per_step,
        us_per_example=1e6 * per_step / batch,
        flop_per_s=mlp_flops(sizes, batch)["total"] / per_step,
        **t.as_dict(),
    )


def _recompiles(repeats: int) -> dict[str, Any]:
    """Compilations when fit is called again with the same shapes (expected: none)."""
    from jaxbp.train import compiled_loops

    params, x, y = mlp_data((2, 8, 1), 16)
    other = mlp_data((2, 8, 1), 16, seed=7)[0]

    def go(**kw):
        return jaxbp.fit(**{"params": params, "x": x, "y": y, "steps": 50, "grad": "closed_form",
                            **kw})  # fmt: skip

    jax.block_until_ready(go())
    before = compiled_loops()
    out = {}
    for name, kw in (
        ("same call again", {}),
        ("another learning rate", {"learning_rate": 0.01}),
        ("other params and data, same shapes", {"params": other, "x": x + 1, "y": 1 - y}),
        ("grad=autodiff, then again", {"grad": "autodiff"}),
    ):
        with compile_log() as log:
            for _ in range(repeats):
                jax.block_until_ready(go(**kw))
            out[name] = dict(calls=repeats, compiles=log().count)
    out["grad=autodiff, then again"]["expected"] = "1: a new gradient is a new program"
    out["fit cache entries added"] = compiled_loops() - before
    return out


def run_scaling(*, quick: bool, repeats: int) -> dict[str, Any]:
    """Three sweeps and a recompilation count."""
    batches = [16, 64] if quick else [64, 256, 1024, 4096, 8192]
    widths = [8, 16] if quick else [16, 64, 256, 512]
    points = [100, 400] if quick else [1_000, 10_000, 100_000]
    work = 2_000 if quick else 51_200  # examples per call in the batch sweep
    reps = max(3, repeats // 2)

    batch_rows = []
    for b in batches:
        sizes = (64, 256, 256, 10) if not quick else (16, 32, 32, 4)
        row = _fit_timing(sizes, b, max(10, work // b), reps)
        batch_rows.append(dict(batch=b, **row))

    width_rows = []
    for w in widths:
        sizes = (64, w, w, 10)
        row = _fit_timing(sizes, 64 if quick else 512, 10 if quick else 50, reps)
        width_rows.append(dict(width=w, sizes=list(sizes), **row))

    point_rows = []
    for n in points:
        # the public call without training or finite differences: the cost of the points alone
        t = measure(lambda n=n: audit.audit_network("seed", points=n, steps=0, fd=False).passed,
                    repeats=reps)  # fmt: skip
        point_rows.append(
            dict(points=n, us_per_point=1e6 * t.median_s / n, points_per_s=n / t.median_s,
                 **t.as_dict())
        )  # fmt: skip

    return dict(
        batch=dict(sizes="64-256-256-10, closed_form, float32", rows=batch_rows),
        width=dict(sizes="64-w-w-10, batch 512, closed_form, float32", rows=width_rows),
        audit_points=dict(
            sizes='2-2-1, audit_network("seed", points=n, steps=0, fd=False)', rows=point_rows
        ),
        recompilation=_recompiles(3),
    )
