"""Two moons trained data-parallel over several processes with ``jax.distributed``.

Every process runs this same script. Each joins the run (``jaxbp.initialize_distributed``),
loads only its own rows of the global batch (``jaxbp.local_rows``), hands them over with
``jaxbp.shard_local_batch``, and calls ``jaxbp.fit(..., mesh=jaxbp.data_mesh())``: every
device of every process computes the gradient of its rows, and the compiler adds them up.
Parameters and optimizer state are the same everywhere; process 0 prints the result.

Run it with::

    # one machine, 2 processes of 2 virtual CPU devices each (it starts them itself)
    python examples/multiprocess.py --launch 2
    # several hosts: the same command on each, I = 0 on the host named in --coordinator
    python examples/multiprocess.py --coordinator 10.0.0.1:1234 --num-processes 2 --process-id I
    # SLURM: JAX reads SLURM's variables itself
    srun --nodes=2 --ntasks-per-node=1 python examples/multiprocess.py
    # one process: no options
    python examples/multiprocess.py

``JAXBP_QUICK=1`` trains 50 steps instead of 2000. The global batch is the same 512 rows in
the same order however many processes share it, so the minibatch schedule, and the result
up to the order of floating-point sums, do not depend on the number of processes.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp

SIZES = (2, 16, 16, 1)
ROWS = 512
FULL_STEPS, QUICK_STEPS = 2000, 50


def global_data() -> tuple[np.ndarray, np.ndarray]:
    """The whole data set, ``x: (512, 2)``, ``y: (512, 1)`` float32, shuffled once.

    A real loader reads only ``local_rows`` of its files; these few rows are drawn whole on
    every process from the same key, so every process sees the same global batch.
    """
    x, y = jaxbp.two_moons(ROWS, key=jax.random.key(1), noise=0.1)
    order = jax.random.permutation(jax.random.key(2), ROWS)
    return np.asarray(x[order]), np.asarray(y[order])


def accuracy(params: jaxbp.Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Share of rows whose output is on the target's side of 0.5; ``x: (n, 2)``, ``y: (n, 1)``."""
    out = jaxbp.forward(params, x, activation="tanh", loss="bce")
    return jnp.mean((out > 0.5) == (y > 0.5))


def train(steps: int) -> tuple[jaxbp.FitResult, jax.Array]:
    """Fit over every device of every process; returns the result and the accuracy."""
    mesh = jaxbp.data_mesh()
    x_all, y_all = global_data()
    rows = jaxbp.local_rows(ROWS, mesh)  # this process's share
    x, y = jaxbp.shard_local_batch(mesh, x_all[rows], y_all[rows])
    params = jaxbp.init(SIZES, key=jax.random.key(0), scale="normal")  # same key everywhere
    result = jaxbp.fit(
        params, x, y, steps=steps, learning_rate=0.5, activation="tanh", loss="bce",
        batch_size=128, key=jax.random.key(3), mesh=mesh,
    )  # fmt: skip
    return result, accuracy(result.params, x, y)


def launch(processes: int, devices: int) -> int:
    """Start ``processes`` copies of this script on this machine, ``devices`` virtual CPU
    devices each, joined over a free port of 127.0.0.1; wait for all, kill all on failure."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    procs = []
    try:
        for i in range(processes):
            procs.append(subprocess.Popen([
                sys.executable, __file__, "--coordinator", f"127.0.0.1:{port}",
                "--num-processes", str(processes), "--process-id", str(i),
            ], env=env))  # fmt: skip
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return next((c for c in codes if c), 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--launch", type=int, metavar="N", help="start N processes on this machine")
    p.add_argument("--devices", type=int, default=2, help="virtual CPU devices per process")
    p.add_argument("--coordinator", metavar="HOST:PORT")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    args = p.parse_args(argv)
    if args.launch:
        return launch(args.launch, args.devices)
    if args.coordinator or args.num_processes or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jaxbp.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    steps = QUICK_STEPS if os.environ.get("JAXBP_QUICK") == "1" else FULL_STEPS
    result, acc = train(steps)
    if jax.process_index() == 0:
        print(
            f"{jax.process_count()} process(es), {jax.device_count()} devices: "
            f"bce {float(result.losses[0]):.4f} -> {float(result.losses[-1]):.4f} in "
            f"{steps} steps, accuracy {float(acc):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
