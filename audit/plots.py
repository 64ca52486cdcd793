"""Figures of an audit result, rendered to PNG bytes.

Each function builds its own ``matplotlib.figure.Figure`` on an Agg canvas, so nothing
touches pyplot's global figure list and no display is needed. The PNGs carry no software
tag or timestamp, so the same result gives the same bytes. matplotlib is imported when the
first figure is drawn, not with this module: ``import audit`` stays light.

Example:
    >>> result = audit.audit_network("seed", points=4, steps=10, fd=False)
    >>> png = weight_errors(result)
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.cells import as_float, result_dict, sci

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DPI", "log_y", "loss_curves", "new_figure", "scatter", "to_png", "weight_errors"]

DPI = 100
_PASS = "#4c72b0"
_FAIL = "#c44e52"
_ZERO = "#9fb6d6"
_OTHER = "#dd8452"
# More points than this in a loss history are thinned before drawing: the picture is the
# same and the PNG stays small.
_MAX_CURVE_POINTS = 4000
# Weight names on the x axis beyond this count are thinned out (failing ones kept).
_MAX_TICKS = 60
# Failing weights labelled by name on the scatter plot.
_MAX_LABELS = 20


def new_figure(**kwargs: Any) -> Figure:
    """A new ``Figure`` at :data:`DPI`, not known to pyplot; the first call imports matplotlib
    (about a second)."""
    from matplotlib.figure import Figure

    return Figure(dpi=DPI, **kwargs)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _plain(label: str) -> str:
    r"""``$\mathdefault{2\times10^{-3}}$`` as ``2×10⁻³``: the same label without mathtext."""
    if not label.startswith("$"):
        return label
    text = label.removeprefix("$\\mathdefault{").removesuffix("}$").replace("\\times", "×")
    return re.sub(r"\^\{(-?\d+)\}", lambda m: m.group(1).translate(_SUPERSCRIPT), text)


@functools.cache
def _plain_log_formatter() -> type:
    from matplotlib.ticker import LogFormatterSciNotation

    class PlainLogFormatter(LogFormatterSciNotation):
        """matplotlib's own log-axis labels in plain Unicode: its mathtext parser takes
        longer to start (about half a second) than the rest of a figure takes to draw."""

        def __call__(self, x: float, pos: int | None = None) -> str:
            return _plain(super().__call__(x, pos))

    return PlainLogFormatter


# An axis spanning more decades than this gets minor ticks at 2 and 5 only: eight a decade
# (matplotlib's own) were a third of the report's plotting time, each tick an object of its
# own, and past two decades their labels are not drawn anyway.
_DENSE_MINOR_DECADES = 2.0


@functools.cache
def _minor_log_locator() -> type:
    from matplotlib.ticker import LogLocator

    class MinorLogLocator(LogLocator):
        """Minor ticks at 2..9 of each decade on a short axis, at 2 and 5 on a long one."""

        def tick_values(self, vmin: float, vmax: float):
            lo, hi = sorted((vmin, vmax))
            span = math.log10(hi / lo) if lo > 0 else math.inf
            dense = span <= _DENSE_MINOR_DECADES
            self.set_params(subs=np.arange(2.0, 10.0) if dense else (2.0, 5.0))
            return super().tick_values(vmin, vmax)

    return MinorLogLocator


def log_y(ax: Axes) -> None:
    """A log y axis labelled ``10⁻³``, ``2×10⁻³`` as matplotlib would, without mathtext."""
    ax.set_yscale("log")
    formatter = _plain_log_formatter()
    ax.yaxis.set_major_formatter(formatter(10))
    ax.yaxis.set_minor_formatter(formatter(10, labelOnlyBase=False))
    ax.yaxis.set_minor_locator(_minor_log_locator()(10))


def to_png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes at :data:`DPI`, with no software tag or date: the same figure gives
    the same bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _floats(values: Sequence[Any]) -> np.ndarray:
    """Report values as float64, with None and unparsable entries as NaN."""
    out = [as_float(v) for v in values]
    return np.array([math.nan if v is None else v for v in out], dtype=np.float64)


def _thin(y: np.ndarray, reduce: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values with at most ``_MAX_CURVE_POINTS`` points, each bin's first or max."""
    n = len(y)
    steps = np.arange(n)
    if n <= _MAX_CURVE_POINTS:
        return steps, y
    per = math.ceil(n / _MAX_CURVE_POINTS)
    pad = (-n) % per
    padded = np.concatenate([y, np.full(pad, np.nan)]).reshape(-1, per)
    starts = steps[::per]
    if reduce == "max":  # keep a spike in |difference| visible after thinning
        with np.errstate(invalid="ignore"):
            finite = np.where(np.isfinite(padded), padded, -np.inf)
            vals = finite.max(axis=1)
        return starts, np.where(np.isfinite(vals), vals, np.nan)
    return starts, padded[:, 0]


