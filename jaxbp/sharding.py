"""Data parallelism with JAX's own machinery: a 1-D device mesh, the batch split along it.

A mesh has one axis, ``"data"``. The batch (the leading axis of ``x`` and ``y``) is split
along it with ``NamedSharding(mesh, P("data"))``; parameters and optimizer state are
replicated with ``NamedSharding(mesh, P())``. ``jit`` follows the input shardings: each
device computes the gradient of its rows and the compiler inserts the all-reduce that a
batch mean needs, so results equal single-device ones up to the order of the summation.

One device needs none of this: every function in jaxbp runs as before without a mesh.

Several devices on one machine (GPUs, a TPU host, or virtual CPU devices for testing)::

    mesh = jaxbp.data_mesh(8)            # the first 8 of jax.devices()
    result = jaxbp.fit(params, x, y, steps=1000, mesh=mesh)

Virtual CPU devices: set ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` in the
environment before ``jax`` is imported (they share the machine's cores: good for checking
the code, not for speed).

Several hosts (a TPU pod slice, or GPU machines under SLURM/Open MPI, or by hand): start the
same program on every host and call :func:`jaxbp.initialize_distributed` (JAX's
``jax.distributed.initialize`` with bounded waits) before anything else
touches JAX. ``jax.devices()`` then lists every host's devices and ``data_mesh()`` spans them
all. Each process loads only its own rows and hands them over with
:func:`shard_local_batch`, which builds one global array with
``jax.make_array_from_process_local_data``::

    jaxbp.initialize_distributed()      # on TPU/SLURM/Open MPI it finds its peers itself;
                                        # else coordinator_address, num_processes, process_id
    mesh = jaxbp.data_mesh()            # all devices of all hosts
    rows = jaxbp.local_rows(n, mesh)    # this process's share of the n rows
    x, y = jaxbp.shard_local_batch(mesh, x_all[rows], y_all[rows])
    result = jaxbp.fit(params, x, y, steps=1000, mesh=mesh)   # params: same key everywhere
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA",
    "check_divisible",
    "data_mesh",
    "data_size",
    "local_rows",
    "replicate",
    "shard_batch",
    "shard_local_batch",
]

DATA = "data"  # the mesh axis the batch is split along

_VIRTUAL = (
    "for virtual CPU devices set XLA_FLAGS=--xla_force_host_platform_device_count=N "
    "before jax is imported"
)


def data_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over some of the devices JAX sees.

    Args:
      devices: None for every device of ``jax.devices()`` (all hosts' after
        ``jax.distributed.initialize()``), an int ``N`` for the first ``N`` of them, or the
        devices themselves.

    Returns:
      ``jax.sharding.Mesh`` of shape ``{"data": N}``. Its axis is of the automatic kind:
      the compiler places the collectives.

    Raises:
      ValueError: ``N < 1``, or more devices than JAX sees (the message says how many there
        are), or a device listed twice.

    Example:
      >>> mesh = data_mesh(1)  # data_mesh(8) with 8 devices
      >>> mesh.shape
      OrderedDict([('data', 1)])
    """
    available = jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        n = int(devices)
        if n < 1:
            raise ValueError(f"devices={n}, expected an int >= 1 (1 runs on one device)")
        if n > len(available):
            raise ValueError(
                f"devices={n} but JAX sees {len(available)} {jax.default_backend()} device(s): "
                f"{', '.join(map(str, available))}; use devices <= {len(available)}, or " + _VIRTUAL
            )
        chosen = list(available[:n])
    elif isinstance(devices, Sequence) and not isinstance(devices, (str, bytes)):
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices is an empty sequence; expected at least one jax.Device")
        bad = [d for d in chosen if not isinstance(d, jax.Device)]
        if bad:
            raise TypeError(
                f"devices holds {type(bad[0]).__name__}, expected jax.Device entries such as "
                "those of jax.devices()"
            )
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"devices lists a device twice: {', '.join(map(str, chosen))}")
    else:
        raise TypeError(
            f"devices is {type(devices).__name__}, expected None, an int or a sequence of "
            "jax.Device"
        )
    # Mesh rather than jax.make_mesh: the latter makes "explicit" axes, whose sharding is part
    # of every array's type; the automatic kind leaves jaxbp's code as it is
    return Mesh(np.array(chosen), (DATA,))


