"""How a result's values, rows and lines read: the words and numbers that the terminal table,
the Markdown and HTML reports and the plots all print the same way.

Every view reads the same dict, ``result.to_dict()`` (``report.json`` is its versioned form,
:mod:`audit.report_json`).

Example:
    >>> sci(0.000123456), sci("nan"), sci(None)
    ('1.2346e-04', 'nan', '-')
    >>> verdict({"status": "precision", "passed": True})
    'PASS*'
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "LEGEND",
    "VERDICTS",
    "as_float",
    "count_failing",
    "count_status",
    "factor_cells",
    "header_line",
    "hint_text",
    "legend",
    "outcome",
    "passing",
    "points_line",
    "reference_name",
    "result_dict",
    "sci",
    "select_rows",
    "severity",
    "status",
    "tolerance_lines",
    "verdict",
    "verdict_line",
    "weight_cells",
]


# Failing names listed in the verdict line before it says "and N more".
_VERDICT_NAMES = 6


def result_dict(result: Any) -> Mapping[str, Any]:
    """The report dict of an ``AuditResult`` (via ``to_dict()``), or ``result`` if it is one."""
    to_dict = getattr(result, "to_dict", None)
    data = to_dict() if callable(to_dict) else result
    if not isinstance(data, Mapping):
        raise TypeError(
            f"expected an AuditResult or its to_dict() mapping, got {type(result).__name__}"
        )
    return data


# audits whose reference is autodiff of the user's own primal or forward code, not jax.grad
# of a loss
_AUTODIFF_CHECKS = ("check_vjp", "check_jvp", "check_backward")


def reference_name(result: Any) -> str:
    """What the audit's reference is called in hints, headers and messages: ``autodiff`` for
    a custom rule's or a backward pass's audit (autodiff of the primal or forward code),
    else ``jax.grad``."""
    data = result_dict(result)
    check = (data.get("config") or {}).get("check")
    return "autodiff" if check in _AUTODIFF_CHECKS else "jax.grad"


def as_float(value: Any) -> float | None:
    """A report value as a float: ``None`` stays ``None``; ``"nan"``/``"inf"``/``"-inf"`` parse."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def sci(value: Any) -> str:
    """Compact scientific notation (``-1.2346e-03``); ``nan``/``inf``/``-inf``; ``-`` for None."""
    v = as_float(value)
    if v is None:
        return "-"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4e}"


VERDICTS = {"pass": "PASS", "precision": "PASS*", "fail": "FAIL", "not_judged": "NOT JUDGED"}


LEGEND = {
    "PASS*": "PASS*: agrees once rounding in the audited dtype is accounted for; the hint says "
    "how many digits it lost and how that was told from a wrong formula",
    "NOT JUDGED": "NOT JUDGED: jax.grad itself was not finite at every point, so nothing was "
    "checked; this is neither a pass nor a failure",
}


def status(row: Mapping[str, Any]) -> str:
    """A row's status: ``pass``, ``precision``, ``fail`` or ``not_judged`` (older reports: by
    ``passed``)."""
    s = row.get("status")
    if s in VERDICTS:
        return str(s)
    return "pass" if row.get("passed") else "fail"


def verdict(row: Mapping[str, Any]) -> str:
    """The verdict cell: PASS, PASS* (a pass on the second look), FAIL or NOT JUDGED."""
    return VERDICTS[status(row)]


def passing(text: str) -> bool:
    """Whether a verdict cell is a pass of either kind (for colouring)."""
    return text in ("PASS", "PASS*")


def outcome(data: Mapping[str, Any]) -> str:
    """``PASSED``, ``FAILED`` or ``NOT JUDGED`` (nothing disagrees, but some weight or factor
    was never judgeable), for headings."""
    if data.get("passed"):
        return "PASSED"
    rows = [*(data.get("weights") or []), *(data.get("factors") or [])]
    if not count_failing(rows) and any(status(r) == "not_judged" for r in rows):
        return "NOT JUDGED"
    return "FAILED"