def _positive(y: np.ndarray) -> np.ndarray:
    """``y`` where it can be drawn on a log axis, NaN elsewhere."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(y) & (y > 0), y, np.nan)


def loss_curves(result: Any) -> bytes:
    """Both loss histories on a log axis, and their absolute difference below.

    Args:
      result: an ``AuditResult`` or its dict, with ``training`` set.

    Returns:
      PNG bytes of a two-panel figure. Steps where the difference is exactly 0 cannot be
      drawn on a log axis; the lower panel says how many there are.

    Raises:
      ValueError: the result has no training.
    """
    data = result_dict(result)
    training = data.get("training")
    if not training:
        raise ValueError("this audit ran no training (steps=0), so it has no loss curves to plot")
    manual = _floats(training.get("loss_manual") or [])
    auto = _floats(training.get("loss_autodiff") or [])
    grad = training.get("grad")
    n = min(len(manual), len(auto))
    with np.errstate(invalid="ignore"):
        diff = np.abs(manual[:n] - auto[:n])

    fig = new_figure(figsize=(7.0, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    drawn = False
    for y, label, style in (
        (manual, f"handwritten ({grad})", {"color": _PASS, "lw": 2.2}),
        (auto, "jax.grad", {"color": _OTHER, "lw": 1.2, "ls": "--"}),
    ):
        steps, yy = _thin(_positive(y), "first")
        if np.isfinite(yy).any():
            top.plot(steps, yy, label=label, **style)
            drawn = True
    checkpoints = [c for c in training.get("checkpoints") or [] if isinstance(c, int)]
    for i, c in enumerate(checkpoints):
        # the trajectory points the audit compared gradients at
        label = "audited checkpoints" if i == 0 else None
        top.axvline(c, color="gray", lw=0.8, ls=":", label=label)
    if drawn:
        log_y(top)
        top.legend(loc="upper right")
    else:
        top.text(0.5, 0.5, "no positive finite loss to draw", ha="center", transform=top.transAxes)
    top.set_ylabel("loss")
    top.set_title(f"training loss, {len(manual)} steps")
    top.grid(True, which="major", alpha=0.3)

    zeros = int(np.sum(diff == 0))
    not_finite = int(np.sum(~np.isfinite(diff)))
    steps, dd = _thin(_positive(diff), "max")
    if np.isfinite(dd).any():
        label = "|handwritten - jax.grad|"
        if zeros:
            label += f" (exactly 0 at {zeros} of {n} steps, not drawn)"
        # differences are often a few float ulps apart, and a line would zigzag between them
        style = {"ls": "none", "marker": ".", "ms": 4} if len(dd) <= 1000 else {"lw": 0.8}
        bottom.plot(steps, dd, color=_FAIL, label=label, **style)
        log_y(bottom)
        lo, hi = np.nanmin(dd), np.nanmax(dd)
        bottom.set_ylim(lo / 3, hi * 30)  # head room for the legend
        bottom.legend(loc="upper left", fontsize="small")
    else:
        msg = "identical at every step: |difference| = 0" if zeros == n else "no finite difference"
        bottom.text(0.5, 0.5, msg, ha="center", va="center", transform=bottom.transAxes)
        bottom.set_yticks([])
    if not_finite:
        bottom.set_title(f"{not_finite} steps with nan/inf loss not drawn", fontsize="small")
    bottom.set_ylabel("|loss difference|")
    bottom.set_xlabel("step")
    bottom.grid(True, which="major", alpha=0.3)
    return to_png(fig)


def _tick_positions(names: list[str], failing: list[bool]) -> list[int]:
    """Which weight names to print on the axis: all of them, or failing ones plus a sample."""
    n = len(names)
    if n <= _MAX_TICKS:
        return list(range(n))
    bad = [i for i in range(n) if failing[i]][: _MAX_TICKS // 2]
    every = math.ceil(n / (_MAX_TICKS - len(bad)))
    return sorted(set(bad) | set(range(0, n, every)))


def weight_errors(result: Any) -> bytes:
    """Every weight's error over its allowed error (the audit's score) on a log axis.

    A bar above the line at 1 fails. Results without scores fall back to the relative
    error against the ``rtol`` line.

    Failing weights are red. A relative error of exactly 0 is a short light stub marked
    "0"; a nan/inf/missing one is a hatched bar to the top of the axis.

    Returns:
      PNG bytes.
    """
    data = result_dict(result)
    weights = data.get("weights") or []
    names = [str(w.get("name")) for w in weights]
    failing = [not w.get("passed") for w in weights]
    scored = bool(weights) and all("score" in w for w in weights)
    rel = np.abs(_floats([w.get("score" if scored else "rel_err") for w in weights]))
    rtol = 1.0 if scored else as_float((data.get("tolerance") or {}).get("rtol"))
    n = len(weights)

    finite_pos = rel[np.isfinite(rel) & (rel > 0)]
    refs = [*finite_pos.tolist(), *([rtol] if rtol and rtol > 0 else [])]
    hi = max(refs) * 10 if refs else 1.0
    lo = min(refs) / 10 if refs else 1e-3
    lo = min(lo, hi / 1e3)
    floor = lo / 10  # the axis floor; an error of exactly 0 gets a short stub above it

    width = min(max(6.0, 0.35 * n + 2.0), 16.0)
    fig = new_figure(figsize=(width, 4.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(n)
    zero = np.isfinite(rel) & (rel == 0)
    bad_value = ~np.isfinite(rel)
    heights = np.where(zero, floor * 3, np.where(bad_value, hi, rel))
    colors = [
        _FAIL if f else (_ZERO if z else _PASS) for f, z in zip(failing, zero.tolist(), strict=True)
    ]
    bar_width = 0.8 if n <= 200 else 1.0
    bars = ax.bar(x, heights - floor, bottom=floor, color=colors, width=bar_width, linewidth=0)
    for bar, b in zip(bars, bad_value.tolist(), strict=True):
        if b:
            bar.set_hatch("///")
            bar.set_edgecolor("black")
    if n <= _MAX_TICKS:
        for i in np.flatnonzero(zero):
            ax.text(i, floor * 3.5, "0", ha="center", va="bottom", fontsize="small")
    log_y(ax)
    ax.set_ylim(floor, hi)
    if rtol and rtol > 0:
        line = "fails above 1" if scored else f"rtol = {rtol:.1e}"
        ax.axhline(rtol, color="black", ls="--", lw=1.0, label=line)
    # legend entries for what is present only
    for present, color, label, hatch in (
        (any(not f for f in failing), _PASS, "pass", None),
        (any(failing), _FAIL, "fail", None),
        (bool(zero.any()), _ZERO, "exactly 0", None),
        (bool(bad_value.any()), "white", "nan / inf / missing", "///"),
    ):
        if present:
            ax.bar([0], [0], bottom=floor, color=color, hatch=hatch, edgecolor="black", label=label)
    if n:
        ax.legend(loc="upper right", fontsize="small", ncols=2)
    ticks = _tick_positions(names, failing)
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90 if n > 12 else 0)
    for label, i in zip(ax.get_xticklabels(), ticks, strict=True):
        if failing[i]:
            label.set_color(_FAIL)
    ax.set_xlim(-0.75, max(n, 1) - 0.25)
    ax.set_ylabel("error / allowed error" if scored else "relative error (worst point)")
    bad = sum(failing)
    what = "error / allowed error" if scored else "relative error"
    ax.set_title(f"{what} vs jax.grad, worst point: {n - bad}/{n} pass")
    return to_png(fig)


def scatter(result: Any) -> bytes:
    """Handwritten against ``jax.grad`` at each weight's worst point, with the line y = x.

    Failing weights are red and labelled with their names; weights whose values are not
    finite cannot be placed and are counted in the title.

    Returns:
      PNG bytes.
    """
    data = result_dict(result)
    weights = data.get("weights") or []
    man = _floats([w.get("manual") for w in weights])
    ref = _floats([w.get("reference") for w in weights])
    failing = np.array([not w.get("passed") for w in weights], dtype=bool)
    names = [str(w.get("name")) for w in weights]
    ok = np.isfinite(man) & np.isfinite(ref)

    fig = new_figure(figsize=(5.6, 5.2), layout="constrained")
    ax = fig.subplots()
    title = "handwritten vs jax.grad at each weight's worst point"
    if ok.any():
        vals = np.concatenate([man[ok], ref[ok]])
        a, b = float(vals.min()), float(vals.max())
        pad = (b - a) * 0.08 or max(abs(a), 1.0) * 0.1
        a, b = a - pad, b + pad
        ax.plot([a, b], [a, b], color="gray", lw=1.0, ls="--", label="y = x")
        good = ok & ~failing
        worse = ok & failing
        if good.any():
            ax.scatter(ref[good], man[good], s=28, color=_PASS, label="pass", zorder=3)
        if worse.any():
            ax.scatter(
                ref[worse], man[worse], s=40, color=_FAIL, marker="X", label="fail", zorder=4
            )
        for i in np.flatnonzero(worse)[:_MAX_LABELS]:
            ax.annotate(
                names[i], (ref[i], man[i]), textcoords="offset points", xytext=(5, 4),
                fontsize="small", color=_FAIL,
            )  # fmt: skip
        ax.set_xlim(a, b)
        ax.set_ylim(a, b)
        ax.legend(loc="upper left", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no finite values to plot", ha="center", transform=ax.transAxes)
    skipped = int(np.sum(~ok))
    if skipped:
        title += f"\n{skipped} weight(s) with nan/inf/missing values not drawn"
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("jax.grad (reference)")
    ax.set_ylabel("handwritten")
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(style="sci", scilimits=(-3, 3))
    return to_png(fig)


def describe(result: Any) -> dict[str, str]:
    """Alt texts for the figures, for the Markdown and HTML reports."""
    data = result_dict(result)
    weights = data.get("weights") or []
    bad = [str(w.get("name")) for w in weights if not w.get("passed")]
    rtol = (data.get("tolerance") or {}).get("rtol")
    training = data.get("training") or {}
    return {
        "loss_curves.png": (
            f"loss per step for {training.get('steps')} steps, handwritten and jax.grad, "
            f"max difference {sci(training.get('max_loss_diff'))}"
        ),
        "weight_errors.png": (
            f"error over allowed error per weight (rtol {sci(rtol)}); "
            + (f"failing: {', '.join(bad[:10])}" if bad else "all pass")
        ),
        "scatter.png": "handwritten against jax.grad value at each weight's worst point",
    }
