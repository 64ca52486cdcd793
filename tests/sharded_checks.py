"""Checks of data-parallel training and audit on 8 virtual CPU devices, run as a script.

``tests/test_sharding.py`` runs this file in a process of its own, because the device count
is fixed when jax is imported: ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be
in the environment before that. It prints one line per check and ``ok`` at the end, and
exits non-zero at the first failure. Run it by hand with::

    python tests/sharded_checks.py
"""

import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import warnings

warnings.simplefilter("error")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import audit  # noqa: E402
import jaxbp  # noqa: E402
from audit.cli import main as audit_main  # noqa: E402
from audit.placement import shard_points  # noqa: E402
from audit.points import random_points  # noqa: E402

RTOL = {jnp.float32: 1e-5, jnp.float64: 1e-12}


def check(what: str, ok: bool, detail: str = "") -> None:
    if not ok:
        print(f"FAILED: {what}{': ' + detail if detail else ''}", flush=True)
        raise SystemExit(1)
    print(f"checked: {what}", flush=True)


def raises(fn, exc, text: str) -> bool:
    try:
        fn()
    except exc as e:
        if text in str(e):
            return True
        print(f"  message was: {e}")
        return False
    return False


def close(a, b, rtol: float, atol: float = 0.0) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)
        for u, v in zip(leaves_a, leaves_b, strict=True)
    )


def mesh_checks() -> None:
    check("8 devices visible", jax.device_count() == 8, str(jax.devices()))
    mesh = jaxbp.data_mesh(8)
    check("data_mesh(8) has axis data of 8", dict(mesh.shape) == {"data": 8})
    check("data_mesh() spans all devices", dict(jaxbp.data_mesh().shape) == {"data": 8})
    two = jaxbp.data_mesh(jax.devices()[2:4])
    check("data_mesh(devices) keeps those devices", list(two.devices.flat) == jax.devices()[2:4])
    check(
        "data_mesh(9) on 8 devices says how many there are",
        raises(lambda: jaxbp.data_mesh(9), ValueError, "devices=9 but JAX sees 8 cpu device(s)"),
    )
    check(
        "data_mesh(0) is refused",
        raises(lambda: jaxbp.data_mesh(0), ValueError, "devices=0, expected an int >= 1"),
    )

    x = jnp.arange(64 * 4, dtype=jnp.float32).reshape(64, 4)
    y = jnp.ones((64, 3), jnp.float32)
    xs, ys = jaxbp.shard_batch(mesh, x, y)
    check("shard_batch: x is not replicated", xs.sharding.is_fully_replicated is False)
    check("shard_batch: x spans 8 devices", len(xs.sharding.device_set) == 8)
    shapes = {s.data.shape for s in xs.addressable_shards}
    check("shard_batch: each device holds 8 rows", shapes == {(8, 4)}, str(shapes))
    check("shard_batch: values unchanged", np.array_equal(np.asarray(xs), np.asarray(x)))
    check("shard_batch: y split like x", ys.sharding == xs.sharding)
    xl, _ = jaxbp.shard_local_batch(mesh, np.asarray(x), np.asarray(y))
    check(
        "shard_local_batch on one process equals shard_batch",
        xl.sharding == xs.sharding and np.array_equal(np.asarray(xl), np.asarray(x)),
    )
    p = jaxbp.replicate(mesh, jaxbp.init((4, 3), key=jax.random.key(0)))
    check(
        "replicate: every leaf whole on 8 devices",
        all(
            a.sharding.is_fully_replicated and len(a.sharding.device_set) == 8
            for a in jax.tree.leaves(p)
        ),
    )
    check(
        "shard_batch: batch 10 over 4 devices names sizes that divide",
        raises(
            lambda: jaxbp.shard_batch(jaxbp.data_mesh(4), x[:10], y[:10]),
            ValueError,
            "batch 10 does not split over 4 devices; use a batch that is a multiple of 4 such "
            "as 8 or 12, or devices=2",
        ),
    )


