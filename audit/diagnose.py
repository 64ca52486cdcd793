"""Say what a wrong gradient looks like, from its values at many points.

Each hint is a hypothesis checked at every audited point where the reference is clearly
non-zero, never at one point alone. Per element:

- NaN/Inf on either side, with the first point where it appeared;
- zero where the reference is not: a missing term;
- a constant ratio to the reference: -1 a sign error, x2 a dropped 1/2, x1/2 a 1/2 too many,
  or another constant;
- a ratio equal to the batch size (summed instead of averaged) or its inverse;
- the value of another element's reference, both ways round, where every failing element
  of the tensor is one of such pairs: swapped indices (never two elements that happen to
  match, as an elementwise slip could make them);
- the value the gradient would have without one layer's activation derivative (network audits
  only; the candidates are supplied by the caller).

Per tensor (leaf), for the summary line of a report: one constant ratio throughout the tensor
("x0.98 everywhere in W1"), a sign flip, the sum instead of the mean, the reference's
transpose (square tensors), swapped pairs, a supplied candidate, another tensor's reference,
one offset shared by every element at each point (a dropped mean's term), or a ratio of one
sign that varies from element to element (an elementwise factor missing or wrong). The
reference is named as the audit names it (``jax.grad``, ``autodiff``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["MIN_POINTS", "Diagnosis", "diagnose", "diagnose_leaves"]

MIN_POINTS = 3  # a pattern must hold at this many points at least to be named


class Diagnosis(NamedTuple):
    """Hints for the failing elements and for the tensors (leaves) that hold them."""

    elements: dict[int, str]  # flat index -> hint
    leaves: dict[int, str]  # leaf index -> hint for the tensor as a whole


def _close(a: np.ndarray, b: np.ndarray, rtol: float, floor: np.ndarray) -> np.ndarray:
    return np.abs(a - b) <= rtol * np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)


def _times(c: float) -> str:
    """``x0.98``: enough digits to tell a factor near 1 from 1."""
    return f"x{c:.6g}" if abs(c - 1) < 1e-2 else f"x{c:.3g}"


def _constant(ratio: np.ndarray, rtol: float) -> float | None:
    med = float(np.median(ratio))
    if np.all(np.abs(ratio - med) <= rtol * max(abs(med), 1e-30)):
        return med
    return None


def _ratio_hint(ratio: np.ndarray, batch: np.ndarray, rtol: float, ref: str) -> str | None:
    med = _constant(ratio, rtol)
    if med is not None:
        for value, text in (
            (-1.0, f"sign error: handwritten = -1 x {ref}"),
            (2.0, "x2: a dropped 1/2 (d/dA of 1/2 (A - yt)^2 is A - yt, not 2 (A - yt))"),
            (0.5, "x1/2: a factor 1/2 too many"),
        ):
            if abs(med - value) <= rtol * abs(value):
                return text
    if np.any(batch != 1):
        if np.all(np.abs(ratio - batch) <= rtol * batch):
            return "x batch size: summed over the batch instead of averaged"
        if np.all(np.abs(ratio * batch - 1) <= rtol):
            return "x 1/batch size: averaged over the batch twice"
    return None


def diagnose(
    failing: np.ndarray,
    manual: np.ndarray,
    reference: np.ndarray,
    *,
    names: Sequence[str],
    leaf_of: np.ndarray,
    leaf_shapes: Sequence[tuple[int, ...]],
    leaf_offsets: Sequence[int],
    batch: np.ndarray,
    labels: Sequence[str],
    floor: float,
    rtol: float,
    candidates: dict[str, tuple] | None = None,
    failed_at: np.ndarray | None = None,
    leaf_names: Sequence[str] | None = None,
    reference_name: str = "jax.grad",
) -> dict[int, str]:
    """A hint for each failing element: :func:`diagnose_leaves`'s ``elements``."""
    return diagnose_leaves(
        failing, manual, reference, names=names, leaf_of=leaf_of, leaf_shapes=leaf_shapes,
        leaf_offsets=leaf_offsets, batch=batch, labels=labels, floor=floor, rtol=rtol,
        candidates=candidates, failed_at=failed_at, leaf_names=leaf_names,
        reference_name=reference_name,
    ).elements  # fmt: skip


