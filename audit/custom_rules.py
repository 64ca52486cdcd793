"""What differentiating a function would meet, read from its jaxpr: custom derivative
rules, and operations whose derivative autodiff gives as zero or not at all.

``jax.grad`` of a function that calls a ``jax.custom_vjp`` or ``jax.custom_jvp`` function
uses that function's rule, so as a reference it checks the rule against itself; the audit
says so when it finds one (:func:`audit.check_gradients`) and points to
:func:`audit.check_vjp`, which differentiates the primal code instead. A primal that
rounds, stops gradients, casts to integers or steps (a comparison selecting between
constants) has a derivative of zero almost everywhere, so autodiff of it is no reference
for a rule that passes a gradient through (a straight-through estimator):
:func:`non_differentiable_ops` names such operations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

from audit.tiers import traced_once

__all__ = ["custom_rules", "non_differentiable_ops"]

# primitives whose derivative autodiff gives as zero (or refuses) wherever it is defined
_FLAT = ("round", "floor", "ceil", "sign", "stop_gradient")

_COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")


def _sub_jaxprs(value: Any):
    if isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def _rules_in(jaxpr) -> list[str]:
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("custom_vjp_call", "custom_jvp_call"):
            found.append(eqn.primitive.name)
            continue  # differentiation uses the rule, never the code inside the call
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                found += _rules_in(sub)
    return found


def custom_rules(fn: Callable, *args) -> list[str]:
    """The custom derivative rules (``custom_vjp_call``/``custom_jvp_call``) that
    differentiating ``fn(*args)`` would use, in the order they appear; empty when JAX
    differentiates every operation itself. ``args`` may be arrays or ``ShapeDtypeStruct``;
    traced once per function and argument shapes.

    Example:
      >>> @jax.custom_jvp
      ... def twice(x): return 2 * x
      >>> twice.defjvp(lambda p, t: (2 * p[0], 2 * t[0]))
      <function ...>
      >>> custom_rules(lambda x: twice(x).sum(), jnp.ones(3))
      ['custom_jvp_call']
    """
    return _walked(_rules_in, fn, args)


def _walked(walk: Callable, fn: Callable, args: tuple) -> list[str]:
    """``walk`` of ``fn``'s jaxpr at ``args``' shapes, traced once per function, walk and
    shapes (an unhashable ``fn`` is traced each time)."""
    leaves, treedef = jax.tree.flatten(args)
    shapes = tuple(jax.ShapeDtypeStruct(jax.numpy.shape(a), a.dtype) for a in leaves)
    try:
        return list(_walked_cached(walk, fn, treedef, shapes))
    except TypeError:  # an unhashable fn: trace it this once
        return walk(jax.make_jaxpr(fn)(*args).jaxpr)


@functools.lru_cache(maxsize=256)
def _walked_cached(walk, fn, treedef, shapes) -> tuple[str, ...]:
    args = jax.tree.unflatten(treedef, list(shapes))
    # the trace every other use of fn at these shapes shares (audit.tiers.traced_once)
    return tuple(walk(traced_once(fn).trace(*args).jaxpr.jaxpr))


def non_differentiable_ops(fn: Callable, *args) -> list[str]:
    """The operations of ``fn(*args)`` that autodiff gives a zero or no useful derivative for,
    each named once in the order met (sub-jaxprs included): ``round``, ``floor``, ``ceil``,
    ``sign``, ``stop_gradient``, ``convert_element_type to int32`` (a cast to an integer or
    bool dtype), and ``select_n on gt (a step)`` where a comparison of the inputs selects
    between values that do not depend on them. Not counted: ``relu``'s ``select_n`` (a
    kink, with a useful derivative on each side: a branch depends on the inputs), an
    operation whose result is never used, and a ``stop_gradient`` of a maximum (the shift
    that keeps ``logsumexp`` and ``softmax`` stable, whose derivative cancels).

    Example:
      >>> non_differentiable_ops(lambda x: jnp.round(x) + jnp.where(x > 0, 1.0, 0.0), jnp.ones(3))
      ['round', 'select_n on gt (a step)']
      >>> non_differentiable_ops(lambda x: jnp.maximum(x, 0.0) * jax.nn.logsumexp(x), jnp.ones(3))
      []
    """
    return _walked(_flat_ops, fn, args)


def _flat_ops(jaxpr) -> list[str]:
    found: list[str] = []
    _walk(jaxpr, [(True, None, False)] * len(jaxpr.invars), found)
    return list(dict.fromkeys(found))


def _live(jaxpr) -> set[int]:
    """Indices of the equations whose results reach the outputs."""
    needed = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    live = set()
    for k in range(len(jaxpr.eqns) - 1, -1, -1):
        eqn = jaxpr.eqns[k]
        if eqn.effects or any(v in needed for v in eqn.outvars):
            live.add(k)
            needed.update(v for v in eqn.invars if not isinstance(v, Literal))
    return live


def _walk(jaxpr, marks: list[tuple], found: list[str]) -> list[tuple]:
    """Record the flat operations of ``jaxpr`` that act on the function's inputs. ``marks``
    per invar: (depends on the inputs, the comparison that made it or None, derived from a
    maximum); returns the marks of the outputs."""
    mark = dict(zip(jaxpr.invars, marks, strict=True))
    none = (False, None, False)

    def of(v) -> tuple:
        return none if isinstance(v, Literal) else mark.get(v, none)

    live = _live(jaxpr)
    for k, eqn in enumerate(jaxpr.eqns):
        ins = [of(v) for v in eqn.invars]
        dep = any(m[0] for m in ins)
        name = eqn.primitive.name
        if dep and k in live:
            if name in _FLAT and not (name == "stop_gradient" and ins[0][2]):
                found.append(name)
            elif name == "convert_element_type":
                to = eqn.params.get("new_dtype")
                if to is not None and not jax.numpy.issubdtype(to, jax.numpy.inexact):
                    found.append(f"convert_element_type to {jax.numpy.dtype(to).name}")
            elif name == "select_n" and ins[0][0] and not any(m[0] for m in ins[1:]):
                cmp = ins[0][1]
                found.append(f"select_n on {cmp} (a step)" if cmp else "select_n (a step)")
        made = name if name in _COMPARISONS else None
        from_max = name in ("reduce_max", "max", "argmax") or any(m[2] for m in ins)
        outs = [(dep, made, from_max)] * len(eqn.outvars)
        subs = [sub for value in eqn.params.values() for sub in _sub_jaxprs(value)]
        for sub in subs:
            same = len(sub.invars) == len(eqn.invars)
            got = _walk(sub, ins if same else [(dep, None, False)] * len(sub.invars), found)
            if same and len(got) == len(eqn.outvars) and len(subs) == 1:
                outs = got
        mark.update(zip(eqn.outvars, outs, strict=True))
    return [of(v) for v in jaxpr.outvars]
