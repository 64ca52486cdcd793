"""Which custom derivative rules differentiating a function would use, read from its jaxpr.

``jax.grad`` of a function that calls a ``jax.custom_vjp`` or ``jax.custom_jvp`` function
uses that function's rule, so as a reference it checks the rule against itself; the audit
says so when it finds one (:func:`audit.check_gradients`) and points to
:func:`audit.check_vjp`, which differentiates the primal code instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr

__all__ = ["custom_rules"]


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
    leaves, treedef = jax.tree.flatten(args)
    shapes = tuple(jax.ShapeDtypeStruct(jax.numpy.shape(a), a.dtype) for a in leaves)
    try:
        return list(_cached(fn, treedef, shapes))
    except TypeError:  # an unhashable fn: trace it this once
        return _rules_in(jax.make_jaxpr(fn)(*args).jaxpr)


@functools.lru_cache(maxsize=256)
def _cached(fn, treedef, shapes) -> tuple[str, ...]:
    args = jax.tree.unflatten(treedef, list(shapes))
    return tuple(_rules_in(jax.make_jaxpr(fn)(*args).jaxpr))
