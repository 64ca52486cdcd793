"""The parameter pytree, its initialisation and the seed note's weight names.

A network of layer sizes ``(n0, n1, ..., nL)`` is a plain list of ``L`` layers, each a
dict ``{"W": (n_out, n_in) float, "b": (n_out,) float}``. For the seed's 2-2-1 network::

    layer 0: W = [[w11, w12], [w21, w22]], b = [b1, b2]
    layer 1: W = [[w31, w32]],             b = [b3]

Neurons of layers 1..L are numbered consecutively from 1; ``w_ij`` is the weight into
neuron ``i`` from source ``j`` (the input index for layer 1, the neuron number after
that) and ``b_i`` is neuron ``i``'s bias. Where any index reaches 10, every name of that
network is written ``w{i}_{j}`` so names stay unambiguous.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.checks import check_dtype, check_params, check_sizes
from jaxbp.names import NameSequence

Params = list[dict[str, jax.Array]]

__all__ = [
    "ParamNames",
    "Params",
    "from_named",
    "init",
    "param_names",
    "seed_params",
    "sizes_of",
    "target_units",
    "to_named",
]

_NAME = re.compile(r"([wb])(\d+)(?:_(\d+))?")  # w31, w10_2, b3: a parameter name's numbers

SEED_NAMES = ("w11", "w12", "w21", "w22", "b1", "b2", "w31", "w32", "b3")


def init(
    sizes: Sequence[int], *, key: jax.Array, dtype: jnp.dtype = jnp.float32, scale: str = "glorot"
) -> Params:
    """Random parameters for an MLP of layer sizes ``(n0, ..., nL)``.

    Args:
      sizes: layer widths, input first, at least two entries, each >= 1.
      key: a PRNG key (``jax.random.key(0)``), split once per layer.
      dtype: a floating dtype for every leaf.
      scale: ``"glorot"`` (normal with variance ``2 / (n_in + n_out)``) or ``"normal"``
        (standard normal, as a hand calculation would pick).

    Returns:
      A list of ``L`` dicts with ``W: (n_out, n_in)`` and ``b: (n_out,)``; biases start at 0
      for ``"glorot"`` and are drawn for ``"normal"``.

    Example:
      >>> params = init((2, 2, 1), key=jax.random.key(0))
      >>> [p["W"].shape for p in params]
      [(2, 2), (1, 2)]
    """
    sizes = check_sizes(sizes)
    dtype = check_dtype(dtype, "dtype")
    if scale not in ("glorot", "normal"):
        raise ValueError(f"scale={scale!r} is not known; expected one of 'glorot', 'normal'")
    keys = jax.random.split(key, len(sizes) - 1)
    params: Params = []
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        kw, kb = jax.random.split(k)
        W = jax.random.normal(kw, (n_out, n_in), dtype)
        if scale == "glorot":
            W = W * jnp.sqrt(2.0 / (n_in + n_out)).astype(dtype)
            b = jnp.zeros((n_out,), dtype)
        else:
            b = jax.random.normal(kb, (n_out,), dtype)
        params.append({"W": W, "b": b})
    return params


def seed_params(
    *,
    w11: float,
    w12: float,
    w21: float,
    w22: float,
    w31: float,
    w32: float,
    b1: float = 0.0,
    b2: float = 0.0,
    b3: float = 0.0,
    dtype: jnp.dtype = jnp.float32,
) -> Params:
    """The seed note's 2-2-1 network from its named weights and biases.

    The note writes no biases, so they default to 0.

    Returns:
      ``[{"W": (2, 2), "b": (2,)}, {"W": (1, 2), "b": (1,)}]`` of ``dtype``.

    Example:
      >>> p = seed_params(w11=0.15, w12=0.20, w21=0.25, w22=0.30, w31=0.40, w32=0.45)
      >>> p[1]["W"].tolist()
      [[0.4000000059604645, 0.44999998807907104]]
    """
    dtype = check_dtype(dtype, "dtype")
    return from_named(
        dict(w11=w11, w12=w12, w21=w21, w22=w22, w31=w31, w32=w32, b1=b1, b2=b2, b3=b3),
        (2, 2, 1),
        dtype=dtype,
    )


def sizes_of(params: Params) -> tuple[int, ...]:
    """Layer sizes ``(n0, ..., nL)`` of a checked params pytree."""
    check_params(params)
    return (int(params[0]["W"].shape[1]), *(int(p["W"].shape[0]) for p in params))


def _name_parts(sizes: Sequence[int]) -> list[tuple[str, list[tuple[int, ...]]]]:
    """For each leaf in flatten order, the leaf kind and the seed indices of its elements."""
    parts = []
    first = 1  # number of the first neuron of the current layer
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        # sources: inputs 1..n_in for the first layer, previous layer's neuron numbers after it
        src0 = 1 if layer == 0 else first - n_in
        # jax.tree flattens each layer's dict by sorted key: "W" before "b"
        parts.append(("w", [(first + i, src0 + j) for i in range(n_out) for j in range(n_in)]))
        parts.append(("b", [(first + i,) for i in range(n_out)]))
        first += n_out
    return parts


def target_units(sizes: Sequence[int]) -> np.ndarray:
    """``(P,)`` int: for each scalar parameter in flatten order, the neuron it feeds, numbered
    from 1 as the note numbers them (hidden neurons first, the output layer last).

    Example:
      >>> target_units((2, 2, 1)).tolist()  # w11 w12 w21 w22 b1 b2 w31 w32 b3
      [1, 1, 2, 2, 1, 2, 3, 3, 3]
    """
    parts = _name_parts(check_sizes(sizes))
    return np.array([ij[0] for _, idx in parts for ij in idx], dtype=np.int64)


class ParamNames(NameSequence):
    """The seed-style names of :func:`param_names`, written when read: name ``i`` is made
    from the layer sizes when asked for, so a network of millions of weights costs nothing
    until a report names one. Reads as a tuple of strings does: indexing (negative and NumPy
    integers too), slices (a list), iteration, ``len``, ``in``, :meth:`index` (found from the
    name's numbers, not by reading every name) and ``==`` with any sequence of strings
    (:class:`jaxbp.names.NameSequence`).

    Example:
      >>> names = ParamNames((2, 2, 1))
      >>> len(names), names[0], names[-1], names.index("w32")
      (9, 'w11', 'b3', 7)
    """

    _unit = "parameter"

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = check_sizes(sizes)
        # per leaf in flatten order: (kind, first neuron, first source, n_out, n_in)
        self._leaves: list[tuple[str, int, int, int, int]] = []
        first = 1  # number of the first neuron of the current layer
        for layer, (n_in, n_out) in enumerate(itertools.pairwise(self.sizes)):
            # sources: inputs 1..n_in for the first layer, previous layer's neurons after it
            src0 = 1 if layer == 0 else first - n_in
            # jax.tree flattens each layer's dict by sorted key: "W" before "b"
            self._leaves.append(("w", first, src0, n_out, n_in))
            self._leaves.append(("b", first, src0, n_out, 1))
            first += n_out
        # any index reaching 10 (a neuron number or an input) writes every name w{i}_{j}
        self._sep = "_" if max(first - 1, self.sizes[0]) >= 10 else ""
        self._starts = [0, *itertools.accumulate(n * m for _, _, _, n, m in self._leaves)]

    def _name(self, leaf: int, k: int) -> str:
        kind, first, src0, _, n_in = self._leaves[leaf]
        row, col = divmod(k, n_in)
        if kind == "b":
            return f"b{first + row}"
        return f"w{first + row}{self._sep}{src0 + col}"

    def __iter__(self) -> Iterator[str]:
        for kind, first, src0, n_out, n_in in self._leaves:
            for row in range(n_out):
                if kind == "b":
                    yield f"b{first + row}"
                else:
                    for col in range(n_in):
                        yield f"w{first + row}{self._sep}{src0 + col}"

    def _missing(self, value) -> str:
        return f"{value!r} is not a parameter name of sizes {self.sizes}"

    def _find(self, name: str) -> int | None:
        parts = _NAME.fullmatch(name)
        if parts is None:
            return None
        kind, digits, after = parts.groups()
        if kind == "b" or self._sep:
            if (after is None) != (kind == "b"):
                return None
            target, source = int(digits), int(after or 0)
        elif after is None and len(digits) == 2:  # "w31": neuron 3, source 1
            target, source = int(digits[0]), int(digits[1])
        else:
            return None
        for k, (leaf_kind, first, src0, n_out, n_in) in enumerate(self._leaves):
            if leaf_kind == kind and first <= target < first + n_out:
                col = 0 if kind == "b" else source - src0
                if not 0 <= col < n_in:
                    return None
                i = self._starts[k] + (target - first) * n_in + col
                return i if self[i] == name else None  # "b01": not how a name is written
        return None

    def __repr__(self) -> str:
        return f"ParamNames({self.sizes})"


def param_names(sizes: Sequence[int]) -> list[str]:
    """Seed-style names of every scalar parameter, in flatten order.

    Flatten order is ``jax.tree.leaves(params)`` (layer by layer, ``W`` then ``b``) with each
    leaf raveled row-major, the order of ``jax.flatten_util.ravel_pytree``. The same names,
    written only when read: :class:`ParamNames`.

    Example:
      >>> param_names((2, 2, 1))
      ['w11', 'w12', 'w21', 'w22', 'b1', 'b2', 'w31', 'w32', 'b3']
    """
    return list(ParamNames(sizes))


def to_named(params: Params) -> dict[str, float]:
    """The pytree as ``{name: value}``, in flatten order (see :func:`param_names`)."""
    names = param_names(sizes_of(params))
    flat = np.concatenate([np.asarray(leaf).ravel() for leaf in jax.tree.leaves(params)])
    return {n: float(v) for n, v in zip(names, flat, strict=True)}


def from_named(
    values: Mapping[str, float], sizes: Sequence[int], *, dtype: jnp.dtype = jnp.float32
) -> Params:
    """Build the pytree for ``sizes`` from a ``{name: value}`` mapping.

    Every name of :func:`param_names` must be present and no other; the error lists the
    missing and unexpected names.
    """
    sizes = check_sizes(sizes)
    dtype = check_dtype(dtype, "dtype")
    names = param_names(sizes)
    missing = [n for n in names if n not in values]
    extra = sorted(set(values) - set(names))
    if missing or extra:
        raise ValueError(
            f"named values do not match a {'-'.join(map(str, sizes))} network: "
            f"missing {missing}, unexpected {extra}; expected exactly {names}"
        )
    flat = [values[n] for n in names]
    try:  # built on the host and put on the device: no small compiled program per shape
        flat, put = np.asarray(flat, dtype), jax.device_put
    except jax.errors.TracerArrayConversionError:  # traced values (under jit) stay traced
        flat, put = jnp.asarray(flat, dtype), lambda a: a
    params: Params = []
    pos = 0
    for n_in, n_out in itertools.pairwise(sizes):
        W = put(flat[pos : pos + n_out * n_in].reshape(n_out, n_in))
        pos += n_out * n_in
        b = put(flat[pos : pos + n_out])
        pos += n_out
        params.append({"W": W, "b": b})
    return params
