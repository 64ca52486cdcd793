"""``report.json``: the audit's result as a versioned document for CI systems and dashboards.

The document follows ``audit/report.schema.json`` (JSON Schema 2020-12, shipped with the
package; :func:`schema` loads it). It differs from :meth:`audit.AuditResult.to_dict` in
three ways, all for readers that are programs:

- **Versions first.** ``schema`` names the format and ``schema_version`` its version
  (:data:`SCHEMA_VERSION`, raised on any change a reader could trip on); ``jaxbp_version``
  the package that wrote it; then ``passed``, ``verdict`` and ``counts``.
- **Numbers are numbers.** A NaN or an infinity is written as ``null``, and the object that
  held it gets a ``nonfinite`` map saying what it was: ``{"manual": "nan"}`` for a field,
  ``{"loss_manual": 3}`` (how many elements) for a list. Every number field is therefore
  a number or ``null``, never a string.
- **Short curves.** Loss histories longer than :data:`CURVE_POINTS` are thinned to every
  k-th step plus the last (``training.loss_steps`` says which); the full curves are in
  ``loss_curves.csv`` beside it (:func:`curves_csv`).

Everything that changes between two runs of the same audit is under ``timing``.

Example:
    >>> doc = document({"passed": True, "weights": [{"name": "w", "manual": float("nan")}]})
    >>> doc["weights"][0]["manual"], doc["weights"][0]["nonfinite"]
    (None, {'manual': 'nan'})
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np

from audit.result import status_counts, verdict_of

__all__ = [
    "CURVES_FILE",
    "CURVE_POINTS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "curves_csv",
    "document",
    "schema",
    "thinned_steps",
]

SCHEMA = "jaxbp-audit-report"
SCHEMA_VERSION = 1
CURVE_POINTS = 1000  # loss-history entries kept in report.json; the CSV keeps them all
CURVES_FILE = "loss_curves.csv"

_FIRST = ("schema", "schema_version", "jaxbp_version", "passed", "verdict", "counts")
_CURVES = ("loss_manual", "loss_autodiff")


@functools.cache
def schema() -> dict:
    """The JSON Schema of ``report.json`` (a fresh copy each call is not needed: read only)."""
    text = resources.files("audit").joinpath("report.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def thinned_steps(n: int, most: int = CURVE_POINTS) -> np.ndarray:
    """Indices of the history entries kept: all when ``n <= most``, else every ``k``-th
    (``k = ceil(n / (most - 1))``) and the last, so the final loss is always there."""
    if n <= most:
        return np.arange(n)
    k = math.ceil(n / (most - 1))
    steps = np.arange(0, n, k)
    return steps if steps[-1] == n - 1 else np.append(steps, n - 1)


def _nonfinite_word(v: float) -> str:
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _as_float(v: Any) -> float | None:
    """A float for a real number or one of the report's ``"nan"``/``"inf"`` strings."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, str):
        return float(v) if v in ("nan", "inf", "-inf") else None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return None


def _clean(value: Any) -> Any:
    """JSON-ready copy: NumPy values as Python ones; non-finite numbers as null, each
    recorded in its object's ``nonfinite`` map."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        flags: dict[str, Any] = {}
        for k, v in value.items():
            k = str(k)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            f = _as_float(v)
            if f is not None and not math.isfinite(f):
                out[k], flags[k] = None, _nonfinite_word(f)
            elif isinstance(v, (list, tuple)) and v and all(_as_float(e) is not None for e in v):
                xs = [_as_float(e) for e in v]
                bad = sum(not math.isfinite(e) for e in xs)
                out[k] = [e if math.isfinite(e) else None for e in xs] if bad else _clean(v)
                if bad:
                    flags[k] = bad
            else:
                out[k] = _clean(v)
        if flags:
            out["nonfinite"] = {**out.get("nonfinite", {}), **flags}
        return out
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a bare non-finite list element outside a number list
    return value


def _entries(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Weight or factor entries, each with its (possibly empty) ``nonfinite`` map."""
    out = []
    for row in rows:
        entry = _clean(row)
        entry.setdefault("nonfinite", {})
        out.append(entry)
    return out


def _training(training: Mapping[str, Any] | None) -> dict | None:
    if training is None:
        return None
    t = dict(training)
    n = max((len(t.get(k) or ()) for k in _CURVES), default=0)
    keep = thinned_steps(n)
    for k in _CURVES:
        if t.get(k) is not None:
            t[k] = [t[k][i] for i in keep]
    t["loss_steps"] = keep.tolist()
    t["history_length"] = n
    t["curves_file"] = CURVES_FILE if n else None
    out = _clean(t)
    out.setdefault("nonfinite", {})
    return out


def document(data: Mapping[str, Any], *, version: str | None = None) -> dict:
    """The ``report.json`` document of a result's :meth:`~audit.AuditResult.to_dict` mapping.

    Args:
      data: the mapping (NaN/Inf as floats or as the strings ``"nan"``, ``"inf"``, ``"-inf"``).
      version: the jaxbp version to record (default: the installed one).

    Returns:
      A new dict, JSON-safe with ``allow_nan=False``, keys in the schema's order.
    """
    if version is None:
        from jaxbp import __version__ as version
    body = {k: v for k, v in data.items() if k not in _FIRST}
    entries = list(data.get("weights") or []) + list(data.get("factors") or [])
    verdict = data.get("verdict") or verdict_of(bool(data.get("passed")), entries)
    doc: dict[str, Any] = dict(
        schema=SCHEMA,
        schema_version=SCHEMA_VERSION,
        jaxbp_version=str(version),
        passed=bool(data.get("passed")),
        verdict=verdict,
        counts=_clean(
            data.get("counts")
            or status_counts(data.get("weights") or [], data.get("factors") or [])
        ),
    )
    for k, v in body.items():
        if k in ("weights", "factors"):
            doc[k] = _entries(v or [])
        elif k == "training":
            doc[k] = _training(v)
        elif k != "timing":
            doc[k] = _clean(v)
    doc["timing"] = _clean(data.get("timing") or {})
    return doc


def curves_csv(data: Mapping[str, Any]) -> str | None:
    """The full loss histories as CSV (``step,loss_manual,loss_autodiff``; ``nan``/``inf``
    as Python writes them, every float to its shortest exact digits), or None when nothing
    was trained."""
    training = data.get("training")
    if not training:
        return None
    cols = [k for k in _CURVES if training.get(k) is not None]
    n = max((len(training[k]) for k in cols), default=0)
    if not n:
        return None
    buf = io.StringIO()
    buf.write(",".join(["step", *cols]) + "\n")
    values = [[_as_float(v) for v in training[k]] for k in cols]
    for i in range(n):
        cells = [repr(col[i]) if i < len(col) and col[i] is not None else "" for col in values]
        buf.write(",".join([str(i), *cells]) + "\n")
    return buf.getvalue()
