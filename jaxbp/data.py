"""Small datasets for training and auditing MLPs: truth tables, toy 2-D problems, CSV files.

Every function returns plain ``jax.Array`` pairs ``(x, y)`` with ``x: (n, n_in)`` and
``y: (n, n_out)`` in the requested floating ``dtype``, ready for a full-batch training step.
Random datasets take an explicit, keyword-only PRNG ``key`` and are deterministic given it.

Example:
    >>> import jax
    >>> from jaxbp.data import truth_table, two_moons
    >>> x, y = truth_table("xor")
    >>> x.shape, y.shape
    ((4, 2), (4, 1))
    >>> x, y = two_moons(100, key=jax.random.key(0))
    >>> x.shape, y.shape
    ((100, 2), (100, 1))
"""

from __future__ import annotations

import csv
import functools
import math
import numbers
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jaxbp.checks import check_dtype, check_int, check_key

__all__ = ["TRUTH_TABLES", "circles", "load_csv", "one_hot", "truth_table", "two_moons"]

_TRUTH_TABLE_INPUTS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))
_TRUTH_TABLE_TARGETS = {
    "xor": (0.0, 1.0, 1.0, 0.0),
    "and": (0.0, 0.0, 0.0, 1.0),
    "or": (0.0, 1.0, 1.0, 1.0),
}
TRUTH_TABLES = tuple(_TRUTH_TABLE_TARGETS)  # the names truth_table takes


# --------------------------------------------------------------------------------------------
# Input validation shared by the public functions. Each helper names the calling function so
# the message points at the call the user wrote.
# --------------------------------------------------------------------------------------------


def _real(value: object, name: str, fn: str) -> float:
    """Returns ``value`` as a Python float, or raises unless it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{fn}: {name} must be a real number, got {type(value).__name__} {value!r}; "
            f"pass a Python float such as {name}=0.1"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{fn}: {name} must be finite, got {name}={value}; pass e.g. {name}=0.1")
    return value


def _noise(noise: object, fn: str) -> float:
    noise = _real(noise, "noise", fn)
    if noise < 0:
        raise ValueError(
            f"{fn}: noise is a standard deviation and must be >= 0, got noise={noise}; "
            "pass noise=0.0 for points exactly on the curves"
        )
    return noise


# --------------------------------------------------------------------------------------------
# Synthetic datasets
# --------------------------------------------------------------------------------------------


def truth_table(name: str, *, dtype: DTypeLike = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Returns the four rows of a two-input boolean function.

    Args:
      name: which function: ``"xor"``, ``"and"`` or ``"or"`` (case-sensitive).
      dtype: floating dtype of both outputs.

    Returns:
      ``(x, y)`` with ``x: (4, 2) dtype`` the inputs ``[[0, 0], [0, 1], [1, 0], [1, 1]]`` and
      ``y: (4, 1) dtype`` the function's value on each row, as 0. or 1.

    Raises:
      TypeError: ``name`` is not a string, or ``dtype`` is not a floating dtype.
      ValueError: ``name`` is unknown, or float64 is asked for while x64 is disabled.

    Example:
      >>> x, y = truth_table("xor")
      >>> y[:, 0].tolist()
      [0.0, 1.0, 1.0, 0.0]
    """
    fn = "truth_table"
    valid = ", ".join(repr(k) for k in _TRUTH_TABLE_TARGETS)
    if not isinstance(name, str):
        raise TypeError(
            f"{fn}: name must be a string, got {type(name).__name__} {name!r}; pass one of {valid}"
        )
    if name not in _TRUTH_TABLE_TARGETS:
        raise ValueError(
            f"{fn}: unknown truth table {name!r}; expected one of {valid} (lower case)"
        )
    dt = check_dtype(dtype, fn=fn)
    # made on the host and put on the device: no small compiled program per shape
    x = jax.device_put(np.asarray(_TRUTH_TABLE_INPUTS, dtype=dt))
    y = jax.device_put(np.asarray(_TRUTH_TABLE_TARGETS[name], dtype=dt).reshape(4, 1))
    return x, y


