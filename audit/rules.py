"""Audit a custom derivative rule: a ``jax.custom_vjp`` or ``jax.custom_jvp`` function.

When JAX differentiates such a function it uses the rule, never the primal code, so
``jax.grad`` of a loss that calls it checks the rule against itself. Here the rule is
compared instead with JAX's derivative of the primal implementation (``f.fun``), which
autodiff follows operation by operation, in float64, and with central finite differences
of the primal values as a third opinion. Each element of every input is judged by the
audit's rule (:mod:`audit.compare`) at many points around the given arguments.

A VJP ``c -> J(x)^T c`` is checked as the gradient of ``<c, f(x)>`` for a random cotangent
``c``: a wrong rule ``R != J^T`` gives ``R c != J^T c`` for almost every ``c``. A
``custom_jvp`` rule is checked through the VJP that JAX derives from it by transposition,
so a wrong tangent rule shows at the input element it gets wrong.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from audit.asserts import failure_message
from audit.check import check_gradients
from audit.custom_rules import non_differentiable_ops
from audit.fd_verdict import check_reference
from audit.result import AuditResult
from jaxbp.checks import check_key

__all__ = ["assert_vjp", "check_jvp", "check_vjp"]


def _primal_of(f: Callable) -> Callable:
    primal = getattr(f, "fun", None)
    if not isinstance(f, (jax.custom_vjp, jax.custom_jvp)) or primal is None:
        raise TypeError(
            f"f is {type(f).__name__} {getattr(f, '__name__', f)!r}, expected a function "
            "decorated with jax.custom_vjp or jax.custom_jvp whose rule is defined (defvjp / "
            "defjvp), or a plain primal function with its rule passed as rule=; for a whole "
            "gradient function use audit.check_gradients"
        )
    return primal


def _with_rule(primal: Callable, rule: Any, kind: str) -> Callable:
    """``primal`` with ``rule`` attached as JAX would attach it: ``rule=(fwd, bwd)`` for a
    VJP (what ``defvjp`` takes), ``rule=jvp`` for a JVP (what ``defjvp`` takes)."""
    who = getattr(primal, "__name__", "f")
    if isinstance(primal, (jax.custom_vjp, jax.custom_jvp)):
        raise TypeError(
            f"{who} is already a {type(primal).__name__} function with a rule of its own; "
            "pass it without rule=, or pass its plain primal function with rule="
        )
    if not callable(primal):
        raise TypeError(f"f is {type(primal).__name__}, expected a callable primal function")
    if kind == "check_vjp":
        if not (isinstance(rule, tuple) and len(rule) == 2 and all(map(callable, rule))):
            raise TypeError(
                f"rule is {type(rule).__name__}, expected the pair (fwd, bwd) that "
                "jax.custom_vjp's defvjp takes: fwd(*args) -> (out, residuals), "
                "bwd(residuals, g) -> one cotangent per argument, as a tuple"
            )
    elif not callable(rule):
        raise TypeError(
            f"rule is {type(rule).__name__}, expected the function jax.custom_jvp's "
            "defjvp takes: jvp(primals, tangents) -> (out, tangent_out)"
        )
    return _attached(primal, rule, kind)


@functools.lru_cache(maxsize=64)
def _attached(primal: Callable, rule: Any, kind: str) -> Callable:
    """One custom-rule object per (primal, rule), so a second audit reuses what was
    compiled."""
    if kind == "check_vjp":
        wrapped = jax.custom_vjp(primal)
        wrapped.defvjp(*rule)
    else:
        wrapped = jax.custom_jvp(primal)
        wrapped.defjvp(rule)
    return wrapped


def _arg_names(primal: Callable, n: int) -> list[str]:
    try:
        params = list(inspect.signature(primal).parameters)
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(n)]


def _element_names(args: tuple, arg_names: Sequence[str]) -> list[str]:
    names = []
    for i, arg in enumerate(args):
        for path, leaf in jax.tree_util.tree_flatten_with_path(arg)[0]:
            base = arg_names[i] + jax.tree_util.keystr(path)
            shape = np.shape(leaf)
            flat = [",".join(map(str, ix)) for ix in np.ndindex(*shape)] if shape else []
            names += [f"{base}[{ix}]" for ix in flat] if shape else [base]
    return names


def _leaf_names(args: tuple, arg_names: Sequence[str]) -> list[str]:
    return [
        arg_names[i] + jax.tree_util.keystr(path)
        for i, arg in enumerate(args)
        for path, _ in jax.tree_util.tree_flatten_with_path(arg)[0]
    ]


def _check_args(f: Callable, args: tuple) -> None:
    if not args:
        raise ValueError("no arguments: pass the point to check f at, e.g. check_vjp(f, x)")
    for i, arg in enumerate(args):
        for path, leaf in jax.tree_util.tree_flatten_with_path(arg)[0]:
            dt = getattr(leaf, "dtype", None)
            if dt is None or not jnp.issubdtype(dt, jnp.floating):
                where = f"argument {i}{jax.tree_util.keystr(path)}"
                raise TypeError(
                    f"{where} is {type(leaf).__name__} with dtype {dt}, expected a float array: "
                    "every argument of f is differentiated; bind integer or static arguments "
                    "with functools.partial first"
                )


@functools.lru_cache(maxsize=64)
def _pair(f: Callable, kind: str) -> tuple[Callable, Callable]:
    """``(rule, loss)`` for :func:`audit.check_gradients`: the VJP JAX computes from ``f``'s
    rule, and ``<c, f.fun(...)>``, whose autodiff follows the primal code. One pair of
    objects per ``f``, so a second audit of the same rule reuses what was compiled."""
    primal = f.fun

    def rule(params, c, unused):
        del unused
        return jax.vjp(f, *params)[1](c)  # what JAX computes from the rule

    def through_primal(params, c, unused):
        del unused
        value = primal(*params)  # autodiff of this follows the primal code, not the rule
        pairs = zip(jax.tree.leaves(value), jax.tree.leaves(c), strict=True)
        return sum(jnp.sum(a * b) for a, b in pairs)

    who = getattr(f, "__name__", None) or getattr(primal, "__name__", "f")
    rule.__name__ = f"{who} ({'custom_vjp' if kind == 'check_vjp' else 'custom_jvp'} rule)"
    through_primal.__name__ = f"<c, {getattr(primal, '__name__', 'f')}(...)>"
    return rule, through_primal


def _audit(
    f: Callable,
    args: tuple,
    *,
    kind: str,
    points: int,
    key: jax.Array | None,
    spread: float,
    rtol: float | None,
    atol: float | None,
    fd: bool,
    fd_max: int,
    memory: int | None,
    reference: str,
    rule: Any = None,
) -> AuditResult:
    if rule is not None:
        f = _with_rule(f, rule, kind)
    primal = _primal_of(f)
    reference = check_reference(reference, fd=fd)
    args = tuple(jax.tree.map(jnp.asarray, a) for a in args)  # Python floats, NumPy arrays
    _check_args(f, args)
    if key is None:
        raise ValueError(
            f"{kind} needs key=jax.random.key(seed) for the cotangent and the random points"
        )
    check_key(key)
    try:
        out = jax.eval_shape(f, *args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"f(*args) failed at the given point: {e}") from e
    # the cotangent: standard normal, every element non-zero with probability 1, drawn on
    # the host from the key's bits (an eager jax.random call compiles a program per shape)
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    bits = np.asarray(jax.random.key_data(key) if typed else key).ravel().tolist()
    rng = np.random.default_rng([*bits, 0xC07A])
    ct = jax.tree.map(
        lambda o: jax.device_put(rng.standard_normal(o.shape).astype(o.dtype)),
        out,
    )
    rule, through_primal = _pair(f, kind)
    arg_names = _arg_names(primal, len(args))
    flat = _flat_primal_note(primal, args, reference)
    try:
        result = check_gradients(
            rule, through_primal, args, ct, np.zeros((1,), jax.tree.leaves(args)[0].dtype),
            points=points, key=key, spread=spread, rtol=rtol, atol=atol, fd=fd, fd_max=fd_max,
            names=_element_names(args, arg_names), memory=memory,
            leaf_names=_leaf_names(args, arg_names), reference_name="autodiff",
            reference=reference,
        )  # fmt: skip
    except ValueError as e:
        if not flat:
            raise
        raise ValueError(f"{e}. Here {flat[0]}") from e  # a primal that is flat everywhere
    result.config.update(check=kind, autodiff_of="f.fun, in float64")
    result.notes[:0] = flat
    return result


def _flat_primal_note(primal: Callable, args: tuple, reference: str) -> list[str]:
    """Says, never silently, that autodiff of the primal meets operations it gives a zero
    or no useful derivative for, and which reference decided."""
    ops = non_differentiable_ops(primal, *args)
    if not ops:
        return []
    who = getattr(primal, "__name__", "f.fun")
    chosen = {
        "autodiff": "reference='autodiff' decided, so a rule that passes a gradient through "
        "them (a straight-through estimator) fails against autodiff's zero; pass "
        "reference='fd' to judge against finite differences of the primal",
        "fd": "reference='fd' decided: finite differences of the primal see the same steps "
        "(zero between them, a spike across one)",
        "both": "reference='both' decided: the rule must agree with autodiff and with finite "
        "differences of the primal, which see the same steps",
    }[reference]
    return [
        f"the primal {who} holds operations autodiff gives a zero or no useful derivative "
        f"for ({', '.join(ops)}); {chosen}. A straight-through or surrogate rule is "
        "deliberately not the primal's derivative: whether it does what it intends needs a "
        "judgement of its own, not this verdict"
    ]


def check_vjp(
    f: Callable,
    *args: Any,
    points: int = 255,
    key: jax.Array | None = None,
    spread: float = 0.5,
    rtol: float | None = None,
    atol: float | None = None,
    fd: bool = True,
    fd_max: int = 64,
    memory: int | None = None,
    reference: str = "autodiff",
    rule: Any = None,
) -> AuditResult:
    """Audit the rule of a ``jax.custom_vjp`` function against autodiff of its primal code.

    Args:
      f: a ``jax.custom_vjp`` function with its rule defined, or a plain primal function
        with its rule given as ``rule``.
      *args: the point to check at: float arrays or pytrees of them, as ``f`` takes them.
      points: random points around ``args`` (each leaf moved by ``spread`` times its RMS
        times standard normal noise), besides ``args`` itself.
      key: PRNG key for the cotangent and the points (keyword-only, required).
      rtol, atol, fd, fd_max, memory: as in :func:`audit.check_gradients`.
      reference: which opinion decides: ``"autodiff"`` of ``f.fun`` (default), ``"fd"``
        (float64 central differences of ``<c, f.fun(...)>``, with their own error estimate)
        or ``"both"``; see :func:`audit.check_gradients` and :mod:`audit.fd_verdict`. A
        primal autodiff can't follow (rounding, ``stop_gradient``, integer casts, steps) is
        named in ``notes`` with the reference chosen.
      rule: for a plain ``f``, the pair ``(fwd, bwd)`` that ``defvjp`` would take:
        ``fwd(*args) -> (out, residuals)``, ``bwd(residuals, g) -> (ct_arg0, ...)``.

    Returns:
      An :class:`audit.AuditResult` with one entry per element of every input
      (``x[3]``, named by ``f``'s parameters): the rule's VJP, autodiff's, the finite
      difference, errors, verdict and hint at its worst point.

    Example:
      >>> @jax.custom_vjp
      ... def softplus(x): return jnp.logaddexp(x, 0.0)
      >>> softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * jax.nn.sigmoid(x),))
      >>> check_vjp(softplus, jnp.linspace(-3.0, 3.0, 8), key=jax.random.key(0)).passed
      True
    """
    return _audit(f, args, kind="check_vjp", points=points, key=key, spread=spread, rtol=rtol,
                  atol=atol, fd=fd, fd_max=fd_max, memory=memory, reference=reference,
                  rule=rule)  # fmt: skip


def check_jvp(
    f: Callable,
    *args: Any,
    points: int = 255,
    key: jax.Array | None = None,
    spread: float = 0.5,
    rtol: float | None = None,
    atol: float | None = None,
    fd: bool = True,
    fd_max: int = 64,
    memory: int | None = None,
    reference: str = "autodiff",
    rule: Any = None,
) -> AuditResult:
    """Audit the rule of a ``jax.custom_jvp`` function against autodiff of its primal code.

    The tangent rule is checked through the VJP JAX derives from it by transposing it, per
    element of every input; arguments as in :func:`check_vjp`, but for a plain primal ``f``
    the rule is the function ``defjvp`` would take: ``rule(primals, tangents) -> (out,
    tangent_out)``.

    Example:
      >>> @jax.custom_jvp
      ... def square(x): return x * x
      >>> square.defjvp(lambda p, t: (p[0] * p[0], p[0] * t[0]))  # a slip: 2 x t
      <function ...>
      >>> r = check_jvp(square, jnp.arange(1.0, 5.0), key=jax.random.key(0))
      >>> r.passed, r.failed_weights
      (False, ['x[0]', 'x[1]', 'x[2]', 'x[3]'])
    """
    return _audit(f, args, kind="check_jvp", points=points, key=key, spread=spread, rtol=rtol,
                  atol=atol, fd=fd, fd_max=fd_max, memory=memory, reference=reference,
                  rule=rule)  # fmt: skip


def assert_vjp(f: Callable, *args: Any, key: jax.Array | None = None, **options: Any) -> None:
    """:func:`check_vjp` (or :func:`check_jvp` for a ``custom_jvp`` ``f``, or a plain ``f``
    with one function as ``rule=``) as one line in a test: raises ``AssertionError`` with
    :func:`audit.asserts.failure_message` unless every element passes.

    Example:
      >>> @jax.custom_vjp
      ... def cube(x): return x ** 3
      >>> cube.defvjp(lambda x: (x ** 3, x), lambda x, g: (g * 3 * x,))  # a slip: 3 x^2
      >>> assert_vjp(cube, jnp.arange(1.0, 4.0), key=jax.random.key(0))
      Traceback (most recent call last):
      ...
      AssertionError: 3 of 3 elements disagree (check_vjp)
      x: 3 of 3 elements disagree, typically ... of autodiff
      ...
    """
    rule = options.get("rule")
    jvp = isinstance(f, jax.custom_jvp) or (rule is not None and not isinstance(rule, tuple))
    result = (check_jvp if jvp else check_vjp)(f, *args, key=key, **options)
    if not result.passed:
        raise AssertionError(failure_message(result))
