"""``python -m benchmarks.devices``: training and audit split over 1, 2, 4 and 8 devices.

For each device count ``N`` it builds ``jaxbp.data_mesh(N)`` and times

- training: ``jaxbp.fit`` of a 64-256-256-10 sigmoid MLP, full batch of 4096 split over the
  ``N`` devices (steps per second), with the largest loss difference from one device;
- audit: ``audit.audit_network("closed_form", sizes=(16, 32, 32, 8), points=n, steps=0,
  fd=False, mesh=mesh)``, the public call, its random points split over the ``N`` devices
  (points per second, every audited point counted), with the largest difference of the
  weights' scores from one device.

Then, on CPU, the same two calls over two processes joined with ``jax.distributed`` on
127.0.0.1 (gloo between them), with 1, 2 and 4 virtual devices each (2, 4 and 8 in all):
each process hands over its own half of the training rows (``jaxbp.local_rows``,
``jaxbp.shard_local_batch``), and the audit's points are split over the devices of both.

The script starts itself again with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
in its environment, so that a machine with one CPU shows 8 virtual devices. Those devices
share the same cores, and so do the two processes: the table shows that the machinery works
and what it costs, not a speed-up. On a machine with several GPUs or TPU cores the same
script measures real ones (the two-process rows are for CPU only); counts above the devices
present are skipped.

Example:
    $ python -m benchmarks.devices            # a few minutes on two cores
    $ python -m benchmarks.devices --quick --out /tmp/devices.json
"""

from __future__ import annotations

import os
import sys

_FLAG = "--xla_force_host_platform_device_count=8"

if (
    __name__ == "__main__"
    and _FLAG not in os.environ.get("XLA_FLAGS", "")
    and (
        "--worker" not in sys.argv  # a process of a two-process row: its parent set its devices
    )
):
    # the device count is fixed when jax starts: start again with the flag set
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip())
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.devices", *sys.argv[1:]], env)

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
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
PER_PROCESS = (1, 2, 4)  # devices of each of the two processes: 2, 4 and 8 in all
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "devices.json"
VIRTUAL_NOTE = (
    "virtual CPU devices share the same {cores} cores: this shows that the sharded code runs "
    "and what splitting costs, not a real speed-up; the rows of 2 processes also share those "
    "cores, and exchange data through gloo on 127.0.0.1: they show the overhead of several "
    "processes, not a speed-up"
)


def _training(mesh, *, sizes, batch, steps, repeats, local=False) -> dict[str, Any]:
    key = jax.random.key(0)
    params = jaxbp.init(sizes, key=key, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(1), (batch, sizes[0]), jnp.float32)
    classes = jax.random.randint(jax.random.key(2), (batch,), 0, sizes[-1])
    y = jax.nn.one_hot(classes, sizes[-1], dtype=jnp.float32)
    if local:  # as a multi-process program does: each process hands over its own rows
        rows = jaxbp.local_rows(batch, mesh)
        x, y = jaxbp.shard_local_batch(mesh, np.asarray(x)[rows], np.asarray(y)[rows])

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


def _sizes(quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The training and audit problems: the same in every row."""
    train = dict(sizes=(64, 256, 256, 10), batch=512 if quick else 4096, steps=5 if quick else 20)
    # with steps=0 the audit adds one point (the initial parameters): 256 or 4096 in all,
    # which split over 1, 2, 4 and 8 devices without padding
    aud = dict(sizes=(16, 32, 32, 8), points=255 if quick else 4095, examples=8)
    return train, aud


def _worker(args: argparse.Namespace) -> int:
    """One of the two processes of a row: join, time both calls, and (process 0) write them."""
    jaxbp.initialize_distributed(args.coordinator, 2, args.process_id, timeout=300)
    train, aud = _sizes(args.quick)
    mesh = jaxbp.data_mesh()
    tr = _training(mesh, repeats=args.repeats, local=True, **train)
    au = _audit(mesh, repeats=args.repeats, **aud)
    if jax.process_index() == 0:
        args.out.write_text(json.dumps(dict(training=tr, audit=au), default=_plain))
    return 0


def _plain(a: Any) -> Any:
    return np.asarray(a).tolist()


def _two_processes(per_process: int, *, quick: bool, repeats: int) -> dict[str, Any]:
    """Both calls timed over two processes of ``per_process`` virtual CPU devices each."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = pathlib.Path(__file__).resolve().parents[1]
    out = pathlib.Path(f"/tmp/jaxbp-devices-{os.getpid()}-{per_process}.json")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={per_process}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    procs = []
    try:
        for i in (0, 1):
            cmd = [sys.executable, "-m", "benchmarks.devices", "--worker", "--process-id", str(i),
                   "--coordinator", f"127.0.0.1:{port}", "--repeats", str(repeats),
                   "--out", str(out), *(["--quick"] if quick else [])]  # fmt: skip
            procs.append(subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL))
        codes = [p.wait(timeout=1800) for p in procs]
        if codes != [0, 0]:
            raise RuntimeError(f"the two-process row of {per_process} devices each exited {codes}")
        result = json.loads(out.read_text())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        out.unlink(missing_ok=True)
    for part, key in (("training", "losses"), ("audit", "score")):
        result[part][key] = np.asarray(result[part][key])
    return result


def run_devices(*, quick: bool, repeats: int) -> dict[str, Any]:
    """Steps/s and audit points/s for each device count in :data:`COUNTS` that is present,
    then (on CPU) over two processes of :data:`PER_PROCESS` devices each."""
    train, aud = _sizes(quick)
    counts = [n for n in COUNTS if n <= jax.device_count()]
    plan = [(1, n) for n in counts]
    if jax.default_backend() == "cpu":
        plan += [(2, k) for k in PER_PROCESS]
    rows = []
    base = None
    for processes, n in plan:
        if processes == 2:
            both = _two_processes(n, quick=quick, repeats=repeats)
            tr, au, n = both["training"], both["audit"], 2 * n
        else:
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
                processes=processes,
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
    """The printed table: one row per process and device count."""
    tr, au = section["training"], section["audit"]
    head = (
        "processes",
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
            str(r.get("processes", 1)),
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
        "one split over the devices; vs 1: against 1 process with 1 device"
    )
    return title + "\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.devices",
        description="Time training and the audit split over 1, 2, 4 and 8 devices, and over "
        "two processes.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, seconds (smoke test)")
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, metavar="PATH",
                   help="where to write the json (default benchmarks/devices.json)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed calls per figure (default 5, 2 with --quick)")  # fmt: skip
    # a process of a two-process row, started by the script itself
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--coordinator", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table, write the json."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    if args.worker:
        args.repeats = repeats
        return _worker(args)
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
