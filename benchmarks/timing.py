"""Timing helpers: medians after a warm-up, compile time apart, compile counts, the machine.

Every figure the benchmarks print comes from :func:`measure`: the first call (which compiles)
is timed on its own, then ``warmup`` more calls are discarded and ``repeats`` calls are timed,
each ended by ``jax.block_until_ready``. Several functions measured together are run round
robin, so a burst of load from another process falls on all of them alike.
"""

from __future__ import annotations

import collections
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.monitoring
import numpy as np

__all__ = ["CompileLog", "Timing", "compile_log", "machine", "measure", "measure_round_robin"]

# JAX reports every compilation through jax.monitoring under these event names.
_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_COMPILE = "/jax/core/compile/backend_compile_duration"


class Timing(NamedTuple):
    """One function's timings, in seconds.

    Attributes:
      first_s: the first call, compilation included.
      median_s: median of the timed calls after the warm-up.
      min_s, max_s: their extremes (the spread says how noisy the machine was).
      repeats: number of timed calls.
      steady_compiles: compilations during the warm-up and timed calls (0: nothing recompiles).
    """

    first_s: float
    median_s: float
    min_s: float
    max_s: float
    repeats: int
    steady_compiles: int

    @property
    def compile_s(self) -> float:
        """First call minus a steady-state call: the time compiling took."""
        return max(self.first_s - self.median_s, 0.0)

    def as_dict(self) -> dict[str, float]:
        return dict(self._asdict(), compile_s=self.compile_s)


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def measure_round_robin(
    fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Time several zero-argument functions, interleaved.

    Args:
      fns: name -> function returning JAX arrays (or pytrees of them).
      repeats: timed calls of each, >= 1.
      warmup: untimed calls of each after the first.

    Returns:
      name -> :class:`Timing`.
    """
    first = {name: _timed(fn) for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    compiles = dict.fromkeys(fns, 0)
    with compile_log() as log:
        for i in range(warmup + repeats):
            for name, fn in fns.items():
                before = log().count
                t = _timed(fn)
                compiles[name] += log().count - before
                if i >= warmup:
                    times[name].append(t)
    return {
        name: Timing(first[name], statistics.median(t), min(t), max(t), len(t), compiles[name])
        for name, t in times.items()
    }


def measure(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> Timing:
    """Time one zero-argument function (see :func:`measure_round_robin`)."""
    return measure_round_robin({"fn": fn}, repeats=repeats, warmup=warmup)["fn"]


class CompileLog(NamedTuple):
    """What JAX compiled inside a :func:`compile_log` block."""

    count: int  # backend compilations
    trace_s: float  # tracing to jaxpr
    lower_s: float  # jaxpr to MLIR
    compile_s: float  # XLA compilation

    @property
    def total_s(self) -> float:
        return self.trace_s + self.lower_s + self.compile_s


@contextlib.contextmanager
def compile_log() -> Iterator[Callable[[], CompileLog]]:
    """Count compilations in a block: ``with compile_log() as log: ...; log().count``."""
    events: dict[str, list[float]] = collections.defaultdict(list)

    def listener(name: str, secs: float, **_: Any) -> None:
        events[name].append(secs)

    def snapshot() -> CompileLog:
        return CompileLog(
            len(events[_COMPILE]), sum(events[_TRACE]), sum(events[_LOWER]), sum(events[_COMPILE])
        )

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield snapshot
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine and software the figures were taken on, and its load right now."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return dict(
        cpu=_cpu_model(),
        cores=os.cpu_count(),
        usable_cores=usable,
        python=platform.python_version(),
        numpy=np.__version__,
        jax=jax.__version__,
        backend=jax.default_backend(),
        devices=[str(d) for d in jax.devices()],
        load_average=[round(v, 2) for v in os.getloadavg()],
    )
