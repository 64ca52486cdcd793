"""Which opinion decides a verdict: autodiff, finite differences, or both.

``reference="autodiff"`` (the default) judges every element at every point against
``jax.grad`` in float64; finite differences are a third opinion that never fails a check.
``reference="fd"`` judges against float64 central differences instead, each with its own
error estimate ``e`` (from steps ``2h`` and ``h/2``, :mod:`audit.finite_diff`): an element
passes at a point when both values are finite and::

    |m - fd| <= allowed + e

with ``allowed`` the audit's rule (:mod:`audit.compare`) with ``fd`` in the place of the
reference, so FD's own error never makes a right value fail and a wrong one beyond that
error does. ``reference="both"`` requires agreement with each; where the two references
disagree with each other beyond FD's error (``|r - fd| > allowed + e``: a custom rule in
the loss, or a kink), the element fails and is reported as such, with both values.

The second look that tells rounding from a wrong formula (``PASS*``, :mod:`audit.compare`)
belongs to the comparison with autodiff: against finite differences a value is judged by
its dtype's rule directly.

Finite differences cost six loss evaluations per element and point (steps ``h``, ``2h``
and ``h/2``, each both ways), so they judge every element at the given point, and at as
many further points, spread evenly over the others, as :data:`FD_LOSS_EVALS` allows.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from audit.compare import Tolerance, compare

__all__ = [
    "EVALS_PER_DIFFERENCE",
    "FD_LOSS_EVALS",
    "REFERENCES",
    "FdVerdict",
    "check_reference",
    "fd_points",
    "fd_verdict",
    "reference_note",
]

REFERENCES = ("autodiff", "fd", "both")

# loss evaluations one central difference with its error estimate takes: D(h), D(2h), D(h/2)
EVALS_PER_DIFFERENCE = 9  # three steps, two sides each, and the loss's spread under nudges

# loss evaluations the finite-difference verdict spends beyond the given point, at most
FD_LOSS_EVALS = 2**17


def check_reference(reference: object, *, fd: bool = True) -> str:
    """``reference`` if it is one of :data:`REFERENCES`, else a ValueError listing them;
    with ``fd=False`` (finite differences off) only ``"autodiff"`` can decide.

    Example:
      >>> check_reference("fd")
      'fd'
      >>> check_reference("jax")
      Traceback (most recent call last):
      ...
      ValueError: reference='jax', expected one of 'autodiff', 'fd', 'both'
    """
    if not isinstance(reference, str) or reference not in REFERENCES:
        valid = ", ".join(repr(r) for r in REFERENCES)
        raise ValueError(f"reference={reference!r}, expected one of {valid}")
    if reference != "autodiff" and not fd:
        raise ValueError(
            f"reference={reference!r} judges against finite differences, but fd=False turns "
            "them off; pass fd=True, or reference='autodiff'"
        )
    return reference


def fd_points(n_points: int, n_elements: int, budget: int | None = None) -> np.ndarray:
    """The points finite differences judge: the given point (0) always, then as many as
    ``budget`` loss evaluations (default :data:`FD_LOSS_EVALS`) allow at
    :data:`EVALS_PER_DIFFERENCE` per element, spread evenly over the other ``n_points - 1``
    (the last one included).

    Returns:
      ``(k,)`` int, sorted point indices, ``1 <= k <= n_points``.

    Example:
      >>> fd_points(256, 96).tolist()[:4], len(fd_points(256, 96))
      ([0, 1, 3, 4], 152)
      >>> fd_points(10, 10**6).tolist()
      [0]
    """
    budget = FD_LOSS_EVALS if budget is None else budget
    more = min(n_points - 1, budget // (EVALS_PER_DIFFERENCE * max(1, n_elements)))
    if more <= 0:
        return np.zeros(1, np.int64)
    rest = np.unique(np.round(np.linspace(1, n_points - 1, more)).astype(np.int64))
    return np.concatenate([[0], rest]).astype(np.int64)


def reference_note(reference: str, judged: int, n_points: int, n_elements: int) -> str:
    """What decided the verdict, and where finite differences judged, in one sentence."""
    which = {"fd": "finite differences decide", "both": "an element must agree with both"}
    return (
        f"reference={reference!r}: {which[reference]}; float64 central differences judged "
        f"all {n_elements} elements at {judged} of {n_points} points (the given point, and "
        f"as many more, spread evenly, as {FD_LOSS_EVALS} loss evaluations allow at "
        f"{EVALS_PER_DIFFERENCE} per element and point); an element passes there when "
        "|m - fd| <= allowed + the difference's own error estimate"
        + (
            "; each element's errors are measured against finite differences, beside "
            "jax.grad's value at the same point"
            if reference == "fd"
            else ""
        )
    )


class FdVerdict(NamedTuple):
    """Per element, over the finite-difference points: the worst case. All ``(P,)``;
    ``index`` counts in the points given to :func:`fd_verdict` (``failed_at`` is
    ``(k, P)``). ``disagree`` marks the
    elements where ``jax.grad`` and finite differences disagree beyond FD's error at some
    point, ``disagree_index`` the point where they disagree most."""

    index: np.ndarray
    manual: np.ndarray
    autodiff: np.ndarray
    fd: np.ndarray
    fd_err: np.ndarray
    abs_err: np.ndarray
    rel_err: np.ndarray
    allowed: np.ndarray  # allowed + fd_err at the worst point
    score: np.ndarray
    n_failed: np.ndarray
    n_unjudged: np.ndarray
    disagree: np.ndarray
    disagree_index: np.ndarray
    failed_at: np.ndarray  # (k, P) bool: where each element failed


def fd_verdict(
    manual: np.ndarray,
    autodiff: np.ndarray,
    fd: np.ndarray,
    fd_err: np.ndarray,
    segments: np.ndarray,
    n_segments: int,
    tol: Tolerance,
) -> FdVerdict:
    """Judge ``manual`` against finite differences, and ``jax.grad`` against them too.

    Args:
      manual, autodiff, fd, fd_err: ``(k, P)`` float: the handwritten value, ``jax.grad``,
        the central difference and its error estimate at ``k`` points.
      segments, n_segments: the tensor of each element (:class:`audit.layout.Layout`).
      tol: the audit's tolerance.

    Returns:
      An :class:`FdVerdict`. A point where ``fd`` or its error is not finite is not judged.
    """
    fd = np.asarray(fd, np.float64)
    err = np.where(np.isfinite(fd_err), np.asarray(fd_err, np.float64), np.inf)
    judged = np.isfinite(fd) & np.isfinite(err)

    def against_fd(values):
        with jax.enable_x64(True):  # the rule in float64, whatever the caller's mode
            cmp = compare(np.asarray(values, np.float64), fd, None, segments, n_segments, tol)
        finite = np.isfinite(values) & judged
        allowed = np.asarray(cmp.allowed) + np.where(judged, err, 0)
        abs_err = np.asarray(cmp.abs_err)
        score = np.where(finite, np.where(abs_err == 0, 0.0, abs_err / allowed), np.inf)
        return abs_err, np.asarray(cmp.rel_err), allowed, score, finite & (score <= 1)

    abs_err, rel_err, allowed, score, passed = against_fd(manual)
    failed = judged & ~passed
    rank = np.where(failed, 2, np.where(judged, 1, 0))
    top = rank == rank.max(axis=0, keepdims=True)
    idx = np.argmax(np.where(top, score, -1.0), axis=0)
    _, _, _, ref_score, ref_ok = against_fd(autodiff)
    ref_off = judged & np.isfinite(autodiff) & ~ref_ok
    ref_idx = np.argmax(np.where(ref_off, ref_score, -1.0), axis=0)

    def at(a):
        return np.take_along_axis(np.asarray(a), idx[None, :], axis=0)[0]

    return FdVerdict(
        idx, at(manual), at(autodiff), at(fd), at(err), at(abs_err), at(rel_err), at(allowed),
        at(score), np.sum(failed, axis=0), np.sum(~judged, axis=0), ref_off.any(axis=0), ref_idx,
        failed,
    )  # fmt: skip
