"""One line per tensor: how many of its elements fail, their typical ratio to the reference and
one hint, computed from a result's entries so every view (the terminal table, the Markdown
and HTML reports, a test's AssertionError) leads with the same lines.

A tensor is a leaf of the audited pytree: a layer's ``W`` or ``b`` in a network audit, a leaf
of ``params`` for :func:`audit.check_gradients`, an input leaf for :func:`audit.check_vjp`,
an intermediate for :func:`audit.check_backward` (listed in backward order). The audit
records the tensors in ``config["leaves"]`` (name, shape and the hint for the tensor as a
whole, see :func:`audit.diagnose.diagnose_leaves`); for a report without them the tensors
are read from the element names (``x[3]`` belongs to ``x``).

Example:
    >>> weights = [
    ...     {"name": "x[0]", "manual": -2.0, "reference": 2.0, "status": "fail", "hint": "h"},
    ...     {"name": "x[1]", "manual": 1.0, "reference": 1.0, "status": "pass", "hint": None},
    ... ]
    >>> s = leaf_summaries({"weights": weights})[0]
    >>> s["name"], s["failing"], s["size"]
    ('x', 1, 2)
    >>> summary_cells(s)
    ['x', '1/2', 'x-1', 'FAIL', 'h']
"""

from __future__ import annotations

import collections
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from audit.cells import VERDICTS, as_float, hint_text, reference_name, result_dict, severity, status

__all__ = ["leaf_summaries", "ratio_text", "summary_cells", "summary_header"]

_INDEX = re.compile(r"\[[0-9, ]*\]$")


def ratio_text(ratio: float | None) -> str:
    """``x0.98`` (more digits near 1), ``-`` for None."""
    if ratio is None or not math.isfinite(ratio):
        return "-"
    return f"x{ratio:.6g}" if abs(ratio - 1) < 1e-2 else f"x{ratio:.3g}"


def _spans_from_names(weights: Sequence[Mapping[str, Any]], config: Mapping[str, Any]):
    """``[(name, shape, start, stop)]`` read from a report that does not list its tensors."""
    sizes = config.get("sizes")
    if sizes and sum(a * b + b for a, b in itertools.pairwise(sizes)) == len(weights):
        spans, start = [], 0
        for layer, (a, b) in enumerate(itertools.pairwise(sizes), start=1):
            for what, shape in (("W", [b, a]), ("b", [b])):
                size = math.prod(shape)
                spans.append((f"layer {layer} {what}", shape, start, start + size))
                start += size
        return spans
    names = [str(w.get("name")) for w in weights]
    if not names:
        return []
    if not any(_INDEX.search(name) for name in names):  # no tensor named: one for all
        return [("weights", [len(names)], 0, len(names))]
    spans = []
    for k, name in enumerate(names):
        leaf = _INDEX.sub("", name) or "params"
        if spans and spans[-1][0] == leaf:
            spans[-1] = (leaf, [spans[-1][3] - spans[-1][2] + 1], spans[-1][2], k + 1)
        else:
            spans.append((leaf, [1], k, k + 1))
    return spans


def _spans(weights, config):
    leaves = config.get("leaves") or []
    sizes = [math.prod(leaf.get("shape") or []) for leaf in leaves]
    if leaves and sum(sizes) == len(weights):
        spans, start = [], 0
        for leaf, size in zip(leaves, sizes, strict=True):
            shape = list(leaf.get("shape") or [])
            spans.append((str(leaf.get("name")), shape, start, start + size))
            start += size
        return spans, [leaf.get("hint") for leaf in leaves]
    spans = _spans_from_names(weights, config)
    return spans, [None] * len(spans)


def _ratio(rows: Sequence[Mapping[str, Any]]) -> float | None:
    ratios = []
    for w in rows:
        m, r = as_float(w.get("manual")), as_float(w.get("reference"))
        if m is not None and r and math.isfinite(m) and math.isfinite(r):
            ratios.append(m / r)
    if not ratios:
        return None
    ratios.sort()
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


def _hint(rows, failing, ref: str) -> str | None:
    if failing:
        hints = [hint_text(w) for w in failing]
        common = collections.Counter(h for h in hints if h)
        if len(common) == 1:
            return next(iter(common))
        worst = max(failing, key=severity)
        own = hint_text(worst)
        if not own or own.startswith("no simple pattern"):  # its row says as much
            return None
        return f"worst {worst.get('name')}: {own}"
    flagged = [w for w in rows if status(w) == "precision"]
    unjudged = [w for w in rows if status(w) == "not_judged"]
    if unjudged:
        return f"{ref} was not finite at every point for {len(unjudged)} elements"
    if flagged:
        return f"{len(flagged)} pass as rounding (PASS*)"
    return None


def leaf_summaries(result: Any) -> list[dict]:
    """One entry per tensor of an audit result, in flatten order (backward order for a
    backward pass's intermediates).

    Args:
      result: an ``AuditResult`` or its ``to_dict()`` mapping.

    Returns:
      Dicts with ``name``, ``shape``, ``size``, ``failing`` (elements that fail),
      ``not_judged``, ``precision`` (``PASS*``), ``status`` (the worst element's),
      ``ratio`` (the median ratio handwritten / reference of the failing elements at their
      worst points, None when none fails), ``hint`` (the tensor's, else the one its failing
      elements share, else the worst one's) and ``rows``: indices into ``weights`` in the
      order to show them, failing ones first (worst first), then the rest in flatten order.
    """
    data = result_dict(result)
    weights = data.get("weights") or []
    config = data.get("config") or {}
    ref = reference_name(data)
    spans, leaf_hints = _spans(weights, config)
    out = []
    for (name, shape, start, stop), leaf_hint in zip(spans, leaf_hints, strict=True):
        rows = weights[start:stop]
        failing = [w for w in rows if status(w) == "fail"]
        counts = collections.Counter(status(w) for w in rows)
        worst = next((s for s in ("fail", "not_judged", "precision") if counts[s]), "pass")
        bad = sorted(
            (k for k in range(start, stop) if status(weights[k]) == "fail"),
            key=lambda k: severity(weights[k]),
            reverse=True,
        )
        rest = [k for k in range(start, stop) if status(weights[k]) != "fail"]
        out.append(
            dict(
                name=name, shape=list(shape), size=stop - start, failing=len(failing),
                not_judged=counts["not_judged"], precision=counts["precision"], status=worst,
                ratio=_ratio(failing), hint=(leaf_hint if failing and leaf_hint else None)
                or _hint(rows, failing, ref), rows=bad + rest,
            )
        )  # fmt: skip
    order = config.get("intermediates")
    if order and sorted(order) == sorted(s["name"] for s in out):
        rank = {name: k for k, name in enumerate(order)}
        out.sort(key=lambda s: rank[s["name"]])
    return out


def summary_header(result: Any) -> list[str]:
    """Column names of :func:`summary_cells`."""
    data = result_dict(result)
    check = (data.get("config") or {}).get("check")
    what = "intermediate" if check == "check_backward" else "tensor"
    return [what, "failing", f"ratio to {reference_name(data)}", "verdict", "hint"]


def summary_cells(s: Mapping[str, Any]) -> list[str]:
    """A tensor's summary as table cells: name, ``failing/size``, ratio, verdict, hint."""
    return [
        str(s["name"]),
        f"{s['failing']}/{s['size']}",
        ratio_text(s.get("ratio")),
        VERDICTS[s["status"]],
        s.get("hint") or "",
    ]
