"""The points an audit checks: the worked example, random draws, and training checkpoints.

A point is one ``(params, x, y)``. Points of one kind share their shapes and are stacked
along a leading axis so a whole group is evaluated by one ``vmap``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from audit.program_cache import Program
from audit.tiers import tiered
from jaxbp.params import Params

__all__ = [
    "RANDOM_BATCH",
    "Labels",
    "PointGroup",
    "by_group",
    "hashed_normal",
    "hashed_uniform",
    "joined_labels",
    "merge_same_shapes",
    "numbered",
    "perturbed",
    "random_batch",
    "random_points",
    "stack_points",
    "subset_points",
    "take_points",
]

# Batch size of the random draws: different from 1 (the worked example) and 2, so a gradient
# summed instead of averaged over the batch shows as a ratio that cannot be read as a x2.
RANDOM_BATCH = 3


def random_batch(n_data: int) -> int:
    """Batch size of the random draws: the data's own when it is small (3 to 64 rows), so
    draws and training checkpoints share one shape and compile once; else ``RANDOM_BATCH``."""
    return n_data if 3 <= n_data <= 64 else RANDOM_BATCH


class Labels(Sequence):
    """Point labels made on demand: ``fn(i)`` for ``i < n``, so a million points cost nothing
    until the report names one of them. Sequences of strings join with :func:`joined_labels`."""

    def __init__(self, fn: Callable[[int], str], n: int):
        self._fn, self._n = fn, int(n)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        i = int(i)
        if not -self._n <= i < self._n:
            raise IndexError(f"label {i} of {self._n}")
        return self._fn(i % self._n)


def joined_labels(parts: Sequence[Sequence[str]]) -> Labels:
    """The labels of several groups, one after another, still made on demand."""
    parts = list(parts)
    ends = np.cumsum([len(p) for p in parts])

    def label(i: int) -> str:
        k = int(np.searchsorted(ends, i, side="right"))
        return parts[k][i - (int(ends[k - 1]) if k else 0)]

    return Labels(label, int(ends[-1]) if len(ends) else 0)


def numbered(stem: str, n: int, first: Sequence[str] = ()) -> Labels:
    """``first``, then ``"{stem} 0"``, ``"{stem} 1"``, ... up to ``n`` labels in all."""
    head = tuple(first)
    return Labels(lambda i: head[i] if i < len(head) else f"{stem} {i - len(head)}", n)


class PointGroup(NamedTuple):
    """Points with equal shapes, evaluated together.

    Attributes:
      sources: per point, ``"seed_example"``, ``"random"`` or ``"trajectory"``.
      params: the params pytree with a leading ``(n,)`` axis on every leaf.
      x: ``(n, batch, n_0)``; y: ``(n, batch, n_L)`` (for :func:`audit.check_gradients`, any
        pytree whose leaves have the leading ``(n,)`` axis).
      labels: ``n`` short descriptions (``"random draw 3"``, ``"step 2000"``).
    """

    sources: tuple[str, ...]
    params: Params
    x: jax.Array
    y: jax.Array
    labels: Sequence[str]

    @property
    def size(self) -> int:
        return int(jax.tree.leaves(self.params)[0].shape[0])

    @property
    def batch(self) -> int:
        """Examples per point: the second axis of the first ``x`` leaf (1 when there is none)."""
        leaves = [a for a in jax.tree.leaves(self.x) if a.ndim >= 2]
        return int(leaves[0].shape[1]) if leaves else 1


def stack_points(
    source: str, points: list[tuple[Params, jax.Array, jax.Array]], labels
) -> PointGroup:
    """Stack same-shaped ``(params, x, y)`` points into one :class:`PointGroup`.

    Stacking happens in NumPy on the host: no compilation for a handful of small arrays.
    """

    def stacked(*a):
        return jax.device_put(np.stack([np.asarray(v) for v in a]))

    params, x, y = jax.tree.map(stacked, *points)
    return PointGroup((source,) * len(points), params, x, y, tuple(labels))


_HOST_JOIN = 1 << 20  # elements: groups up to this size are joined on the host


def _joined(a, b) -> jax.Array:
    """``a`` and ``b`` one after the other on the leading axis; small ones joined on the host
    (a join on the device compiles a program per leaf shape), large ones on the device."""
    if np.size(a) + np.size(b) <= _HOST_JOIN:
        return jax.device_put(np.concatenate([np.asarray(a), np.asarray(b)]))
    return jnp.concatenate([a, b])


def by_group(sizes: Sequence[int], points: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(k, here, local)`` for each group ``k`` (of ``sizes[k]`` points, the groups laid end
    to end) that holds some of ``points``: their positions in ``points``, in order, and
    their indices within the group."""
    points = np.asarray(points, np.int64)
    ends = np.cumsum(sizes)
    out = []
    for k, end in enumerate(ends.tolist()):
        start = end - int(sizes[k])
        here = np.flatnonzero((points >= start) & (points < end))
        if here.size:
            out.append((k, here, points[here] - start))
    return out


