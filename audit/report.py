"""Write an audit result to a directory: JSON, Markdown, a self-contained HTML page and PNGs.

The directory is replaced as a whole. Everything is written into a fresh hidden sibling
directory first and swapped in only when complete, so an interrupted run leaves the previous
report as it was, and a rerun never mixes new files with stale ones. Ctrl-C during the swap
waits for its renames, then puts the previous report back. A directory holding anything
other than report files is never replaced, nor the current directory, one above it, the home
directory or the filesystem root. Hidden folders that a killed run left behind are removed
by the next run that writes beside them, once their owner process is gone.

Example:
    >>> result = audit.audit_network("seed", points=4, steps=10, fd=False)
    >>> files = write_report(result, Path(tempfile.mkdtemp()) / "audit-report")
    >>> [os.path.basename(f) for f in files][:3]
    ['report.json', 'report.md', 'report.html']
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audit import interrupt, network_figure, plots
from audit.cells import (
    as_float,
    factor_cells,
    header_line,
    hint_text,
    legend,
    outcome,
    points_line,
    reference_name,
    result_dict,
    sci,
    tolerance_lines,
    verdict_line,
    weight_cells,
)
from audit.report_json import CURVES_FILE, curves_csv, document
from audit.result import verdict_of
from audit.summary import leaf_summaries, summary_cells, summary_header

__all__ = ["REPORT_FILES", "ReportError", "check_out_dir", "write_report"]

# Every file a report can hold, in the order it is written. A directory holding anything
# else is not a report and is never replaced.
REPORT_FILES = (
    "report.json",
    "report.md",
    "report.html",
    "network.png",
    "loss_curves.png",
    "weight_errors.png",
    "scatter.png",
    "loss_curves.csv",
)

# the network figure, drawn for every report and shown after the summary
NETWORK_FILE = "network.png"
# (file, function in audit.plots), looked up at call time
_PLOTS = (
    ("loss_curves.png", "loss_curves"),
    ("weight_errors.png", "weight_errors"),
    ("scatter.png", "scatter"),
)


class ReportError(ValueError):
    """The report cannot be written where it was asked for; nothing was changed."""


# --------------------------------------------------------------------------------------------
# Where the report goes
# --------------------------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _refuse(shown: str, what: str, instead: str) -> ReportError:
    return ReportError(
        f"refusing to write the report to {shown!r}: it is {what}, and the report directory "
        f"is replaced as a whole; pass a new folder of its own instead, such as {instead!r}"
    )


def _protected(out: Path, shown: str) -> None:
    """Refuses the root, the home folder, the current folder and any folder above it."""
    real = Path(os.path.realpath(out))
    cwd = Path(os.path.realpath(os.getcwd()))
    home = Path(os.path.realpath(os.path.expanduser("~")))
    inside = os.path.normpath(os.path.join(shown, "audit-report"))
    if real == Path(real.anchor):
        raise _refuse(shown, "the filesystem root", inside)
    if real == home:
        raise _refuse(shown, "the home directory", inside)
    if real == cwd:
        raise _refuse(shown, "the current directory", "audit-report")
    if real in cwd.parents:
        raise _refuse(shown, f"a folder above the current directory ({os.fspath(cwd)})", inside)


def _probe(parent: Path, shown: str) -> None:
    """Creates and removes an empty folder in ``parent``: what permission bits cannot tell
    (a read-only mount, /proc, a full quota) shows here, before any work."""
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=_prefix("tmp")))
    except OSError as e:
        raise ReportError(
            f"cannot write the report to {shown!r}: directory {os.fspath(parent)!r} does not "
            f"accept new folders ({e.strerror or e}); pass a path you can write to"
        ) from None


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Checks that a report can be written to ``out_dir``, leaving nothing behind.

    Run it before a long audit so a bad ``--out`` fails at once. It creates and removes an
    empty hidden folder beside ``out_dir`` to learn whether writing there works.

    Returns:
      ``out_dir`` as an absolute path.

    Raises:
      ReportError: ``out_dir`` is empty; is the filesystem root, the home directory, the
        current directory or a folder above it; exists and is not a directory, is a
        symbolic link, a mount point, not writable, or holds files other than a report's;
        or its parent is not a directory that accepts new folders.
    """
    shown = os.fspath(out_dir)
    if not shown.strip():
        raise ReportError(
            f"the report directory is {shown!r}, an empty path; pass a folder name such as "
            "'audit-report'"
        )
    out = Path(os.path.abspath(shown))
    if out.is_symlink():
        raise ReportError(
            f"{shown!r} is a symbolic link; the report directory is replaced as a whole, so "
            "pass the real directory it points to, or a new path"
        )
    _protected(out, shown)
    if out.exists():
        if not out.is_dir():
            raise ReportError(
                f"{shown!r} exists and is not a directory; pass a directory path for the "
                "report (it is created if missing)"
            )
        try:
            entries = sorted(os.listdir(out))
        except OSError as e:
            raise ReportError(f"cannot read {shown!r}: {e.strerror or e}") from None
        foreign = [e for e in entries if e not in REPORT_FILES or not (out / e).is_file()]
        if foreign:
            listed = ", ".join(foreign[:5]) + (
                f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            )
            raise ReportError(
                f"refusing to replace {shown!r}: it holds {listed}, which a report does not "
                "write, so it does not look like an earlier report; pass a new or empty "
                "directory, or remove those files"
            )
        if os.path.ismount(out):
            raise _refuse(shown, "a mount point", os.path.join(shown, "audit-report"))
        if not os.access(out, os.W_OK | os.X_OK):
            raise ReportError(
                f"cannot replace {shown!r}: it is not writable, and an earlier report is "
                "replaced by moving it; pass a path you can write to"
            )
    parent = _nearest_existing(out.parent)
    if not parent.is_dir():
        raise ReportError(
            f"cannot create {shown!r}: {os.fspath(parent)!r} is a file, not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReportError(
            f"cannot write the report to {shown!r}: directory {os.fspath(parent)!r} is not "
            "writable; pass a path you can write to"
        )
    _probe(parent, shown)
    return out


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready copy: key order kept, numpy values as Python ones, nan/inf as strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------

