"""``python -m benchmarks.devices``: training and audit split over 1, 2, 4 and 8 devices.

For each device count ``N`` it builds ``jaxbp.data_mesh(N)`` and times

- training: ``jaxbp.fit`` of a 64-256-256-10 sigmoid MLP, full batch of 4096 split over the
  ``N`` devices (steps per second), with the largest loss difference from one device;
- audit: ``audit.audit_network("closed_form", sizes=(16, 32, 32, 8), points=n, steps=0,
  fd=False, mesh=mesh)``, the public call, its random points split over the ``N`` devices
  (points per second, every audited point counted), with the largest difference of the
  weights' scores from one device.

The script starts itself again with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
in its environment, so that a machine with one CPU shows 8 virtual devices. Those devices
share the same cores: the table shows that the machinery works and what it costs, not a
speed-up. On a machine with several GPUs or TPU cores the same script measures real ones;
counts above the devices present are skipped.

Example:
    $ python -m benchmarks.devices            # a few minutes on two cores
    $ python -m benchmarks.devices --quick --out /tmp/devices.json
"""

from __future__ import annotations

import os
import sys

_FLAG = "--xla_force_host_platform_device_count=8"

if __name__ == "__main__" and _FLAG not in os.environ.get("XLA_FLAGS", ""):
    # the device count is fixed when jax starts: start again with the flag set
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip())
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.devices", *sys.argv[1:]], env)

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import audit  # noqa: E402
import jaxbp  # noqa: E402
from benchmarks.data import mlp_data  # noqa: E402
from benchmarks.timing import machine, measure  # noqa: E402

__all__ = ["main", "run_devices"]

COUNTS = (1, 2, 4, 8)
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "devices.json"
VIRTUAL_NOTE = (
    "virtual CPU devices share the same {cores} cores: this shows that the sharded code runs "
    "and what splitting costs, not a real speed-up"
)


def _training(mesh, *, sizes, batch, steps, repeats) -> dict[str, Any]:
    key = jax.random.key(0)
    params = jaxbp.init(sizes, key=key, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(1), (batch, sizes[0]), jnp.float32)
    classes = jax.random.randint(jax.random.key(2), (batch,), 0, sizes[-1])
    y = jax.nn.one_hot(classes, sizes[-1], dtype=jnp.float32)

    def run():
        return jaxbp.fit(params, x, y, steps=steps, learning_rate=0.5, mesh=mesh)

    t = measure(run, repeats=repeats)
    return dict(steps_per_s=steps / t.median_s, losses=np.asarray(run().losses), **t.as_dict())


def _audit(mesh, *, sizes, points, examples, repeats) -> dict[str, Any]:
    data = mlp_data(sizes, examples)[1:]
    seen = {}

    def run():
        seen["result"] = audit.audit_network("closed_form", sizes=sizes, data=data, points=points,
                                             steps=0, fd=False, mesh=mesh)  # fmt: skip
        return seen["result"].passed

    t = measure(run, repeats=repeats)
    r = seen["result"]
    return dict(
        points_per_s=r.points["total"] / t.median_s,
        score=np.array([float(w["score"]) for w in r.weights]),
        passed=r.passed,
        **t.as_dict(),
    )


def run_devices(*, quick: bool, repeats: int) -> dict[str, Any]:
    """Steps/s and audit points/s for each device count in :data:`COUNTS` that is present."""
    train = dict(sizes=(64, 256, 256, 10), batch=512 if quick else 4096, steps=5 if quick else 20)
    # with steps=0 the audit adds one point (the initial parameters): 256 or 4096 in all,
    # which split over 1, 2, 4 and 8 devices without padding
    aud = dict(sizes=(16, 32, 32, 8), points=255 if quick else 4095, examples=8)
    counts = [n for n in COUNTS if n <= jax.device_count()]
    rows = []
    base = None
    for n in counts:
        mesh = None if n == 1 else jaxbp.data_mesh(n)
        tr = _training(mesh, repeats=repeats, **train)
        au = _audit(mesh, repeats=repeats, **aud)
        if base is None:
            base = tr.pop("losses"), au.pop("score")
            loss_diff = score_diff = 0.0
        else:
            loss_diff = float(np.max(np.abs(tr.pop("losses") - base[0])))
            score_diff = float(np.max(np.abs(au.pop("score") - base[1])))
        rows.append(
            dict(
                devices=n,
                training=dict(tr, max_loss_diff_vs_1=loss_diff),
                audit=dict(au, max_score_diff_vs_1=score_diff),
            )
        )
    return dict(
        training=dict(train, sizes=list(train["sizes"]), grad="closed_form", dtype="float32"),
        audit=dict(
            aud,
            sizes=list(aud["sizes"]),
            call="audit_network",
            steps=0,
            fd=False,
            dtype="float32 audited, float64 reference",
        ),
        skipped=[n for n in COUNTS if n not in counts],
        results=rows,
    )


def format_rows(section: dict[str, Any]) -> str:
    """The printed table: one row per device count."""
    tr, au = section["training"], section["audit"]
    head = (
        "devices",
        "train steps/s",
        "vs 1",
        "max |loss - 1 dev|",
        "audit points/s",
        "vs 1",
        "compile s (train, audit)",
    )
    cells = [head]
    first = section["results"][0]
    for r in section["results"]:
        t, a = r["training"], r["audit"]
        cells.append((
            str(r["devices"]),
            f"{t['steps_per_s']:.1f}",
            f"{t['steps_per_s'] / first['training']['steps_per_s']:.2f}x",
            f"{t['max_loss_diff_vs_1']:.1e}",
            f"{a['points_per_s']:.0f}",
            f"{a['points_per_s'] / first['audit']['points_per_s']:.2f}x",
            f"{t['compile_s']:.1f}, {a['compile_s']:.1f}",
        ))  # fmt: skip
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    title = (
        f"training {'-'.join(map(str, tr['sizes']))} sigmoid mse, full batch {tr['batch']} "
        f"split over the devices, {tr['steps']} steps per call; audit "
        f"{'-'.join(map(str, au['sizes']))}, {au['points']} random points and the initial "
        "one split over the devices"
    )
    return title + "\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.devices",
        description="Time training and the audit split over 1, 2, 4 and 8 devices.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, seconds (smoke test)")
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, metavar="PATH",
                   help="where to write the json (default benchmarks/devices.json)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed calls per figure (default 5, 2 with --quick)")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table, write the json."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    m = machine()
    virtual = jax.default_backend() == "cpu"
    note = VIRTUAL_NOTE.format(cores=m["usable_cores"]) if virtual else None
    t0 = time.perf_counter()
    section = run_devices(quick=args.quick, repeats=repeats)
    results = {
        "command": " ".join(["python -m benchmarks.devices", *argv]),
        "quick": args.quick,
        "repeats": repeats,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": m,
        "virtual_devices": virtual,
        "note": note,
        "seconds": round(time.perf_counter() - t0, 1),
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        **section,
    }
    print(
        f"{m['cpu']}, {m['usable_cores']} usable cores; jax {m['jax']} {m['backend']}, "
        f"{len(m['devices'])} devices; load {m['load_average'][0]:.2f} at start, "
        f"{results['load_average_end'][0]:.2f} at end"
    )
    print(format_rows(section))
    if section["skipped"]:
        print(f"skipped {section['skipped']} devices: JAX sees {jax.device_count()}")
    if note:
        print(f"NOTE: {note}.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