def data_size(mesh: Mesh) -> int:
    """Devices along ``"data"`` (the number of batch shards).

    Raises:
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.
      ValueError: it has no ``"data"`` axis.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh is {type(mesh).__name__}, expected a jax.sharding.Mesh; build one with "
            "jaxbp.data_mesh(n_devices)"
        )
    if DATA not in mesh.axis_names:
        raise ValueError(
            f"mesh has axes {tuple(mesh.axis_names)}, expected one named {DATA!r} to split the "
            "batch along; build one with jaxbp.data_mesh(n_devices)"
        )
    return int(mesh.shape[DATA])


def check_divisible(n: int, devices: int, what: str = "batch") -> None:
    """``n`` rows split evenly over ``devices``, or a ValueError that says what would.

    Example message: ``batch 10 does not split over 4 devices; use a batch that is a multiple
    of 4 such as 8 or 12, or devices=2``.
    """
    if n % devices == 0:
        return
    lower, upper = (n // devices) * devices, (n // devices + 1) * devices
    sizes = f"{lower} or {upper}" if lower else f"{upper}"
    fewer = max(d for d in range(1, devices) if n % d == 0)
    raise ValueError(
        f"{what} {n} does not split over {devices} devices; use a {what} that is a multiple "
        f"of {devices} such as {sizes}, or devices={fewer}"
    )


def _leading(a: Any, what: str) -> int:
    shape = np.shape(a)
    if len(shape) == 0:
        raise ValueError(f"{what} is a scalar, expected an array with a leading batch axis")
    return int(shape[0])


def shard_batch(mesh: Mesh, x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    """Split ``x: (batch, ...)`` and ``y: (batch, ...)`` along ``"data"`` on their leading axis.

    Each device holds ``batch / N`` consecutive rows. The arrays hold the whole batch (every
    process passes the same values); see :func:`shard_local_batch` for one slice per host.

    Raises:
      ValueError: ``batch`` is not a multiple of the devices (the message names sizes that
        are), or ``x`` and ``y`` differ in batch.
    """
    n = data_size(mesh)
    bx, by = _leading(x, "x"), _leading(y, "y")
    if bx != by:
        raise ValueError(f"x has {bx} rows and y has {by}; expected the same batch")
    check_divisible(bx, n)
    sharding = NamedSharding(mesh, P(DATA))
    return jax.device_put(x, sharding), jax.device_put(y, sharding)


def shard_local_batch(mesh: Mesh, x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    """Global arrays from each process's own rows (several hosts).

    Every process calls this with its slice ``x: (local_batch, ...)``, ``y``; the global
    batch is the slices in process order. ``local_batch`` must split over the process's own
    devices in the mesh. On one process it equals :func:`shard_batch`.
    """
    data_size(mesh)
    n_local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    bx, by = _leading(x, "x"), _leading(y, "y")
    if bx != by:
        raise ValueError(f"x has {bx} rows and y has {by}; expected the same local batch")
    check_divisible(bx, n_local, "local batch")
    sharding = NamedSharding(mesh, P(DATA))
    return (
        jax.make_array_from_process_local_data(sharding, np.asarray(x)),
        jax.make_array_from_process_local_data(sharding, np.asarray(y)),
    )


def local_rows(n: int, mesh: Mesh | None = None) -> slice:
    """The rows of an ``n``-row global batch that this process holds under ``mesh``.

    Every process loads ``x[local_rows(n)]`` (or reads those rows from its own files) and
    hands them to :func:`shard_local_batch`; the global batch is then ``x`` in its own order,
    whatever the number of processes, so training follows the same schedule. On one process
    it is ``slice(0, n)``.

    Args:
      n: rows of the global batch, a multiple of the mesh's devices.
      mesh: the 1-D ``"data"`` mesh (default :func:`data_mesh` over every device).

    Returns:
      ``slice(start, stop)`` with ``stop - start = n * local devices / devices``.

    Raises:
      ValueError: ``n`` does not split over the devices, or this process's devices are not
        consecutive along ``"data"`` (a mesh built from ``jax.devices()`` in its order is).
    """
    mesh = data_mesh() if mesh is None else mesh
    devices = data_size(mesh)
    check_divisible(n, devices, "batch")
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    if not mine:
        raise ValueError(
            f"mesh holds no device of process {jax.process_index()}; expected a mesh over "
            "every process's devices such as jaxbp.data_mesh()"
        )
    if mine != list(range(mine[0], mine[0] + len(mine))):
        raise ValueError(
            f"process {jax.process_index()} holds devices at positions {mine} of the mesh, "
            "expected consecutive positions; build the mesh from jax.devices() in its order, "
            "as jaxbp.data_mesh() does"
        )
    per = n // devices
    return slice(mine[0] * per, (mine[-1] + 1) * per)


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Every leaf of ``tree`` copied whole to each device of ``mesh`` (parameters, state).

    Every process passes the same values. A PRNG key is copied as its key data: JAX copies
    typed keys to the devices of other processes only that way.
    """
    data_size(mesh)
    sharding = NamedSharding(mesh, P())

    def put(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = jax.device_put(np.asarray(jax.random.key_data(leaf)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.device_put(leaf, sharding)

    return jax.tree.map(put, tree)
