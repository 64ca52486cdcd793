"""Audit a hand-written backward pass, intermediate by intermediate.

The user writes the forward pass once, marking each intermediate with ``tap(name, value)``
(which returns ``value`` unchanged), and a backward pass that returns ``d<name>`` for every
marked name, by hand::

    def forward(tap, params, x, y):
        h = tap("h", x @ params["W1"])
        a = tap("a", jnp.tanh(h))
        return jnp.mean((a @ params["W2"] - y) ** 2)

    def backward(params, x, y):
        ...
        return {"h": dh, "a": da}

The true gradient of the loss with respect to each intermediate comes from autodiff: the
forward pass runs with a zero probe added at every marked value, and ``jax.grad`` with
respect to the probes, in float64, is ``dE/d<name>``; finite differences of the loss in each
probe are a third opinion. Every element of every intermediate is judged by the audit's rule
(:mod:`audit.compare`) at many random points around the given arguments, and the first
intermediate in backward order (the reverse of the forward's taps) that disagrees is named:
the one to fix first, since an error there flows into every intermediate after it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from audit.asserts import failure_message
from audit.budget import clear_if_crowded
from audit.compare import default_tolerance, tolerance_dict
from audit.fd_verdict import check_reference
from audit.gradients import is_traceable
from audit.points import PointGroup, numbered, perturbed
from audit.result import AuditResult, column
from audit.tiers import full_precision
from audit.weights import compare_groups, comparison_config
from jaxbp.checks import check_int, check_key

__all__ = ["assert_backward", "check_backward", "tapped"]

# how an element's status ranks when an intermediate is summed up by its worst element
_RANK = {"fail": 3, "not_judged": 2, "precision": 1, "pass": 0}


class _Recorder:
    """A ``tap`` that records each marked name with its shape and dtype, in forward order."""

    def __init__(self):
        self.order: list[tuple[str, jax.ShapeDtypeStruct]] = []

    def __call__(self, name: str, value):
        if not isinstance(name, str):
            raise TypeError(f"tap(name, value) takes a string name, got {type(name).__name__}")
        if any(name == seen for seen, _ in self.order):
            raise ValueError(
                f"tap({name!r}, ...) marks two values; give every intermediate its own name"
            )
        value = jnp.asarray(value)
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise TypeError(
                f"tap({name!r}, ...) got dtype {value.dtype}; only float intermediates have a "
                "gradient to check"
            )
        self.order.append((name, jax.ShapeDtypeStruct(value.shape, value.dtype)))
        return value


def tapped(forward: Callable, params: Any, *inputs: Any) -> list[tuple[str, tuple[int, ...]]]:
    """The intermediates ``forward(tap, params, *inputs)`` marks: ``(name, shape)`` in
    forward order. Traced once, nothing computed.

    Example:
      >>> def forward(tap, w, x):
      ...     h = tap("h", x * w)
      ...     return jnp.sum(tap("a", jnp.tanh(h)))
      >>> tapped(forward, jnp.ones(3), jnp.ones(3))
      [('h', (3,)), ('a', (3,))]
    """
    return [(name, s.shape) for name, s in _record(forward, params, inputs)]


def _record(forward: Callable, params, inputs) -> list[tuple[str, jax.ShapeDtypeStruct]]:
    who = getattr(forward, "__name__", "forward")
    rec = _Recorder()
    try:
        out = jax.eval_shape(lambda p, i: forward(rec, p, *i), params, inputs)
    except (TypeError, ValueError) as e:
        if rec.order and str(e).startswith("tap("):
            raise
        raise ValueError(f"{who}(tap, params, *inputs) failed at the given point: {e}") from e
    if not (isinstance(out, jax.ShapeDtypeStruct) and out.shape == ()
            and jnp.issubdtype(out.dtype, jnp.floating)):  # fmt: skip
        raise ValueError(
            f"{who}(tap, params, *inputs) returned {out}, expected a scalar float loss"
        )
    if not rec.order:
        raise ValueError(
            f"{who} marks no intermediate: call tap(name, value) on each value whose gradient "
            "your backward pass computes, and use the value it returns"
        )
    return rec.order


def _check_keys(backward: Callable, out: Any, names: tuple[str, ...]) -> None:
    who = getattr(backward, "__name__", "backward")
    if not isinstance(out, dict):
        raise TypeError(
            f"{who}(params, *inputs) returned {type(out).__name__}, expected a dict "
            f"{{name: d<name>}} for the marked names {list(names)}"
        )
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(
            f"{who}(params, *inputs) has no entry for {missing}; expected one d<name> for "
            f"every marked name {list(names)}"
        )


def _check_backward(backward: Callable, xin, names: tuple[str, ...]) -> None:
    """``backward`` at the given point returns a dict with every marked name; its own
    failures are reported as its own, before the audit wraps anything."""
    who = getattr(backward, "__name__", "backward")
    try:
        out = jax.eval_shape(lambda p, i: backward(p, *i), *xin)
    except jax.errors.JAXTypeError:  # not traceable: the audit calls it point by point
        return
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}(params, *inputs) failed at the given point: {e}") from e
    _check_keys(backward, out, names)


@functools.lru_cache(maxsize=64)
def _functions(forward: Callable, backward: Callable, names: tuple[str, ...]):
    """``(grad_fn, loss_fn, ref_grad_fn)`` over ``(probes, (params, inputs), unused)``, one
    set of objects per pair of functions so a second audit reuses what was compiled."""

    def loss_fn(probes, xin, unused):
        del unused
        params, inputs = xin
        return forward(lambda name, value: value + probes[name], params, *inputs)

    def grad_fn(probes, xin, unused):
        del probes, unused
        params, inputs = xin
        out = backward(params, *inputs)
        _check_keys(backward, out, names)
        return {n: out[n] for n in names}

    grad_fn.__name__ = getattr(backward, "__name__", "backward")
    loss_fn.__name__ = getattr(forward, "__name__", "forward")
    return grad_fn, loss_fn, jax.grad(loss_fn)


def _element_names(order) -> list[str]:
    names = []
    for name, s in sorted(order):  # a dict of probes flattens in key order
        names += [f"{name}[{','.join(map(str, ix))}]" for ix in np.ndindex(*s.shape)] or [name]
    return names


def _summaries(weights: list[dict], order, leaf_hints: dict[str, str | None]) -> list[dict]:
    """One entry per intermediate, in backward order: its worst element, and a hint that
    counts the failing elements and says what they show (the intermediate's own hint from
    the diagnosis, else the worst element's)."""
    by_name: dict[str, list[dict]] = {}
    for w in weights:
        by_name.setdefault(w["name"].split("[")[0], []).append(w)
    out = []
    for name, _ in reversed(order):
        rows = by_name[name]
        worst = max(rows, key=lambda w: (_RANK[w["status"]], _score(w)))
        bad = sum(1 for w in rows if w["status"] in ("fail", "not_judged"))
        hint = None
        if bad:
            own = leaf_hints.get(name)
            hint = f"{bad} of {len(rows)} elements disagree; " + (
                own
                if own
                else f"worst {worst['name']}" + (f": {worst['hint']}" if worst.get("hint") else "")
            )
        out.append(
            dict(
                name=name, manual=worst["manual"], reference=worst["reference"],
                abs_err=worst["abs_err"], rel_err=worst["rel_err"],
                allowed_err=worst["allowed_err"], score=worst["score"],
                passed=all(w["passed"] for w in rows), status=worst["status"],
                precision=worst["precision"], not_judgeable=worst["not_judgeable"],
                worst_point=dict(worst["worst_point"]), hint=hint,
            )
        )  # fmt: skip
    return out


def _score(w: dict) -> float:
    return w["score"] if isinstance(w["score"], float) else float("inf")


@full_precision
def check_backward(
    forward: Callable,
    backward: Callable,
    params: Any,
    *inputs: Any,
    points: int = 63,
    key: jax.Array | None = None,
    spread: float = 0.5,
    rtol: float | None = None,
    atol: float | None = None,
    fd: bool = True,
    fd_max: int = 64,
    memory: int | None = None,
    reference: str = "autodiff",
) -> AuditResult:
    """Audit every intermediate of a hand-written backward pass against autodiff.

    Args:
      forward: ``(tap, params, *inputs) -> scalar loss``; ``tap(name, value)`` marks an
        intermediate and returns it (use the returned value).
      backward: ``(params, *inputs) -> {name: d<name>}``, one array per marked name, of
        the intermediate's shape: ``dE/d<name>`` written by hand.
      params, *inputs: the point to check at: float arrays or pytrees of them.
      points: random points around it (every leaf of ``params`` moved by ``spread`` times
        its RMS times standard normal noise; ``inputs`` stay as given, so labels and one-hot
        targets keep their meaning), besides the point itself.
      key: PRNG key for the points (keyword-only, required when ``points > 0``).
      rtol, atol, fd, fd_max, memory, reference: as in :func:`audit.check_gradients`
        (finite differences of the loss in each probe).

    Returns:
      An :class:`audit.AuditResult`: ``weights`` holds one entry per element of every
      intermediate (``h[0,3]``); ``factors`` one per intermediate in backward order, its
      worst element and how many disagree; ``first_failing_factor`` the first
      intermediate, in backward order, that disagrees.

    Example:
      >>> def forward(tap, w, x):
      ...     h = tap("h", x * w)
      ...     return jnp.sum(tap("a", jnp.tanh(h)))
      >>> def backward(w, x):
      ...     a = jnp.tanh(x * w)
      ...     return {"a": jnp.ones_like(a), "h": 1 - a}  # a slip: 1 - a**2
      >>> r = check_backward(forward, backward, jnp.ones(3), jnp.arange(3.0), key=jax.random.key(0))
      >>> r.passed, r.first_failing_factor
      (False, 'h')
    """
    t_start = time.perf_counter()
    for what, fn in (("forward", forward), ("backward", backward)):
        if not callable(fn):
            raise TypeError(f"{what} is {type(fn).__name__}, expected a function")
    points = check_int(points, "points", 0)
    memory = check_int(memory, "memory", 1, none_ok=True)
    reference = check_reference(reference, fd=fd)
    if points and key is None:
        raise ValueError("points > 0 needs key=jax.random.key(seed) for the random points")
    if points:
        check_key(key)
    xin = jax.tree.map(jnp.asarray, (params, tuple(inputs)))
    dtypes = {a.dtype for a in jax.tree.leaves(xin)}
    if not dtypes or len(dtypes) != 1 or not jnp.issubdtype(next(iter(dtypes)), jnp.floating):
        raise TypeError(
            f"params and inputs have dtypes {sorted(map(str, dtypes))}; expected one float "
            "dtype throughout (bind integer or static arguments with functools.partial)"
        )
    order = _record(forward, *xin)
    dt = next(iter(dtypes))
    if any(s.dtype != dt for _, s in order):
        raise TypeError(f"every marked intermediate must be {dt}, like the params")
    names = tuple(sorted(name for name, _ in order))
    _check_backward(backward, xin, names)
    grad_fn, loss_fn, ref_grad_fn = _functions(forward, backward, names)
    crowded = clear_if_crowded()
    n = points + 1
    # the params move, the inputs stay (labels, one-hot targets, masks keep their meaning),
    # as in check_gradients
    n_params = sum(int(np.size(a)) for a in jax.tree.leaves(xin[0]))
    moved = (
        perturbed.pick(points * n_params)(xin[0], key, spread, points=points)
        if points
        else jax.tree.map(lambda a: a[None], xin[0])
    )
    stacked = (moved, jax.tree.map(lambda a: np.broadcast_to(np.asarray(a), (n, *a.shape)), xin[1]))
    shapes = dict(order)
    probes = {name: np.zeros((n, *shapes[name].shape), dt) for name in names}
    group = PointGroup(
        ("random",) * n, probes, stacked, np.zeros((n, 1), dt),
        numbered("perturbed point", n, first=["given point"]),
    )  # fmt: skip
    traced = is_traceable(grad_fn, group)
    tol = default_tolerance(dt, rtol, atol)
    ref_dtype = jnp.float64
    weights, notes, per_call, phases, leaves, fd_points = compare_groups(
        grad_fn, ref_grad_fn, loss_fn, [group], traced=traced, names=_element_names(order),
        tol=tol, ref_dtype=ref_dtype, fd=fd, fd_max=fd_max, candidates=None, saturation=None,
        progress=None, memory=memory, leaf_names=list(names), reference_name="autodiff",
        reference=reference,
    )  # fmt: skip
    factors = _summaries(weights, order, {leaf["name"]: leaf["hint"] for leaf in leaves})
    first = next((f["name"] for f in factors if not f["passed"]), None)
    timing = dict(phases, total_s=time.perf_counter() - t_start)
    return AuditResult(
        passed=all(column(weights, "passed")),
        config=dict(
            check="check_backward",
            grad=grad_fn.__name__,
            loss=loss_fn.__name__,
            points=points,
            dtype=jnp.dtype(dt).name,
            intermediates=[name for name, _ in reversed(order)],
            autodiff_of="the forward pass at zero probes, in float64",
            **comparison_config(
                tol,
                ref_dtype,
                fd=fd,
                fd_max=fd_max,
                memory=memory,
                per_call=per_call,
                mesh=None,
                reference=reference,
                fd_points=fd_points,
            ),
            leaves=leaves,
        ),
        tolerance=tolerance_dict(tol),
        points=dict(total=n, seed_example=0, random=points, trajectory=0, traced=traced),
        weights=weights,
        factors=factors,
        first_failing_factor=first,
        notes=([crowded] if crowded else []) + notes,
        training=None,
        timing=timing,
    )


def assert_backward(
    forward: Callable, backward: Callable, params: Any, *inputs: Any, **options: Any
) -> None:
    """:func:`check_backward` as one line in a test: raises ``AssertionError`` naming the
    first intermediate in backward order that disagrees, then per intermediate how many
    elements fail and the worst few, unless every element passes."""
    result = check_backward(forward, backward, params, *inputs, **options)
    if not result.passed:
        head = f"first failing intermediate in backward order: {result.first_failing_factor}"
        raise AssertionError(f"{head}\n{failure_message(result)}")
