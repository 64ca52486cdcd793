"""Per-weight verdicts, the part both entry points share: every point compared, finite
differences at each weight's worst point, hints for the failing weights, one entry a weight.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from audit import fd_verdict as references
from audit.budget import default_budget
from audit.compare import Tolerance, unjudged_note
from audit.diagnose import Diagnosis, diagnose, diagnose_leaves
from audit.fd_verdict import fd_points, fd_verdict, reference_note
from audit.finite_diff import finite_differences, finite_differences_ahead
from audit.gradients import evaluate, point_shapes, runs_in, second_look
from audit.layout import layout_of
from audit.memo import ShapeMemo, shape_key
from audit.placement import environment
from audit.points import PointGroup, joined_labels
from audit.result import json_number
from audit.weight_table import PASSING, WeightTable

__all__ = [
    "DIAGNOSE_BYTES",
    "DIAGNOSE_POINTS",
    "FD_AGREE",
    "WeightVerdicts",
    "compare_groups",
    "comparison_config",
    "say",
]


DIAGNOSE_POINTS = 512  # points the diagnosis looks at, at most


DIAGNOSE_BYTES = 64  # per weight and point it looks at: both values and the diagnosis's work


# finite differences agree with jax.grad within this relative distance plus their own
# estimated error (roundoff and truncation)
FD_AGREE = 1e-4


class WeightVerdicts(NamedTuple):
    """What :func:`compare_groups` found: one entry per weight, notes, the most points one
    compiled call took, the seconds each phase took, and one entry per tensor (leaf) in
    flatten order: ``{"name", "shape", "hint"}``, the hint for the tensor as a whole or None
    (see :func:`audit.diagnose.diagnose_leaves`)."""

    weights: WeightTable
    notes: list[str]
    points_per_call: int
    timing: dict[str, float]
    leaves: list[dict]
    fd_points: int | None = None  # points finite differences judged (reference "fd"/"both")


def comparison_config(
    tol: Tolerance, ref_dtype, *, fd: bool, fd_max: int, memory: int | None, per_call: int,
    mesh: jax.sharding.Mesh | None, reference: str | None = None, fd_points: int | None = None,
) -> dict:  # fmt: skip
    """The config entries both entry points record about the comparison: tolerance,
    reference dtype, finite differences, memory budget and points per call, and where it
    ran (:func:`audit.placement.environment`); with ``reference``, which opinion decided
    (:mod:`audit.fd_verdict`) and, where finite differences judge, at how many points and
    within how many loss evaluations."""
    chosen = {} if reference is None else dict(reference=reference)
    if fd_points is not None:
        chosen.update(fd_points=fd_points, fd_loss_evals=references.FD_LOSS_EVALS)
    return dict(
        rtol=tol.rtol,
        atol=tol.atol,
        fd=fd,
        fd_max=fd_max,
        **chosen,
        reference_dtype=jnp.dtype(ref_dtype).name,
        memory=memory,
        points_per_call=per_call,
        **environment(mesh),
    )


def say(progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _select_fd(worst, fd_max: int) -> np.ndarray:
    score = np.nan_to_num(np.asarray(worst.score, dtype=np.float64), nan=np.inf)
    return np.sort(np.argsort(-score, kind="stable")[:fd_max])


# per functions and point shapes: the layout, the second look, finite differences' compilation
_FOUND = ShapeMemo()


def compare_groups(
    grad_fn: Callable,
    ref_grad_fn: Callable,
    loss_fn: Callable,
    groups: list[PointGroup],
    *,
    traced: bool,
    names: Sequence[str],
    tol: Tolerance,
    ref_dtype,
    fd: bool,
    fd_max: int,
    candidates: Callable[[], dict] | None,
    saturation: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
    progress,
    mesh: jax.sharding.Mesh | None = None,
    memory: int | None = None,
    leaf_names: Sequence[str] | None = None,
    reference_name: str = "jax.grad",
    reference: str = "autodiff",
) -> WeightVerdicts:
    """The per-weight part shared by both entry points.

    ``traced`` is :func:`audit.gradients.is_traceable` of ``grad_fn``, found by the caller;
    ``candidates()`` gives the named mistakes the diagnosis tries (see
    :func:`audit.diagnose.diagnose_leaves`), ``saturation(weights, points)`` the
    saturated-unit flags. ``leaf_names`` names each tensor of the params in flatten order
    (default ``tensor k``), ``reference_name`` the reference, as hints and notes say them.
    ``reference`` says which opinion decides (:mod:`audit.fd_verdict`): ``"autodiff"``,
    ``"fd"`` or ``"both"``; the last two need ``fd``.
    """
    notes: list[str] = []
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    if not traced:
        notes.append(
            f"{getattr(grad_fn, '__name__', 'grad_fn')} cannot be traced by JAX (it converts "
            "arrays to NumPy or branches on values); it was called point by point, which is slower"
        )
    g0 = groups[0]
    # the pairs' count is known with one group: finite differences compile while comparing
    fd_pairs = min(fd_max, len(names)) if fd and len(groups) == 1 and reference == "autodiff" else 0
    found_key = (
        shape_key(grad_fn, loss_fn, jnp.dtype(ref_dtype).name, fd_pairs,
                  trees=(g0.params, g0.x, g0.y), stacked=True)
        if traced
        else None
    )  # fmt: skip
    found = _FOUND.get(found_key)
    dt = jax.tree.leaves(g0.params)[0].dtype
    if found is None:
        tree = (g0.params, g0.x, g0.y)
        first = point_shapes(g0) if traced else jax.tree.map(lambda a: a[0], tree)
        layout = layout_of(first[0])
        with jax.enable_x64(True):
            look = second_look(dt, ref_dtype, runs_in(grad_fn, first, ref_dtype))
        fd_compiled = None
        if fd_pairs:
            with jax.enable_x64(True):
                fd_compiled = finite_differences_ahead(loss_fn, g0, fd_pairs, dtype=ref_dtype)
        _FOUND.put(found_key, (layout, look, fd_compiled))
    else:
        layout, look, fd_compiled = found
    if look == "spread":
        notes.append(_spread_note(grad_fn, dt, ref_dtype))
    n_points = sum(g.size for g in groups)
    say(progress, f"comparing {len(names)} weights at {n_points} points")
    ev = evaluate(grad_fn, ref_grad_fn, groups, traced=traced, ref_dtype=ref_dtype, tol=tol,
                  layout=layout, look=look, mesh=mesh, memory=memory)  # fmt: skip
    worst = jax.tree.map(np.asarray, ev.worst)
    timing["compare_s"] = time.perf_counter() - t0
    if not ev.nonzero:
        raise ValueError(
            f"jax.grad of the loss is exactly 0 for every parameter at all {n_points} points: "
            "the loss does not depend on the parameters there (a constant loss, a softmax over "
            "a single output, an empty batch), so a gradient returning zeros would pass and "
            "nothing can be checked; audit a loss that varies with the parameters"
        )
    labels = joined_labels([g.labels for g in groups])
    point_source = joined_labels([g.sources for g in groups])  # read by index, as labels
    failed = worst.n_failed > 0
    unjudged = unjudged_note(ev.unjudged_rows, n_points, ev.first_unjudged, labels, names)
    if unjudged:
        notes.append(unjudged)

    if leaf_names is None:
        leaf_names = [f"tensor {k}" for k in range(layout.n_segments)]
    if len(leaf_names) != layout.n_segments:
        raise ValueError(
            f"leaf_names has {len(leaf_names)} entries, expected one per tensor of the params "
            f"({layout.n_segments})"
        )

    def leaf_entries(hints: dict[int, str]) -> list[dict]:
        return [
            dict(name=name, shape=list(shape), hint=hints.get(k))
            for k, (name, shape) in enumerate(zip(leaf_names, layout.shapes, strict=True))
        ]

    if reference != "autodiff":
        t0 = time.perf_counter()
        out = _judged_by_fd(
            ev, worst, groups, loss_fn, names, layout, labels, point_source, dt,
            reference=reference, tol=tol, ref_dtype=ref_dtype, memory=memory, progress=progress,
            leaf_names=leaf_names, candidates=candidates,
        )  # fmt: skip
        timing["finite_diff_s"] = time.perf_counter() - t0
        weights, fd_notes, judged = out
        return WeightVerdicts(
            weights, notes + fd_notes, ev.points_per_call, timing, leaf_entries({}), judged
        )

    fd_values = np.full(len(names), np.nan)
    if fd:
        t0 = time.perf_counter()
        fd_values, fd_notes = _fd_opinion(
            loss_fn, groups, worst, names, fd_max=fd_max, ref_dtype=ref_dtype,
            compiled=fd_compiled, progress=progress, reference_name=reference_name,
        )  # fmt: skip
        notes += fd_notes
        timing["finite_diff_s"] = time.perf_counter() - t0

    found = Diagnosis({}, {})
    fail_idx = np.flatnonzero(failed)
    if fail_idx.size:
        t0 = time.perf_counter()
        found = _hints(ev, worst, fail_idx, groups, layout, names, labels, tol=tol,
                       candidates=candidates, memory=memory, leaf_names=leaf_names,
                       reference_name=reference_name)  # fmt: skip
        timing["diagnose_s"] = time.perf_counter() - t0
    hints = found.elements
    leaves = leaf_entries(found.leaves)
    saturated = (
        saturation(np.arange(len(names)), worst.index) if saturation else np.zeros(len(names), bool)
    )
    if (saturated & failed).any():
        notes.append(
            "some failing weights feed units that are saturated at their worst point "
            "(f'(z) near 0), where relative error means little: "
            f"{[names[i] for i in np.flatnonzero(saturated & failed)][:8]}"
        )

    weights = _weight_entries(
        worst, names, dt, fd_values=fd_values, hints=hints, saturated=saturated,
        labels=labels, point_source=point_source,
    )  # fmt: skip
    return WeightVerdicts(weights, notes, ev.points_per_call, timing, leaves)


def _fd_opinion(
    loss_fn, groups, worst, names, *, fd_max, ref_dtype, compiled, progress, reference_name
):
    """Central differences at the worst point of the ``fd_max`` worst weights, and notes on
    the ones left out and on any that disagree with the reference beyond their own error."""
    notes = []
    fd_values = np.full(len(names), np.nan)
    sel = _select_fd(worst, fd_max)
    say(progress, f"finite differences for {len(sel)} weights")
    if compiled is not None:
        compiled.result()
    with jax.enable_x64(True):
        fd_values[sel], fd_noise = finite_differences(
            loss_fn, groups, sel, worst.index[sel], dtype=ref_dtype
        )
    if len(sel) < len(names):
        notes.append(
            f"finite differences were computed for the {len(sel)} worst weights of "
            f"{len(names)} (fd_max={fd_max}); the others show none"
        )
    ref = worst.reference[sel].astype(np.float64)
    gap = np.abs(fd_values[sel] - ref)
    off = gap > FD_AGREE * np.abs(ref) + fd_noise
    if off.any():
        bad = [names[i] for i in sel[off]][:8]
        notes.append(
            f"finite differences disagree with {reference_name} for {bad} beyond their own "
            f"estimated error; reference='autodiff' decided, so {reference_name}'s verdict "
            "stands: the loss may have a kink there (such as relu at 0), or it goes through a "
            "custom derivative rule that is wrong; reference='fd' lets finite differences "
            "decide, reference='both' requires agreement with both"
        )
    return fd_values, notes


def _judged_by_fd(
    ev, worst, groups, loss_fn, names, layout, labels, point_source, dt, *, reference, tol,
    ref_dtype, memory, progress, leaf_names, candidates,
):  # fmt: skip
    """The entries, notes and point count of a verdict that finite differences decide
    (``reference="fd"``) or take part in (``"both"``), at :func:`audit.fd_verdict.fd_points`."""
    n_el = len(names)
    n_points = sum(g.size for g in groups)
    rows = fd_points(n_points, n_el)
    if candidates is not None:  # both hint passes may ask for them
        candidates = functools.cache(candidates)
    say(progress, f"finite differences for {n_el} weights at {len(rows)} points")
    manual, autodiff, _ = ev.rows(rows)
    widx = np.tile(np.arange(n_el), len(rows))
    pidx = np.repeat(rows, n_el)
    with jax.enable_x64(True):
        d, e = finite_differences(loss_fn, groups, widx, pidx, dtype=ref_dtype, measured=True)
    shape = (len(rows), n_el)
    fv = fd_verdict(manual, autodiff, d.reshape(shape), e.reshape(shape), layout.segments,
                    layout.n_segments, tol)  # fmt: skip
    notes = [reference_note(reference, len(rows), n_points, n_el)]
    fd_fail = fv.n_failed > 0
    ad_fail = worst.n_failed > 0
    # the finite-difference view of every element, jax.grad's value beside it
    fd_view = worst._replace(
        index=rows[fv.index], manual=fv.manual, reference=fv.autodiff, abs_err=fv.abs_err,
        rel_err=fv.rel_err, allowed=fv.allowed, score=fv.score, n_failed=fv.n_failed,
        flag=np.zeros(n_el, np.int8), n_flagged=np.zeros(n_el, np.int64),
        n_unjudged=fv.n_unjudged,
    )  # fmt: skip
    fd_values = fv.fd.copy()
    unjudged = fv.n_unjudged == len(rows)
    if reference == "fd":
        view, failed = fd_view, fd_fail
    else:
        use_fd = fd_fail & ~ad_fail  # an autodiff failure is shown as the default shows it
        view = worst._replace(
            **{f: np.where(use_fd, getattr(fd_view, f), getattr(worst, f)) for f in worst._fields}
        )
        view = view._replace(n_failed=worst.n_failed + fv.n_failed + fv.disagree)
        # finite differences at each element's worst point, where they were computed there
        at = np.asarray(view.index)
        pos = np.minimum(np.searchsorted(rows, at), len(rows) - 1)
        there = d.reshape(shape)[pos, np.arange(n_el)]
        fd_values = np.where(use_fd, fv.fd, np.where(rows[pos] == at, there, np.nan))
        unjudged = unjudged | ~np.isfinite(worst.reference)
        failed = fd_fail | ad_fail | fv.disagree
    hints = {}
    fail_idx = np.flatnonzero(failed)
    if fail_idx.size:
        for i, hint in _fd_hints(fv, fail_idx, manual, d.reshape(shape), rows, groups,
                                 layout, names, labels, tol=tol,
                                 candidates=candidates).items():  # fmt: skip
            hints[i] = hint
        if reference == "both":
            ad_idx = np.flatnonzero(ad_fail)
            if ad_idx.size:
                found = _hints(ev, worst, ad_idx, groups, layout, names, labels, tol=tol,
                               candidates=candidates, memory=memory, leaf_names=leaf_names,
                               reference_name="jax.grad")  # fmt: skip
                hints.update(found.elements)
    off = np.flatnonzero(fv.disagree)
    for i in off:
        k = int(fv.disagree_index[i])
        ad = autodiff[k, i]
        fdv = float(d.reshape(shape)[k, i])
        err = float(e.reshape(shape)[k, i])
        said = (
            f"the references disagree at {labels[rows[k]]}: jax.grad {float(ad):.6g}, finite "
            f"differences {fdv:.6g} (error {err:.2g}): a custom rule in the loss, or a kink"
        )
        if reference == "both":
            hints[i] = said + (f"; {hints[i]}" if i in hints else "")
    if off.size:
        bad = [names[i] for i in off][:8]
        notes.append(
            f"finite differences disagree with jax.grad for {bad} beyond their own estimated "
            + (
                "error; reference='fd' decided, so finite differences' verdict stands: jax.grad "
                "may go through a wrong custom derivative rule, or the loss has a kink there"
                if reference == "fd"
                else "error; reference='both' fails them, with both values in the hint: a "
                "custom derivative rule in the loss, or a kink (such as relu at 0)"
            )
        )
    weights = _weight_entries(
        view, names, dt, fd_values=fd_values, hints=hints, saturated=np.zeros(n_el, bool),
        labels=labels, point_source=point_source, failed=failed, unjudged=unjudged,
    )  # fmt: skip
    return weights, notes, len(rows)


def _candidates_at(candidates: Callable[[], dict] | None, rows: np.ndarray) -> dict:
    """The named mistakes of ``candidates()`` (see :func:`compare_groups`), each taken at
    the point indices ``rows`` in float64; {} without candidates."""
    return {
        k: (np.asarray(v, np.float64)[rows], *rest)
        for k, (v, *rest) in (candidates() if candidates else {}).items()
    }


def _fd_hints(fv, fail_idx, manual, fd, rows, groups, layout, names, labels, *, tol,
              candidates):  # fmt: skip
    """A hint for each element that fails against finite differences, from its values at
    the finite-difference points; ``candidates()`` as in :func:`compare_groups`, taken at
    those points."""
    sel = fail_idx[fv.n_failed[fail_idx] > 0]
    if not sel.size:
        return {}
    cands = _candidates_at(candidates, rows)
    batch = np.concatenate([np.full(g.size, g.batch) for g in groups])[rows]
    hints = diagnose(
        sel, np.asarray(manual, np.float64), np.asarray(fd, np.float64), names=names,
        leaf_of=layout.segments, leaf_shapes=layout.shapes, leaf_offsets=layout.offsets,
        batch=batch, labels=[labels[i] for i in rows], floor=tol.floor,
        rtol=max(10 * tol.rtol, 1e-6), candidates=cands, failed_at=fv.failed_at,
        reference_name="finite differences",
    )  # fmt: skip
    return hints


def _hints(ev, worst, fail_idx, groups, layout, names, labels, *, tol, candidates, memory,
           leaf_names, reference_name) -> Diagnosis:  # fmt: skip
    """A hint for each failing weight, from its values at up to :data:`DIAGNOSE_POINTS`
    points: every failing weight's worst point, then the first ones (fewer where their rows
    would not fit the memory budget), so a failure seen only late in the trajectory is still
    there to be named."""
    n_points = sum(g.size for g in groups)
    room = (default_budget() if memory is None else memory) // (DIAGNOSE_BYTES * len(names))
    most = int(max(1, min(DIAGNOSE_POINTS, room)))
    worst_pts = np.unique(worst.index[fail_idx])[:most]
    rest = np.setdiff1d(np.arange(n_points), worst_pts)[: most - len(worst_pts)]
    rows = np.sort(np.concatenate([worst_pts, rest]))
    batch = np.concatenate([np.full(g.size, g.batch) for g in groups])[rows]
    cands = _candidates_at(candidates, rows)
    manual_at, reference_at, failed_at = ev.rows(rows)
    return diagnose_leaves(
        fail_idx,
        np.asarray(manual_at, dtype=np.float64),
        np.asarray(reference_at, dtype=np.float64),
        names=names,
        leaf_of=layout.segments,
        leaf_shapes=layout.shapes,
        leaf_offsets=layout.offsets,
        batch=batch,
        labels=[labels[i] for i in rows],
        floor=tol.floor,
        rtol=max(10 * tol.rtol, 1e-6),
        candidates=cands,
        failed_at=failed_at,
        leaf_names=leaf_names,
        reference_name=reference_name,
    )


def _weight_entries(
    worst, names, dt, *, fd_values, hints, saturated, labels, point_source, failed=None,
    unjudged=None,
) -> WeightTable:  # fmt: skip
    """One entry per weight, each made when it is first read (:class:`WeightTable`): a
    network of 85,002 weights spent much of a small call building dicts that a caller
    reading ``passed`` never looks at. Each verdict is
    :meth:`audit.compare.Worst.verdict_at`'s, or where another reference decides, ``failed``
    and ``unjudged`` (``(P,)`` bool) say it."""
    failed = worst.n_failed > 0 if failed is None else failed
    unjudged = ~np.isfinite(worst.reference) if unjudged is None else unjudged
    status = np.select(
        [failed, unjudged, worst.n_flagged > 0],
        ["fail", "not_judged", "precision"],
        "pass",
    )  # an array: a string per weight only where an entry is read
    values = {
        key: np.asarray(a, dtype=np.float64)
        for key, a in (
            ("manual", worst.manual), ("reference", worst.reference),
            ("abs_err", worst.abs_err), ("rel_err", worst.rel_err),
            ("allowed_err", worst.allowed), ("score", worst.score),
        )
    }  # fmt: skip
    fd = np.asarray(fd_values, dtype=np.float64)
    index = np.asarray(worst.index)
    n_unjudged = np.asarray(worst.n_unjudged)
    saturated = np.asarray(saturated, bool)
    extra: dict[int, dict] = {i: dict(hint=h) for i, h in hints.items()}
    for i in np.flatnonzero(status == "precision").tolist():
        cause = "cancellation in 1 - A near saturation" if saturated[i] else "rounding"
        precision = worst.verdict_at(i, dt, cause)["precision"]
        extra[i] = dict(precision=precision, hint=precision["text"])

    def entry(i: int) -> dict:
        k, own = int(index[i]), str(status[i])
        e = dict(
            name=names[i],
            **{key: json_number(col[i]) for key, col in values.items()},
            finite_diff=None if np.isnan(fd[i]) else json_number(fd[i]),
            passed=own in PASSING, status=own, precision=None,
            not_judgeable=int(n_unjudged[i]), hint=None, saturated=bool(saturated[i]),
            worst_point=dict(index=k, source=point_source[k], label=labels[k]),
        )  # fmt: skip
        e.update(extra.get(i, {}))
        return e

    return WeightTable(entry, names=names, statuses=status)


def _spread_note(grad_fn: Callable, dtype, ref_dtype) -> str:
    """Says, never silently, that a failing element's tolerance may be widened."""
    who = getattr(grad_fn, "__name__", "grad_fn")
    wide, own = jnp.dtype(ref_dtype).name, jnp.dtype(dtype).name
    return (
        f"{who} does not compute in {wide} when given {wide} inputs (it casts to a dtype of "
        f"its own, or fails): where a {own} value fails, rounding cannot be told from a wrong "
        f"formula by evaluating it again in {wide}, so its tolerance is widened to noise x "
        "its measured spread under one-ulp nudges of the inputs, and such a pass is flagged; "
        "keep the function dtype-generic for the sharper rule"
    )
