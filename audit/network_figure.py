"""The network figure: where in the network a derivation went wrong, drawn as the note draws it.

One picture per audit result, picked by what was audited:

- a network narrow enough to draw edge by edge (every layer at most :data:`EDGE_LIMIT` units
  wide): inputs ``x1, x2, ...`` on the left, neurons numbered as the note numbers them (1 and
  2 hidden, 3 the output of the 2-2-1 network), the loss ``E`` on the right; every weight an
  edge, every bias a stub into its neuron, each coloured by its verdict and labelled with its
  name and score (error / allowed error at its worst point; it fails above 1). The note's
  chain factors sit on the link they differentiate (``dz1/dw11`` on the edge of ``w11``,
  ``dA1/dz1`` at neuron 1, ``dE/dA3`` between neuron 3 and ``E``), a layer's delta under its
  neurons, and the first failing factor is marked;
- a wider network: one panel per layer, its ``W`` (into neuron i, from source j) and ``b`` as
  a grid of elements coloured by verdict, failing elements crossed out and named below;
- any other audit (:func:`audit.check_gradients`, ``check_vjp``, ``check_jvp``,
  ``check_backward``): one bar per tensor, split by how many of its elements pass, pass as
  rounding, fail or are not judged; intermediates in backward order, the first failing one
  marked.

Edges differ by line style as well as colour (solid pass, dashed ``PASS*``, dotted not judged,
thick fail), so the verdicts read in grey print too. Each drawn element carries a ``gid``
(``"edge w12"``, ``"node x2"``, ``"bias b1"``, ``"factor dA1/dz1"``, ``"first failing"``,
``"tensor h"``) for programs that look inside the figure. The PNG is deterministic: the same
result gives the same bytes.

Example:
    >>> result = audit.audit_network("seed", points=4, steps=10, fd=False)
    >>> png = network_png(result)
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.cells import VERDICTS, as_float, result_dict, status
from audit.plots import new_figure, to_png
from audit.summary import leaf_summaries

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["EDGE_LIMIT", "STATUS_COLORS", "describe", "draw", "network_png", "network_sizes"]

# pass, PASS*, fail and not judged: the first and third as in audit.plots
STATUS_COLORS = {
    "pass": "#4c72b0",
    "precision": "#dd8452",
    "fail": "#c44e52",
    "not_judged": "#8c8c8c",
}
_LINE = {"pass": "-", "precision": "--", "fail": "-", "not_judged": ":"}
_WIDTH = {"pass": 1.4, "precision": 1.8, "fail": 3.4, "not_judged": 1.6}
_TINT = {"pass": "white", "precision": "#fdf0e6", "fail": "#fbe4e4", "not_judged": "#f2f2f2"}
_INK = "#333333"
# Widest layer drawn edge by edge; a wider network is drawn as one grid per layer.
EDGE_LIMIT = 8
# Up to this many weights every edge carries its name; beyond, the failing ones only.
_NAMED_EDGES = 12
# Failing elements named below a layer's grid, and tensors drawn as bars, at most.
_MAX_NAMED = 8
_MAX_BARS = 40
_ORDER = ("fail", "not_judged", "precision", "pass")


def network_sizes(result: Any) -> list[int] | None:
    """The layer widths ``[n0, ..., nL]`` of a network audit whose weights are listed in
    flatten order (layer by layer, ``W`` then ``b``), else None."""
    data = result_dict(result)
    sizes = (data.get("config") or {}).get("sizes")
    weights = data.get("weights") or []
    if not sizes or len(sizes) < 2 or not all(isinstance(n, int) and n > 0 for n in sizes):
        return None
    if sum(a * b + b for a, b in itertools.pairwise(sizes)) != len(weights):
        return None
    return list(sizes)


def draw(result: Any) -> Figure:
    """The network figure of an audit result, as a matplotlib ``Figure`` not known to pyplot.

    Args:
      result: an ``AuditResult`` or its ``to_dict()`` mapping.

    Returns:
      The figure: edges and nodes for a network of at most :data:`EDGE_LIMIT` units per
      layer, one grid per layer for a wider one, one bar per tensor for any other audit.
    """
    data = result_dict(result)
    sizes = network_sizes(data)
    if sizes is None:
        return _tensor_bars(data)
    if max(sizes) <= EDGE_LIMIT:
        return _edges(data, sizes)
    return _layer_grids(data, sizes)


def network_png(result: Any) -> bytes:
    """:func:`draw` as PNG bytes; the same result gives the same bytes."""
    return to_png(draw(result))


def _score(row: Mapping[str, Any]) -> str:
    s = as_float(row.get("score"))
    if s is None or not math.isfinite(s):
        return "nan" if status(row) == "fail" else ""
    return f"{s:.2g}"


def _failing_line(names: Sequence[str], total: int, what: str) -> str:
    if not names:
        return f"all {total} {what} pass"
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return f"{len(names)} of {total} {what} fail ({shown})"


def _first_line(data: Mapping[str, Any], what: str) -> str:
    factors = data.get("factors") or []
    first = data.get("first_failing_factor")
    if first:
        return f"first failing {what}: {first}"
    if not factors:
        return ""
    unjudged = sum(status(f) == "not_judged" for f in factors)
    if unjudged:
        return f"{unjudged} of {len(factors)} {what}s not judged"
    return f"all {len(factors)} {what}s pass" if len(factors) > 1 else f"the {what} passes"


def _legend(fig: Figure, statuses: set[str], extra: str = "") -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=STATUS_COLORS[s], ls=_LINE[s], lw=_WIDTH[s], label=VERDICTS[s])
        for s in ("pass", "precision", "fail", "not_judged")
        if s in statuses
    ]
    fig.legend(handles=handles, loc="lower left", ncols=4, fontsize="small", frameon=False)
    if extra:
        fig.text(0.99, 0.02, extra, ha="right", va="bottom", fontsize="small", color=_INK)


# --------------------------------------------------------------------------------------------
# A narrow network, edge by edge
# --------------------------------------------------------------------------------------------


def _positions(sizes: Sequence[int]) -> tuple[list[list[tuple[float, float]]], float]:
    """Node centres per layer (x = 4 per layer, centred on y = 0) and the vertical spacing."""
    widest = max(sizes)
    gap = 3.0 if widest <= 2 else max(1.0, 6.0 / (widest - 1))
    return [
        [(4.0 * l, gap * ((n - 1) / 2 - i)) for i in range(n)] for l, n in enumerate(sizes)
    ], gap


def _node_names(sizes: Sequence[int]) -> list[list[str]]:
    """``x1, x2, ...`` for the inputs, then neurons numbered on from 1 as the note does."""
    names = [[f"x{i + 1}" for i in range(sizes[0])]]
    count = itertools.count(1)
    for n in sizes[1:]:
        names.append([str(next(count)) for _ in range(n)])
    return names


def _on_line(ax: Axes, xy, text: str, *, gid: str, color: str, **kw: Any) -> None:
    ax.text(
        *xy, text, ha="center", va="center", color=color, gid=gid, zorder=5,
        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.9), **kw,
    )  # fmt: skip


def _factor_tag(ax: Axes, xy, row: Mapping[str, Any], first: bool) -> None:
    s = status(row)
    name = str(row.get("name"))
    ax.text(
        *xy, name, ha="center", va="center", fontsize=8, color=_INK, style="italic",
        gid=f"factor {name}", zorder=6,
        bbox=dict(boxstyle="round,pad=0.25", fc=_TINT[s], ec=STATUS_COLORS[s],
                  lw=3.0 if first else (1.6 if s == "fail" else 0.9)),
    )  # fmt: skip
    if first:
        ax.annotate(
            "first failing", xy, xytext=(0, -13), textcoords="offset points", ha="center",
            va="top", fontsize=8, fontweight="bold", color=STATUS_COLORS["fail"],
            gid="first failing", zorder=7,
            bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.9),
        )  # fmt: skip


def _bias_side(i: int, n: int, gap: float) -> float:
    """+1 (up) or -1 (down): the 2-2-1 drawing puts its biases outside, as the note's margin
    does; wider layers put every bias above its neuron."""
    if gap >= 3:
        return 1.0 if (i == 0 and n > 1) else -1.0
    return 1.0


def _lerp(a, b, t: float) -> tuple[float, float]:
    return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))


def _edges(data: Mapping[str, Any], sizes: list[int]) -> Figure:
    weights = data.get("weights") or []
    factors = {str(f.get("name")): f for f in data.get("factors") or []}
    first = data.get("first_failing_factor")
    pos, gap = _positions(sizes)
    names = _node_names(sizes)
    where = {names[l][i]: pos[l][i] for l in range(len(sizes)) for i in range(sizes[l])}
    label_all = len(weights) <= _NAMED_EDGES
    depth = len(sizes) - 1
    loss_xy = (4.0 * depth + 2.6, 0.0)

    height = gap * (max(sizes) - 1) + (3.6 if gap >= 3 else 2.4)
    fig = new_figure(figsize=(min(3.0 + 2.2 * depth, 12.0), min(1.6 + 0.75 * height, 9.0)))
    ax = fig.add_axes((0.01, 0.09, 0.98, 0.79))
    ax.set_axis_off()
    ax.set_xlim(-1.0, loss_xy[0] + 0.9)
    ax.set_ylim(-height / 2, height / 2)

    edge_of: dict[tuple[str, str], str] = {}  # (into, from) -> weight name
    k = 0
    for l in range(1, len(sizes)):
        for i, j in itertools.product(range(sizes[l]), range(sizes[l - 1])):
            w = weights[k]
            k += 1
            s, name = status(w), str(w.get("name"))
            a, b = pos[l - 1][j], pos[l][i]
            edge_of[(names[l][i], names[l - 1][j])] = name
            ax.plot(
                [a[0], b[0]], [a[1], b[1]], color=STATUS_COLORS[s], ls=_LINE[s],
                lw=_WIDTH[s], gid=f"edge {name}", zorder=2 if s == "fail" else 1,
                solid_capstyle="butt",
            )  # fmt: skip
            if label_all or s == "fail":
                score = _score(w)
                _on_line(
                    ax, _lerp(a, b, 0.64 if l == 1 else 0.5),
                    name + (f" {score}" if score else ""), gid=f"label {name}",
                    color=STATUS_COLORS[s], fontsize=8.5,
                    fontweight="bold" if s == "fail" else "normal",
                )  # fmt: skip
        for i in range(sizes[l]):
            w = weights[k]
            k += 1
            s, name = status(w), str(w.get("name"))
            x, y = pos[l][i]
            up = _bias_side(i, sizes[l], gap)
            end = (x, y + up * (1.15 if gap >= 3 else 0.3 * gap))
            ax.plot(
                [x, end[0]], [y, end[1]], color=STATUS_COLORS[s], ls=_LINE[s], lw=_WIDTH[s],
                gid=f"bias {name}", zorder=1, solid_capstyle="butt",
            )  # fmt: skip
            if label_all or s == "fail":
                score = _score(w)
                ax.text(
                    x, end[1] + up * 0.12, name + (f" {score}" if score else ""),
                    ha="center", va="bottom" if up > 0 else "top", fontsize=8.5,
                    color=STATUS_COLORS[s], fontweight="bold" if s == "fail" else "normal",
                    gid=f"label {name}",
                )  # fmt: skip
    for l, layer in enumerate(pos):
        for i, (x, y) in enumerate(layer):
            ax.plot(
                [x], [y], marker="o", ms=24 if max(sizes) <= 4 else 18, mfc="white",
                mec=_INK, mew=1.3, ls="none", zorder=4, gid=f"node {names[l][i]}",
            )  # fmt: skip
            ax.text(x, y, names[l][i], ha="center", va="center", fontsize=9.5, zorder=5)
    for i, xy in enumerate(pos[-1]):
        ax.plot(
            [xy[0], loss_xy[0]], [xy[1], loss_xy[1]], color="#777777", lw=1.0, zorder=0,
            gid=f"loss link {names[-1][i]}",
        )  # fmt: skip
    ax.text(
        *loss_xy, "E", ha="center", va="center", fontsize=11, zorder=5, gid="node E",
        bbox=dict(boxstyle="square,pad=0.45", fc="white", ec=_INK, lw=1.3),
    )  # fmt: skip

    for name, row in factors.items():
        xy = _factor_place(name, names, pos, where, edge_of, loss_xy, gap)
        if xy is not None:
            _factor_tag(ax, xy, row, name == first)

    failing = [str(w.get("name")) for w in weights if status(w) == "fail"]
    shape = "-".join(map(str, sizes))
    title = f"{shape} network: {_failing_line(failing, len(weights), 'weights')}"
    fig.text(0.5, 0.975, title, ha="center", va="top", fontsize=11)
    sub = _first_line(data, "factor")
    if not sub and sizes == [2, 2, 1]:
        sub = "chain factors not audited (a grad_fn without .factors)"
    if sub:
        color = STATUS_COLORS["fail"] if first else _INK
        fig.text(0.5, 0.925, sub, ha="center", va="top", fontsize=10, color=color)
    numbered = label_all or any(status(w) == "fail" for w in weights)
    extra = "number: error / allowed error at the worst point, fails above 1" if numbered else ""
    _legend(fig, {status(w) for w in weights} | {status(f) for f in factors.values()}, extra)
    return fig


_LOSS = re.compile(r"dE/dA(\d+)$")
_NODE = re.compile(r"dA(\d+)/dz(\d+)$")
_WEIGHT = re.compile(r"dz(\d+)/d(w\d+)$")
_BIAS = re.compile(r"dz(\d+)/db(\d+)$")
_BACK = re.compile(r"dz(\d+)/dA(\d+)$")
_DELTA = re.compile(r"delta_(\d+) ")


def _factor_place(
    name: str,
    names: list[list[str]],
    pos: list[list[tuple[float, float]]],
    where: dict[str, tuple[float, float]],
    edge_of: dict[tuple[str, str], str],
    loss_xy: tuple[float, float],
    gap: float,
) -> tuple[float, float] | None:
    """Where a factor sits, in data coordinates: on the link of the chain it differentiates
    (``names``/``pos``: node names and centres per layer, ``where``: centre by node name,
    ``edge_of``: weight name by ``(into, from)`` node names). None for a name not known."""
    depth = len(pos) - 1
    if m := _LOSS.match(name):
        node = where.get(m.group(1))
        return None if node is None else _lerp(node, loss_xy, 0.5)
    if (m := _NODE.match(name)) and m.group(1) == m.group(2) and m.group(1) in where:
        x, y = where[m.group(1)]
        up = 1.0 if y <= 0 else -1.0  # toward the centre, away from the bias stub
        return (x, y + up * 0.62)
    if m := _WEIGHT.match(name):  # dz_i/dw_ij: on the edge of w_ij, near its source
        into = [j for (i, j), w in edge_of.items() if i == m.group(1) and w == m.group(2)]
        return _lerp(where[into[0]], where[m.group(1)], 0.3) if into else None
    if m := _BACK.match(name):  # dz_i/dA_j: on the edge from j into i, near i
        i, j = m.groups()
        return _lerp(where[j], where[i], 0.78) if (i, j) in edge_of else None
    if (m := _BIAS.match(name)) and m.group(1) == m.group(2) and m.group(1) in where:
        layer = next(l for l, ns in enumerate(names) if m.group(1) in ns)
        i = names[layer].index(m.group(1))
        x, y = where[m.group(1)]
        return (x + 0.85, y + _bias_side(i, len(names[layer]), gap) * 0.3 * gap)
    l = _layer_of_delta(name)
    if l is not None and 1 <= l <= depth:
        return (4.0 * l, pos[l][-1][1] - min(1.7, 0.62 * gap + 0.9))
    return None


# --------------------------------------------------------------------------------------------
# A wide network, one grid per layer
# --------------------------------------------------------------------------------------------


def _cell(k: int, n_in: int, n_out: int, gap: int) -> tuple[int, int]:
    """(column, row), from 1, of a layer's ``k``-th parameter in its grid: ``W`` row-major,
    then ``b`` in the last column, ``gap`` columns right of ``W``."""
    if k < n_in * n_out:
        return k % n_in + 1, k // n_in + 1
    return n_in + gap + 1, k - n_in * n_out + 1


def _layer_of_delta(name: str) -> int | None:
    m = _DELTA.match(name)
    return int(m.group(1)) if m else None


def _layer_grids(data: Mapping[str, Any], sizes: list[int]) -> Figure:
    from matplotlib.colors import ListedColormap

    weights = data.get("weights") or []
    factors = {str(f.get("name")): f for f in data.get("factors") or []}
    first = data.get("first_failing_factor")
    codes = np.array([_ORDER.index(status(w)) for w in weights], dtype=np.int8)
    cmap = ListedColormap([STATUS_COLORS[s] for s in _ORDER])
    depth = len(sizes) - 1
    fig = new_figure(figsize=(min(4.0 + 3.2 * depth, 14.0), 5.0))
    ratios = [min(sizes[l - 1], 64) + 8 for l in range(1, len(sizes))]
    axes = fig.subplots(1, depth, width_ratios=ratios, squeeze=False)[0]
    fig.subplots_adjust(left=0.07, right=0.98, top=0.8, bottom=0.33, wspace=0.35)
    start = 0
    all_failing = []
    for l in range(1, len(sizes)):
        ax = axes[l - 1]
        n_in, n_out = sizes[l - 1], sizes[l]
        w_codes = codes[start : start + n_in * n_out].reshape(n_out, n_in)
        b_codes = codes[start + n_in * n_out : start + n_in * n_out + n_out]
        gap = max(1, n_in // 16)
        grid = np.full((n_out, n_in + gap + 1), np.nan)
        grid[:, :n_in] = w_codes
        grid[:, -1] = b_codes
        ax.imshow(
            grid, cmap=cmap, vmin=-0.5, vmax=len(_ORDER) - 0.5, aspect="auto",
            interpolation="nearest", extent=(0.5, n_in + gap + 1.5, n_out + 0.5, 0.5),
            gid=f"layer {l} grid",
        )  # fmt: skip
        rows = range(start, start + n_in * n_out + n_out)
        bad = sorted(
            (k for k in rows if codes[k] == 0),
            key=lambda k: -(as_float(weights[k].get("score")) or math.inf),
        )
        cells = [_cell(k - start, n_in, n_out, gap) for k in bad]
        cols, rws = [c for c, _ in cells], [r for _, r in cells]
        if bad:  # one cell can be a pixel wide: each failing one gets a marker of its own
            ax.scatter(
                cols[:400], rws[:400], marker="s", s=64, lw=1.2, color=STATUS_COLORS["fail"],
                edgecolors="black", zorder=3, gid=f"layer {l} failing",
            )  # fmt: skip
            for k, c, r in list(zip(bad, cols, rws, strict=True))[:_MAX_NAMED]:
                ax.annotate(
                    str(weights[k].get("name")), (c, r), xytext=(6, -3), ha="left", va="top",
                    textcoords="offset points", fontsize=8.5, fontweight="bold",
                    color=STATUS_COLORS["fail"], zorder=4, gid=f"label {weights[k].get('name')}",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85),
                )  # fmt: skip
        names = [str(weights[k].get("name")) for k in bad]
        all_failing += names
        what = "inputs" if l == 1 else f"layer {l - 1}"
        into = "outputs" if l == depth else "hidden"
        ax.set_title(
            f"layer {l}: W {n_out}\u00d7{n_in}, b {n_out}\n"
            + (f"{len(bad)} of {n_in * n_out + n_out} fail" if bad else "all pass"),
            fontsize=10, color=STATUS_COLORS["fail"] if bad else _INK,
        )  # fmt: skip
        ax.set_xlabel(f"from {what} (1-{n_in})  |  b", fontsize=9)
        ax.set_ylabel(f"into {into} (1-{n_out})", fontsize=9)
        ax.tick_params(labelsize=8)
        lines = [f"{weights[k].get('name')}  {_score(weights[k])}" for k in bad[:_MAX_NAMED]]
        if len(bad) > _MAX_NAMED:
            lines.append(f"and {len(bad) - _MAX_NAMED} more")
        delta = next((f for n, f in factors.items() if _layer_of_delta(n) == l), None)
        ax.text(
            0.0, -0.16, "\n".join(lines), transform=ax.transAxes, ha="left", va="top",
            fontsize=8.5, color=STATUS_COLORS["fail"], gid=f"layer {l} failing names",
        )  # fmt: skip
        if delta is not None:
            s = status(delta)
            name = str(delta.get("name"))
            is_first = name == first
            ax.text(
                1.0, -0.16, f"{name}: {VERDICTS[s]}", transform=ax.transAxes, ha="right",
                va="top", fontsize=8.5, style="italic", color=_INK, gid=f"factor {name}",
                bbox=dict(boxstyle="round,pad=0.25", fc=_TINT[s], ec=STATUS_COLORS[s],
                          lw=3.0 if is_first else 0.9),
            )  # fmt: skip
            if is_first:
                ax.text(
                    1.0, -0.26, "first failing factor", transform=ax.transAxes, ha="right",
                    va="top", fontsize=8.5, fontweight="bold", color=STATUS_COLORS["fail"],
                    gid="first failing",
                )  # fmt: skip
        start += n_in * n_out + n_out
    shape = "-".join(map(str, sizes))
    fig.text(
        0.5, 0.975, f"{shape} network: {_failing_line(all_failing, len(weights), 'weights')}",
        ha="center", va="top", fontsize=11,
    )  # fmt: skip
    sub = _first_line(data, "factor")
    if sub:
        fig.text(0.5, 0.92, sub, ha="center", va="top", fontsize=10,
                 color=STATUS_COLORS["fail"] if first else _INK)  # fmt: skip
    _legend(fig, {status(w) for w in weights}, "square: a failing weight; right column: b")
    return fig


# --------------------------------------------------------------------------------------------
# Any other audit, one bar per tensor
# --------------------------------------------------------------------------------------------


def _tensor_bars(data: Mapping[str, Any]) -> Figure:
    summaries = leaf_summaries(data)
    config = data.get("config") or {}
    backward = config.get("check") == "check_backward"
    first = data.get("first_failing_factor") if backward else None
    shown = summaries[:_MAX_BARS]
    n = len(shown)
    fig = new_figure(figsize=(8.0, 1.9 + 0.36 * max(n, 1)))
    ax = fig.add_axes((0.26, 0.9 / (1.9 + 0.36 * max(n, 1)) + 0.03, 0.4,
                       0.36 * max(n, 1) / (1.9 + 0.36 * max(n, 1))))  # fmt: skip
    statuses = set()
    for row, s in enumerate(shown):
        counts = {
            "fail": s["failing"],
            "not_judged": s["not_judged"],
            "precision": s["precision"],
        }
        counts["pass"] = s["size"] - sum(counts.values())
        left = 0.0
        for key in _ORDER:
            if counts[key] <= 0:
                continue
            statuses.add(key)
            width = counts[key] / max(s["size"], 1)
            ax.barh(
                row, width, left=left, height=0.7, color=STATUS_COLORS[key],
                hatch="//" if key == "fail" else None, edgecolor="white", lw=0.5,
                gid=f"tensor {s['name']} {key}",
            )  # fmt: skip
            left += width
        shape = "x".join(map(str, s["shape"])) or "scalar"
        is_first = s["name"] == first
        ax.text(
            -0.02, row, f"{s['name']}  ({shape})", ha="right", va="center", fontsize=9,
            transform=ax.get_yaxis_transform(), gid=f"tensor {s['name']}",
            color=STATUS_COLORS["fail"] if s["status"] == "fail" else _INK,
            fontweight="bold" if is_first else "normal",
        )  # fmt: skip
        verdict = VERDICTS[s["status"]]
        note = f"{s['failing']}/{s['size']} fail  {verdict}"
        if is_first:
            note += "  <- first failing"
        ax.text(
            1.02, row, note, ha="left", va="center", fontsize=9,
            transform=ax.get_yaxis_transform(),
            color=STATUS_COLORS["fail"] if s["status"] == "fail" else _INK,
            fontweight="bold" if is_first else "normal",
            gid="first failing" if is_first else f"tensor {s['name']} verdict",
        )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_yticks([])
    ax.set_xticks([0, 0.5, 1], ["0", "half", "all"])
    ax.tick_params(labelsize=8)
    ax.set_xlabel("share of the tensor's elements", fontsize=9)
    what = "intermediates, in backward order" if backward else "tensors"
    failing = [s["name"] for s in summaries if s["status"] == "fail"]
    title = _failing_line(failing, len(summaries), what.split(",")[0])
    fig.text(0.5, 0.985, title, ha="center", va="top", fontsize=11)
    sub = what + (f"; {len(summaries) - n} more not drawn" if len(summaries) > n else "")
    fig.text(0.5, 0.985 - 0.3 / fig.get_figheight(), sub, ha="center", va="top", fontsize=9,
             color=_INK)  # fmt: skip
    _legend(fig, statuses)
    return fig


def describe(result: Any) -> str:
    """Alt text of the network figure, for the Markdown and HTML reports."""
    data = result_dict(result)
    sizes = network_sizes(data)
    weights = data.get("weights") or []
    first = data.get("first_failing_factor")
    if sizes is None:
        failing = [s["name"] for s in leaf_summaries(data) if s["status"] == "fail"]
        text = "one bar per tensor: " + (
            f"failing {', '.join(failing[:10])}" if failing else "every tensor passes"
        )
    else:
        bad = [str(w.get("name")) for w in weights if status(w) == "fail"]
        how = "edge by edge" if max(sizes) <= EDGE_LIMIT else "one grid per layer"
        text = f"the {'-'.join(map(str, sizes))} network {how}, weights coloured by verdict; " + (
            f"failing: {', '.join(bad[:10])}" if bad else "every weight passes"
        )
    return text + (f"; first failing: {first}" if first else "")
