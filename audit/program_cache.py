"""Compiled audit programs kept between runs of ``jaxbp-audit``: a later run loads them.

JAX's persistent compilation cache (:mod:`audit.compile_cache`) skips XLA's compilation, but
a run still traces each program's Python and lowers it before it can look the program up:
in the default run, about 0.75 s of tracing and 0.45 s of lowering, a third of a run with
that cache warm. This cache keeps each compiled program itself
(``jax.experimental.serialize_executable``), under a key that names everything the program
was built from, so a later run with the same key loads it and calls it without tracing:

- the program (module and name) and its compiler options;
- its static arguments, each named exactly: numbers, strings, dtypes, tuples, pytree
  structures, and functions and named tuples of the ``audit`` and ``jaxbp`` packages (with
  what a function's closure holds);
- its array arguments' shapes, dtypes and weak types, and their pytree structure;
- every JAX setting as the call sees it (64-bit types, matmul precision, ...);
- the versions of Python, JAX, jaxlib and NumPy, the device, the host's processor and its
  instruction-set flags (:func:`host_cpu`), and a digest of every source file of ``audit``
  and ``jaxbp``, so a changed line of either builds anew.

Whatever cannot be named exactly (a user's own function, an object with no stable name,
arrays on other or several devices, several processes) goes to ``jax.jit`` as before: the
cache never guesses that two programs are the same.

Off unless :func:`enable` is called: the CLI turns it on beside JAX's cache, in the folder
``programs`` next to it, with the same switch (``--no-cache``, ``JAXBP_NO_CACHE=1``). A file
is one pickled program, written whole (a temporary file, then renamed); one that cannot be
read is compiled again and replaced. A program is kept only as XLA compiled it in this run:
one that JAX's cache served does not serialize whole, so each is compiled with a compiler
option set from its key, which no other compilation shares. Like JAX's own cache, the folder
is trusted as the user's own: remove the ``jaxbp`` cache folder, both caches, to reclaim the
space (with ``programs`` alone removed, JAX's cache serves the programs and none is kept).

Example:
    >>> import jax.numpy as jnp
    >>> double = Program(lambda a, *, k: k * a, static_argnames=("k",))
    >>> float(double(jnp.float32(3.0), k=2))  # off: as jax.jit(...) would
    6.0
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import os
import pickle
import platform
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from audit.compile_cache import unwritable

__all__ = [
    "FORMAT",
    "Program",
    "disable",
    "enable",
    "folder",
    "forget_loaded",
    "host_cpu",
    "kept_value",
    "program_key",
    "source_digest",
]

FORMAT = 1  # the layout of a key and a file; a change here builds every program anew
_OURS = ("audit", "jaxbp")
_STATE: dict[str, Any] = {"folder": None}
_LOADED: dict[str, Callable] = {}  # key -> the compiled program, in this process
_VALUES: dict[str, Any] = {}  # key -> a kept value, in this process
_MISSING = object()  # no kept value could be read
_LOCK = threading.Lock()


def enable(path: str | os.PathLike[str]) -> str | None:
    """Keep compiled programs in ``path`` from now on, for every :class:`Program`.

    Returns:
      None when on; otherwise why it stays off (the folder cannot be written).
    """
    path = Path(path)
    problem = unwritable(path)
    if problem is not None:
        return f"cannot write to {path} ({problem})"
    source_digest()  # now, while no other thread competes for Python's lock at every read
    host_cpu()
    if not _LISTENING:
        jax.monitoring.register_event_listener(_count_hit)
        _LISTENING.append(True)
    _STATE["folder"] = path
    return None


def disable() -> None:
    """Programs are traced and compiled by ``jax.jit`` again; nothing is read or written."""
    _STATE["folder"] = None
    forget_loaded()


def forget_loaded() -> None:
    """Let go of the programs this process loaded (after JAX's own caches were cleared to
    make room); the files stay, and a later call loads them again."""
    with _LOCK:
        _LOADED.clear()
        _VALUES.clear()


def folder() -> Path | None:
    """The folder programs are kept in, or None when the cache is off."""
    return _STATE["folder"]


_JITTED = type(jax.jit(abs))  # the type of a jitted function
# A compiler option that changes no code (how many buffers XLA's debug text lists): set from a
# program's key, it makes JAX's persistent cache, which keys on the options, hold no program
# compiled elsewhere for this one, so the program is compiled here. An executable that JAX
# loaded from its cache does not serialize whole: loaded again, it failed to run ("Function
# ... not found"), so such a one is never kept (``_HITS`` tells).
_MARK = "xla_debug_buffer_assignment_show_max"
_HITS = threading.local()  # per thread: programs JAX's persistent cache served
_LISTENING: list[bool] = []


def _count_hit(event: str, **_: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _HITS.n = getattr(_HITS, "n", 0) + 1


class _Unnamed(Exception):
    """A value the key cannot name exactly: its call goes to ``jax.jit``."""


def _ours(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in _OURS


def _named(v: Any) -> Any:
    """A plain value (nested tuples of numbers and strings) that names ``v`` exactly, or
    :class:`_Unnamed`. Two values with equal names build the same program."""
    if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
        return (type(v).__name__, repr(v))
    if isinstance(v, np.dtype):
        return ("dtype", v.str)
    if isinstance(v, type) and hasattr(v, "dtype"):  # jnp.float64 and the like
        return ("dtype", np.dtype(v.dtype).str)
    if isinstance(v, tuple) and hasattr(v, "_fields"):  # a named tuple: ours only
        cls = type(v)
        if not _ours(cls.__module__):
            raise _Unnamed(cls)
        return ("namedtuple", cls.__module__, cls.__qualname__, tuple(_named(a) for a in v))
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_named(a) for a in v))
    if isinstance(v, dict):
        return ("dict", tuple((_named(k), _named(a)) for k, a in v.items()))
    if isinstance(v, jax.tree_util.PyTreeDef):
        _check_nodes(v)
        return ("treedef", str(v))
    if isinstance(v, functools.partial):
        return ("partial", _named(v.func), _named(v.args), _named(v.keywords))
    if isinstance(v, _JITTED):  # jax.jit(f) computes what f does, inside a program or not
        return ("jit", _named(v.__wrapped__))
    if isinstance(v, types.FunctionType):
        if not _ours(v.__module__):
            raise _Unnamed(v)
        cells = tuple(_named(c.cell_contents) for c in v.__closure__ or ())
        return ("function", v.__module__, v.__qualname__, cells, _named(v.__defaults__),
                _named(v.__kwdefaults__))  # fmt: skip
    raise _Unnamed(v)


def _check_nodes(treedef) -> None:
    """A structure of dicts, lists, tuples, None and our named tuples; else :class:`_Unnamed`
    (another node type may print the same for different contents)."""
    if treedef.num_nodes == 1 and treedef.num_leaves == 1:  # a leaf
        return
    kind = treedef.node_data()[0]
    plain = kind in (dict, list, tuple, type(None))
    if not plain and not (issubclass(kind, tuple) and _ours(kind.__module__)):
        raise _Unnamed(kind)
    for child in jax.tree_util.treedef_children(treedef):
        _check_nodes(child)


def _aval(a: Any, device) -> tuple:
    """Shape, dtype and weak type of an array argument as ``jax.jit`` sees it."""
    if isinstance(a, jax.Array):
        if a.sharding.device_set != {device}:
            raise _Unnamed("an array on another device or on several")
        return ("array", a.shape, str(a.dtype), bool(getattr(a, "weak_type", False)))
    if isinstance(a, (np.ndarray, np.generic)):
        return ("array", a.shape, str(a.dtype), False)
    if isinstance(a, jax.ShapeDtypeStruct) and a.sharding is None:  # a shape to compile for
        return ("array", a.shape, str(a.dtype), bool(a.weak_type))
    if isinstance(a, (bool, int, float, complex)):
        return ("python", type(a).__name__)  # weakly typed; its width follows the settings
    raise _Unnamed(a)


@functools.cache
def source_digest() -> str:
    """SHA-256 of every ``.py`` file of ``audit`` and ``jaxbp`` (relative path and bytes)."""
    h = hashlib.sha256()
    for name in _OURS:
        root = Path(sys.modules[name].__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root.parent)).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.cache
def host_cpu() -> str:
    """The host's processor and its instruction-set flags: XLA compiles a CPU program for the
    host's instructions, so a cache folder shared by machines with different processors (a
    home directory on a network disk) must not hand one's programs to the other."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        first = ""
    wanted = ("vendor_id", "model name", "flags", "features", "cpu model", "isa")
    lines = [ln for ln in first.splitlines() if ln.split(":")[0].strip().lower() in wanted]
    return "\n".join([platform.machine(), platform.processor(), *lines])