def take_points(tree, points: np.ndarray, size: int):
    """The stacked points at ``points`` (indices on every leaf's leading axis), padded to
    ``size`` by repeating the last one.

    Taken on the host: a gather on the device would compile once per leaf shape."""
    idx = np.concatenate([points, np.repeat(points[-1:], size - points.size)])
    return jax.tree.map(lambda a: np.asarray(a)[idx], tree)


def subset_points(tree, points: np.ndarray):
    """The stacked points at ``points``, padded by repeating the last up to a power of two,
    so calls on nearby counts share a program."""
    return take_points(tree, points, 1 << max(int(points.size) - 1, 0).bit_length())


def merge_same_shapes(groups: list[PointGroup]) -> list[PointGroup]:
    """Join groups whose points have the same shapes, so each shape compiles once."""
    out: list[PointGroup] = []
    for g in groups:
        for k, h in enumerate(out):
            if h.x.shape[1:] == g.x.shape[1:] and h.y.shape[1:] == g.y.shape[1:]:
                out[k] = PointGroup(
                    h.sources + g.sources,
                    jax.tree.map(_joined, h.params, g.params),
                    _joined(h.x, g.x),
                    _joined(h.y, g.y),
                    joined_labels([h.labels, g.labels]),
                )
                break
        else:
            out.append(g)
    return out


def random_points(
    sizes: tuple[int, ...], n: int, *, key: jax.Array, loss: str, dtype, batch: int = RANDOM_BATCH
) -> PointGroup:
    """``n`` random draws of parameters (standard normal), inputs (standard normal) and targets
    (uniform in [0, 1) for ``"mse"`` and ``"bce"``, a uniform class one-hot for
    ``"softmax_ce"``).

    Every number is a counter hash of ``key``, its draw and its position
    (:func:`hashed_normal`, :func:`hashed_uniform`), so draw ``i`` is the same whatever ``n``
    is: the program that draws them is always the fully optimized one (:mod:`audit.tiers`),
    since a quickly compiled one may round a normal draw's last bit differently.
    """
    params, x, y = _draw_all(key, sizes=tuple(sizes), n=n, loss=loss, dtype=jnp.dtype(dtype).name,
                             batch=batch)  # fmt: skip
    return PointGroup(("random",) * n, params, x, y, numbered("random draw", n))


@functools.partial(Program, static_argnames=("sizes", "n", "loss", "dtype", "batch"))
def _draw_all(key, *, sizes, n, loss, dtype, batch):
    """Per draw, one normal vector cut into the weights, biases and inputs, and the targets.
    Drawn with ``jax.random`` (threefry, a key folded per draw) they took 115 ms of a 2-2-1
    audit at 262,144 points."""
    shapes = [s for a, b in itertools.pairwise(sizes) for s in ((b, a), (b,))]
    counts = [int(np.prod(s)) for s in shapes] + [batch * sizes[0]]
    k_normal, k_target = jax.random.split(key)
    z = _rows_of(hashed_normal, k_normal, n, sum(counts), dtype)
    parts = jnp.split(z, np.cumsum(counts)[:-1], axis=1)
    leaves = [p.reshape(n, *s) for p, s in zip(parts, shapes, strict=False)]
    params = [{"W": w, "b": b} for w, b in zip(leaves[::2], leaves[1::2], strict=True)]
    x = parts[-1].reshape(n, batch, sizes[0])
    classes = sizes[-1]
    cols = batch if loss == "softmax_ce" else batch * classes  # a class, or a target, each
    u = _rows_of(hashed_uniform, k_target, n, cols, jnp.float32)
    if loss == "softmax_ce":
        label = jnp.minimum(jnp.floor(u * classes).astype(jnp.int32), classes - 1)
        return params, x, jax.nn.one_hot(label, classes, dtype=dtype)
    return params, x, u.astype(dtype).reshape(n, batch, classes)


def _rows_of(hashed: Callable, key: jax.Array, rows: int, cols: int, dtype) -> jax.Array:
    """``hashed(key, rows, cols, dtype)`` (:func:`hashed_normal`, :func:`hashed_uniform`)
    laid out ``(rows, cols)``, computed along the longer axis and turned once."""
    if rows > cols:
        return hashed(key, rows, cols, dtype, transposed=True).T
    return hashed(key, rows, cols, dtype)


def _rms(a: jax.Array) -> jax.Array:
    """Root mean square of a leaf, or 1 for an all-zero leaf."""
    return jnp.where(jnp.any(a != 0), jnp.sqrt(jnp.mean(a * a)), 1).astype(a.dtype)