def legend(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per special verdict that appears among ``rows``."""
    shown = {verdict(r) for r in rows}
    return [text for key, text in LEGEND.items() if key in shown]


def severity(row: Mapping[str, Any]) -> float:
    """A sort key, larger is worse: the relative error, with nan/inf/missing as the worst."""
    v = as_float(row.get("rel_err"))
    if v is None or math.isnan(v):
        return math.inf
    return abs(v)


def select_rows(
    rows: Sequence[Mapping[str, Any]], max_rows: int | None
) -> tuple[list[Mapping[str, Any]], int]:
    """Rows to show and how many were left out.

    Without a limit (or when everything fits) the rows keep their flatten order. Otherwise
    failing rows come first, worst first, then the worst passing ones.
    """
    if max_rows is None or len(rows) <= max_rows:
        return list(rows), 0
    failing = sorted((r for r in rows if not r.get("passed")), key=severity, reverse=True)
    passing = sorted((r for r in rows if r.get("passed")), key=severity, reverse=True)
    shown = (failing + passing)[: max(max_rows, 0)]
    return shown, len(rows) - len(shown)


def hint_text(row: Mapping[str, Any]) -> str:
    """The row's hint, with saturation and precision mentioned when the engine flagged them."""
    hint = row.get("hint") or ""
    precision = row.get("precision") or {}
    if precision.get("text") and precision["text"] not in hint:
        hint = f"{precision['text']}; {hint}" if hint else str(precision["text"])
    if status(row) == "not_judged" and not hint:
        hint = "jax.grad was not finite at every point"
    if row.get("saturated") and "saturat" not in hint.lower():
        hint = f"saturated unit; {hint}" if hint else "saturated unit"
    return hint


def count_failing(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(r.get("name")) for r in rows if status(r) == "fail"]


def count_status(rows: Sequence[Mapping[str, Any]], which: str) -> list[str]:
    """Names of the rows with status ``which``."""
    return [str(r.get("name")) for r in rows if status(r) == which]


def _name_list(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_VERDICT_NAMES])
    more = len(names) - _VERDICT_NAMES
    return f"{shown}, and {more} more" if more > 0 else shown


def verdict_line(result: Any) -> str:
    """One line saying whether the handwritten gradients agree with ``jax.grad``.

    Example:
        ``PASSED: 9/9 weights, 15/15 factors agree with jax.grad at 70 points`` or
        ``FAILED: 2 of 9 weights (w12, w21) disagree with jax.grad at 70 points; ...``
    """
    data = result_dict(result)
    # a custom rule's audit (audit.check_vjp) judges input elements against autodiff of the
    # primal code, not weights against jax.grad of a loss
    check = (data.get("config") or {}).get("check")
    unit, ref = {
        "check_vjp": ("element", "autodiff of the primal"),
        "check_jvp": ("element", "autodiff of the primal"),
        "check_backward": ("element", "autodiff"),
    }.get(check, ("weight", "jax.grad"))
    chosen = (data.get("config") or {}).get("reference")
    if chosen == "fd":
        ref = "finite differences"
    elif chosen == "both":
        ref = f"{ref} and finite differences"
    weights = data.get("weights") or []
    factors = data.get("factors") or []
    total = (data.get("points") or {}).get("total")
    at = f" at {total} points" if total is not None else ""
    bad_w, bad_f = count_failing(weights), count_failing(factors)
    n_w, n_f = len(weights), len(factors)
    extra = []
    for which, what in (("precision", "pass%s as rounding (PASS*)"), ("not_judged", "not judged")):
        groups, n = [], 0
        for rows, kind in ((weights, unit), (factors, "factor")):
            names = count_status(rows, which)
            n += len(names)
            if names:
                groups.append(f"{len(names)} {kind}{'s' if len(names) > 1 else ''} "
                              f"({_name_list(names)})")  # fmt: skip
        if groups:
            extra.append(f"{' and '.join(groups)} {what.replace('%s', 'es' if n == 1 else '')}")
    tail = f"; {'; '.join(extra)}" if extra else ""
    factor_word = "intermediate" if check == "check_backward" else "factor"
    if data.get("passed"):
        parts = [f"{n_w - len(bad_w)}/{n_w} {unit}s"]
        if factors:
            parts.append(f"{n_f - len(bad_f)}/{n_f} {factor_word}s")
        return f"PASSED: {', '.join(parts)} agree with {ref}{at}{tail}"
    problems = []
    if bad_w:
        problems.append(f"{len(bad_w)} of {n_w} {unit}s ({_name_list(bad_w)})")
    if bad_f:
        problems.append(f"{len(bad_f)} of {n_f} {factor_word}s ({_name_list(bad_f)})")
    if problems:
        line = f"FAILED: {' and '.join(problems)} disagree with {ref}{at}"
        first = data.get("first_failing_factor")
        if first:
            line += f"; first failing {factor_word}: {first}"
        return line + tail
    if extra:
        return f"NOT JUDGED: nothing disagrees with {ref}{at}, but {'; '.join(extra)}"
    return (
        f"FAILED: all {n_w} {unit}s and {n_f} factors agree with {ref}{at}, "
        "but the audit did not pass; see the notes"
    )