def _labels(n_zero: int, n_one: int, dt: np.dtype) -> jax.Array:
    """Returns ``(n_zero + n_one, 1)`` labels: ``n_zero`` zeros followed by ``n_one`` ones."""
    flat = jnp.concatenate([jnp.zeros((n_zero,), dt), jnp.ones((n_one,), dt)])
    return flat.reshape(-1, 1)


def two_moons(
    n: int, *, key: jax.Array, noise: float = 0.1, dtype: DTypeLike = jnp.float32
) -> tuple[jax.Array, jax.Array]:
    """Returns two interleaving half circles, the classic non-linearly-separable toy problem.

    The outer moon is ``(cos t, sin t)`` and the inner moon ``(1 - cos t, 1 - sin t - 0.5)``,
    each with ``t`` evenly spaced over ``[0, pi]``; then Gaussian noise of standard deviation
    ``noise`` is added to every coordinate. Rows are ordered outer moon first; permute them
    with ``jax.random.permutation`` if the order matters (e.g. for minibatches).

    Args:
      n: total number of points, ``>= 1``. The outer moon gets ``n // 2`` points and the inner
        moon the remaining ``n - n // 2``.
      key: PRNG key for the noise, e.g. ``jax.random.key(0)``. Same key, same data.
      noise: standard deviation of the added Gaussian noise, ``>= 0``.
      dtype: floating dtype of both outputs.

    Returns:
      ``(x, y)`` with ``x: (n, 2) dtype`` the points and ``y: (n, 1) dtype`` the labels,
      ``0.`` for the outer moon and ``1.`` for the inner moon.

    Raises:
      TypeError: ``n`` is not an int, ``noise`` is not a number, ``key`` is not a PRNG key,
        or ``dtype`` is not a floating dtype.
      ValueError: ``n < 1``, ``noise < 0``, or float64 is asked for while x64 is disabled.

    Example:
      >>> x, y = two_moons(6, key=jax.random.key(0), noise=0.0)
      >>> x.shape, y[:, 0].tolist()
      ((6, 2), [0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    """
    fn = "two_moons"
    n = check_int(n, "n", 1, fn=fn, example=200)
    check_key(key, fn=fn)
    noise = _noise(noise, fn)
    dt = check_dtype(dtype, fn=fn)

    return _two_moons(key, noise, n=n, dtype=dt)


@functools.partial(jax.jit, static_argnames=("n", "dtype"))
def _two_moons(
    key: jax.Array, noise: jax.Array, *, n: int, dtype: np.dtype
) -> tuple[jax.Array, jax.Array]:
    # One compiled program per (n, dtype) instead of a dozen eagerly dispatched ops.
    n_outer = n // 2
    n_inner = n - n_outer
    t_outer = jnp.linspace(0.0, jnp.pi, n_outer, dtype=dtype)
    t_inner = jnp.linspace(0.0, jnp.pi, n_inner, dtype=dtype)
    outer = jnp.stack([jnp.cos(t_outer), jnp.sin(t_outer)], axis=1)
    inner = jnp.stack([1.0 - jnp.cos(t_inner), 1.0 - jnp.sin(t_inner) - 0.5], axis=1)
    x = jnp.concatenate([outer, inner]) + noise * jax.random.normal(key, (n, 2), dtype=dtype)
    return x, _labels(n_outer, n_inner, dtype)


