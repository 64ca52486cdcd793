"""How audit programs are compiled: two forms of each, quick to compile for small calls and
optimized for large ones, and compilation ahead of the call in background threads
(:func:`compile_ahead`).

XLA spends most of a small program's compile time optimizing machine code that then runs for
microseconds: the first ``check_gradients`` call on a 2-2-1 network spent 0.8 of its 1.4 s
compiling one program. A call whose work is at most :data:`QUICK_WORK` (points x values x
examples) runs the program compiled with :data:`QUICK_OPTIONS`, about half the compile time
and several times the run time; a larger call gets the fully optimized program, compiled once
and then reused. The two forms compute the same operations in the same precision; the
optimized one may fuse a multiply and an add into one rounding, so values can differ in their
last bit, far inside any tolerance: the verdicts, statuses and hints are the same (the tests
audit the same points with both and compare). Random draws must not differ even there, so the
programs that draw points pick their form by their size alone, or always the optimized one.

Example:
    >>> import jax.numpy as jnp
    >>> square = tiered(lambda a: a * a)
    >>> float(square.pick(work=4)(jnp.float32(3.0)))
    9.0
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from audit.memo import forget_all, shape_key
from audit.program_cache import Program, forget_loaded

__all__ = [
    "QUICK_OPTIONS",
    "QUICK_WORK",
    "Tiered",
    "compile_ahead",
    "forget_compiled_ahead",
    "full_precision",
    "tiered",
    "traced_once",
    "work",
]

# XLA's backend (LLVM) optimization level 0: measured on a 2-core CPU, the 2-2-1 audit
# program compiles in 0.4 s instead of 0.8 s and runs about 4x slower.
QUICK_OPTIONS = {"xla_backend_optimization_level": 0}
# points x values x examples at or under which a call compiles quick: about 900 points of
# a 2-2-1 network on 4 examples, where the slower code costs a few milliseconds and the
# quicker compilation saves hundreds.
QUICK_WORK = 1 << 15


class Tiered:
    """A function jitted twice, with the same static arguments: :attr:`full` and :attr:`quick`.

    Calling it calls :attr:`full`; :meth:`pick` chooses by the size of the call, up to
    ``quick_work`` (default :data:`QUICK_WORK`) for :attr:`quick`.
    """

    def __init__(
        self, fn: Callable, static_argnames: Sequence[str] = (), quick_work: int | None = None
    ):
        self.quick_work = quick_work
        names = tuple(static_argnames)
        # jax.jit both, kept on disk between runs while the program cache is on (the CLI)
        self.full = Program(fn, names)
        self.quick = Program(fn, names, compiler_options=QUICK_OPTIONS)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.full(*args, **kwargs)

    def pick(self, work: int) -> Callable:
        """:attr:`quick` when ``work`` (points x values x examples) is at most the bound,
        else :attr:`full`."""
        bound = QUICK_WORK if self.quick_work is None else self.quick_work
        return self.quick if int(work) <= bound else self.full


def tiered(
    fn: Callable | None = None,
    *,
    static_argnames: Sequence[str] = (),
    quick_work: int | None = None,
):
    """Decorator: ``fn`` as a :class:`Tiered` pair of jitted functions. ``quick_work``: a
    bound of its own for a program whose quick form runs far slower than most (random
    draws: 13x)."""
    if fn is None:
        return functools.partial(tiered, static_argnames=static_argnames, quick_work=quick_work)
    return Tiered(fn, static_argnames, quick_work)


def work(stacked_params: Any, batch: int, points: int | None = None) -> int:
    """Points x values x examples of a call: ``stacked_params`` has the points on every
    leaf's leading axis; ``points`` (default: all of them) is how many one call takes."""
    leaves = jax.tree.leaves(stacked_params)
    if not leaves:
        return 0
    n = int(np.shape(leaves[0])[0]) if np.ndim(leaves[0]) else 1
    values = sum(int(np.size(a)) for a in leaves) // max(n, 1)
    return (n if points is None else int(points)) * values * max(int(batch), 1)


# two workers: a small audit compiles its points' program and its loss's side by side while the
# main thread traces (XLA lets go of Python's lock); a large program is compiled by XLA on
# every core already
_COMPILER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="audit")
_AHEAD: dict = {}  # signatures compiled ahead already, oldest first
_AHEAD_MAX = 1024


def compile_ahead(jitted, *args, **kwargs) -> concurrent.futures.Future:
    """Compile the jitted ``jitted`` for ``args`` in a background thread, with this thread's
    64-bit and matmul-precision settings; JAX's own cache then serves the call. XLA compiles
    without holding Python's lock, so on a machine with two cores or more the compilation
    overlaps with the caller's work. Wait on the future before the call (a failure is left
    for the call itself to raise, with its context). A signature compiled ahead before is
    not lowered again: that alone costs milliseconds a call, as much as a small audit."""
    x64 = jax.config.jax_enable_x64
    precision = jax.config.jax_default_matmul_precision
    sig = shape_key(jitted, precision, trees=(args, kwargs))  # x64 is part of every key
    if sig is not None and sig in _AHEAD:
        return _AHEAD[sig]

    def compile_now() -> None:
        try:
            with jax.enable_x64(x64), jax.default_matmul_precision(precision):
                if isinstance(jitted, Program):  # loaded rather than traced, where it can be
                    jitted.prepare(*args, **kwargs)
                else:
                    jitted.lower(*args, **kwargs).compile()
        except Exception:  # the real call reports it
            pass

    future = _COMPILER.submit(compile_now)
    if sig is not None:
        _AHEAD[sig] = future
        while len(_AHEAD) > _AHEAD_MAX:
            _AHEAD.pop(next(iter(_AHEAD)))
    return future


def forget_compiled_ahead() -> None:
    """Forget what was compiled ahead or loaded, and what was found from shapes
    (:mod:`audit.memo`), after JAX's own caches were cleared."""
    _AHEAD.clear()
    forget_loaded()
    forget_all()


def traced_once(fn: Callable) -> Callable:
    """``jax.jit(fn)``, one object per ``fn``: every use of it at the same argument shapes
    and settings (``jax.eval_shape``, ``jax.grad``, ``jax.vmap``, inside any program) reuses
    one trace of ``fn``'s Python, which transformations then work on. Tracing a user's loss
    or gradient function again for each program cost a small audit's first call about as
    much as compiling. An unhashable ``fn`` gets a wrapper of its own."""
    try:
        return _traced_once(fn)
    except TypeError:
        return jax.jit(fn)


@functools.lru_cache(maxsize=256)
def _traced_once(fn: Callable) -> Callable:
    return jax.jit(fn)


def full_precision(fn):
    """Run ``fn`` with float32 matrix products at full precision.

    GPUs and TPUs multiply float32 matrices in reduced precision by default (TF32, bf16
    passes); their 1e-3 relative errors would read as wrong gradients.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapper
