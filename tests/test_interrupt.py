"""Tests for audit.interrupt: a Ctrl-C is never lost, and renames held together finish."""

import gc
import os
import signal
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from audit import interrupt


def swallowed_sigint():
    """SIGINT whose KeyboardInterrupt is raised inside a gc callback, which drops it (as
    JAX's ``_xla_gc_callback`` did)."""

    def callback(phase, info):
        # a collection may start in another thread (pytest-xdist's worker has some); the
        # signal must come from this test's own collection, in the main thread
        if threading.current_thread() is not threading.main_thread():
            return
        gc.callbacks.remove(callback)
        signal.raise_signal(signal.SIGINT)
        sum(range(100))  # bytecodes for the handler to run at, still inside the callback

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        if callback in gc.callbacks:
            gc.callbacks.remove(callback)


def test_handling_raises_records_and_restores():
    before = signal.getsignal(signal.SIGINT), sys.unraisablehook
    with interrupt.handling():
        assert not interrupt.pending()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
            time.sleep(1)
        assert interrupt.pending()
    assert (signal.getsignal(signal.SIGINT), sys.unraisablehook) == before


def test_a_sigint_a_callback_swallowed_is_pending_and_quiet(capsys):
    with interrupt.handling():
        swallowed_sigint()  # no exception comes out here
        assert interrupt.pending()
        with pytest.raises(KeyboardInterrupt):
            interrupt.raise_if_pending()
    assert "Exception ignored" not in capsys.readouterr().err


def test_other_unraisable_exceptions_still_reach_the_previous_hook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with interrupt.handling():
        sys.unraisablehook(SimpleNamespace(exc_type=RuntimeError, exc_value=RuntimeError("x")))
        sys.unraisablehook(SimpleNamespace(exc_type=KeyboardInterrupt, exc_value=None))
        assert interrupt.pending()
    assert [u.exc_type for u in seen] == [RuntimeError]


def test_held_defers_and_then_delivers_from_the_python_api():
    with pytest.raises(KeyboardInterrupt):
        with interrupt.held():
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.05)  # would have raised here, unheld
            assert interrupt.pending()
            done = True
    assert done
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not interrupt.pending()


def test_held_under_handling_leaves_the_sigint_pending():
    with interrupt.handling():
        with interrupt.held():
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.05)
        assert interrupt.pending()


def test_held_calls_a_previous_custom_handler_and_respects_ignore():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with interrupt.held():
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.05)
        assert calls == [signal.SIGINT]
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with interrupt.held():
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_sigint_while_xla_compiles_is_delivered_after_it():
    # raising inside jaxlib's compile call cuts XLA short and crashes the interpreter at exit
    compiling = SimpleNamespace(
        f_code=SimpleNamespace(co_filename=os.path.join("site", "jax", "_src", "compiler.py"))
    )
    with interrupt.handling():
        interrupt._on_sigint(signal.SIGINT, compiling)  # returns: no raise inside the compiler
        assert interrupt.pending()
        with pytest.raises(KeyboardInterrupt):
            time.sleep(20 * interrupt.RETRY_S)  # delivered again, now outside it


def test_outside_the_main_thread_nothing_is_installed():
    import threading

    seen = []

    def work():
        with interrupt.handling(), interrupt.held():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]


def test_ignore_after_leaves_sigint_ignored():
    previous = signal.getsignal(signal.SIGINT)
    try:
        with interrupt.handling(ignore_after=True):
            pass
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
