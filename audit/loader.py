"""Load the user's code to audit from ``MODULE:NAME`` or ``path/to/file.py:NAME``.

:func:`load_grad_fn` loads a gradient function, which must accept ``(params, x, y)``
positionally and return gradients shaped like ``params``; this module checks only that it
can be called that way, the engine checks what it returns. :func:`load_rule` loads a
``jax.custom_vjp``/``jax.custom_jvp`` function, :func:`load_backward` a forward and a
backward pass, :func:`load_inputs` the arguments to audit them at. The user's functions are
wrapped by :func:`guard`: any exception the user's code raises (``sys.exit`` included) comes
out as a :class:`UserCodeError` that names the function, so a crash is never mistaken for an
error of the audit or for a wrong gradient.

Example:
    >>> load_grad_fn("jaxbp.seed:seed_grads").__name__  # a module's function
    'seed_grads'

    A file works the same way: ``load_grad_fn("my_backprop.py:grads")``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

__all__ = [
    "LoadError",
    "UserCodeError",
    "file_module_name",
    "guard",
    "load_backward",
    "load_grad_fn",
    "load_inputs",
    "load_rule",
]

_FORM = "expected MODULE:FUNCTION (e.g. mypkg.backprop:grads) or path/to/file.py:FUNCTION"
# Callables listed when the asked-for name is missing.
_MAX_LISTED = 12


class LoadError(ValueError):
    """What a spec names could not be loaded, or is not what it must be (a gradient function
    callable as ``fn(params, x, y)``, a custom rule, a pair of passes, a tuple of inputs)."""


class UserCodeError(Exception):
    """The user's function raised (or called ``sys.exit``); the message names it.

    Not a ``ValueError``: it passes unchanged through code that turns bad input into
    ``ValueError``, and it stays apart from the errors of the audit itself.

    Attributes:
      function: how the function was named, e.g. ``"my_grads.py:grads"``.
      error: the exception it raised.
    """

    def __init__(self, message: str, function: str, error: BaseException) -> None:
        super().__init__(message)
        self.function = function
        self.error = error


def _where(tb: types.TracebackType | None, files: set[str]) -> str:
    """``"file.py, line 7, in grads"`` for the innermost frame in ``files`` (else innermost)."""
    # frozen frames are importlib's own machinery, never where the user's code went wrong
    frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith("<frozen")]
    if not frames:
        return ""
    inside = [f for f in frames if os.path.abspath(f.filename) in files]
    f = (inside or frames)[-1]
    return f"{f.filename}, line {f.lineno}, in {f.name}"


def _raised(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"called sys.exit({e.code!r})"
    text = " ".join(str(e).split())
    return f"raised {type(e).__name__}" + (f": {text}" if text else "")


def _source_files(fn: Callable[..., Any]) -> set[str]:
    try:
        return {os.path.abspath(inspect.getsourcefile(inspect.unwrap(fn)) or "")}
    except TypeError:  # a builtin or C callable has no source file
        return set()


def guard(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` with every exception it raises re-raised as a :class:`UserCodeError` naming it.

    JAX's own signals that a function cannot be traced (a tracer converted to NumPy, a
    Python ``if`` on a traced value) pass through unchanged: the audit reads them to call
    the function point by point instead. ``KeyboardInterrupt`` passes through as well.
    The wrapper keeps ``__name__``, ``__wrapped__`` and the other attributes of ``fn``; a
    ``factors`` function attached to it is guarded too. Works under ``jit``, ``vmap``
    and ``eval_shape``, as ``fn`` does.

    Args:
      fn: the user's function.
      name: how messages name it, e.g. ``"my_grads.py:grads"``.
    """
    import jax  # here, not at the top: the loader's import stays light

    untraceable = (
        jax.errors.TracerArrayConversionError,
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerBoolConversionError,
        jax.errors.TracerIntegerConversionError,
    )
    files = _source_files(fn)

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except untraceable:
            raise
        except (Exception, SystemExit) as e:
            where = _where(e.__traceback__.tb_next if e.__traceback__ else None, files)
            raise UserCodeError(
                f"{name} {_raised(e)}" + (f" (at {where})" if where else "") + "; fix the "
                "function, or call it on its own to debug it",
                name,
                e,
            ) from e

    factors = getattr(fn, "factors", None)
    if callable(factors):
        guarded.factors = guard(factors, f"{name}.factors")  # type: ignore[attr-defined]
    return guarded


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def file_module_name(path: str) -> str:
    """A module name of its own for every file, so two ``grads.py`` files do not collide."""
    stem = os.path.splitext(os.path.basename(path))[0]
    safe = "".join(c if c.isalnum() else "_" for c in stem)
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    return f"_jaxbp_audit_user_{safe}_{digest}"


