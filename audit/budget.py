"""How much memory an audit needs, checked against what the machine has before any work.

Every point's inputs stay on the host for the whole audit (the points are drawn once and
evaluated again where something fails); the device evaluates them in compiled calls of as
many points as fit in a budget (:func:`points_per_call`, :func:`default_budget`) and keeps
only each element's worst case over the points (``audit/gradients.py``,
``audit/compare.py``). What grows with the points is therefore about
:data:`VALUE_ITEMS` numbers of the audited dtype per value and point, for each of the ``P``
parameters and each of the ``batch x F`` chain factors (or layer deltas): the point's
inputs, the handwritten and reference values of the call it is in, and the comparison's
working arrays. Training keeps both loss histories, as arrays and as the report's numbers:
:data:`STEP_BYTES` per step.

Measured with ``--no-report --steps 0 --no-fd --no-cache`` on a 2-core CPU (peak RSS at 4000
points minus 1000): 2-64-64-1 closed form (4933 values a point), 24 bytes per value and
point in float32 and 49 in float64, where this module counts 32 and 64; the 2-2-1 seed audit
grows by less than the run-to-run noise of the peak. To reproduce: ``/usr/bin/time -f %M
jaxbp-audit --grad closed_form --sizes 2,64,64,1 --points 4000 --steps 0 --no-fd --no-report
--no-cache`` and the same at 1000 points.

Example:
    >>> need = audit_memory((2, 2, 1), points=10**9, n_data=4, steps=5000)
    >>> need.total > 10**12
    True
    >>> largest_points((2, 2, 1), available=8 * 2**30, n_data=4, steps=5000)
    3768425
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = [
    "CROWDED",
    "DEFAULT_SHARE",
    "FIXED_BYTES",
    "RECHECK_S",
    "SMALL_CALL",
    "STEP_BYTES",
    "VALUE_ITEMS",
    "MemoryEstimate",
    "audit_memory",
    "available_memory",
    "clear_if_crowded",
    "default_budget",
    "format_bytes",
    "largest_points",
    "memory_maps",
    "memory_problem",
    "parse_bytes",
    "points_per_call",
    "recent_budget",
    "traced_bytes",
]

VALUE_ITEMS = 8  # numbers of the audited dtype per value and point (see the module docstring)
STEP_BYTES = 160  # per training step: two loss histories, as arrays, floats and report text
FIXED_BYTES = 256 * 2**20  # compiled programs and their scratch space, whatever the size
SEED_FACTORS = 15  # chain factors the note writes for the 2-2-1 network
DEFAULT_SHARE = 0.5  # of the free memory (host or accelerator) one audit call may take
SMALL_BATCH = (3, 64)  # data with 3 to 64 rows is also the random draws' batch


def _batch(n_data: int) -> int:
    """Batch of the random draws (as ``audit.points.random_batch``)."""
    return n_data if SMALL_BATCH[0] <= n_data <= SMALL_BATCH[1] else 3


class MemoryEstimate(NamedTuple):
    """Bytes an audit needs, by what needs them.

    Attributes:
      total: all of it, ``fixed + points * per_point + trajectory + training``.
      per_point: one random point: its ``values`` of ``value_bytes`` each.
      values: values kept per random point: ``P`` gradients plus ``batch * F`` factors.
      params: ``P``, the number of parameters.
      factors: ``batch * F``, factor (or delta) values per random point.
      value_bytes: bytes per value and point.
      trajectory: the training checkpoints, each with the whole data set as its batch.
      training: the loss histories of both training runs.
      fixed: compiled programs and scratch space.
    """

    total: int
    per_point: int
    values: int
    params: int
    factors: int
    value_bytes: int
    trajectory: int
    training: int
    fixed: int


def audit_memory(
    sizes: Sequence[int],
    *,
    points: int,
    n_data: int = 4,
    steps: int = 5000,
    dtype: Any = "float32",
    checkpoints: int = 5,
) -> MemoryEstimate:
    """Estimates the peak memory of :func:`audit.audit_network` with these arguments.

    Args:
      sizes: layer widths ``(n0, ..., nL)``.
      points: random points, as ``audit_network(points=...)``.
      n_data: rows of the training data (4 for the truth tables, 200 for moons).
      steps: training steps (0: none); dtype: the audited dtype.
      checkpoints: trajectory checkpoints after initialisation.

    Returns:
      A :class:`MemoryEstimate`; ``total`` is in bytes.
    """
    import numpy as np  # light, and only when asked

    sizes = tuple(int(s) for s in sizes)
    itemsize = np.dtype(dtype).itemsize
    value_bytes = VALUE_ITEMS * itemsize
    n_params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    # the note's 15 factors for a 2-2-1 network, else every layer's delta: the larger count
    per_example = max(SEED_FACTORS if sizes == (2, 2, 1) else 0, sum(sizes[1:]))
    factors = _batch(n_data) * per_example
    values = n_params + factors
    per_point = values * value_bytes
    n_traj = checkpoints + 1 if steps else 1
    trajectory = n_traj * (n_params + n_data * per_example) * value_bytes
    training = steps * STEP_BYTES
    total = FIXED_BYTES + (points + 1) * per_point + trajectory + training
    return MemoryEstimate(
        total, per_point, values, n_params, factors, value_bytes, trajectory, training,
        FIXED_BYTES,
    )  # fmt: skip


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_room() -> int | None:
    """Memory left under this container's limit (cgroup v2, then v1), if it has one."""
    v1 = "/sys/fs/cgroup/memory/memory."
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (v1 + "limit_in_bytes", v1 + "usage_in_bytes"),
    ):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 2**60:  # v1 writes 2**63 for none
            return max(cap - used, 0)
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate: ``MemAvailable`` of ``/proc/meminfo`` (else
    the free pages ``os.sysconf`` reports), lowered to the container's limit if there is
    one. None where neither can be read."""
    found = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            found = None
    room = _cgroup_room()
    if room is not None:
        found = room if found is None else min(found, room)
    return found


def format_bytes(n: float) -> str:
    """``1.3 TB``, ``512 MB``: powers of 1000, two or three significant digits."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 999.5 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def largest_points(
    sizes: Sequence[int],
    *,
    available: int,
    n_data: int = 4,
    steps: int = 5000,
    dtype: Any = "float32",
    checkpoints: int = 5,
) -> int:
    """The most random points whose audit fits in ``available`` bytes (0 if none does)."""
    base = audit_memory(sizes, points=0, n_data=n_data, steps=steps, dtype=dtype,
                        checkpoints=checkpoints)  # fmt: skip
    return max(int((available - base.total) // base.per_point), 0)


def memory_problem(
    sizes: Sequence[int],
    *,
    points: int,
    n_data: int = 4,
    steps: int = 5000,
    dtype: Any = "float32",
    checkpoints: int = 5,
    available: int | None = None,
    option: str = "{name}={value}",
) -> str | None:
    """Why an audit with these arguments would not fit in memory, or None when it fits.

    Args:
      sizes, points, n_data, steps, dtype, checkpoints: as :func:`audit_memory`.
      available: bytes free (default :func:`available_memory`; None there: always fits).
      option: how the message spells an argument, ``"{name}={value}"`` for Python and
        ``"--{name} {value}"`` for the command line.

    Returns:
      One sentence saying what was asked, what it needs, what is free and the largest
      ``points`` (or ``steps``) that fits; None when the estimate fits.
    """
    if available is None:
        available = available_memory()
        if available is None:
            return None
    kw = dict(n_data=n_data, steps=steps, dtype=dtype, checkpoints=checkpoints)
    need = audit_memory(sizes, points=points, **kw)
    if need.total <= available:
        return None
    have = f"but {format_bytes(available)} is available"
    without_steps = audit_memory(sizes, points=points, **{**kw, "steps": 0})
    steps_fit = max(int((available - without_steps.total) // STEP_BYTES), 0)
    if steps and 2 * need.training >= need.total - need.fixed and steps_fit >= 1:
        return (
            f"{option.format(name='steps', value=steps)} needs about "
            f"{format_bytes(need.total)} of memory, {have}: both loss histories are kept, "
            f"about {STEP_BYTES} bytes a step; the most that fits is "
            f"{option.format(name='steps', value=steps_fit)}"
        )
    most = largest_points(sizes, available=available, **kw)
    if most >= 1:
        return (
            f"{option.format(name='points', value=points)} needs about "
            f"{format_bytes(need.total)} of memory, {have}: the audit keeps every point, "
            f"{need.values} values each ({need.params} gradients and {need.factors} chain "
            f"factors or deltas) at about {need.value_bytes} bytes a value; the most that "
            f"fits is {option.format(name='points', value=most)}"
        )
    return (
        f"an audit of sizes {','.join(map(str, sizes))} on {n_data} data rows needs about "
        f"{format_bytes(need.total)} of memory even at "
        f"{option.format(name='points', value=1)}, {have}; use a smaller network or less data"
    )


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_bytes(text: str) -> int:
    """``"4GiB"``, ``"500 MB"``, ``"2e9"`` as a number of bytes (> 0).

    Raises:
      ValueError: not a positive number with an optional unit (B, kB, MB, GB, TB, KiB, MiB,
        GiB, TiB; case ignored).
    """
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m and m.group(2).lower()
    if not m or unit not in _UNITS or float(m.group(1)) * _UNITS[unit] < 1:
        raise ValueError(
            f"memory size {text!r} is not understood; expected a positive number of bytes with "
            "an optional unit, such as 4GiB, 500MB or 2e9"
        )
    return int(float(m.group(1)) * _UNITS[unit])


def default_budget() -> int:
    """Bytes one audit call may use at once: :data:`DEFAULT_SHARE` of the free memory of
    JAX's default device (its ``memory_stats`` on an accelerator, :func:`available_memory`
    on the CPU); 4 GiB where neither says."""
    import jax

    device = jax.devices()[0]
    free = None
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    else:
        free = available_memory()
    return int(DEFAULT_SHARE * free) if free else 4 * 2**30


def traced_bytes(fn, *args) -> int:
    """Bytes of every value ``fn(*args)`` computes, as JAX traces it (``args`` may be
    ``jax.ShapeDtypeStruct``): what one evaluation would hold if nothing were freed or fused,
    an upper bound on its working memory. Nested programs count once; of a ``cond``'s
    branches, the largest."""
    import jax
    import numpy as np

    def jaxpr_bytes(jaxpr) -> int:
        total = 0
        for eqn in jaxpr.eqns:
            for v in eqn.outvars:
                aval = v.aval
                if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                    size = int(np.prod(aval.shape, dtype=np.int64))
                    total += size * np.dtype(aval.dtype).itemsize
            subs = []
            for p in eqn.params.values():
                for q in p if isinstance(p, (tuple, list)) else (p,):
                    inner = getattr(q, "jaxpr", q)
                    if hasattr(inner, "eqns"):
                        subs.append(jaxpr_bytes(inner))
            total += max(subs, default=0)
        return total

    return jaxpr_bytes(jax.make_jaxpr(fn)(*args).jaxpr)


SMALL_CALL = 64 * 2**20  # bytes of a call small enough to make without asking what is free


def points_per_call(per_point: int, budget: int | None, n: int) -> int:
    """How many of ``n`` points one compiled call evaluates within ``budget`` bytes, at
    ``per_point`` bytes each: ``n`` when all fit, else the largest power of two that fits
    (so the calls share one program), at least 1. ``budget`` None: :func:`default_budget`,
    read only for calls over :data:`SMALL_CALL` (the read costs about half a millisecond)."""
    if budget is None:
        if per_point * n <= SMALL_CALL:
            return n
        budget = recent_budget(per_point * n)
    fit = max(int(budget // max(per_point, 1)), 1)
    return n if fit >= n else 1 << (fit.bit_length() - 1)


CROWDED = 0.75  # of the kernel's memory-mapping limit, past which an audit first clears caches
RECHECK_S = 1.0  # a count under a quarter of the limit is trusted this long (reading it: ~1 ms)
_ROOMY_AT = [-float("inf")]  # when the count was last under a quarter of the limit

_BUDGET_READ = [-float("inf"), 0]  # when default_budget was last read, and what it said


def recent_budget(need: int) -> int:
    """:func:`default_budget`, or what it said less than :data:`RECHECK_S` seconds ago if
    that was at least four times ``need`` bytes: audits called in a loop skip the read
    (about 0.2 ms, 5% of a 2-2-1 ``check_gradients`` call at 4,096 points), and a call that
    needs a large share of the memory always reads it afresh."""
    import time

    now = time.monotonic()
    at, found = _BUDGET_READ
    if now - at < RECHECK_S and 4 * need <= found:
        return found
    found = default_budget()
    _BUDGET_READ[:] = [now, found]
    return found


def _count_lines(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return None


def memory_maps() -> tuple[int, int] | None:
    """``(mappings, limit)``: the memory mappings this process holds and the most the kernel
    allows one process (``vm.max_map_count``); None where either cannot be read (not Linux).

    Every program XLA compiles for the CPU maps its code: a process that compiles tens of
    thousands of programs (thousands of audits of new functions) reaches the limit, and the
    next compilation aborts the process.
    """
    count = _count_lines("/proc/self/maps")
    limit = _read_int("/proc/sys/vm/max_map_count")
    return None if count is None or limit is None else (count, limit)


def clear_if_crowded(share: float = CROWDED) -> str | None:
    """Clear JAX's in-memory compilation caches when this process holds more than ``share``
    of the memory mappings it may (:func:`memory_maps`), so the next compilation has room.

    A count under a quarter of the limit is trusted for :data:`RECHECK_S` seconds: compiling
    in that time adds far fewer mappings than the margin, and audits called in a loop skip
    reading the file.

    Returns:
      A note saying so, or None when nothing was done. Cleared programs compile again when
      next called (the persistent cache, where on, still serves them).
    """
    import time

    now = time.monotonic()
    if now - _ROOMY_AT[0] < RECHECK_S:
        return None
    found = memory_maps()
    if found is None or found[0] <= share * found[1]:
        if found is not None and found[0] <= found[1] / 4:
            _ROOMY_AT[0] = now
        return None
    import jax

    from audit.tiers import forget_compiled_ahead

    jax.clear_caches()
    forget_compiled_ahead()
    return (
        f"this process held {found[0]} memory mappings of the {found[1]} the kernel allows "
        "(vm.max_map_count), most of them compiled programs; JAX's in-memory compilation "
        "caches were cleared before the audit so the next compilation has room"
    )
