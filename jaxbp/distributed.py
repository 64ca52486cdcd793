"""Joining a multi-process run: ``jax.distributed.initialize`` with bounded waits and clear errors.

One process per host (or per GPU) runs the same program. Each calls
:func:`initialize_distributed` before anything else touches JAX; ``jax.devices()`` then
lists every process's devices, :func:`jaxbp.data_mesh` spans them all, and
:func:`jaxbp.fit` (``mesh=``) and the audit (``audit_network(mesh=)``) split their work
over all of them. On CPU the processes exchange data with gloo.

Where the run's coordinates come from:

- arguments: ``coordinator_address="10.0.0.1:1234"`` (process 0's host and a free port),
  ``num_processes`` and ``process_id`` (0, 1, ... ``num_processes - 1``);
- or JAX's own detection when they are None: ``JAX_COORDINATOR_ADDRESS`` in the
  environment for the address, and SLURM (``srun``), Open MPI (``mpirun``), Kubernetes and
  Cloud TPU set all three themselves.

JAX ends every process of a run when one of them dies or stops answering (after
``timeout`` seconds without its heartbeat); it aborts the process with a log line, which
``jaxbp-audit --distributed`` turns into exit status 2 and one line on stderr.

Example (two processes on one machine, a shell each)::

    jaxbp.initialize_distributed("127.0.0.1:1234", num_processes=2, process_id=0)
    jaxbp.initialize_distributed("127.0.0.1:1234", num_processes=2, process_id=1)
"""

from __future__ import annotations

import math
import os
import socket
import time

import jax

__all__ = ["DISTRIBUTED_TIMEOUT", "initialize_distributed", "parse_coordinator"]

DISTRIBUTED_TIMEOUT = 60.0  # seconds to wait for the other processes, at the start and later


def parse_coordinator(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` split into its host and port.

    Raises:
      ValueError: not ``HOST:PORT`` with a port from 1 to 65535 (the message shows what came).

    Example:
      >>> parse_coordinator("10.0.0.1:1234")
      ('10.0.0.1', 1234)
    """
    if not isinstance(address, str):
        raise TypeError(f"coordinator address is {type(address).__name__}, expected 'HOST:PORT'")
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")  # an IPv6 host in brackets, [::1]:1234
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"coordinator address {address!r} is not HOST:PORT; expected process 0's host "
            "and a free port, e.g. 10.0.0.1:1234 or 127.0.0.1:1234 on one machine"
        )
    return host, int(port)


def _wait_for(address: str, timeout: float) -> None:
    """Return once something listens at ``address``; a TimeoutError naming it after
    ``timeout`` seconds."""
    host, port = parse_coordinator(address)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(min(timeout, 2.0), 0.1)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"could not reach the coordinator at {address} within {timeout:g} s "
                    f"({e.strerror or e}); start process 0 there, or check the address and "
                    "that the port is open"
                ) from None
        time.sleep(0.2)


def _check_coordinates(address, num_processes, process_id) -> None:
    if address is not None:
        parse_coordinator(address)
    for name, value, low in (("num_processes", num_processes, 1), ("process_id", process_id, 0)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} is {type(value).__name__}, expected an int >= {low}")
        if value < low:
            raise ValueError(f"{name}={value}, expected an int >= {low}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(
            f"process_id={process_id} with num_processes={num_processes}; expected a process "
            f"id from 0 to {num_processes - 1}"
        )


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = DISTRIBUTED_TIMEOUT,
) -> None:
    """Join a multi-process run (``jax.distributed.initialize``) with waits bounded by ``timeout``.

    Call it first, before any other JAX call. A process other than 0 first waits for the
    coordinator to listen, and says so by name if it never does; every wait of the run
    (all processes joining, a peer's heartbeat, the shutdown) is bounded by ``timeout``.
    Calling it again in a process that joined the same run does nothing.

    Args:
      coordinator_address: ``"HOST:PORT"`` of process 0; None: ``JAX_COORDINATOR_ADDRESS``
        or the cluster's own variables (SLURM, Open MPI, ...).
      num_processes: processes in the run; None: from the cluster.
      process_id: this process's number, ``0 <= process_id < num_processes``; None: from
        the cluster.
      timeout: seconds (> 0) to wait for the coordinator and the other processes.

    Raises:
      ValueError, TypeError: a malformed address, count or id (the message shows it).
      TimeoutError: the coordinator did not answer within ``timeout`` (named in the message).
      ValueError: this process joined a run of other coordinates already.
      RuntimeError: JAX started computing before the call (raised by JAX).
    """
    _check_coordinates(coordinator_address, num_processes, process_id)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not (math.isfinite(timeout) and timeout > 0)
    ):
        raise ValueError(f"timeout={timeout!r}, expected a finite number of seconds > 0")
    if jax.distributed.is_initialized():
        joined = (jax.process_count(), jax.process_index())
        if num_processes in (None, joined[0]) and process_id in (None, joined[1]):
            return
        raise ValueError(
            f"this process already joined a run as process {joined[1]} of {joined[0]}; "
            f"initialize_distributed was called again with process_id={process_id}, "
            f"num_processes={num_processes}"
        )
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address is not None and process_id not in (None, 0):
        _wait_for(address, timeout)
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # older JAX: off
    seconds = max(1, math.ceil(timeout))
    try:
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            initialization_timeout=seconds,
            heartbeat_timeout_seconds=seconds,
            shutdown_timeout_seconds=seconds,
        )
    except ValueError as e:
        if None not in (coordinator_address, num_processes, process_id):
            raise
        given = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                     process_id=process_id)  # fmt: skip
        missing = ", ".join(name for name, value in given.items() if value is None)
        raise ValueError(
            f"JAX could not complete the run's coordinates ({e}); {missing} came as None and "
            "no cluster it reads (SLURM, Open MPI, Kubernetes, Cloud TPU) supplied them: pass "
            "them (jaxbp-audit: --coordinator, --num-processes, --process-id)"
        ) from None