def _from_file(path: str) -> types.ModuleType:
    if not os.path.exists(path):
        raise LoadError(
            f"no such file {path!r} (working directory {os.getcwd()!r}); check the path before "
            "the colon"
        )
    if os.path.isdir(path):
        raise LoadError(f"{path!r} is a directory; pass the .py file that defines the function")
    name = file_module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot load {path!r} as Python source; pass a .py file")
    module = importlib.util.module_from_spec(spec)
    # registered before running, as a normal import does, so dataclasses and pickling work
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        where = f"line {e.lineno}" + (f", column {e.offset}" if e.offset else "")
        raise LoadError(f"syntax error in {path!r} at {where}: {e.msg}") from None
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        where = _where(e.__traceback__, {os.path.abspath(path)})
        raise LoadError(
            f"running {path!r} {_raised(e).replace('raised ', 'failed: ', 1)}"
            + (f" (at {where})" if where else "")
            + "; fix the file so that importing it succeeds"
        ) from None
    return module


def _is_missing(e: ImportError, target: str) -> bool:
    """The module asked for (or a package above it) is missing, not something it imports."""
    missing = getattr(e, "name", None)
    return isinstance(e, ModuleNotFoundError) and (
        missing is None or target == missing or target.startswith(missing + ".")
    )


def _from_module(target: str) -> types.ModuleType:
    try:
        return importlib.import_module(target)
    except SyntaxError as e:
        raise LoadError(
            f"syntax error in module {target!r} ({e.filename}, line {e.lineno}): {e.msg}"
        ) from None
    except ImportError as e:
        if _is_missing(e, target):
            raise LoadError(
                f"cannot import module {target!r}: {e}; check the name, that it is installed, "
                "or pass a file path instead (path/to/file.py:FUNCTION)"
            ) from None
        where = _where(e.__traceback__, set())
        raise LoadError(
            f"importing module {target!r} failed: {type(e).__name__}: {e}"
            + (f" (at {where})" if where else "")
            + "; install what it imports, or fix the import"
        ) from None
    except (Exception, SystemExit) as e:
        where = _where(e.__traceback__, set())
        raise LoadError(
            f"importing module {target!r} {_raised(e).replace('raised ', 'failed: ', 1)}"
            + (f" (at {where})" if where else "")
            + "; fix the module so that importing it succeeds"
        ) from None


def _callables(module: types.ModuleType) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and not inspect.isclass(value)
        and not inspect.ismodule(value)
    )


def _check_signature(fn: Callable[..., Any], spec: str) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # some builtins and C callables have no signature to check
    try:
        sig.bind(None, None, None)
    except TypeError as e:
        raise LoadError(
            f"{spec} has signature {sig}, which cannot be called as fn(params, x, y) ({e}); "
            "the gradient function must take the parameters, inputs and targets positionally "
            "and return gradients shaped like params"
        ) from None


def _split(spec: Any, what: str, form: str) -> tuple[str, str]:
    """``(target, attr)`` of ``"target:attr"``, the module or file and the name after the colon."""
    if not isinstance(spec, str):
        raise LoadError(f"the {what} spec must be a string, got {type(spec).__name__}; {form}")
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise LoadError(f"{spec!r} is not a {what} spec; {form}")
    return target, attr


def _module(target: str, modules: dict[str, types.ModuleType] | None) -> types.ModuleType:
    """The module or file ``target``, run once per ``modules`` cache (a file is run anew
    without one)."""
    if modules is not None and target in modules:
        return modules[target]
    module = _from_file(target) if _is_path(target) else _from_module(target)
    if modules is not None:
        modules[target] = module
    return module


