"""Data-parallel training across processes, or its one-process reference, run as a script.

``tests/test_distributed.py`` starts it in fresh processes, since the device count and the
multi-process runtime are fixed when jax starts:

- ``python tests/distributed_checks.py OUT --reference``: one process with 4 virtual CPU
  devices. It trains with ``mesh=data_mesh(4)`` and on one device without a mesh, and runs
  the audit of ``AUDIT`` in ``tests/test_distributed.py`` with ``mesh=data_mesh(4)``
  (its verdict, points, weights and factors in ``OUT/reference-audit.json``).
- ``python tests/distributed_checks.py OUT --process-id I --port P``: process ``I`` of two
  with 2 virtual CPU devices each, joined over ``127.0.0.1:P``. Each process hands over only
  its own rows (``jaxbp.local_rows``, ``jaxbp.shard_local_batch``) and trains with
  ``mesh=data_mesh()`` over the 4 devices of both; then again from the whole batch, passed
  by every process.

Each writes ``OUT/<name>.npz`` with the trained parameters and losses of every run, where
``<name>`` is ``reference`` or ``process-I``, and exits 0.
"""

import itertools
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


# drawn with NumPy: jax.random would compile a program per shape in every process


def data():
    """The global batch, the same in every process: ``x: (16, 3)``, ``y: (16, 2)`` float64."""
    rng = np.random.default_rng(1)
    return rng.standard_normal((N, SIZES[0])), rng.uniform(size=(N, SIZES[-1]))


def start_params() -> jaxbp.Params:
    """Standard normal weights and biases, the same in every process, float64."""
    rng = np.random.default_rng(0)
    return [
        {"W": jnp.asarray(rng.standard_normal((n_out, n_in))),
         "b": jnp.asarray(rng.standard_normal(n_out))}
        for n_in, n_out in itertools.pairwise(SIZES)
    ]  # fmt: skip


def train(x, y, mesh) -> dict[str, np.ndarray]:
    """Every run of :func:`runs`: flat parameters and losses by name."""
    p0 = start_params()
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
        import json

        import audit

        # what `jaxbp-audit AUDIT --devices 4` computes, AUDIT as in tests/test_distributed.py
        r = audit.audit_network(
            "closed_form", sizes=(2, 3, 1), dtype="float64", points=8, steps=10, fd=False,
            mesh=jaxbp.data_mesh(4),
        )  # fmt: skip
        found = dict(verdict=r.verdict, points=r.points, weights=list(r.weights), factors=r.factors)
        with open(os.path.join(OUT, "reference-audit.json"), "w") as f:
            json.dump(found, f, default=lambda v: np.asarray(v).tolist())
        name = "reference"
    else:
        process = int(ARGS[ARGS.index("--process-id") + 1])
        port = ARGS[ARGS.index("--port") + 1]
        jaxbp.initialize_distributed(f"127.0.0.1:{port}", 2, process, timeout=30)
        x, y = data()
        mesh = jaxbp.data_mesh()
        assert jax.device_count() == 4 and jax.local_device_count() == 2
        rows = jaxbp.local_rows(N, mesh)
        results = train(*jaxbp.shard_local_batch(mesh, x[rows], y[rows]), mesh)
        # the whole batch on every process, which fit splits itself
        results.update({f"whole/{k}": v for k, v in train(x, y, mesh).items()})
        results["rows"] = np.array([rows.start, rows.stop])
        name = f"process-{process}"
    np.savez(os.path.join(OUT, f"{name}.npz"), **results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
