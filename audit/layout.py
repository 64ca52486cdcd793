"""The flat layout: a params pytree as one vector per point, and back.

Gradients are flattened in ``jax.tree.leaves`` order, each leaf raveled row-major, so element
``i`` of a flat vector is one scalar parameter, named by its leaf path and index.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Layout", "cast_floats", "flat_points", "layout_of", "n_points", "unflatten"]


class Layout(NamedTuple):
    """How a flat gradient vector maps back to the pytree."""

    segments: np.ndarray  # (P,) leaf index of each element
    n_segments: int
    shapes: tuple[tuple[int, ...], ...]  # per leaf
    offsets: tuple[int, ...]  # per leaf, first flat index


def layout_of(params) -> Layout:
    """The flat layout of one point's params (no leading points axis)."""
    shapes = tuple(tuple(leaf.shape) for leaf in jax.tree.leaves(params))
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = tuple(int(o) for o in np.cumsum([0, *sizes[:-1]]))
    segments = np.repeat(np.arange(len(shapes)), sizes)
    return Layout(segments, len(shapes), shapes, offsets)


def flat_points(tree, n: int) -> jax.Array:
    """``(n, P)``: every leaf of a stacked tree (``n`` points on the leading axis) flattened."""
    return jnp.concatenate([leaf.reshape(n, -1) for leaf in jax.tree.leaves(tree)], axis=1)


def n_points(params) -> int:
    """The points on the leading axis of a stacked params tree."""
    return int(jax.tree.leaves(params)[0].shape[0])


def cast_floats(tree, dtype):
    """Every float leaf of ``tree`` in ``dtype``; integer and other leaves as they are."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def unflatten(vec: jax.Array, treedef, shapes: tuple[tuple[int, ...], ...]):
    """Inverse of the flat layout for one point: ``(P,)`` back to the pytree."""
    leaves, pos = [], 0
    for s in shapes:
        n = int(np.prod(s))
        leaves.append(vec[pos : pos + n].reshape(s))
        pos += n
    return jax.tree.unflatten(treedef, leaves)
