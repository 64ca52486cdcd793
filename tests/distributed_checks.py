"""Data-parallel training across processes, or its one-process reference, run as a script.

``tests/test_distributed.py`` starts it in fresh processes, since the device count and the
multi-process runtime are fixed when jax starts:

- ``python tests/distributed_checks.py OUT --reference --audit "ARGS"``: one process with 4
  virtual CPU devices. It trains with ``mesh=data_mesh(4)`` and on one device without a
  mesh, and runs ``jaxbp-audit ARGS --devices 4`` (report in ``OUT/ref``).
- ``python tests/distributed_checks.py OUT --process-id I --port P``: process ``I`` of two
  with 2 virtual CPU devices each, joined over ``127.0.0.1:P``. Each process hands over only
  its own rows (``jaxbp.local_rows``, ``jaxbp.shard_local_batch``) and trains with
  ``mesh=data_mesh()`` over the 4 devices of both.

Each writes ``OUT/<name>.npz`` with the trained parameters and losses of every run, where
``<name>`` is ``reference`` or ``process-I``, and exits 0.
"""

import os
import sys

ARGS = sys.argv[1:]
OUT = ARGS[0]
REFERENCE = "--reference" in ARGS
DEVICES = 4 if REFERENCE else 2
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES}"
os.environ["JAX_PLATFORMS"] = "cpu"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import warnings  # noqa: E402

warnings.simplefilter("error")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import jaxbp  # noqa: E402

SIZES = (3, 8, 2)
N = 16  # rows: 4 per device
STEPS = 30


def runs() -> dict[str, dict]:
    """``fit``'s options by run name (made after joining: a key starts JAX's backend)."""
    # adam: its state (moments, step count) must stay replicated and equal on every device
    return {
        "full_sgd": dict(learning_rate=0.5),
        "minibatch_adam": dict(optimizer=optax.adam(0.05), batch_size=4, key=jax.random.key(6)),
    }


def data():
    """The global batch, the same in every process: ``x: (16, 3)``, ``y: (16, 2)`` float64."""
    x = jax.random.normal(jax.random.key(1), (N, SIZES[0]), jnp.float64)
    y = jax.random.uniform(jax.random.key(2), (N, SIZES[-1]), jnp.float64)
    return np.asarray(x), np.asarray(y)


def train(x, y, mesh) -> dict[str, np.ndarray]:
    """Every run of :func:`runs`: flat parameters and losses by name."""
    p0 = jaxbp.init(SIZES, key=jax.random.key(0), dtype=jnp.float64, scale="normal")
    out = {}
    for name, options in runs().items():
        result = jaxbp.fit(p0, x, y, steps=STEPS, grad="closed_form", mesh=mesh, **options)
        leaves = [np.asarray(a).ravel() for a in jax.tree.leaves(result.params)]
        out[f"{name}/params"] = np.concatenate(leaves)
        out[f"{name}/losses"] = np.asarray(result.losses)
    return out


def main() -> int:
    if REFERENCE:
        x, y = data()
        results = train(x, y, jaxbp.data_mesh(4))
        results.update({f"one_device/{k}": v for k, v in train(x, y, None).items()})
        from audit.cli import main as audit_main

        audit = ARGS[ARGS.index("--audit") + 1].split()
        code = audit_main([*audit, "--devices", "4", "--quiet", "--out", os.path.join(OUT, "ref")])
        results["audit_code"] = np.asarray(code)
        name = "reference"
    else:
        process = int(ARGS[ARGS.index("--process-id") + 1])
        port = ARGS[ARGS.index("--port") + 1]
        jaxbp.distributed.initialize(f"127.0.0.1:{port}", 2, process, timeout=30)
        x, y = data()
        mesh = jaxbp.data_mesh()
        assert jax.device_count() == 4 and jax.local_device_count() == 2
        rows = jaxbp.local_rows(N, mesh)
        results = train(*jaxbp.shard_local_batch(mesh, x[rows], y[rows]), mesh)
        results["rows"] = np.array([rows.start, rows.stop])
        name = f"process-{process}"
    np.savez(os.path.join(OUT, f"{name}.npz"), **results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