_WEIGHT_COLS = ("weight", "handwritten", "jax.grad", "finite diff", "abs err", "rel err")
_FACTOR_COLS = (
    "factor", "handwritten", "jax.grad", "abs err", "rel err", "verdict", "worst point", "hint",
)  # fmt: skip


def _worst(row: Mapping[str, Any]) -> str:
    wp = row.get("worst_point") or {}
    if not wp:
        return ""
    label = wp.get("label") or f"{wp.get('source')} #{wp.get('index')}"
    return str(label)


def _weight_cells(w: Mapping[str, Any]) -> list[str]:
    return [*weight_cells(w), _worst(w), hint_text(w)]


def _factor_cells(f: Mapping[str, Any]) -> list[str]:
    return [*factor_cells(f), _worst(f), hint_text(f)]


def _columns(cols: Sequence[str], data: Mapping[str, Any]) -> list[str]:
    """The column names with the reference named as the audit names it."""
    return [reference_name(data) if c == "jax.grad" else c for c in cols]


def _ordered_weights(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every weight, tensor by tensor as the summary lists them, failing ones first."""
    weights = data.get("weights") or []
    return [weights[k] for s in leaf_summaries(data) for k in s["rows"]]


def _config_rows(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in (data.get("config") or {}).items():
        if key == "leaves":  # the summary lists the tensors
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        rows.append((str(key), str(value)))
    return rows


def _training_rows(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    t = data.get("training") or {}
    lm = t.get("loss_manual") or []
    la = t.get("loss_autodiff") or []
    return [
        ("steps", str(t.get("steps"))),
        ("handwritten gradients", str(t.get("grad"))),
        ("optimizer", str(t.get("optimizer"))),
        ("final loss, handwritten", sci(lm[-1] if lm else None)),
        ("final loss, jax.grad", sci(la[-1] if la else None)),
        ("max abs loss difference", sci(t.get("max_loss_diff"))),
        ("max abs parameter difference", sci(t.get("max_param_diff"))),
    ]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]
) -> list[str]:
    align = ["---:" if r else ":---" for r in right]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _network_heading(data: Mapping[str, Any]) -> str:
    if network_figure.network_sizes(data):
        return "Network"
    backward = (data.get("config") or {}).get("check") == "check_backward"
    return "Intermediates" if backward else "Tensors"


def _markdown(data: Mapping[str, Any], pngs: Sequence[str]) -> str:
    alt = plots.describe(data)
    lines = [f"# Gradient audit: {outcome(data)}", "", f"**{_md_escape(verdict_line(data))}**", ""]
    lines += [f"`{header_line(data)}`", ""]
    tol = tolerance_lines(data, width=10_000)
    lines += [f"Tolerance: {tol[0].removeprefix('tolerance: ')}.", ""]
    if len(tol) > 1:
        lines += [f"Rule: {tol[1].strip()}", ""]
    lines += [
        _sentence(points_line(data.get("points") or {})),
        "",
        "## Summary",
        "",
    ]
    lines += _md_table(
        summary_header(data),
        [summary_cells(s) for s in leaf_summaries(data)],
        [False, True, True, False, False],
    )
    if NETWORK_FILE in pngs:
        lines += ["", f"## {_network_heading(data)}", ""]
        lines += [f"![{_md_escape(network_figure.describe(data))}]({NETWORK_FILE})"]
    lines += ["", "## Weights", ""]
    header = _columns([*_WEIGHT_COLS, "verdict", "worst point", "hint"], data)
    right = [False, True, True, True, True, True, False, False, False]
    lines += _md_table(header, [_weight_cells(w) for w in _ordered_weights(data)], right)
    factors = data.get("factors") or []
    if factors:
        lines += ["", "## Chain-rule factors", ""]
        right_f = [False, True, True, True, True, False, False, False]
        lines += _md_table(
            _columns(_FACTOR_COLS, data), [_factor_cells(f) for f in factors], right_f
        )
    marks = legend([*(data.get("weights") or []), *factors])
    if marks:
        lines += ["", *(f"- {_md_escape(m)}" for m in marks)]
    first = data.get("first_failing_factor")
    lines += ["", f"First failing factor: **{_md_escape(first)}**" if first else "No factor fails."]
    notes = data.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_md_escape(str(n))}" for n in notes]
    if data.get("training"):
        lines += ["", "## Training", ""]
        lines += _md_table(("", "value"), _training_rows(data), (False, True))
    figures = [p for p in pngs if p != NETWORK_FILE]
    if figures:
        lines += ["", "## Figures", ""]
        for p in figures:
            lines += [f"![{_md_escape(alt.get(p, p))}]({p})", ""]
        lines.pop()
    lines += ["", "## Configuration", ""]
    lines += _md_table(("setting", "value"), _config_rows(data), (False, False))
    total_s = as_float((data.get("timing") or {}).get("total_s"))
    if total_s is not None:
        lines += ["", f"Audit time: {total_s:.2f} s."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #222; overflow-wrap: break-word; }
h1 { margin-bottom: 0.2em; }
.verdict { font-size: 1.15em; font-weight: 600; padding: 0.5em 0.8em; border-radius: 4px; }
.pass { color: #1b6e2f; } .fail { color: #a4161a; } .flag { color: #8a5a00; }
.unjudged { color: #555; }
.verdict.pass { background: #e6f4ea; } .verdict.fail { background: #fbe9e9; }
code { background: #f3f3f3; padding: 0.1em 0.3em; border-radius: 3px; }
.scroll { overflow-x: auto; margin: 0.6em 0 1.2em; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left;
         vertical-align: top; background: #fff; }
th { background: #f6f6f6; }
td.num { text-align: right; font-family: ui-monospace, monospace; white-space: nowrap; }
@media (max-width: 40em) { td.long { min-width: 16em; } }
table.wrap td { overflow-wrap: anywhere; }
tr.fail td { background: #fdf1f1; }
th:first-child, td:first-child { position: sticky; left: 0; }
th.v, td.v { position: sticky; right: 0; white-space: nowrap;
             box-shadow: -3px 0 3px -2px rgba(0, 0, 0, 0.25); }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0 1.5em; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_VERDICT_CLASS = {"PASS": "pass", "PASS*": "flag", "NOT JUDGED": "unjudged"}


def _html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Sequence[bool],
    row_passed: Sequence[bool] | None = None,
    verdict_col: int | None = None,
) -> list[str]:
    """A table in a box of its own that scrolls sideways on a narrow screen, the page staying
    put: the first column stays at the box's left edge, the verdict column at its right edge
    until its own place scrolls into view. Text columns after the verdict keep a width to
    wrap in; a table without a verdict (settings) breaks long values anywhere instead."""

    def cls(i: int, cell: str | None) -> str:
        if i == verdict_col:
            return "v" + ("" if cell is None else " " + _VERDICT_CLASS.get(cell, "fail"))
        if numeric[i]:
            return "num"
        return "long" if verdict_col is not None and i > verdict_col else ""

    def cell(tag: str, i: int, text: str, value: str | None) -> str:
        c = cls(i, value)
        return f'<{tag} class="{c}">{_e(text)}</{tag}>' if c else f"<{tag}>{_e(text)}</{tag}>"

    table = "<table>" if verdict_col is not None else '<table class="wrap">'
    out = ['<div class="scroll">', table]
    out.append("<tr>" + "".join(cell("th", i, h, None) for i, h in enumerate(header)) + "</tr>")
    for k, row in enumerate(rows):
        failed = row_passed is not None and not row_passed[k]
        cells = "".join(cell("td", i, c, c) for i, c in enumerate(row))
        out.append(('<tr class="fail">' if failed else "<tr>") + cells + "</tr>")
    out += ["</table>", "</div>"]
    return out


def _img(name: str, png: bytes, alt: str) -> str:
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img src="{src}" alt="{_e(alt)}" title="{_e(name)}">'


def _html(data: Mapping[str, Any], images: Sequence[tuple[str, bytes]]) -> str:
    alt = plots.describe(data)
    state = "pass" if data.get("passed") else "fail"
    head = outcome(data)
    tol = tolerance_lines(data, width=10_000)
    weights = _ordered_weights(data)
    factors = data.get("factors") or []
    summaries = leaf_summaries(data)
    body = [
        f'<h1>Gradient audit: <span class="{state}">{head}</span></h1>',
        f'<p class="verdict {state}">{_e(verdict_line(data))}</p>',
        f"<p><code>{_e(header_line(data))}</code></p>",
        f"<p>Tolerance: {_e(tol[0].removeprefix('tolerance: '))}."
        + (f"<br>Rule: {_e(tol[1].strip())}" if len(tol) > 1 else "")
        + "</p>",
        f"<p>{_e(_sentence(points_line(data.get('points') or {})))}</p>",
        "<h2>Summary</h2>",
    ]
    body += _html_table(
        summary_header(data),
        [summary_cells(s) for s in summaries],
        [False, True, True, False, False],
        [s["status"] != "fail" for s in summaries],
        verdict_col=3,
    )
    network = dict(images).get(NETWORK_FILE)
    if network is not None:
        body.append(f"<h2>{_network_heading(data)}</h2>")
        body.append(_img(NETWORK_FILE, network, network_figure.describe(data)))
    body.append("<h2>Weights</h2>")
    body += _html_table(
        _columns([*_WEIGHT_COLS, "verdict", "worst point", "hint"], data),
        [_weight_cells(w) for w in weights],
        [False, True, True, True, True, True, False, False, False],
        [bool(w.get("passed")) for w in weights],
        verdict_col=6,
    )
    if factors:
        body.append("<h2>Chain-rule factors</h2>")
        body += _html_table(
            _columns(_FACTOR_COLS, data),
            [_factor_cells(f) for f in factors],
            [False, True, True, True, True, False, False, False],
            [bool(f.get("passed")) for f in factors],
            verdict_col=5,
        )
    marks = legend([*weights, *factors])
    if marks:
        body += ["<ul>", *(f"<li>{_e(m)}</li>" for m in marks), "</ul>"]
    first = data.get("first_failing_factor")
    body.append(
        f'<p>First failing factor: <strong class="fail">{_e(first)}</strong></p>'
        if first
        else "<p>No factor fails.</p>"
    )
    notes = data.get("notes") or []
    if notes:
        body += ["<h2>Notes</h2>", "<ul>", *(f"<li>{_e(n)}</li>" for n in notes), "</ul>"]
    if data.get("training"):
        body.append("<h2>Training</h2>")
        body += _html_table(("", "value"), _training_rows(data), (False, True))
    figures = [(name, png) for name, png in images if name != NETWORK_FILE]
    if figures:
        body.append("<h2>Figures</h2>")
        for name, png in figures:
            body.append(_img(name, png, alt.get(name, name)))
    body.append("<h2>Configuration</h2>")
    body += _html_table(("setting", "value"), _config_rows(data), (False, False))
    total_s = as_float((data.get("timing") or {}).get("total_s"))
    if total_s is not None:
        body.append(f"<p>Audit time: {total_s:.2f} s.</p>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Gradient audit: {head}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------------
# Writing and swapping in
# --------------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# A day: no report takes that long to write, so a folder this old is left over whatever
# its name says (a process id reused since, or a folder from another machine).
STALE_AFTER_S = 24 * 3600
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_LEFTOVER = re.compile(r"\.audit-(tmp|old)-(?:(\d+)-([0-9a-f]{8})-)?")


def _prefix(kind: str) -> str:
    """``.audit-tmp-<pid>-<host>-``: names its owner, so a later run can tell it is gone."""
    return f".audit-{kind}-{os.getpid()}-{_HOST}-"


def _owner_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _is_stale(entry: os.DirEntry[str], now: float) -> bool:
    m = _LEFTOVER.match(entry.name)
    if m is None or not entry.is_dir(follow_symlinks=False):
        return False
    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S:
        return True
    pid, host = m.group(2), m.group(3)
    return pid is not None and host == _HOST and _owner_gone(int(pid))


def _only_report_files(folder: str) -> bool:
    with os.scandir(folder) as it:
        return all(e.name in REPORT_FILES and e.is_file(follow_symlinks=False) for e in it)


def _clean_leftovers(parent: Path) -> None:
    """Removes what killed runs left in ``parent``: unfinished reports (``.audit-tmp-*``)
    and moved-aside old ones (``.audit-old-*``) whose report folder exists again.

    Only stale folders (owner process gone, or older than :data:`STALE_AFTER_S`) holding
    nothing but report files; an old report whose folder is missing is the only copy left
    and is kept. Best effort: a folder that cannot be read or removed stays.
    """
    now = time.time()
    try:
        entries = [e for e in os.scandir(parent) if _is_stale(e, now)]
    except OSError:
        return
    for e in entries:
        try:
            if e.name.startswith(".audit-tmp-"):
                if _only_report_files(e.path):
                    shutil.rmtree(e.path)
                continue
            with os.scandir(e.path) as it:
                kept = list(it)
            if all(
                k.is_dir(follow_symlinks=False)
                and (parent / k.name).exists()
                and _only_report_files(k.path)
                for k in kept
            ):
                shutil.rmtree(e.path)
        except OSError:
            continue


def _swap_in(tmp: Path, out: Path, parent: Path) -> None:
    """Moves ``tmp`` to ``out``; an existing ``out`` is moved aside first, then deleted.

    Runs with SIGINT held (see :mod:`audit.interrupt`): a Ctrl-C during the renames undoes
    them, previous report back in place, and raises ``KeyboardInterrupt``.
    """
    if not out.exists():
        os.rename(tmp, out)
        if interrupt.pending():
            os.rename(out, tmp)
            raise KeyboardInterrupt
        return
    trash = Path(tempfile.mkdtemp(dir=parent, prefix=_prefix("old")))
    previous = trash / out.name  # its own name, so a leftover tells which report it was
    try:
        os.rename(out, previous)
    except BaseException:
        os.rmdir(trash)
        raise
    try:
        os.rename(tmp, out)
        if interrupt.pending():
            os.rename(out, tmp)
            raise KeyboardInterrupt
    except BaseException:
        os.rename(previous, out)  # put the old report back
        os.rmdir(trash)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def write_report(result: Any, out_dir: str | os.PathLike[str]) -> list[str]:
    """Writes ``report.json``, ``report.md``, ``report.html`` and the PNGs into ``out_dir``.

    ``out_dir`` is created, or replaced whole if it holds an earlier report. ``network.png``
    (:mod:`audit.network_figure`) is always drawn; the loss-curve PNG only when the audit
    trained. ``report.html`` embeds the PNGs and its CSS,
    so it reads offline on its own. A Ctrl-C (``KeyboardInterrupt``) at any moment leaves
    the previous report as it was; one that lands in the final renames is held until they
    are undone.

    Args:
      result: an ``AuditResult`` or its ``to_dict()`` mapping.
      out_dir: the report directory.

    Returns:
      The paths of the written files, ``report.json`` first. ``report.json`` lists their
      names under ``files``.

    Raises:
      ReportError: ``out_dir`` cannot hold a report (see :func:`check_out_dir`) or writing
        failed; the previous content of ``out_dir`` is then unchanged.
      KeyboardInterrupt: interrupted; the previous content of ``out_dir`` is unchanged.
    """
    out = check_out_dir(out_dir)
    data = _plain(result_dict(result))
    plotted = [(NETWORK_FILE, network_figure.network_png)]
    plotted += [
        (n, getattr(plots, f)) for n, f in _PLOTS if n != "loss_curves.png" or data.get("training")
    ]
    pngs = [name for name, _ in plotted]
    curves = curves_csv(data)
    names = ["report.json", "report.md", "report.html", *pngs]
    names += [CURVES_FILE] if curves is not None else []
    data["files"] = names
    data["verdict"] = verdict_of(bool(data.get("passed")), data["weights"] + data["factors"])

    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _clean_leftovers(parent)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=_prefix("tmp")))
    except OSError as e:
        raise ReportError(f"cannot write the report to {os.fspath(out_dir)!r}: {e}") from None
    try:
        images = []
        for name, function in plotted:
            png = function(data)
            (tmp / name).write_bytes(png)
            images.append((name, png))
        (tmp / "report.json").write_text(_json(document(data)), encoding="utf-8")
        if curves is not None:
            (tmp / CURVES_FILE).write_text(curves, encoding="utf-8")
        (tmp / "report.md").write_text(_markdown(data, pngs), encoding="utf-8")
        (tmp / "report.html").write_text(_html(data, images), encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a report is not secret
        with interrupt.held():
            interrupt.raise_if_pending()  # a Ctrl-C that a callback swallowed stops here
            _swap_in(tmp, out, parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ReportError(f"cannot write the report to {os.fspath(out_dir)!r}: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [os.path.join(os.fspath(out_dir), name) for name in names]
