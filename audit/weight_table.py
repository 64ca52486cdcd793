"""The per-weight entries of an audit, made when they are read.

A network of 85,002 weights spent a noticeable part of a small call turning its columns into
one dict per weight, whatever the number of points, while a call's caller mostly reads
``passed`` or a few failing weights. :class:`WeightTable` keeps the columns and makes an
entry the first time it is read; reading every entry (a report, ``list(table)``) costs what
building the list did.

Example:
    >>> names, statuses = ["w0", "w1"], ["pass", "fail"]
    >>> table = WeightTable(lambda i: {"name": names[i]}, names=names, statuses=statuses)
    >>> len(table), table[1]["name"], table.column("status")
    (2, 'w1', ['pass', 'fail'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from jaxbp.names import NameSequence

__all__ = ["PASSING", "WeightTable"]

# The statuses that count as agreeing: a plain pass, and a pass once rounding is told apart.
PASSING = ("pass", "precision")


class WeightTable(Sequence):
    """A list of per-weight dicts whose entries are made on first reading.

    ``entry(i) -> dict`` makes entry ``i``; ``names`` and ``statuses`` (one per weight) answer
    :meth:`column` for ``"name"``, ``"status"`` and ``"passed"`` without making any entry.
    It reads as a list does: indexing (negative too), slices (a list), iteration, ``len``,
    ``==`` with any sequence of dicts, and ``+`` (a list). An entry, once made, is kept, so a
    change to it stays, as in a list.
    """

    def __init__(
        self, entry: Callable[[int], dict], *, names: Sequence[str], statuses: Sequence[str]
    ) -> None:
        if len(names) != len(statuses):
            raise ValueError(
                f"names has {len(names)} entries and statuses {len(statuses)}; expected one "
                "of each per weight"
            )
        self._entry = entry
        # names written when read stay so; a list is copied, as the caller may change it
        self._names = names if isinstance(names, NameSequence) else list(names)
        self._statuses = np.asarray(statuses, dtype=str)  # one array, not a string per weight
        self._made: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"weight {i} of {n}")
        i %= n
        if i not in self._made:
            self._made[i] = self._entry(i)
        return self._made[i]

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __add__(self, other: Sequence[Any]) -> list:
        return [*self, *other]

    def __radd__(self, other: Sequence[Any]) -> list:
        return [*other, *self]

    def __repr__(self) -> str:
        return f"WeightTable({len(self)} weights)"

    def column(self, key: str) -> list:
        """Every entry's ``key``, in order: ``"name"``, ``"status"`` and ``"passed"`` without
        making any entry; any other key makes them all."""
        if key == "name":
            return list(self._names)
        if key == "status":
            return self._statuses.tolist()
        if key == "passed":
            return np.isin(self._statuses, PASSING).tolist()
        return [e[key] for e in self]

    def status_count(self, status: str) -> int:
        """How many weights have ``status``, without making any entry or string."""
        return int(np.count_nonzero(self._statuses == status))

    @property
    def names(self) -> Sequence[str]:
        """Every weight's name, in order, without making any entry (the sequence given)."""
        return self._names

    def index_of(self, name: str) -> int:
        """The position of the weight called ``name``; ValueError when there is none."""
        return self._names.index(name)
