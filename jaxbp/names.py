"""Sequences of names written when read: a network of millions of weights costs nothing
until a report names one of them.

:class:`NameSequence` holds what every such sequence shares: positions counted leaf by
leaf, indexing (negative and NumPy integers too, slices as lists), ``index`` and ``in``
found from a name's own numbers, and ``==`` with any sequence of strings. A subclass says
how leaf ``k``'s ``j``-th name is written and how a name is found again:
:class:`jaxbp.params.ParamNames` (the note's ``w31``) and
:class:`audit.element_names.ElementNames` (a pytree's ``['W'][0,1]``).
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Sequence

__all__ = ["NameSequence"]


class NameSequence(Sequence):
    """Names made when read, leaf by leaf.

    A subclass sets ``_starts`` (each leaf's first position, then the total) and gives
    ``_name(leaf, k)`` (leaf ``leaf``'s ``k``-th name) and ``_find(name)`` (the position of
    ``name``, or None); ``_unit`` says what a name names, as errors say it, and
    ``_missing(value)`` the message for a name none has.
    """

    _starts: list[int]
    _unit = "name"

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self._unit} {i} of {n}")
        i %= n
        leaf = bisect.bisect_right(self._starts, i) - 1  # the last leaf starting at or before i
        return self._name(leaf, i - self._starts[leaf])

    def _name(self, leaf: int, k: int) -> str:
        raise NotImplementedError

    def _find(self, name: str) -> int | None:
        raise NotImplementedError

    def index(self, value, start: int = 0, stop: int | None = None) -> int:
        """The position of the name ``value``, found from its own numbers rather than by
        reading every name; ValueError when none has it."""
        found = self._find(value) if isinstance(value, str) else None
        start, stop, _ = slice(start, stop).indices(len(self))
        if found is None or not start <= found < stop:
            raise ValueError(self._missing(value))
        return found

    def _missing(self, value) -> str:
        return f"{value!r} is not a name of these {len(self)} {self._unit}s"

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self._find(value) is not None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which have no hash
