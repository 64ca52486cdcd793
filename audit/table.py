"""The audit as plain text: a weight table, a factor table and a one-line verdict, in columns
that fit a terminal. How each value and line reads comes from :mod:`audit.cells`, shared with
the reports.

Example:
    >>> result = audit.audit_network("seed", points=4, steps=10, fd=False)
    >>> table = format_table(result).splitlines()
    >>> table[0].split()[:3]
    ['audit:', 'grad=seed', 'sizes=2-2-1']
    >>> table[-1]
    'PASSED: 9/9 weights, 15/15 factors agree with jax.grad at 11 points'
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from audit.cells import (
    as_float,
    count_failing,
    factor_cells,
    header_line,
    hint_text,
    legend,
    passing,
    points_line,
    reference_name,
    result_dict,
    sci,
    select_rows,
    status,
    tolerance_lines,
    verdict_line,
    weight_cells,
)
from audit.summary import leaf_summaries, summary_cells, summary_header

__all__ = ["format_table"]


_GREEN = "\x1b[32m"


_RED = "\x1b[31m"


_BOLD = "\x1b[1m"


_RESET = "\x1b[0m"


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


def _grid(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[bool],
    wrap_last: int | None,
    verdict_col: int | None,
    color: bool,
) -> list[str]:
    """Aligned columns; the last column wraps at ``wrap_last`` characters onto extra lines."""
    cells = [list(header), *[list(r) for r in rows]]
    last = len(header) - 1
    wrapped: list[list[str]] = []
    for r in cells:
        text = r[last]
        if wrap_last and len(text) > wrap_last:
            lines = textwrap.wrap(text, wrap_last, break_long_words=True) or [""]
            if len(lines) > 3:  # a hint is a pointer, not an essay: cut after three lines
                lines = [
                    *lines[:2],
                    textwrap.shorten(" ".join(lines[2:]), wrap_last, placeholder=" ..."),
                ]
            wrapped.append(lines)
        else:
            wrapped.append([text])
    widths = [
        max(
            len(r[i]) if i != last else max(len(s) for s in w)
            for r, w in zip(cells, wrapped, strict=True)
        )
        for i in range(len(header))
    ]

    def code(k: int, i: int, text: str) -> str | None:
        if not color or not text:
            return None
        if k == 0:
            return _BOLD
        if i == verdict_col:
            return _GREEN if passing(text) else _RED
        return None

    out = []
    for k, (r, w) in enumerate(zip(cells, wrapped, strict=True)):
        for j, tail in enumerate(w):
            parts = []
            for i in range(last + 1):
                text = tail if i == last else (r[i] if j == 0 else "")
                pad = " " * (widths[i] - len(text))
                c = code(k, i, text)
                painted = _paint(text, c, True) if c else text
                # codes wrap the text only, so trailing padding can be stripped
                parts.append(pad + painted if right[i] else painted + pad)
            out.append("  ".join(parts).rstrip())
    return out


def _left_out(rows: Sequence[Mapping[str, Any]], shown: int, what: str) -> list[str]:
    left = len(rows) - shown
    if not left:
        return []
    # failing rows are shown first, so only those beyond the limit are hidden
    hidden_failing = max(len(count_failing(rows)) - shown, 0)
    which = f"{hidden_failing} of them failing" if hidden_failing else "all passing"
    return [f"({left} more {what} not shown, {which})"]


def _training_lines(training: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    lm = training.get("loss_manual") or []
    la = training.get("loss_autodiff") or []
    steps = training.get("steps")
    lr = config.get("learning_rate")
    how = f"{training.get('optimizer', 'sgd')}" + (f", lr={lr:g}" if isinstance(lr, float) else "")
    return [
        f"training: {steps} steps with grad={training.get('grad')} and with jax.grad ({how})",
        f"  final loss: handwritten {sci(lm[-1] if lm else None)}, "
        f"jax.grad {sci(la[-1] if la else None)}",
        f"  max |loss diff| {sci(training.get('max_loss_diff'))}, "
        f"max |param diff| {sci(training.get('max_param_diff'))}",
    ]


def _per_leaf(
    weights: Sequence[Mapping[str, Any]], summaries: Sequence[Mapping[str, Any]], leaf_rows: int
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The rows to show, tensor by tensor (failing ones first), at most ``leaf_rows`` of a
    tensor, and a line for each tensor that had rows left out."""
    shown: list[Mapping[str, Any]] = []
    left: list[str] = []
    for s in summaries:
        rows = [weights[k] for k in s["rows"]]
        keep = rows[: max(leaf_rows, 0)]
        shown += keep
        n_left = len(rows) - len(keep)
        if n_left:
            hidden = sum(1 for w in rows[len(keep) :] if status(w) == "fail")
            which = f"{hidden} of them failing" if hidden else "all passing"
            left.append(f"({n_left} more of {s['name']} not shown, {which})")
    return shown, left


