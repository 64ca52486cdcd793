"""The points an audit checks: the worked example, random draws, and training checkpoints.

A point is one ``(params, x, y)``. Points of one kind share their shapes and are stacked
along a leading axis so a whole group is evaluated by one ``vmap``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import jaxbp
from jaxbp.params import Params

__all__ = ["RANDOM_BATCH", "PointGroup", "random_points", "stack_points"]

# Batch size of the random draws: different from 1 (the worked example) and 2, so a gradient
# summed instead of averaged over the batch shows as a ratio that cannot be read as a x2.
RANDOM_BATCH = 3


class PointGroup(NamedTuple):
    """Points of one source with equal shapes.

    Attributes:
      source: ``"seed_example"``, ``"initial"``, ``"random"`` or ``"trajectory"``.
      params: the params pytree with a leading ``(n,)`` axis on every leaf.
      x: ``(n, batch, n_0)``; y: ``(n, batch, n_L)``.
      labels: ``n`` short descriptions (``"random draw 3"``, ``"step 2000"``).
    """

    source: str
    params: Params
    x: jax.Array
    y: jax.Array
    labels: tuple[str, ...]

    @property
    def size(self) -> int:
        return int(self.x.shape[0])


def stack_points(
    source: str, points: list[tuple[Params, jax.Array, jax.Array]], labels
) -> PointGroup:
    """Stack same-shaped ``(params, x, y)`` points into one :class:`PointGroup`."""
    params = jax.tree.map(lambda *a: jnp.stack(a), *[p for p, _, _ in points])
    x = jnp.stack([x for _, x, _ in points])
    y = jnp.stack([y for _, _, y in points])
    return PointGroup(source, params, x, y, tuple(labels))


def _random_targets(key: jax.Array, shape: tuple[int, int], loss: str, dtype) -> jax.Array:
    if loss == "softmax_ce":
        classes = jax.random.randint(key, shape[:1], 0, shape[1])
        return jax.nn.one_hot(classes, shape[1], dtype=dtype)
    return jax.random.uniform(key, shape, dtype)  # mse targets and bce probabilities in [0, 1)


def random_points(
    sizes: tuple[int, ...], n: int, *, key: jax.Array, loss: str, dtype, batch: int = RANDOM_BATCH
) -> PointGroup:
    """``n`` random draws of parameters (standard normal), inputs (standard normal) and targets.

    Each draw uses its own key from ``jax.random.split(key, n)``, so draw ``i`` is the same
    whatever ``n`` is.
    """

    def draw(k):
        kp, kx, ky = jax.random.split(k, 3)
        params = jaxbp.init(sizes, key=kp, dtype=dtype, scale="normal")
        x = jax.random.normal(kx, (batch, sizes[0]), dtype)
        return params, x, _random_targets(ky, (batch, sizes[-1]), loss, dtype)

    params, x, y = jax.vmap(draw)(jax.random.split(key, n))
    return PointGroup("random", params, x, y, tuple(f"random draw {i}" for i in range(n)))
