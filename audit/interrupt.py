"""Ctrl-C that is never lost: every SIGINT is recorded, and a few renames finish together.

Python turns SIGINT into ``KeyboardInterrupt`` at the next bytecode it runs, which may be
inside a garbage-collection callback or a ``__del__`` (JAX registers one,
``_xla_gc_callback``). There the exception is printed as "Exception ignored in: ..." and
dropped, and the program runs on as if nothing had happened. :func:`handling` records every
SIGINT before raising it and keeps such a dropped one quiet, so code can ask
:func:`pending` at the points where it commits to something (replacing a report) and stop
there. :func:`held` defers SIGINT while a few file renames must finish together.

Example:
    >>> steps = []
    >>> with handling():
    ...     steps.append("computed")  # Ctrl-C here raises KeyboardInterrupt, as usual
    ...     with held():
    ...         raise_if_pending()  # a Ctrl-C dropped by a callback stops us here
    ...         steps.append("swapped")  # a Ctrl-C now waits until the renames are done
    >>> steps, pending()
    (['computed', 'swapped'], False)
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["handling", "held", "pending", "raise_if_pending"]


class _State:
    pending = False  # a SIGINT arrived since handling() began
    holds = 0  # held() depth: while > 0 a SIGINT is recorded, not raised
    handling = False


_state = _State()


# Where XLA compiles. jaxlib polls for signals while it compiles, so the handler runs
# there, inside the C++ call; a KeyboardInterrupt raised at that point cuts the compiler
# short, and the interpreter then crashes on exit (SIGSEGV) instead of exiting 130.
_COMPILING = os.path.join("jax", "_src", "compiler.py")
RETRY_S = 0.05  # how soon a SIGINT that arrived while XLA compiled is delivered again


def _compiling(frame: Any) -> bool:
    return frame is not None and frame.f_code.co_filename.endswith(_COMPILING)


def _deliver_again() -> None:
    if _state.handling:
        _thread.interrupt_main(signal.SIGINT)  # the handler runs again, in the main thread


def _on_sigint(signum: int, frame: Any) -> None:
    _state.pending = True
    if _state.holds:
        return
    if _compiling(frame):
        timer = threading.Timer(RETRY_S, _deliver_again)
        timer.daemon = True
        timer.start()
        return
    raise KeyboardInterrupt


def _quiet_interrupts(hook: Any) -> Any:
    def unraisable(info: Any) -> None:
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            _state.pending = True  # dropped by a callback: recorded, acted on at a check
            return
        hook(info)

    return unraisable


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handling(*, ignore_after: bool = False) -> Iterator[None]:
    """SIGINT raises ``KeyboardInterrupt`` as usual and is also recorded for :func:`pending`.

    A ``KeyboardInterrupt`` that a callback swallowed is recorded without the "Exception
    ignored" text. Outside the main thread (where no signal handler can be set) this does
    nothing.

    Args:
      ignore_after: on leaving, ignore SIGINT instead of restoring the previous handler: for
        a program whose outcome is decided and that only has to exit.
    """
    if not _main_thread():
        yield
        return
    previous, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    _state.pending, _state.handling = False, True
    signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _quiet_interrupts(hook)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_after else previous)
        sys.unraisablehook = hook
        _state.handling = False


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Inside, SIGINT is recorded (see :func:`pending`) but not raised.

    Used outside :func:`handling` (from the Python API), a SIGINT that arrived inside is
    delivered on leaving, as ``KeyboardInterrupt`` or to the handler that was there before.
    A process that ignores SIGINT keeps ignoring it.
    """
    if not _main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    own = not _state.handling and previous is not signal.SIG_IGN
    arrived = False
    if own:
        _state.pending = False
        signal.signal(signal.SIGINT, _on_sigint)
    _state.holds += 1
    try:
        yield
    finally:
        _state.holds -= 1
        if own:
            signal.signal(signal.SIGINT, previous)
            arrived, _state.pending = _state.pending, False
    if own and arrived:  # only when the block ended normally: an exception is news enough
        if callable(previous):
            previous(signal.SIGINT, None)
        else:  # SIG_DFL: what Python does by default
            raise KeyboardInterrupt


def pending() -> bool:
    """Whether a SIGINT arrived since :func:`handling` began, or inside the current :func:`held`."""
    return _state.pending


def raise_if_pending() -> None:
    """Raises ``KeyboardInterrupt`` if a SIGINT is :func:`pending`, even one a callback dropped."""
    if _state.pending:
        raise KeyboardInterrupt