def fit_checks() -> None:
    key = jax.random.key(0)
    for dtype, counts in ((jnp.float32, (2, 4, 8)), (jnp.float64, (8,))):
        p0 = jaxbp.init((8, 16, 16, 3), key=key, dtype=dtype, scale="normal")
        x = jax.random.normal(jax.random.key(1), (64, 8), dtype)
        y = jax.random.uniform(jax.random.key(2), (64, 3), dtype)
        for batch_size in (None, 16):
            common = dict(steps=30, learning_rate=0.5, batch_size=batch_size, key=key)
            one = jaxbp.fit(p0, x, y, **common)
            for n in counts:
                many = jaxbp.fit(p0, x, y, mesh=jaxbp.data_mesh(n), **common)
                what = f"fit {jnp.dtype(dtype).name}, batch_size={batch_size}, {n} devices"
                rtol = RTOL[dtype]
                check(f"{what}: losses equal one device's", close(one.losses, many.losses, rtol))
                # atol: a parameter near 0 after 30 steps carries the sums' roundoff
                check(
                    f"{what}: params equal one device's",
                    close(one.params, many.params, rtol, atol=rtol * 1e-2),
                )
                check(
                    f"{what}: params come back replicated",
                    all(
                        a.sharding.is_fully_replicated and len(a.sharding.device_set) == n
                        for a in jax.tree.leaves(many.params)
                    ),
                )

    seen = []

    def spying_grads(params, xb, yb):
        jax.debug.inspect_array_sharding(xb, callback=seen.append)
        return jaxbp.closed_form_grads(params, xb, yb)

    p0 = jaxbp.init((8, 3), key=key)
    x = jnp.ones((64, 8), jnp.float32)
    y = jnp.full((64, 3), 0.5, jnp.float32)
    mesh = jaxbp.data_mesh(8)
    jaxbp.fit(p0, x, y, steps=2, grad=spying_grads, mesh=mesh)
    jaxbp.fit(p0, x, y, steps=2, grad=spying_grads, mesh=mesh, batch_size=16, key=key)
    check(
        "inside fit the batch is split over 8 devices (full batch, minibatch)",
        [
            (s.is_fully_replicated, len(s.device_set), s.shard_shape(shape))
            for s, shape in zip(seen, [(64, 8), (16, 8)], strict=True)
        ]
        == [(False, 8, (8, 8)), (False, 8, (2, 8))],
        str(seen),
    )

    check(
        "fit: a batch that does not split is refused by name",
        raises(
            lambda: jaxbp.fit(p0, x[:10], y[:10], steps=1, mesh=jaxbp.data_mesh(4)),
            ValueError,
            "batch 10 does not split over 4 devices; use a batch that is a multiple of 4 such "
            "as 8 or 12, or devices=2",
        ),
    )
    check(
        "fit: a batch_size that does not split is refused by name",
        raises(
            lambda: jaxbp.fit(p0, x, y, steps=1, mesh=mesh, batch_size=12, key=key),
            ValueError,
            "batch_size 12 does not split over 8 devices; use a batch_size that is a multiple "
            "of 8 such as 8 or 16, or devices=6",
        ),
    )
    check(
        "fit: a mesh without a data axis is refused",
        raises(
            lambda: jaxbp.fit(p0, x, y, steps=1, mesh=jax.make_mesh((8,), ("model",))),
            ValueError,
            "mesh has axes ('model',), expected one named 'data'",
        ),
    )


def same_audit(one, many, what: str) -> None:
    for kind in ("weights", "factors"):
        a, b = getattr(one, kind), getattr(many, kind)
        check(f"{what}: same {kind}", [e["name"] for e in a] == [e["name"] for e in b])
        verdicts_a = [(e["passed"], e["worst_point"]) for e in a]
        verdicts_b = [(e["passed"], e["worst_point"]) for e in b]
        check(f"{what}: same {kind} verdicts and worst points", verdicts_a == verdicts_b)
        for field in ("manual", "reference", "score"):
            va, vb = [e[field] for e in a], [e[field] for e in b]
            check(f"{what}: {kind} {field} allclose", np.allclose(va, vb, rtol=1e-6, atol=1e-12))
    check(f"{what}: same verdict", one.passed == many.passed)


def audit_checks() -> None:
    mesh = jaxbp.data_mesh(8)
    group = random_points((2, 3, 1), 13, key=jax.random.key(0), loss="mse", dtype=jnp.float32)
    _, x, _ = shard_points(mesh, (group.params, group.x, group.y))
    rows = {s.data.shape[0] for s in x.addressable_shards}
    check(
        "shard_points: 13 points padded to 16, split over 8 devices",
        x.shape[0] == 16 and rows == {2} and len(x.sharding.device_set) == 8,
    )
    last = np.repeat(np.asarray(group.x[-1:]), 3, axis=0)
    check("shard_points: the padding repeats the last point", np.array_equal(x[13:], last))

    for grad, sizes in (("closed_form", (2, 5, 1)), ("seed", (2, 2, 1))):
        # fd=False: finite differences run on one device either way
        common = dict(sizes=sizes, points=13, steps=60, checkpoints=2, fd=False)
        one = audit.audit_network(grad, **common)
        many = audit.audit_network(grad, mesh=mesh, **common)
        same_audit(one, many, f"audit_network {grad}, 13 points, 8 devices")
        used = (many.config["devices"], many.config["mesh"])
        check(
            f"audit_network {grad}: config names the 8 devices",
            used == ([str(d) for d in jax.devices()], {"data": 8}),
        )
        used = (one.config["devices"], one.config["mesh"])
        check(
            f"audit_network {grad}: one device without a mesh",
            used == ([str(jax.devices()[0])], {"data": 1}),
        )

    with jax.enable_x64(False):  # the handwritten side traced with them off, on padded points
        off = audit.audit_network("seed", mesh=mesh, points=13, steps=60, checkpoints=2, fd=False)
    check("audit_network with 64-bit types off: 13 points on 8 devices pass", off.passed)

    def bad_grads(params, xb, yb):  # the factor 2 of a summed (not averaged) batch
        return jax.tree.map(lambda g: 2 * g, jaxbp.closed_form_grads(params, xb, yb))

    many = audit.audit_network(
        bad_grads, mesh=jaxbp.data_mesh(4), sizes=(2, 5, 1), points=13, steps=0, fd=False
    )
    check(
        "a wrong grad_fn fails at every weight on 4 devices",
        not many.passed and not any(w["passed"] for w in many.weights),
    )

    def loss_fn(p, xx, yy):
        return jnp.mean((xx @ p["w"] - yy) ** 2)

    def grad_fn(p, xx, yy):
        return {"w": 2 * xx.T @ (xx @ p["w"] - yy) / xx.shape[0]}

    w = {"w": jax.random.normal(jax.random.key(3), (4, 2))}
    xx, yy = jax.random.normal(jax.random.key(4), (6, 4)), jnp.ones((6, 2))
    kw = dict(points=10, key=jax.random.key(5), fd=False)
    one = audit.check_gradients(grad_fn, loss_fn, w, xx, yy, **kw)
    many = audit.check_gradients(grad_fn, loss_fn, w, xx, yy, mesh=jaxbp.data_mesh(8), **kw)
    same_audit(one, many, "check_gradients, 11 points, 8 devices")


def cli_checks() -> None:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = audit_main(["--devices", "9", "--no-report"])
    lines = err.getvalue().strip().splitlines()
    check(
        "jaxbp-audit --devices 9 on 8 devices: exit 2, one line",
        code == 2 and len(lines) == 1 and "devices=9 but JAX sees 8" in lines[0],
        str(lines),
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = audit_main(
            [
                "--devices",
                "8",
                "--points",
                "13",
                "--steps",
                "60",
                "--no-fd",
                "--quiet",
                "--no-report",
            ]
        )
    check("jaxbp-audit --devices 8 --points 13 passes", code == 0, out.getvalue())


if __name__ == "__main__":
    mesh_checks()
    fit_checks()
    audit_checks()
    cli_checks()
    print("ok")