def points_line(points: Mapping[str, Any]) -> str:
    """How many points were audited, of each source."""
    parts = []
    for key, label in (
        ("seed_example", "seed example"),
        ("random", "random"),
        ("trajectory", "on the training trajectory"),
    ):
        if points.get(key):
            parts.append(f"{points[key]} {label}")
    traced = "; traced under jit" if points.get("traced") else ""
    detail = f" ({', '.join(parts)}{traced})" if parts or traced else ""
    return f"points: {points.get('total')}{detail}"


def header_line(data: Mapping[str, Any]) -> str:
    """The audited configuration in one line."""
    c = data.get("config") or {}
    if c.get("check") in ("check_vjp", "check_jvp", "check_backward"):
        # a rule or a backward pass: no network or data to show; the command line names
        # the function and its inputs, a call from Python the functions audited
        named = ("function", "inputs") if c.get("function") else ("grad", "loss")
        shown = (*named, "dtype", "seed")
        return f"audit: {c['check']} " + " ".join(
            f"{k}={c[k]}" for k in shown if c.get(k) is not None
        )
    sizes = "-".join(str(s) for s in c.get("sizes") or [])
    out_act = c.get("output_activation")
    parts = [
        f"grad={c.get('grad')}",
        f"sizes={sizes}",
        f"activation={c.get('activation')}",
        *([f"output={out_act}"] if out_act else []),
        f"loss={c.get('loss')}",
        f"dtype={c.get('dtype')}",
        f"data={c.get('data')}",
        f"seed={c.get('seed')}",
    ]
    if c.get("reference"):  # which opinion decided (audit.fd_verdict)
        fd_at = f" fd_points={c['fd_points']}" if c.get("fd_points") is not None else ""
        parts.append(f"reference={c['reference']}{fd_at}")
    return "audit: " + " ".join(parts)


def tolerance_lines(data: Mapping[str, Any], width: int = 96) -> list[str]:
    """The tolerances, then the pass/fail rule wrapped to ``width``."""
    tol = data.get("tolerance") or {}
    nums = f"rtol={sci(tol.get('rtol'))}, atol={sci(tol.get('atol'))}"
    if tol.get("floor") is not None:
        nums += f", floor={sci(tol.get('floor'))}"
    rule = tol.get("rule")
    wrapped = textwrap.wrap(str(rule), width, initial_indent="  ", subsequent_indent="  ")
    return [f"tolerance: {nums}", *(wrapped if rule else [])]


def weight_cells(w: Mapping[str, Any]) -> list[str]:
    """A weight's name, values, errors and verdict as table cells (every renderer's columns)."""
    return [
        str(w.get("name")),
        sci(w.get("manual")),
        sci(w.get("reference")),
        sci(w.get("finite_diff")),
        sci(w.get("abs_err")),
        sci(w.get("rel_err")),
        verdict(w),
    ]


def factor_cells(f: Mapping[str, Any]) -> list[str]:
    """A factor's name, values, errors and verdict as table cells."""
    return [
        str(f.get("name")),
        sci(f.get("manual")),
        sci(f.get("reference")),
        sci(f.get("abs_err")),
        sci(f.get("rel_err")),
        verdict(f),
    ]