@functools.cache
def _environment() -> tuple:
    device = jax.devices()[0]
    return (
        FORMAT, sys.version, jax.__version__, importlib.metadata.version("jaxlib"),
        np.__version__, device.platform, device.device_kind, jax.device_count(), host_cpu(),
        source_digest(),
    )  # fmt: skip


def _settings() -> tuple:
    """Every JAX setting as this thread sees it (context managers included)."""
    values = jax.config.values
    return tuple((name, repr(getattr(jax.config, name, values[name]))) for name in sorted(values))


def program_key(fn: Callable, options: Any, static: dict, dynamic: dict) -> str | None:
    """The key of ``fn`` called with these ``static`` and ``dynamic`` (array) arguments, by
    name, under ``options`` (compiler options); None when something in it cannot be named
    exactly (``fn`` itself included: a function outside ``audit`` and ``jaxbp`` is never
    kept), or the call may not run in one process on one device."""
    if jax.process_count() != 1 or jax.config.jax_disable_jit:
        return None
    try:
        device = jax.devices()[0]
        leaves, treedef = jax.tree.flatten(dynamic)
        _check_nodes(treedef)
        return _digest(
            _named(fn), _named(options),
            tuple((name, _named(static[name])) for name in sorted(static)), str(treedef),
            tuple(_aval(a, device) for a in leaves),
        )  # fmt: skip
    except _Unnamed:
        return None