def diagnose_leaves(
    failing: np.ndarray,
    manual: np.ndarray,
    reference: np.ndarray,
    *,
    names: Sequence[str],
    leaf_of: np.ndarray,
    leaf_shapes: Sequence[tuple[int, ...]],
    leaf_offsets: Sequence[int],
    batch: np.ndarray,
    labels: Sequence[str],
    floor: float,
    rtol: float,
    candidates: dict[str, tuple] | None = None,
    failed_at: np.ndarray | None = None,
    leaf_names: Sequence[str] | None = None,
    reference_name: str = "jax.grad",
) -> Diagnosis:
    """A hint for each failing element and for each tensor that holds one.

    Args:
      failing: ``(k,)`` flat indices of failing elements.
      manual, reference: ``(n, P)`` values at the points.
      names: ``P`` element names; leaf_of: ``(P,)`` leaf index of each element.
      leaf_shapes, leaf_offsets: per leaf, its shape and first flat index.
      batch: ``(n,)`` batch size of each point; labels: ``n`` point descriptions.
      floor: the tolerance floor (fraction of a tensor's scale).
      rtol: how close a hypothesis must match (relative).
      candidates: ``{mistake: ((n, P) gradients, P hints[, tensor hint])}``: gradients as a
        named mistake would give them, the hint each element gets when it matches, and
        optionally the hint for a tensor all of whose failing elements match it.
      failed_at: ``(n, P)`` bool, where each element failed. A pattern is looked for at an
        element's failing points only: a mistake that shows at some points (a branch taken
        for one batch shape, say) is named from the points where it shows.
      leaf_names: a name per leaf, as hints say it (default ``tensor k``).
      reference_name: what the hints call the reference.

    Returns:
      A :class:`Diagnosis`: ``{flat index: hint}`` for the failing elements that match a
      pattern, ``{leaf index: hint}`` for the tensors whose failing elements share one.
    """
    n, P = reference.shape
    ref = reference_name
    lnames = list(leaf_names) if leaf_names is not None else [
        f"tensor {k}" for k in range(len(leaf_shapes))
    ]  # fmt: skip
    ref_abs = np.where(np.isfinite(reference), np.abs(reference), 0)
    scale = np.zeros((n, P))
    for leaf, _off in enumerate(leaf_offsets):
        cols = leaf_of == leaf
        scale[:, cols] = ref_abs[:, cols].max(axis=1, keepdims=True)
    sig_floor = 10 * floor * scale
    fails = np.ones((n, P), bool) if failed_at is None else np.asarray(failed_at, bool)
    hints: dict[int, str] = {}
    matched: dict[int, str] = {}  # element -> the candidate it matched
    transposed = _transposed_leaves(failing, manual, reference, leaf_of, leaf_shapes,
                                    leaf_offsets, rtol, sig_floor, lnames, ref)  # fmt: skip
    pending = []  # elements no pattern of their own explains: swaps and candidates next
    for i in map(int, failing):
        m, r = manual[:, i], reference[:, i]
        bad_m, bad_r = ~np.isfinite(m), ~np.isfinite(r)
        if bad_m.any():
            hints[i] = (
                f"NaN/Inf in the handwritten gradient (first at {labels[int(np.argmax(bad_m))]})"
            )
            continue
        if bad_r.any():
            k = int(np.argmax(bad_r))
            hints[i] = f"{ref} is NaN/Inf at {labels[k]}: the loss itself is not finite there"
            continue
        at = fails[:, i] if fails[:, i].any() else np.ones(n, bool)
        m, r, floor_i, scale_i = m[at], r[at], sig_floor[at, i], scale[at, i]
        sig = np.abs(r) > floor_i
        if sig.sum() == 0:
            continue
        if np.all(np.abs(m[sig]) <= 1e-6 * scale_i[sig]):
            hints[i] = f"handwritten is 0 where {ref} is not: a missing term"
            continue
        if sig.sum() >= MIN_POINTS:
            hint = _ratio_hint(m[sig] / r[sig], batch[at][sig], rtol, ref)
            if hint:
                hints[i] = hint
                continue
        if leaf_of[i] in transposed:
            hints[i] = transposed[leaf_of[i]]
            continue
        pending.append((i, at, m, r, floor_i, sig))
    swaps = _swapped_pairs(failing, [p[0] for p in pending], manual, reference, leaf_of, rtol,
                           sig_floor, fails)  # fmt: skip
    for i, at, m, r, floor_i, sig in pending:
        if i in swaps:
            j = swaps[i]
            hints[i] = f"matches {ref} of {names[j]}: swapped indices ({names[i]} <-> {names[j]})"
            continue
        for key, (cand, texts, *_) in (candidates or {}).items():
            c = cand[at, i]
            if np.all(_close(m, c, rtol, floor_i)) and not np.all(_close(r, c, rtol, floor_i)):
                hints[i] = texts[i]
                matched[i] = key
                break
        else:
            ratio = m[sig] / r[sig]
            const = _constant(ratio, rtol) if sig.sum() >= MIN_POINTS else None
            hints[i] = (
                f"no simple pattern (median ratio to {ref} {_times(float(np.median(ratio)))})"
                if const is None
                else f"{_times(const)} at every point: a constant factor"
            )
    leaves = _leaf_hints(
        failing, manual, reference, leaf_of=leaf_of, leaf_shapes=leaf_shapes,
        leaf_offsets=leaf_offsets, batch=batch, rtol=rtol, sig_floor=sig_floor, scale=scale,
        fails=fails, names=names, lnames=lnames, ref=ref, transposed=transposed, swaps=swaps,
        matched=matched, candidates=candidates or {},
    )  # fmt: skip
    return Diagnosis(hints, leaves)