def _attribute(
    module: types.ModuleType, target: str, attr: str, spec: str, form: str, noun: str = "function"
) -> Any:
    parts = attr.split(".")
    if not all(p.isidentifier() for p in parts):
        raise LoadError(f"{attr!r} in {spec!r} is not a {noun} name; {form}")
    where = f"{target!r}"
    obj: Any = module
    for i, part in enumerate(parts):
        if not hasattr(obj, part):
            if i == 0:
                names = _callables(module)
                listed = ", ".join(names[:_MAX_LISTED]) + (
                    " ..." if len(names) > _MAX_LISTED else ""
                )
                have = f"callables defined there: {listed}" if names else "it defines no callables"
                raise LoadError(f"{where} has no attribute {part!r}; {have}")
            raise LoadError(f"{'.'.join(parts[:i])} in {where} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def _kind(obj: Any) -> str:
    kind = type(obj).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def load_grad_fn(spec: str) -> Callable[..., Any]:
    """The function named by ``spec``, checked to accept ``(params, x, y)`` positionally.

    Args:
      spec: ``"MODULE:FUNCTION"`` (an importable module, e.g. ``"mypkg.backprop:grads"``) or
        ``"path/to/file.py:FUNCTION"`` (a file, loaded under a module name of its own). The
        function name may be dotted (``"file.py:Model.grads"``).

    Returns:
      The callable ``grad_fn(params, x, y) -> grads``, wrapped by :func:`guard`: whatever it
      raises comes out as a :class:`UserCodeError` naming ``spec``.

    Raises:
      LoadError: ``spec`` has no colon; the file is missing or has a syntax error; the module
        cannot be imported; the name is missing (the message lists the module's callables),
        not callable, or cannot take three positional arguments.
    """
    target, attr = _split(spec, "gradient function", _FORM)
    obj = _attribute(_module(target, None), target, attr, spec, _FORM)
    if not callable(obj):
        raise LoadError(
            f"{attr} in {target!r} is not callable: it is {_kind(obj)}; point at a function "
            "grad_fn(params, x, y) -> grads"
        )
    _check_signature(obj, f"{attr} in {target!r}")
    return guard(obj, spec)


_RULE_FORM = "expected MODULE:FUNCTION or path/to/file.py:FUNCTION"
_BACKWARD_FORM = (
    "expected MODULE:FORWARD,BACKWARD or path/to/file.py:FORWARD,BACKWARD, e.g. "
    "my_mlp.py:forward,backward"
)
_INPUTS_FORM = (
    "expected MODULE:NAME or path/to/file.py:NAME, naming a function of no arguments that "
    "returns the arguments as a tuple, or such a tuple"
)


def load_rule(
    spec: str, kind: str, *, modules: dict[str, types.ModuleType] | None = None
) -> Callable[..., Any]:
    """The ``jax.custom_vjp`` (``kind="vjp"``) or ``jax.custom_jvp`` (``kind="jvp"``) function
    named by ``spec``, rebuilt with its primal code and its rule each wrapped by :func:`guard`.

    Args:
      spec: ``"MODULE:FUNCTION"`` or ``"path/to/file.py:FUNCTION"``, as for
        :func:`load_grad_fn`.
      kind: ``"vjp"`` or ``"jvp"``: which decorator the function must carry.
      modules: a cache of modules already run, shared with :func:`load_inputs` so that one
        file named twice runs once.

    Returns:
      A ``jax.custom_vjp`` / ``jax.custom_jvp`` with the same primal, rule and options;
      whatever the primal or the rule raises comes out as a :class:`UserCodeError` naming
      ``spec``.

    Raises:
      LoadError: as :func:`load_grad_fn`, or the name is not a function of that kind with
        its rule defined (the message says which kind it is, and the flag for it).
    """
    import jax

    if kind not in ("vjp", "jvp"):
        raise ValueError(f"kind={kind!r}; expected 'vjp' or 'jvp'")
    target, attr = _split(spec, f"custom_{kind}", _RULE_FORM)
    obj = _attribute(_module(target, modules), target, attr, spec, _RULE_FORM)
    want, other = (
        (jax.custom_vjp, jax.custom_jvp) if kind == "vjp" else (jax.custom_jvp, jax.custom_vjp)
    )
    if isinstance(obj, other):
        flag = "--jvp" if kind == "vjp" else "--vjp"
        raise LoadError(
            f"{spec} is a jax.{other.__name__} function, not a jax.custom_{kind} one; audit it "
            f"with {flag}"
        )
    if not isinstance(obj, want):
        what = "a plain function" if callable(obj) else _kind(obj)
        define = "defvjp(fwd, bwd)" if kind == "vjp" else "defjvp(jvp)"
        raise LoadError(
            f"{spec} is {what}, not a jax.custom_{kind} function: decorate it with "
            f"@jax.custom_{kind} and define its rule with {define}; a whole gradient function "
            "grad_fn(params, x, y) is audited with --grad"
        )
    primal = guard(obj.fun, spec)
    if kind == "vjp":
        if obj.fwd is None or obj.bwd is None:
            raise LoadError(f"{spec} is a jax.custom_vjp with no rule: call defvjp(fwd, bwd) on it")
        rebuilt = jax.custom_vjp(primal, nondiff_argnums=obj.nondiff_argnums)
        rebuilt.defvjp(
            guard(obj.fwd, f"{spec} (its fwd rule)"), guard(obj.bwd, f"{spec} (its bwd rule)"),
            symbolic_zeros=obj.symbolic_zeros, optimize_remat=obj.optimize_remat,
        )  # fmt: skip
        return rebuilt
    jvp = getattr(obj, "jvp", None)
    if jvp is None:
        raise LoadError(f"{spec} is a jax.custom_jvp with no rule: call defjvp(jvp) on it")
    rebuilt = jax.custom_jvp(primal, nondiff_argnums=obj.nondiff_argnums)
    rebuilt.defjvp(guard(jvp, f"{spec} (its jvp rule)"), symbolic_zeros=obj.symbolic_zeros)
    return rebuilt


def load_backward(
    spec: str, *, modules: dict[str, types.ModuleType] | None = None
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The ``(forward, backward)`` pair named by ``"MODULE:FORWARD,BACKWARD"`` (or a file
    path before the colon), each wrapped by :func:`guard`, for :func:`audit.check_backward`.

    Raises:
      LoadError: as :func:`load_grad_fn`; or not two names after the colon, or one that is
        not callable.
    """
    target, names = _split(spec, "backward pass", _BACKWARD_FORM)
    parts = [n.strip() for n in names.split(",")]
    if len(parts) != 2 or not all(parts):
        raise LoadError(
            f"{names!r} in {spec!r} is not two function names separated by a comma; "
            f"{_BACKWARD_FORM}"
        )
    module = _module(target, modules)
    pair = []
    for role, attr in zip(("forward", "backward"), parts, strict=True):
        obj = _attribute(module, target, attr, spec, _BACKWARD_FORM)
        if not callable(obj):
            raise LoadError(
                f"{attr} in {target!r} is not callable: it is {_kind(obj)}; the {role} pass "
                "must be a function"
            )
        pair.append(guard(obj, f"{target}:{attr}"))
    return pair[0], pair[1]


def load_inputs(spec: str, *, modules: dict[str, types.ModuleType] | None = None) -> tuple:
    """The arguments named by ``spec``: a function of no arguments is called and must return
    a tuple (or list) of them; a tuple or list value is taken as it is.

    Raises:
      LoadError: as :func:`load_grad_fn`; or what it names (or returns) is not a tuple or
        list, or the function needs arguments.
      UserCodeError: the function raised.
    """
    target, attr = _split(spec, "inputs", _INPUTS_FORM)
    obj = _attribute(_module(target, modules), target, attr, spec, _INPUTS_FORM, noun="Python")
    how = ""
    if callable(obj):
        try:
            inspect.signature(obj).bind()
        except TypeError as e:
            raise LoadError(
                f"{spec} cannot be called with no arguments ({e}); --inputs names a function "
                "of no arguments that returns the arguments as a tuple, or the tuple itself"
            ) from None
        except ValueError:  # no signature to check
            pass
        obj = guard(obj, spec)()
        how = " returned"
    if not isinstance(obj, (tuple, list)):
        raise LoadError(
            f"{spec}{how or ' is'} {_kind(obj)}, expected a tuple of the arguments, in order "
            "(params first for a backward pass); return (x,) for a single argument"
        )
    return tuple(obj)