def circles(
    n: int,
    *,
    key: jax.Array,
    noise: float = 0.05,
    factor: float = 0.5,
    dtype: DTypeLike = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """Returns a circle of radius ``factor`` inside a circle of radius 1, centred at the origin.

    Each circle's points are at evenly spaced angles over ``[0, 2 pi)``; then Gaussian noise of
    standard deviation ``noise`` is added to every coordinate. Rows are ordered outer circle
    first.

    Args:
      n: total number of points, ``>= 1``. The outer circle gets ``n // 2`` points and the
        inner circle the remaining ``n - n // 2``.
      key: PRNG key for the noise, e.g. ``jax.random.key(0)``. Same key, same data.
      noise: standard deviation of the added Gaussian noise, ``>= 0``.
      factor: radius of the inner circle relative to the outer one, in the open interval
        ``(0, 1)``.
      dtype: floating dtype of both outputs.

    Returns:
      ``(x, y)`` with ``x: (n, 2) dtype`` the points and ``y: (n, 1) dtype`` the labels,
      ``0.`` for the outer circle and ``1.`` for the inner circle.

    Raises:
      TypeError: ``n`` is not an int, ``noise`` or ``factor`` is not a number, ``key`` is
        not a PRNG key, or ``dtype`` is not a floating dtype.
      ValueError: ``n < 1``, ``noise < 0``, ``factor`` outside ``(0, 1)``, or float64 is
        asked for while x64 is disabled.

    Example:
      >>> x, y = circles(100, key=jax.random.key(0), noise=0.0, factor=0.3)
      >>> round(float(jnp.linalg.norm(x[-1])), 3)
      0.3
    """
    fn = "circles"
    n = check_int(n, "n", 1, fn=fn, example=200)
    check_key(key, fn=fn)
    noise = _noise(noise, fn)
    factor = _real(factor, "factor", fn)
    if not 0.0 < factor < 1.0:
        raise ValueError(
            f"{fn}: factor is the inner radius relative to the outer one and must lie strictly "
            f"between 0 and 1, got factor={factor}; pass e.g. factor=0.5"
        )
    dt = check_dtype(dtype, fn=fn)

    return _circles(key, noise, factor, n=n, dtype=dt)


@functools.partial(jax.jit, static_argnames=("n", "dtype"))
def _circles(
    key: jax.Array, noise: jax.Array, factor: jax.Array, *, n: int, dtype: np.dtype
) -> tuple[jax.Array, jax.Array]:
    n_outer = n // 2
    n_inner = n - n_outer
    # endpoint=False: angle 2 pi would repeat the point at angle 0.
    t_outer = jnp.linspace(0.0, 2.0 * jnp.pi, n_outer, endpoint=False, dtype=dtype)
    t_inner = jnp.linspace(0.0, 2.0 * jnp.pi, n_inner, endpoint=False, dtype=dtype)
    outer = jnp.stack([jnp.cos(t_outer), jnp.sin(t_outer)], axis=1)
    inner = factor * jnp.stack([jnp.cos(t_inner), jnp.sin(t_inner)], axis=1)
    x = jnp.concatenate([outer, inner]) + noise * jax.random.normal(key, (n, 2), dtype=dtype)
    return x, _labels(n_outer, n_inner, dtype)


# --------------------------------------------------------------------------------------------
# Files and labels
# --------------------------------------------------------------------------------------------


def _is_blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_rows(path: pathlib.Path, name: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """Returns the non-blank rows of a CSV file, each with the line number it starts on."""
    rows = []
    # utf-8-sig drops the byte-order mark some spreadsheet programs write.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        end = 0
        try:
            for row in reader:
                # line_num counts physical lines, so a quoted multi-line cell still gives the
                # line its row starts on.
                start, end = end + 1, reader.line_num
                if not _is_blank(row):
                    rows.append((start, row))
        except csv.Error as err:
            raise ValueError(
                f"{name} line {reader.line_num}: not valid CSV ({err}); "
                "check the quoting on that line"
            ) from None
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{name}: not UTF-8 text ({err.reason} at byte {err.start}); "
                "save the file as UTF-8 (plain ASCII numbers already are)"
            ) from None
    return rows


def load_csv(
    path: str | os.PathLike[str],
    *,
    n_targets: int = 1,
    header: bool | None = None,
    delimiter: str = ",",
    dtype: DTypeLike = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """Loads a numeric CSV file, splitting its last ``n_targets`` columns off as targets.

    Blank lines are skipped. Every other row must have as many cells as the first row, and
    every cell after the header must be a finite number (``float()`` syntax, surrounding
    spaces allowed).

    Args:
      path: the file to read, UTF-8 (or ASCII) text.
      n_targets: how many trailing columns are targets, ``>= 1``.
      header: ``True`` if the first non-blank row is a header to skip, ``False`` if it is
        data, ``None`` to decide from the row itself: it is a header if any of its cells is
        not a number.
      delimiter: the one-character cell separator, e.g. ``","``, ``";"`` or ``"\\t"``.
      dtype: floating dtype of both outputs.

    Returns:
      ``(x, y)`` with ``x: (rows, cols - n_targets) dtype`` the feature columns and
      ``y: (rows, n_targets) dtype`` the target columns, in file order.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      TypeError: an argument has the wrong type, or ``dtype`` is not a floating dtype.
      ValueError: ``path`` is a directory; the file has no data rows, too few columns, a row
        of a different length, a non-numeric, NaN, Inf or out-of-``dtype``-range cell (the
        message names the line and column); or float64 is asked for while x64 is disabled.

    Example:
      >>> import pathlib, tempfile
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "xor.csv"
      >>> _ = path.write_text("x1,x2,y\\n0,0,0\\n0,1,1\\n1,0,1\\n1,1,0\\n")
      >>> x, y = load_csv(path, n_targets=1)
      >>> x.shape, y.shape
      ((4, 2), (4, 1))
    """
    fn = "load_csv"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{fn}: path must be a str or pathlib.Path, got {type(path).__name__} {path!r}; "
            'pass the file name, e.g. load_csv("data.csv")'
        )
    n_targets = check_int(n_targets, "n_targets", 1, fn=fn, example=1)
    if header is not None and not isinstance(header, bool):
        raise TypeError(
            f"{fn}: header must be True, False or None, got {type(header).__name__} "
            f"{header!r}; pass header=True to skip the first row, header=False to read it as "
            "data, or leave it None to auto-detect"
        )
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValueError(
            f"{fn}: delimiter must be a single character other than a quote or newline, got "
            f'{delimiter!r}; pass e.g. delimiter=",", delimiter=";" or delimiter="\\t"'
        )
    dt = check_dtype(dtype, fn=fn)

    file = pathlib.Path(path)
    name = os.fspath(path)
    if not file.exists():
        raise FileNotFoundError(
            f"{fn}: no such file {name!r} (working directory {os.getcwd()!r}); "
            "check the spelling, or pass an absolute path"
        )
    if file.is_dir():
        raise ValueError(f"{fn}: {name!r} is a directory; pass the path of a CSV file inside it")

    rows = _read_rows(file, name, delimiter)
    if not rows:
        raise ValueError(
            f"{name}: no data rows (the file is empty or only blank lines); "
            "expected at least one row of numbers"
        )

    first_line, first = rows[0]
    n_cols = len(first)
    if n_cols < n_targets + 1:
        raise ValueError(
            f"{name} line {first_line}: found {n_cols} column(s), but n_targets={n_targets} "
            f"needs at least {n_targets + 1} (the targets plus one feature); check that "
            f"delimiter={delimiter!r} is the file's separator, or lower n_targets"
        )

    if header is None:
        has_header = not all(_is_number(cell) for cell in first)
    else:
        has_header = header
    data = rows[1:] if has_header else rows
    if not data:
        why = "auto-detected as a header" if header is None else "skipped as header=True"
        raise ValueError(
            f"{name}: no data rows; line {first_line} was {why} and nothing follows it; "
            "add rows of numbers below the header, or pass header=False if that row is data"
        )
    hint = (
        "every cell after the header must be numeric"
        if has_header
        else "every cell must be numeric (pass header=True if the first row is a header)"
    )

    values = np.empty((len(data), n_cols), dtype=np.float64)
    for i, (line, row) in enumerate(data):
        if len(row) != n_cols:
            raise ValueError(
                f"{name} line {line}: found {len(row)} column(s), expected {n_cols} as on "
                f"line {first_line}; every row must have the same number of cells"
            )
        for j, cell in enumerate(row):
            try:
                value = float(cell)
            except ValueError:
                raise ValueError(
                    f"{name} line {line}, column {j + 1}: {cell!r} is not a number; {hint}"
                ) from None
            if not math.isfinite(value):
                raise ValueError(
                    f"{name} line {line}, column {j + 1}: {cell!r} is NaN or Inf; every cell "
                    "must be a finite number, so fill or drop missing values before loading"
                )
            values[i, j] = value

    with np.errstate(over="ignore"):
        cast = values.astype(dt)
    overflow = ~np.isfinite(cast.astype(np.float64))
    if overflow.any():
        i, j = np.argwhere(overflow)[0]
        raise ValueError(
            f"{name} line {data[i][0]}, column {j + 1}: {data[i][1][j]!r} does not fit in "
            f"{dt.name} (largest {float(jnp.finfo(dt).max):g}); rescale that column, or pass "
            'dtype=jnp.float64 after jax.config.update("jax_enable_x64", True)'
        )
    arr = jnp.asarray(cast)
    return arr[:, : n_cols - n_targets], arr[:, n_cols - n_targets :]


def one_hot(labels: ArrayLike, n_classes: int, *, dtype: DTypeLike = jnp.float32) -> jax.Array:
    """Returns the one-hot encoding of integer class labels.

    Labels are range-checked when they are concrete. Under ``jax.jit`` they cannot be
    inspected, and a label outside ``[0, n_classes)`` gives an all-zero row, as in
    ``jax.nn.one_hot``.

    Args:
      labels: ``(n,)`` integer class ids in ``[0, n_classes)``.
      n_classes: number of classes, ``>= 1``.
      dtype: floating dtype of the result.

    Returns:
      ``(n, n_classes) dtype`` with ``out[i, labels[i]] = 1`` and zeros elsewhere.

    Raises:
      TypeError: ``labels`` is not an integer array, ``n_classes`` is not an int, or
        ``dtype`` is not a floating dtype.
      ValueError: ``labels`` is not 1-D, a label lies outside ``[0, n_classes)``,
        ``n_classes < 1``, or float64 is asked for while x64 is disabled.

    Example:
      >>> one_hot(jnp.array([2, 0]), 3).tolist()
      [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    fn = "one_hot"
    n_classes = check_int(n_classes, "n_classes", 1, fn=fn, example=3)
    dt = check_dtype(dtype, fn=fn)
    traced = isinstance(labels, jax.core.Tracer)
    arr = labels if traced else np.asarray(labels)
    if not traced and arr.size == 0 and arr.dtype == np.float64:
        arr = arr.astype(np.int32)  # np.asarray([]) is float64; an empty list has no labels
    if arr.ndim != 1:
        raise ValueError(
            f"{fn}: labels must be 1-D with shape (n,), got shape {arr.shape}; "
            "flatten them first, e.g. labels.reshape(-1)"
        )
    if not jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == np.bool_:
        raise TypeError(
            f"{fn}: labels must be integer class ids, got dtype {arr.dtype}; "
            "cast them first, e.g. labels.astype(jnp.int32)"
        )
    if not traced:
        bad = (arr < 0) | (arr >= n_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{fn}: labels[{i}] = {int(arr[i])} is outside [0, {n_classes}) (labels span "
                f"{int(arr.min())}..{int(arr.max())}); expected class ids 0..{n_classes - 1}: "
                "pass a larger n_classes, or remap the labels to start at 0"
            )
    return jax.nn.one_hot(jnp.asarray(arr), n_classes, dtype=dt)
