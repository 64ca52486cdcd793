"""Say what a wrong gradient looks like, from its values at many points.

Each hint is a hypothesis checked at every audited point where the reference is clearly
non-zero, never at one point alone:

- NaN/Inf on either side, with the first point where it appeared;
- zero where the reference is not: a missing term;
- a constant ratio to the reference: -1 a sign error, x2 a dropped 1/2, x1/2 a 1/2 too many,
  or another constant;
- a ratio equal to the batch size (summed instead of averaged) or its inverse;
- the value of another weight's reference: swapped indices, or a whole ``W`` transposed;
- the value the gradient would have without one layer's activation derivative (network audits
  only; the candidates are supplied by the caller).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["diagnose"]

MIN_POINTS = 3  # a pattern must hold at this many points at least to be named


def _close(a: np.ndarray, b: np.ndarray, rtol: float, floor: np.ndarray) -> np.ndarray:
    return np.abs(a - b) <= rtol * np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)


def _ratio_hint(ratio: np.ndarray, batch: np.ndarray, rtol: float) -> str | None:
    med = float(np.median(ratio))
    if np.all(np.abs(ratio - med) <= rtol * max(abs(med), 1e-30)):
        for value, text in (
            (-1.0, "sign error: handwritten = -1 x jax.grad"),
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
    candidates: dict[str, tuple[np.ndarray, Sequence[str]]] | None = None,
    failed_at: np.ndarray | None = None,
) -> dict[int, str]:
    """A hint for each failing element.

    Args:
      failing: ``(k,)`` flat indices of failing weights.
      manual, reference: ``(n, P)`` values at the points.
      names: ``P`` weight names; leaf_of: ``(P,)`` leaf index of each element.
      leaf_shapes, leaf_offsets: per leaf, its shape and first flat index.
      batch: ``(n,)`` batch size of each point; labels: ``n`` point descriptions.
      floor: the tolerance floor (fraction of a tensor's scale).
      rtol: how close a hypothesis must match (relative).
      candidates: ``{mistake: ((n, P) gradients, P hints)}``: gradients as a named mistake
        would give them, with the hint each weight gets when it matches.
      failed_at: ``(n, P)`` bool, where each element failed. A pattern is looked for at a
        weight's failing points only: a mistake that shows at some points (a branch taken
        for one batch shape, say) is named from the points where it shows.

    Returns:
      ``{flat index: hint}`` for the failing elements that match a pattern.
    """
    n, P = reference.shape
    ref_abs = np.where(np.isfinite(reference), np.abs(reference), 0)
    scale = np.zeros((n, P))
    for leaf, _off in enumerate(leaf_offsets):
        cols = leaf_of == leaf
        scale[:, cols] = ref_abs[:, cols].max(axis=1, keepdims=True)
    sig_floor = 10 * floor * scale
    hints: dict[int, str] = {}
    transposed = _transposed_leaves(failing, manual, reference, leaf_of, leaf_shapes,
                                    leaf_offsets, rtol, sig_floor)  # fmt: skip
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
            hints[i] = f"jax.grad is NaN/Inf at {labels[k]}: the loss itself is not finite there"
            continue
        at = np.ones(n, bool) if failed_at is None else failed_at[:, i]
        if not at.any():
            at = np.ones(n, bool)
        m, r, floor_i, scale_i = m[at], r[at], sig_floor[at, i], scale[at, i]
        sig = np.abs(r) > floor_i
        if sig.sum() == 0:
            continue
        if np.all(np.abs(m[sig]) <= 1e-6 * scale_i[sig]):
            hints[i] = "handwritten is 0 where jax.grad is not: a missing term"
            continue
        if sig.sum() >= MIN_POINTS:
            hint = _ratio_hint(m[sig] / r[sig], batch[at][sig], rtol)
            if hint:
                hints[i] = hint
                continue
        if leaf_of[i] in transposed:
            hints[i] = transposed[leaf_of[i]]
            continue
        swap = _swap_partner(i, m, reference[at], leaf_of, rtol, floor_i)
        if swap is not None:
            hints[i] = (
                f"matches jax.grad of {names[swap]}: swapped indices ({names[i]} <-> {names[swap]})"
            )
            continue
        for cand, texts in (candidates or {}).values():
            c = cand[at, i]
            if np.all(_close(m, c, rtol, floor_i)) and not np.all(_close(r, c, rtol, floor_i)):
                hints[i] = texts[i]
                break
        else:
            med = float(np.median(m[sig] / r[sig]))
            hints[i] = f"no simple pattern (median ratio to jax.grad x{med:.3g})"
    return hints


def _swap_partner(i, m, reference, leaf_of, rtol, floor_i) -> int | None:
    """Another element of the same tensor whose reference equals this manual value everywhere."""
    cols = np.flatnonzero(leaf_of == leaf_of[i])
    cols = cols[cols != i]
    if cols.size == 0 or cols.size > 4096:
        return None
    ok = np.all(_close(m[:, None], reference[:, cols], rtol, floor_i[:, None]), axis=0)
    # a partner whose own reference equals ours tells nothing (both would match)
    ok &= ~np.all(_close(reference[:, [i]], reference[:, cols], rtol, floor_i[:, None]), axis=0)
    return int(cols[np.argmax(ok)]) if ok.any() else None


def _transposed_leaves(failing, manual, reference, leaf_of, shapes, offsets, rtol, floor):
    """Square weight matrices whose handwritten gradient is the reference's transpose."""
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
            out[int(leaf)] = f"transposed W: handwritten dE/dW is jax.grad's W^T (tensor {leaf})"
    return out