def _digest(*parts: Any) -> str:
    """The key of named ``parts`` in this environment under this thread's JAX settings."""
    return hashlib.sha256(repr((_environment(), _settings(), *parts)).encode()).hexdigest()


def kept_value(fn: Callable, parts: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept on disk while the cache is on, under a key that names ``fn`` and
    ``parts`` (as :func:`program_key` names static arguments): for a plain value (numbers,
    tuples) that a run would otherwise find by tracing ``fn``, as an audit's memory plan
    traces the reference's gradient. Off, or with anything unnamed: ``compute()``."""
    where = folder()
    if where is None:
        return compute()
    try:
        key = _digest("value", _named(fn), _named(parts))
    except _Unnamed:
        return compute()
    with _LOCK:
        if key in _VALUES:  # read once a process, not once a call
            return _VALUES[key]
    path = where / f"{key}.value"
    try:
        value = pickle.loads(path.read_bytes())
    except Exception:  # none yet, or cut short: found again below, and replaced
        value = _MISSING
    if value is _MISSING:  # outside the handler: compute's own errors carry no file's
        value = compute()
        _write(path, pickle.dumps(value))
    with _LOCK:
        _VALUES[key] = value
    return value


class Program:
    """``jax.jit(fn, static_argnames=..., compiler_options=...)`` whose compiled form is kept
    on disk while the cache is on (:func:`enable`), and loaded, not traced, by a later run.

    Called as the jitted function is, with the same results: with the cache on, a call is
    first bound to ``fn``'s signature, and its static arguments and array shapes make the key
    (:func:`program_key`). :attr:`jit` is the jitted function itself; :meth:`lower` is its.
    """

    def __init__(
        self,
        fn: Callable,
        static_argnames: Sequence[str] = (),
        compiler_options: dict | None = None,
    ) -> None:
        self.fn = fn
        self.static_argnames = tuple(static_argnames)
        self.compiler_options = compiler_options
        kw = {"compiler_options": compiler_options} if compiler_options else {}
        self.jit = jax.jit(fn, static_argnames=self.static_argnames, **kw)
        self._signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def lower(self, *args: Any, **kwargs: Any):
        return self.jit.lower(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        found = self._compiled(args, kwargs)
        if found is None:
            return self.jit(*args, **kwargs)
        compiled, dynamic = found
        return compiled(**dynamic)

    def prepare(self, *args: Any, **kwargs: Any) -> None:
        """Load or compile the program for these arguments, ahead of the call
        (:func:`audit.tiers.compile_ahead`): with the cache on, from its folder if it is
        there; else as ``lower().compile()``."""
        if self._compiled(args, kwargs) is None:
            self.jit.lower(*args, **kwargs).compile()

    def _compiled(self, args: tuple, kwargs: dict) -> tuple[Callable, dict] | None:
        where = folder()
        if where is None:
            return None
        try:
            bound = self._signature.bind(*args, **kwargs).arguments
        except TypeError:  # the jitted call raises it, as it would without the cache
            return None
        static = {k: v for k, v in bound.items() if k in self.static_argnames}
        dynamic = {k: v for k, v in bound.items() if k not in self.static_argnames}
        key = program_key(self.fn, self.compiler_options, static, dynamic)
        if key is None:
            return None
        with _LOCK:
            compiled = _LOADED.get(key)
        if compiled is None:
            compiled = _load(where / f"{key}.bin")
        if compiled is None:
            served = getattr(_HITS, "n", 0)
            lowered = self.jit.lower(**bound)  # raises as the call would
            compiled = lowered.compile(compiler_options={_MARK: 1 + int(key[:15], 16)})
            if getattr(_HITS, "n", 0) == served:  # compiled here, so it serializes whole
                _store(where / f"{key}.bin", compiled)
        with _LOCK:
            _LOADED[key] = compiled
        return compiled, dynamic


def _load(path: Path) -> Callable | None:
    from jax.experimental import serialize_executable

    try:
        payload, in_tree, out_tree = pickle.loads(path.read_bytes())
        return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # none yet, or cut short: compiled again, and replaced
        return None


def _store(path: Path, compiled) -> None:
    """Write the program whole or not at all; a failure (a full disk) costs the next run a
    compilation, never this one."""
    from jax.experimental import serialize_executable

    try:
        _write(path, pickle.dumps(serialize_executable.serialize(compiled)))
    except Exception:
        pass


def _write(path: Path, data: bytes) -> None:
    """``data`` into ``path`` whole (a temporary file, renamed) or not at all."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
