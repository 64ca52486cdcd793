"""The audit's result: one object holding exactly what ``report.json`` holds."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["AuditResult", "number"]


def number(v: Any) -> float | str | None:
    """A float for JSON: finite floats as they are, NaN/Inf as the strings "nan", "inf", "-inf"."""
    if v is None:
        return None
    v = float(v)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


@dataclasses.dataclass
class AuditResult:
    """Everything an audit found.

    Attributes:
      passed: every weight and every factor agrees with the reference at every point.
      config: the options used, jax version, backend and devices.
      tolerance: ``rtol``, ``atol``, ``floor``, ``noise`` and the rule in words.
      points: how many points of each source were audited.
      weights: one dict per scalar parameter, in flatten order: ``name, manual, reference,
        finite_diff, abs_err, rel_err, passed, hint, saturated, worst_point``; values are
        those at the weight's worst point.
      factors: one dict per chain factor or layer delta: ``name, manual, reference, abs_err,
        rel_err, passed, worst_point``.
      first_failing_factor: the first factor in chain order that fails, or None.
      notes: notices (an untraceable function, finite differences that disagree, ...).
      training: ``steps, grad, optimizer, learning_rate, checkpoints, loss_manual,
        loss_autodiff, max_loss_diff, max_param_diff`` or None when nothing was trained.
      files: report files written (filled by :func:`audit.write_report`).
      timing: seconds spent per phase (the only part that changes between identical runs).
    """

    passed: bool
    config: dict
    tolerance: dict
    points: dict
    weights: list[dict]
    factors: list[dict]
    first_failing_factor: str | None
    notes: list[str]
    training: dict | None
    files: list[str] = dataclasses.field(default_factory=list)
    timing: dict = dataclasses.field(default_factory=dict)

    @property
    def failed_weights(self) -> list[str]:
        """Names of the weights that failed, in flatten order."""
        return [w["name"] for w in self.weights if not w["passed"]]

    def weight(self, name: str) -> dict:
        """The entry of one weight by its name (``"w12"``)."""
        for w in self.weights:
            if w["name"] == name:
                return w
        raise KeyError(f"no weight named {name!r}; names are {[w['name'] for w in self.weights]}")

    def to_dict(self) -> dict:
        """The report.json content (a deep copy; JSON-safe)."""
        return dataclasses.asdict(self)
