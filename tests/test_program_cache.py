"""audit.program_cache: a compiled program kept on disk is loaded, not traced, and only where
everything it was built from is named exactly."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from audit import program_cache
from audit.program_cache import Program, program_key

ARGS = ("activation", "loss")


@pytest.fixture
def cache(tmp_path):
    """The cache on in a folder of the test's own, off again afterwards."""
    assert program_cache.enable(tmp_path) is None
    yield tmp_path
    program_cache.disable()


def _point(dtype=jnp.float32):
    params = jaxbp.init((2, 3, 1), key=jax.random.key(0))
    x, y = jaxbp.truth_table("xor")
    return jax.tree.map(lambda a: a.astype(dtype), (params, x, y))


def _untraceable() -> Program:
    """A new program for ``jaxbp.batch_loss`` (a later run, in effect) that fails if traced."""
    program = Program(jaxbp.batch_loss, static_argnames=ARGS)

    class NoTrace:
        def lower(self, *args, **kwargs):
            raise AssertionError("traced, not loaded")

        __call__ = lower

    program.jit = NoTrace()
    return program


def test_a_kept_program_is_loaded_and_gives_what_jit_gives(cache):
    point = _point()
    kw = dict(activation="sigmoid", loss="mse")
    expect = jax.jit(jaxbp.batch_loss, static_argnames=ARGS)(*point, **kw)
    assert Program(jaxbp.batch_loss, static_argnames=ARGS)(*point, **kw) == expect
    kept = list(cache.iterdir())
    assert len(kept) == 1 and kept[0].suffix == ".bin"
    program_cache.disable()  # forgets what this process loaded, as a new process starts
    program_cache.enable(cache)
    assert _untraceable()(*point, **kw) == expect  # from the file alone
    assert list(cache.iterdir()) == kept


def test_the_key_changes_with_whatever_changes_the_program(cache):
    point = _point()

    def key(point=point, activation="sigmoid", options=None):
        static = dict(activation=activation, loss="mse")
        return program_key(jaxbp.batch_loss, options, static, dict(zip("pxy", point, strict=True)))

    base = key()
    assert base == key() and len(base) == 64
    assert key(activation="tanh") != base
    assert key(options={"xla_backend_optimization_level": 0}) != base
    wide = jax.tree.map(lambda a: np.asarray(a), point)  # NumPy arrays: the same shapes
    assert key(wide) == base
    assert key(jax.tree.map(lambda a: a[..., :1] if a.ndim else a, point)) != base  # shapes
    assert key(_point(jnp.float64)) != base  # dtypes
    with jax.enable_x64(not jax.config.jax_enable_x64):
        assert key() != base  # the 64-bit setting alone
    with jax.default_matmul_precision("highest"):
        assert key() != base


@pytest.mark.parametrize(
    "unnamed",
    [
        lambda a: a,  # a function of the caller's own
        np.sin,  # a function from elsewhere
        functools.partial(lambda a, b: a, b=1),
        object(),
    ],
)
def test_a_static_argument_that_cannot_be_named_keeps_nothing(cache, unnamed):
    point = _point()
    static = dict(activation=unnamed, loss="mse")
    assert program_key(jaxbp.batch_loss, None, static, dict(zip("pxy", point, strict=True))) is None


def test_a_program_of_the_callers_own_is_traced_as_by_jit(cache):
    traced = []

    def double(a, *, k):
        traced.append(1)
        return k * a

    program = Program(double, static_argnames=("k",))
    assert float(program(jnp.float32(3), k=2)) == 6.0
    assert float(program(jnp.float32(4), k=2)) == 8.0
    assert traced == [1]  # jax.jit's own cache, and no file
    assert list(cache.iterdir()) == []


def test_our_functions_and_their_closures_are_named_by_what_they_hold(cache):
    point = dict(zip("pxy", _point(), strict=True))
    a = jaxbp.closed_form(activation="sigmoid")
    b = jaxbp.closed_form(activation="sigmoid")
    c = jaxbp.closed_form(activation="tanh")
    keys = [program_key(jaxbp.batch_loss, None, {"activation": f}, point) for f in (a, b, c)]
    assert None not in keys
    assert keys[0] == keys[1] != keys[2]


def test_off_nothing_is_read_or_written(tmp_path):
    assert program_cache.folder() is None
    point = _point()
    program = Program(jaxbp.batch_loss, static_argnames=ARGS)
    assert np.isfinite(float(program(*point, activation="sigmoid", loss="mse")))
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_file_is_compiled_again_and_replaced(cache):
    point = _point()
    kw = dict(activation="sigmoid", loss="mse")
    expect = Program(jaxbp.batch_loss, static_argnames=ARGS)(*point, **kw)
    (path,) = cache.iterdir()
    path.write_bytes(b"cut short")
    program_cache.disable()
    program_cache.enable(cache)
    assert Program(jaxbp.batch_loss, static_argnames=ARGS)(*point, **kw) == expect
    assert path.read_bytes() != b"cut short"
    program_cache.disable()
    program_cache.enable(cache)
    assert _untraceable()(*point, **kw) == expect


def test_an_unwritable_folder_leaves_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    why = program_cache.enable(blocker / "programs")
    assert why.startswith(f"cannot write to {blocker}/programs (")
    assert program_cache.folder() is None


def test_a_kept_value_is_computed_once_and_read_back(cache):
    calls = []

    def compute():
        calls.append(1)
        return (12, 3.5)

    parts = ((2, 3), "float64", jax.jit(jaxbp.batch_loss))  # a jitted function of ours is named
    assert program_cache.kept_value(jaxbp.batch_loss, parts, compute) == (12, 3.5)
    program_cache.disable()
    program_cache.enable(cache)
    assert program_cache.kept_value(jaxbp.batch_loss, parts, compute) == (12, 3.5)
    assert calls == [1]  # read back from the file, not computed again
    other = ((2, 4), "float64", jax.jit(jaxbp.batch_loss))
    assert program_cache.kept_value(jaxbp.batch_loss, other, compute) == (12, 3.5)
    assert calls == [1, 1]


def test_a_value_that_cannot_be_named_is_computed_every_time(cache):
    calls = []

    def compute():
        calls.append(1)
        return 7

    for _ in range(2):
        assert program_cache.kept_value(jaxbp.batch_loss, (lambda a: a,), compute) == 7
    assert calls == [1, 1] and list(cache.iterdir()) == []


def test_the_host_processor_is_named_with_its_instruction_set():
    """What the key holds of the host (:func:`program_cache.host_cpu`), against /proc/cpuinfo
    read here: the machine, and the first processor's flags line."""
    import pathlib
    import platform

    host = program_cache.host_cpu()
    assert host.splitlines()[0] == platform.machine()
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")]
        if flags:
            assert flags[0] in host.splitlines()


def test_a_kept_value_is_read_once_a_process(cache):
    calls = []

    def compute():
        calls.append(1)
        return 5

    parts = ((3,), "float32")
    assert program_cache.kept_value(jaxbp.batch_loss, parts, compute) == 5
    for path in cache.iterdir():
        path.unlink()  # the file gone: this process still holds the value
    assert program_cache.kept_value(jaxbp.batch_loss, parts, compute) == 5
    assert calls == [1]
    program_cache.forget_loaded()
    assert program_cache.kept_value(jaxbp.batch_loss, parts, compute) == 5
    assert calls == [1, 1]