def format_table(
    result: Any,
    *,
    color: bool = False,
    max_rows: int | None = None,
    hint_width: int = 48,
    leaf_rows: int = 4,
) -> str:
    """Renders an audit result for a terminal.

    When an element fails (or is flagged) or a tensor has more than ``leaf_rows`` elements,
    the table opens with one line per tensor (:func:`audit.summary.leaf_summaries`): how
    many of its elements fail, their typical ratio to the reference, the verdict and one
    hint. Then one row per element, tensor by tensor, failing ones first.

    Args:
      result: an ``AuditResult`` or its ``to_dict()`` mapping.
      color: paint PASS green, FAIL red and headers bold with ANSI codes.
      max_rows: at most this many weight rows (and factor rows) in all: failing ones first,
        then the worst passing ones; a line says how many were left out. None: at most
        ``leaf_rows`` rows of each tensor.
      hint_width: the hint column wraps at this many characters (three lines at most).
      leaf_rows: at most this many rows of one tensor when ``max_rows`` is None (failing
        ones first); a line per tensor says how many were left out.

    Returns:
      The summary, the tables, the first failing factor, notes, the training summary and
      the verdict line, joined with newlines (no trailing newline).
    """
    data = result_dict(result)
    lines = [header_line(data), points_line(data.get("points") or {}), *tolerance_lines(data), ""]
    ref = reference_name(data)

    all_weights = data.get("weights") or []
    summaries = leaf_summaries(data)
    if any(s["status"] != "pass" or s["size"] > leaf_rows for s in summaries):
        lines += _grid(
            summary_header(data),
            [summary_cells(s) for s in summaries],
            right=[False, True, True, False, False],
            wrap_last=max(hint_width, 72),
            verdict_col=3,
            color=color,
        )
        lines.append("")
    if max_rows is None:
        weights, left_out = _per_leaf(all_weights, summaries, leaf_rows)
    else:
        weights, _ = select_rows(all_weights, max_rows)
        left_out = _left_out(all_weights, len(weights), "weights")
    rows = [[*weight_cells(w), hint_text(w)] for w in weights]
    header = ["weight", "handwritten", ref, "finite diff", "abs err", "rel err"]
    lines += _grid(
        [*header, "verdict", "hint"],
        rows,
        right=[False, True, True, True, True, True, False, False],
        wrap_last=hint_width,
        verdict_col=6,
        color=color,
    )
    lines += left_out

    all_factors = data.get("factors") or []
    factors, _ = select_rows(all_factors, max_rows)
    if factors:
        frows = [[*factor_cells(f), hint_text(f)] for f in factors]
        lines.append("")
        lines += _grid(
            ["factor", "handwritten", ref, "abs err", "rel err", "verdict", "hint"],
            frows,
            right=[False, True, True, True, True, False, False],
            wrap_last=hint_width,
            verdict_col=5,
            color=color,
        )
        lines += _left_out(all_factors, len(factors), "factors")
    marks = legend([*weights, *factors])
    if marks:
        lines.append("")
        for text in marks:
            lines += textwrap.wrap(text, 96, subsequent_indent="  ")

    first = data.get("first_failing_factor")
    if first:
        lines += ["", f"first failing factor: {first}"]
    notes = data.get("notes") or []
    if notes:
        lines += ["", "notes:"]
        for note in notes:
            lines += textwrap.wrap(str(note), 96, initial_indent="  - ", subsequent_indent="    ")
    training = data.get("training")
    if training:
        lines += ["", *_training_lines(training, data.get("config") or {})]
    total_s = as_float((data.get("timing") or {}).get("total_s"))
    if total_s is not None and math.isfinite(total_s):
        lines += ["", f"time: {total_s:.2f} s"]
    line = verdict_line(data)
    lines += ["", _paint(line, _GREEN if data.get("passed") else _RED, color)]
    return "\n".join(lines)
