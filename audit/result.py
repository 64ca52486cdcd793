"""The audit's result: one object holding exactly what ``report.json`` holds."""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "STATUSES",
    "AuditResult",
    "column",
    "json_number",
    "json_numbers",
    "names_of",
    "status_counts",
    "verdict_of",
]

# An element's status: agrees; agrees once rounding is told apart; disagrees; never judgeable.
STATUSES = ("pass", "precision", "fail", "not_judged")


def json_numbers(values: Any) -> list[float | str]:
    """:func:`json_number` of each of a 1-D array of numbers, at NumPy's speed: a 5,000-step
    loss curve a value at a time was a fifth of a small ``audit_network`` call."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    out: list[float | str] = a.tolist()
    for i in np.flatnonzero(~np.isfinite(a)).tolist():
        out[i] = json_number(a[i])
    return out


def json_number(v: Any) -> float | str | None:
    """A float for JSON: finite floats as they are, NaN/Inf as the strings "nan", "inf", "-inf"."""
    if v is None:
        return None
    v = float(v)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def column(rows: Sequence[Mapping[str, Any]], key: str) -> list:
    """Every row's ``key`` (None where it has none): from the columns of a
    :class:`audit.weight_table.WeightTable` without making its entries, else row by row."""
    own = getattr(rows, "column", None)
    if callable(own):
        return own(key)
    return [e.get(key) for e in rows]


def names_of(rows: Sequence[Mapping[str, Any]]) -> Sequence[str]:
    """Every row's ``"name"``: a :class:`audit.weight_table.WeightTable`'s own names (written
    only where read), else a list read row by row."""
    own = getattr(rows, "names", None)
    return own if isinstance(own, Sequence) else column(rows, "name")


def status_counts(
    weights: Sequence[Mapping[str, Any]], factors: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, int]]:
    """How many weights and factors have each status: ``{"weights": {"pass": 9,
    "precision": 0, "fail": 0, "not_judged": 0}, "factors": {...}}``."""

    def counted(rows) -> dict[str, int]:
        own = getattr(rows, "status_count", None)  # a WeightTable counts its status column
        if callable(own):
            return {s: own(s) for s in STATUSES}
        seen = collections.Counter(column(rows, "status"))
        return {s: seen[s] for s in STATUSES}

    return {what: counted(rows) for what, rows in (("weights", weights), ("factors", factors))}


def verdict_of(passed: bool, entries: Sequence[Mapping[str, Any]]) -> str:
    """``"passed"``, ``"failed"`` (something disagrees) or ``"not_judged"`` (nothing
    disagrees, but ``jax.grad`` was never finite for some weight or factor), from the
    overall flag and the weight and factor entries' ``status``."""
    if passed:
        return "passed"
    statuses = set(column(entries, "status"))
    if "fail" not in statuses and "not_judged" in statuses:
        return "not_judged"
    return "failed"


@dataclasses.dataclass
class AuditResult:
    """Everything an audit found.

    Attributes:
      passed: every weight and every factor agrees with the reference at every point.
      config: the options used, jax version, backend and devices.
      tolerance: ``rtol``, ``atol``, ``floor``, ``noise`` and the rule in words.
      points: how many points of each source were audited.
      weights: one dict per scalar parameter, in flatten order (a list, or a
        :class:`audit.weight_table.WeightTable` that reads as one and makes each dict when it
        is first read): ``name, manual, reference,
        finite_diff, abs_err, rel_err, allowed_err, score, passed, status, precision,
        not_judgeable, hint, saturated, worst_point``; values are those at the weight's
        worst point. ``status`` is ``"pass"``, ``"precision"`` (it passed only once rounding
        in the audited dtype was told apart from a wrong formula; ``precision`` says how
        many digits were lost, how it was told and at how many points), ``"fail"`` or
        ``"not_judged"`` (``jax.grad`` was not finite at any point); ``not_judgeable``
        counts the points where ``jax.grad`` was not finite.
      factors: one dict per chain factor or layer delta: ``name, manual, reference, abs_err,
        rel_err, passed, status, precision, not_judgeable, worst_point``.
      first_failing_factor: the first factor in chain order that fails, or None.
      notes: notices (an untraceable function, finite differences that disagree, ...).
      training: ``steps, grad, optimizer, learning_rate, checkpoints, loss_manual,
        loss_autodiff, max_loss_diff, max_param_diff`` or None when nothing was trained.
      files: the report files, in the mapping :func:`audit.write_report` writes to
        ``report.json``; the result object itself is left as it was (empty here).
      timing: seconds spent per phase (the only part that changes between identical runs).
      counts: how many weights and factors have each status, e.g. ``{"weights": {"pass": 9,
        "precision": 0, "fail": 0, "not_judged": 0}, "factors": {...}}``; derived from
        ``weights`` and ``factors`` when not given.
    """

    passed: bool
    config: dict
    tolerance: dict
    points: dict
    weights: Sequence[dict]
    factors: list[dict]
    first_failing_factor: str | None
    notes: list[str]
    training: dict | None
    files: list[str] = dataclasses.field(default_factory=list)
    timing: dict = dataclasses.field(default_factory=dict)
    counts: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = status_counts(self.weights, self.factors)

    @property
    def verdict(self) -> str:
        """``"passed"``, ``"failed"`` (something disagrees) or ``"not_judged"`` (nothing
        disagrees, but ``jax.grad`` was never finite for some weight or factor)."""
        statuses = column(self.weights, "status") + column(self.factors, "status")
        return verdict_of(self.passed, [{"status": s} for s in set(statuses)])

    @property
    def failed_weights(self) -> list[str]:
        """Names of the weights that failed, in flatten order."""
        names = names_of(self.weights)
        return [names[i] for i, ok in enumerate(column(self.weights, "passed")) if not ok]

    def weight(self, name: str) -> dict:
        """The entry of one weight by its name (``"w12"``)."""
        names = names_of(self.weights)
        try:
            i = names.index(name)
        except ValueError:
            shown = ", ".join(names[:12]) + (
                f" and {len(names) - 12} more" if len(names) > 12 else ""
            )
            raise KeyError(f"no weight named {name!r}; names are {shown}") from None
        return self.weights[i]

    def to_dict(self) -> dict:
        """Every field as a dict (a deep copy; JSON-safe, NaN/Inf as ``"nan"``/``"inf"``).
        ``report.json`` is this in its versioned form: :func:`audit.report_json.document`."""
        return dataclasses.asdict(dataclasses.replace(self, weights=list(self.weights)))