def _mix(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: every input bit moves about half the output bits."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _hashed_bits(key: jax.Array, rows: int, cols: int, transposed: bool) -> jax.Array:
    """``(rows, cols)`` (or ``(cols, rows)``) uint32 hashes of ``key``, the row and the column,
    each bit a function of all three."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    words = (jax.random.key_data(key) if typed else key).astype(jnp.uint32).ravel()
    seed = _mix(words[0] ^ _mix(jnp.bitwise_xor.reduce(words[1:]) + jnp.uint32(0x9E3779B9)))
    i = jnp.arange(rows, dtype=jnp.uint32)
    j = jnp.arange(cols, dtype=jnp.uint32)
    i, j = (i[None, :], j[:, None]) if transposed else (i[:, None], j[None, :])
    return _mix(_mix(j ^ seed) + (i + jnp.uint32(1)) * jnp.uint32(0x9E3779B9))


def hashed_normal(
    key: jax.Array, rows: int, cols: int, dtype, *, transposed: bool = False
) -> jax.Array:
    """``(rows, cols)`` standard normal numbers, element ``(i, j)`` a function of ``key``,
    ``i`` and ``j`` alone: row ``i`` is the same whatever ``rows`` is. ``transposed``: the
    same numbers laid out ``(cols, rows)``; XLA:CPU computes them several times faster
    along the longer axis (6 ms against 28 for 262,144 rows of 9).

    Each element hashes its row, column and the key's words to 23 uniform bits, taken to a
    normal through the inverse error function. Perturbing an audit's points needs spread,
    not a cryptographic stream, and on a CPU drawing with ``jax.random.normal`` had cost a
    third of a wide network's audit.
    """
    h = _hashed_bits(key, rows, cols, transposed)
    odd = ((h >> 9) * 2 + 1).astype(jnp.float32)  # 1, 3, ..., 2^24 - 1: exact in float32
    u = odd * jnp.float32(2.0**-23) - 1  # in (-1, 1), never an end, where erf_inv is inf
    return (jnp.float32(np.sqrt(2)) * jax.lax.erf_inv(u)).astype(dtype)


def hashed_uniform(
    key: jax.Array, rows: int, cols: int, dtype, *, transposed: bool = False
) -> jax.Array:
    """``(rows, cols)`` numbers uniform on the 2^23 multiples of 2^-23 in [0, 1), element
    ``(i, j)`` a function of ``key``, ``i`` and ``j`` alone; ``transposed`` as in
    :func:`hashed_normal`."""
    h = _hashed_bits(key, rows, cols, transposed)
    return ((h >> 9).astype(jnp.float32) * jnp.float32(2.0**-23)).astype(dtype)


# random draws pick their compiled form by their size alone, so the same key gives the same
# bits (:mod:`audit.tiers`); quickly compiled they ran 13x slower, so only a handful of points
@tiered(static_argnames=("points",), quick_work=1 << 11)
def perturbed(params, key, spread, *, points: int):
    """``points + 1`` stacked params: the given point, then ``points`` perturbations of it.

    Every leaf gets ``spread * rms(leaf) * z`` noise, ``z`` standard normal from
    :func:`hashed_normal` of ``key``: the same points for the same key and ``points``, and a
    program that compiles in a fraction of a second. Perturbation ``i`` is the same whatever
    ``points`` is within one compiled form (:mod:`audit.tiers`, picked by ``points`` times
    the values); the quickly compiled form (up to 2,048) may round it differently in the
    last bit from the optimized one.
    """
    leaves, treedef = jax.tree.flatten(params)
    sizes = [a.size for a in leaves]
    ends = np.cumsum(sizes).tolist()
    if points > sum(sizes):
        # along the longer axis, values x points, where XLA:CPU computes many points per
        # instruction; turned to points x values once, for every leaf together (18 ms became
        # 12 ms at 262,144 points of 9 values; the same numbers either way, bit for bit)
        noise = hashed_normal(key, points, sum(sizes), leaves[0].dtype, transposed=True)
        moved = [
            a.reshape(-1, 1) + spread * _rms(a) * noise[end - n : end]
            for a, n, end in zip(leaves, sizes, ends, strict=True)
        ]
        given = jnp.concatenate([a.reshape(-1, 1) for a in leaves])
        every = jnp.concatenate([given, jnp.concatenate(moved)], axis=1).T  # (points + 1, P)
        cut = [every[:, end - n : end] for n, end in zip(sizes, ends, strict=True)]
        return jax.tree.unflatten(
            treedef, [c.reshape(points + 1, *a.shape) for c, a in zip(cut, leaves, strict=True)]
        )
    noise = hashed_normal(key, points, sum(sizes), leaves[0].dtype)
    out = []
    for a, n, end in zip(leaves, sizes, ends, strict=True):
        step = spread * _rms(a) * noise[:, end - n : end].reshape(points, *a.shape)
        out.append(jnp.concatenate([a[None], a[None] + step]))
    return jax.tree.unflatten(treedef, out)