def _leaf_hints(failing, manual, reference, *, leaf_of, leaf_shapes, leaf_offsets, batch, rtol,
                sig_floor, scale, fails, names, lnames, ref, transposed, swaps, matched,
                candidates) -> dict[int, str]:  # fmt: skip
    """One hint per tensor holding a failing element, where one pattern explains it."""
    out: dict[int, str] = {}
    failing = np.asarray(failing, int)
    for leaf in np.unique(leaf_of[failing]).tolist():
        name = lnames[leaf]
        bad = failing[leaf_of[failing] == leaf]
        cols = np.arange(leaf_offsets[leaf], leaf_offsets[leaf] + int(np.prod(leaf_shapes[leaf])))
        at = fails[:, bad].any(axis=1)
        at = at if at.any() else np.ones(len(at), bool)
        m, r = manual[:, cols][at], reference[:, cols][at]
        if not (np.isfinite(m).all() and np.isfinite(r).all()):
            continue
        sig = np.abs(r) > sig_floor[:, cols][at]
        in_bad = np.isin(cols, bad)
        whole = bool(in_bad.all())
        hint = _whole_leaf_ratio(m, r, sig, batch[at], rtol, name, ref)
        if hint is None and leaf in transposed:
            hint = transposed[leaf]
        if hint is None and all(int(i) in swaps for i in bad):
            pairs = sorted({tuple(sorted((int(i), swaps[int(i)]))) for i in bad})
            hint = (
                f"swapped indices ({names[pairs[0][0]]} <-> {names[pairs[0][1]]})"
                if len(pairs) == 1
                else f"{len(pairs)} pairs of swapped indices in {name}, such as "
                f"{names[pairs[0][0]]} <-> {names[pairs[0][1]]}"
            )
        if hint is None:
            keys = {matched.get(int(i)) for i in bad}
            if len(keys) == 1 and None not in keys:
                key = keys.pop()
                extra = candidates[key][2:]
                hint = extra[0] if extra else f"as the gradient without {key}'s derivative"
        if hint is None and whole:
            hint = _another_leaf(leaf, m, r, at, reference, sig_floor, leaf_shapes,
                                 leaf_offsets, rtol, lnames, ref)  # fmt: skip
        if hint is None and whole:
            hint = _shared_offset(m, r, sig, rtol, name, ref)
        if hint is None:
            mb, rb, sb = m[:, in_bad], r[:, in_bad], sig[:, in_bad]
            scale_b = scale[:, cols][at][:, in_bad]
            if sb.any() and np.all(np.abs(mb[sb]) <= 1e-6 * scale_b[sb]):
                hint = f"handwritten {name} is 0 where {ref} is not: a missing term"
            elif sb.any(axis=1).sum() >= MIN_POINTS:
                ratio = mb[sb] / rb[sb]
                lo, hi = float(ratio.min()), float(ratio.max())
                if lo > 0 and _constant(ratio, rtol) is None:
                    hint = (
                        f"{_times(lo)} to {_times(hi)} of {ref}, same sign, varying by element "
                        "and point: an elementwise factor missing or wrong (such as an "
                        "activation derivative)"
                    )
        if hint is not None:
            out[int(leaf)] = hint
    return out


