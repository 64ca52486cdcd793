"""Audits as one line of a test: an ``AssertionError`` whose message reads at a glance.

:func:`failure_message` is the compact account every ``assert_*`` raises: per tensor how many
elements fail, their typical ratio to the reference and the tensor's hint, then the worst few
with both values, the hint and the point. :func:`assert_gradients` is the one-line form of
:func:`audit.check_gradients`, in place of ``jax.test_util.check_grads`` (one projected
scalar, no location) or ``torch.autograd.gradcheck`` in a test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from audit.cells import reference_name
from audit.check import check_gradients
from audit.result import AuditResult
from audit.summary import leaf_summaries, ratio_text

__all__ = ["assert_gradients", "failure_message"]


def failure_message(result: AuditResult, *, worst: int = 3) -> str:
    """A compact account of a failed audit for a test's AssertionError: the verdict line,
    then per leaf how many elements fail, their typical ratio to the reference and the
    leaf's hint (:func:`audit.summary.leaf_summaries`), and the ``worst`` of them with both
    values, the hint and the point."""
    check = result.config.get("check", "check_gradients")
    mine = {"check_backward": "by hand", "check_gradients": "handwritten"}.get(check, "rule")
    ref = reference_name(result)
    reference = result.config.get("reference", "autodiff")
    lines = []
    for leaf in leaf_summaries(result):
        entries = [result.weights[k] for k in leaf["rows"]]
        bad = [w for w in entries if w["status"] in ("fail", "not_judged")]
        if not bad:
            continue
        bad.sort(key=lambda w: -(w["score"] if isinstance(w["score"], float) else np.inf))
        head = f"{leaf['name']}: {len(bad)} of {len(entries)} elements disagree"
        if leaf["ratio"] is not None:
            head += f", typically {ratio_text(leaf['ratio'])} of {ref}"
        lines.append(head + (f"; {leaf['hint']}" if leaf["hint"] else ""))
        for w in bad[:worst]:
            hint = f"; {w['hint']}" if w.get("hint") else ""
            sides = [(mine, w["manual"]), (ref, w["reference"])]
            if reference != "autodiff" and w.get("finite_diff") is not None:
                fd = ("finite differences", w["finite_diff"])
                sides = [sides[0], fd] if reference == "fd" else [*sides, fd]
            values = ", ".join(f"{who} {_g(v)}" for who, v in sides)
            lines.append(f"  {w['name']}: {values} at {w['worst_point']['label']}{hint}")
    total = len(result.weights)
    failing = sum(1 for w in result.weights if not w["passed"])
    said = check if reference == "autodiff" else f"{check}, reference={reference!r}"
    head = f"{failing} of {total} elements disagree ({said})"
    return "\n".join([head, *lines])


def _g(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def assert_gradients(
    grad_fn: Callable, loss_fn: Callable, params: Any, x: Any, y: Any, *, points: int = 15,
    key: jax.Array | None = None, **options: Any,
) -> None:  # fmt: skip
    """:func:`audit.check_gradients` as one line in a test: raises ``AssertionError`` with
    :func:`failure_message` unless every element agrees with ``jax.grad``, at the given
    params and ``points`` random points around them (default 15, drawn from ``key``, which
    is then required; ``points=0`` checks the given point alone).

    ``options`` are :func:`audit.check_gradients`' (``reference``, ``rtol``, ``spread``, ...).

    Example:
      >>> def loss_fn(p, x, y): return jnp.mean((x @ p["w"] - y) ** 2)
      >>> def grad_fn(p, x, y): return {"w": x.T @ (x @ p["w"] - y) / y.size}  # a slip: 2 x
      >>> kw, kx, ky = jax.random.split(jax.random.key(0), 3)
      >>> w = jax.random.normal(kw, (3, 2))
      >>> x, y = jax.random.normal(kx, (8, 3)), jax.random.normal(ky, (8, 2))
      >>> assert_gradients(grad_fn, loss_fn, {"w": w}, x, y, key=kw)
      Traceback (most recent call last):
      ...
      AssertionError: 6 of 6 elements disagree (check_gradients)
      ['w']: 6 of 6 elements disagree, typically x0.5 of jax.grad; ...
      ...
    """
    result = check_gradients(grad_fn, loss_fn, params, x, y, points=points, key=key, **options)
    if not result.passed:
        raise AssertionError(failure_message(result))
