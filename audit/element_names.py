"""Names of every scalar of a params pytree, written when read.

A network of 84,490 weights spent 23 ms of every ``check_gradients`` call writing
``"['W2'][17,203]"`` for each weight (a third of a 16-point call), while a caller mostly
reads a few names: the failing weights, a report's worst ones. :class:`ElementNames` keeps
each leaf's path and shape and writes name ``i`` when it is asked for; reading them all
(``list(names)``, a whole report) costs what writing the list did.

Example:
    >>> names = ElementNames(["['w']", "['b']"], [(2, 3), ()])
    >>> len(names), names[4], names[-1], names.index("['w'][1,0]")
    (7, "['w'][1,1]", "['b']", 3)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import jax
import numpy as np

from jaxbp.names import NameSequence

__all__ = ["ElementNames", "tree_names"]


class ElementNames(NameSequence):
    """``"base[i,j]"`` for each element of each leaf, in flatten order, row-major.

    ``bases``: one string per leaf (its path); ``shapes``: one shape per leaf. A leaf of
    shape ``()`` is named by its base alone; a leaf with no elements has no names. Reads as
    a tuple of strings does: indexing (negative and NumPy integers too), slices (a list),
    iteration, ``len``, ``in``, :meth:`index`, and ``==`` with any sequence of strings
    (:class:`jaxbp.names.NameSequence`).
    """

    _unit = "element"

    def __init__(self, bases: Sequence[str], shapes: Sequence[Sequence[int]]) -> None:
        if len(bases) != len(shapes):
            raise ValueError(
                f"bases has {len(bases)} entries and shapes {len(shapes)}; expected one of "
                "each per leaf"
            )
        self._bases = [str(b) for b in bases]
        self._shapes = [tuple(int(d) for d in s) for s in shapes]
        self._starts = [0, *itertools.accumulate(math.prod(s) for s in self._shapes)]

    def _name(self, leaf: int, k: int) -> str:
        shape, base = self._shapes[leaf], self._bases[leaf]
        if not shape:
            return base
        return f"{base}[{','.join(str(int(j)) for j in np.unravel_index(k, shape))}]"

    def __iter__(self) -> Iterator[str]:
        for base, shape in zip(self._bases, self._shapes, strict=True):
            if not shape:
                yield base
                continue
            for ix in itertools.product(*(range(d) for d in shape)):
                yield f"{base}[{','.join(map(str, ix))}]"

    def _find(self, name: str) -> int | None:
        for leaf, (base, shape) in enumerate(zip(self._bases, self._shapes, strict=True)):
            if not name.startswith(base) or self._starts[leaf] == self._starts[leaf + 1]:
                continue
            if not shape:
                if name == base:
                    return self._starts[leaf]
                continue
            inner = name[len(base) :]
            if not (inner.startswith("[") and inner.endswith("]")):
                continue
            try:
                ix = tuple(int(s) for s in inner[1:-1].split(","))
            except ValueError:
                continue
            if len(ix) != len(shape) or not all(0 <= j < d for j, d in zip(ix, shape, strict=True)):
                continue
            k = int(np.ravel_multi_index(ix, shape))
            if self._name(leaf, k) == name:  # "[01,2]" reads as (1, 2) but is no name here
                return self._starts[leaf] + k
        return None

    def __repr__(self) -> str:
        return f"ElementNames({len(self)} names)"


def tree_names(params) -> ElementNames:
    """``"['w'][0,1]"``: each scalar's leaf path (``jax.tree_util.keystr``) and index, in
    flatten order, row-major; a scalar leaf by its path alone.

    Example:
        >>> list(tree_names({"b": np.zeros(2), "w": np.zeros((1, 2))}))
        ["['b'][0]", "['b'][1]", "['w'][0,0]", "['w'][0,1]"]
    """
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    return ElementNames(
        [jax.tree_util.keystr(path) for path, _ in paths], [np.shape(leaf) for _, leaf in paths]
    )