def _whole_leaf_ratio(m, r, sig, batch, rtol, name, ref) -> str | None:
    """A constant ratio (or the batch size) over every element of the tensor at every point
    where its reference is clearly non-zero."""
    if sig.any(axis=1).sum() < MIN_POINTS:
        return None
    ratio = m[sig] / r[sig]
    b = np.broadcast_to(batch[:, None], sig.shape)[sig]
    c = _constant(ratio, rtol)
    if c is not None and abs(c + 1) <= rtol:
        return f"sign error: handwritten {name} = -1 x {ref} (x-1 everywhere)"
    if c is not None and abs(c - 2) <= 2 * rtol:
        return f"x2 everywhere in {name}: a dropped 1/2"
    if c is not None and abs(c - 0.5) <= 0.5 * rtol:
        return f"x1/2 everywhere in {name}: a factor 1/2 too many"
    if np.any(b != 1):
        if np.all(np.abs(ratio - b) <= rtol * b):
            return f"x batch size everywhere in {name}: summed over the batch instead of averaged"
        if np.all(np.abs(ratio * b - 1) <= rtol):
            return f"x 1/batch size everywhere in {name}: averaged over the batch twice"
    if c is None:
        return None
    return f"{_times(c)} everywhere in {name}: a constant factor"


def _shared_offset(m, r, sig, rtol, name, ref) -> str | None:
    """The handwritten tensor is the reference plus one value shared by all its elements at
    each point (a dropped mean's or sum's term), at enough points to tell."""
    if m.shape[1] < 2:
        return None
    d = m - r
    scale = np.maximum(np.abs(r).max(axis=1), 1e-300)
    spread = d.max(axis=1) - d.min(axis=1)
    offset = np.abs(np.median(d, axis=1))
    shows = offset > 10 * rtol * scale  # the offset itself is clearly there
    if shows.sum() < MIN_POINTS or not np.all(spread <= rtol * scale):
        return None
    return (
        f"handwritten {name} - {ref} is one value shared by every element at each point: a "
        "term common to the whole tensor (such as a mean's) is missing or extra"
    )


def _another_leaf(leaf, m, r, at, reference, floor, shapes, offsets, rtol, lnames,
                  ref) -> str | None:  # fmt: skip
    """Another tensor of the same shape whose reference the handwritten one equals."""
    own = np.arange(offsets[leaf], offsets[leaf] + int(np.prod(shapes[leaf])))
    if np.all(_close(m, r, rtol, floor[:, own][at])):
        return None
    for other, shape in enumerate(shapes):
        if other == leaf or tuple(shape) != tuple(shapes[leaf]):
            continue
        cols = np.arange(offsets[other], offsets[other] + int(np.prod(shape)))
        r_o, f_o = reference[:, cols][at], floor[:, cols][at]
        sig_o = np.abs(r_o) > f_o
        if sig_o.any(axis=1).sum() < MIN_POINTS or not np.isfinite(r_o).all():
            continue
        if np.all(_close(m, r_o, rtol, f_o)):
            return (
                f"handwritten {lnames[leaf]} equals {ref}'s {lnames[other]}: the step between "
                "them is left out (a missing elementwise derivative?) or the two are swapped"
            )
    return None


# the most work (elements tried x partners x points) spent looking for swapped pairs in one
# tensor; a tensor needing more is not searched
SWAP_WORK = 2**27


def _swapped_pairs(failing, pending, manual, reference, leaf_of, rtol, floor, fails):
    """``{i: j}`` for elements whose handwritten value is the reference of another element
    of the same tensor and the other way round, in tensors where every failing element is
    one of such pairs. Two elements that happen to match one way (an elementwise slip can
    make a value equal a neighbour's reference at a few points) are not a swap. Only the
    ``pending`` elements (no pattern of their own) are tried, and only in tensors where
    every failing element is pending."""
    failing = np.asarray(failing, int)
    pending_set = set(pending)
    n = manual.shape[0]
    out: dict[int, int] = {}
    for leaf in np.unique(leaf_of[failing]).tolist():
        bad = [int(i) for i in failing if leaf_of[i] == leaf]
        cols = np.flatnonzero(leaf_of == leaf)
        if not all(i in pending_set for i in bad) or len(bad) * cols.size * n > SWAP_WORK:
            continue
        ref_leaf, floor_leaf = reference[:, cols], floor[:, cols]
        partner: dict[int, int] = {}
        for i in bad:
            at = fails[:, i] if fails[:, i].any() else np.ones(n, bool)
            j = _swap_partner(i, manual[at, i], cols, ref_leaf[at], floor_leaf[at], rtol)
            if j is None:
                break
            partner[i] = j
        else:
            if all(partner.get(partner[i]) == i for i in bad):
                out.update(partner)
    return out


def _swap_partner(i, m, cols, ref_leaf, floor_leaf, rtol) -> int | None:
    """Another element of the same tensor (``cols``, whose references and floors at the
    points are ``ref_leaf``, ``floor_leaf``) whose reference equals this manual value at
    every point, and is clearly non-zero at enough of them to tell."""
    if cols.size < 2 or cols.size > 4096:
        return None
    k = int(np.flatnonzero(cols == i)[0])
    others = np.arange(cols.size) != k
    r = ref_leaf[:, others]
    floor_i = floor_leaf[:, [k]]
    ok = np.all(_close(m[:, None], r, rtol, floor_i), axis=0)
    # a partner whose own reference equals ours tells nothing (both would match)
    ok &= ~np.all(_close(ref_leaf[:, [k]], r, rtol, floor_i), axis=0)
    ok &= (np.abs(r) > floor_leaf[:, others]).sum(axis=0) >= min(MIN_POINTS, r.shape[0])
    return int(cols[others][np.argmax(ok)]) if ok.any() else None


def _transposed_leaves(failing, manual, reference, leaf_of, shapes, offsets, rtol, floor,
                       lnames, ref):  # fmt: skip
    """Square tensors whose handwritten gradient is the reference's transpose."""
    out = {}
    for leaf in np.unique(leaf_of[failing]):
        shape = shapes[leaf]
        if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 3:  # 2x2: a swapped pair
            continue
        cols = np.arange(offsets[leaf], offsets[leaf] + shape[0] * shape[1])
        n = manual.shape[0]
        m = manual[:, cols].reshape(n, *shape)
        r = reference[:, cols].reshape(n, *shape)
        f = floor[:, cols].reshape(n, *shape)
        if np.all(_close(m, np.swapaxes(r, 1, 2), rtol, f)) and not np.all(_close(m, r, rtol, f)):
            name = lnames[int(leaf)]
            out[int(leaf)] = f"transposed: handwritten {name} is {ref}'s {name}^T"
    return out
