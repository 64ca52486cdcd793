"""Checks at the public boundary: one clear message for each kind of bad input.

Every check runs at trace time on shapes and dtypes. Value checks (NaN/Inf) run only on
concrete arrays, so the same functions can be called inside a user's ``jit``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_dtype(dtype: Any, what: str = "dtype", *, fn: str | None = None) -> np.dtype:
    """A floating dtype usable under the current x64 setting; the one dtype check of jaxbp.

    ``fn`` names the public function the message is about (``"truth_table: dtype=..."``).
    """
    at = f"{fn}: " if fn else ""
    if dtype is None:
        # np.dtype(None) silently means float64; make the caller say what they want.
        raise TypeError(
            f"{at}{what}=None is not a dtype; expected a floating dtype, "
            f"e.g. {what}=jnp.float32 (the default)"
        )
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"{at}{what}={dtype!r} is not a dtype; expected a floating dtype such as "
            "jnp.float32, jnp.float64 or jnp.bfloat16"
        ) from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(
            f"{at}{what}={dt.name} is not a floating dtype; expected a floating dtype such as "
            "jnp.float32 (the default) or jnp.float64; cast integer data after loading instead"
        )
    if dt.itemsize > 4 and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{at}{what}={dt.name} was asked for but 64-bit types are disabled in JAX, so the "
            "result would silently be float32; enable them at program start with "
            f'jax.config.update("jax_enable_x64", True), or pass {what}=jnp.float32'
        )
    return dt


# What jax.random.key accepts as a Python int (it converts to a C long).
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


def check_int(
    value: Any,
    what: str,
    minimum: int,
    maximum: int | None = None,
    *,
    none_ok: bool = False,
    fn: str | None = None,
    example: int | None = None,
) -> int | None:
    """``value`` as an int in ``[minimum, maximum]`` (NumPy ints too; never a bool or float);
    the one integer check of jaxbp and the audit.

    The message says what arrived and the range expected, e.g. ``steps=0, expected an int >= 1``;
    ``fn`` names the public function it is about and ``example`` the value it suggests.

    Raises:
      TypeError: ``value`` is not an integer (a float, a bool, a string, or ``None`` unless
        ``none_ok``).
      ValueError: it is an integer outside the range.

    Example:
      >>> check_int(2.0, "n", 1, fn="two_moons", example=200)
      Traceback (most recent call last):
      ...
      TypeError: two_moons: n=2.0, expected an int >= 1 (got float); pass e.g. n=200
    """
    if value is None and none_ok:
        return None
    at = f"{fn}: " if fn else ""
    want = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"
    want += " or None" if none_ok else ""
    hint = f"; pass e.g. {what}={minimum if example is None else example}"
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        got = type(value).__name__
        raise TypeError(f"{at}{what}={value!r}, expected {want} (got {got}){hint}")
    if int(value) < minimum or (maximum is not None and int(value) > maximum):
        raise ValueError(f"{at}{what}={value!r}, expected {want}{hint}")
    return int(value)


def check_seed(seed: Any, what: str = "seed") -> int:
    """A seed ``jax.random.key`` accepts: an int in ``[-2**63, 2**63 - 1]``."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if SEED_MIN <= int(seed) <= SEED_MAX:
            return int(seed)
        raise ValueError(
            f"{what}={seed} is out of range; jax.random.key takes a whole number from {SEED_MIN} "
            f"to {SEED_MAX} (a 64-bit integer), so pass a smaller seed such as {what}=0"
        )
    raise TypeError(f"{what} is {type(seed).__name__} {seed!r}, expected an int such as 0")


def check_learning_rate(learning_rate: Any, what: str = "learning_rate") -> Any:
    """A finite rate > 0, the eta of ``p <- p - eta dE/dp``; a traced rate passes unchecked."""
    if isinstance(learning_rate, jax.core.Tracer):
        return learning_rate
    shape = np.shape(learning_rate) if hasattr(learning_rate, "shape") else ()
    is_number = isinstance(learning_rate, numbers.Real) or (
        hasattr(learning_rate, "dtype")
        and shape == ()
        and (jnp.issubdtype(learning_rate.dtype, jnp.floating)
             or jnp.issubdtype(learning_rate.dtype, jnp.integer))
    )  # fmt: skip
    if not is_number or isinstance(learning_rate, bool):
        got = type(learning_rate).__name__ + (f" of shape {shape}" if shape else "")
        raise TypeError(
            f"{what} is {got} {learning_rate!r}, expected a number > 0 such as {what}=0.5"
        )
    value = float(learning_rate)
    if not math.isfinite(value) or value <= 0:
        why = (
            "a NaN or infinite rate turns every weight into NaN at the first step"
            if not math.isfinite(value)
            else "0 never moves the weights"
            if value == 0
            else "a negative rate climbs the loss instead of descending it"
        )
        raise ValueError(
            f"{what}={learning_rate!r}, expected a finite number > 0 (the step size eta of "
            f"p <- p - eta dE/dp): {why}; pass e.g. {what}=0.5"
        )
    return learning_rate


def check_key(key: Any, what: str = "key", *, fn: str | None = None) -> None:
    """``key`` is one PRNG key: typed (``jax.random.key``) or a legacy raw ``uint32`` key
    (``(2,)`` for the default threefry implementation, ``(4,)`` for ``rbg``); the one key
    check of jaxbp and the audit. ``fn`` names the public function it is about."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return
    if dtype == np.uint32 and shape in ((2,), (4,)):
        return
    at = f"{fn}: " if fn else ""
    got = type(key).__name__ + (f" of shape {shape} and dtype {dtype}" if dtype else f" {key!r}")
    raise TypeError(
        f"{at}{what} is {got}, expected one PRNG key; pass {what}=jax.random.key(seed), and "
        "split it with jax.random.split for several consumers"
    )


def check_sizes(sizes: Any) -> tuple[int, ...]:
    """Layer sizes as a tuple of ints >= 1, at least two of them."""
    try:
        out = tuple(int(s) for s in sizes)
    except (TypeError, ValueError) as e:
        raise TypeError(f"sizes={sizes!r} must be a sequence of ints like (2, 2, 1)") from e
    if len(out) < 2 or any(s < 1 for s in out) or any(int(s) != s for s in sizes):
        raise ValueError(
            f"sizes={sizes!r}: expected at least two positive ints (input width, ..., output width)"
        )
    return out


def _is_concrete(a: Any) -> bool:
    return not isinstance(a, jax.core.Tracer)


def check_params(params: Any) -> None:
    """``params`` is a non-empty list of ``{"W": (n_out, n_in), "b": (n_out,)}`` that chain."""
    # a list only: every gradient function builds its result as a list, so a tuple of layers
    # would come back as a different pytree and break the optimizer update in fit
    if not isinstance(params, list) or len(params) == 0:
        got = "an empty list" if isinstance(params, list) else type(params).__name__
        raise TypeError(
            f"params is {got}, expected a non-empty list of layers "
            '{"W": (n_out, n_in), "b": (n_out,)}; build one with jaxbp.init(sizes, key=...)'
            + (" or convert with list(params)" if isinstance(params, tuple) else "")
        )
    for i, layer in enumerate(params):
        if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise TypeError(f'params[{i}] has keys {got}, expected exactly {{"W", "b"}}')
        W, b = layer["W"], layer["b"]
        for name, leaf in (("W", W), ("b", b)):
            dt = getattr(leaf, "dtype", None)
            if dt is None or not jnp.issubdtype(dt, jnp.floating):
                raise TypeError(
                    f'params[{i}]["{name}"] has dtype {dt}, expected a floating dtype; '
                    "convert with jnp.asarray(..., jnp.float32)"
                )
        if W.ndim != 2:
            raise ValueError(f'params[{i}]["W"] has shape {W.shape}, expected (n_out, n_in)')
        if b.shape != (W.shape[0],):
            raise ValueError(
                f'params[{i}]["b"] has shape {b.shape}, expected ({W.shape[0]},) '
                f'to match params[{i}]["W"] of shape {W.shape}; a bias is a vector, not (n, 1)'
            )
        if i > 0 and W.shape[1] != params[i - 1]["W"].shape[0]:
            raise ValueError(
                f'params[{i}]["W"] has shape {W.shape} but layer {i - 1} has '
                f"{params[i - 1]['W'].shape[0]} outputs: expected ({W.shape[0]}, "
                f"{params[i - 1]['W'].shape[0]}); the layers do not chain"
            )
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(params)}
    if len(dtypes) > 1:
        raise TypeError(
            f"params mix dtypes {sorted(map(str, dtypes))}; expected one floating dtype throughout"
        )


def _check_finite(a: Any, what: str) -> None:
    if _is_concrete(a) and isinstance(a, jax.Array) and not a.is_fully_addressable:
        # rows on other hosts (jax.distributed): reduce on the devices, not on this host
        if not bool(jnp.all(jnp.isfinite(a))):
            raise ValueError(f"{what} contains NaN/Inf values; expected finite numbers")
        return
    if _is_concrete(a):
        arr = np.asarray(a)
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{what} contains {int(bad.sum())} NaN/Inf value(s), first at index {where}; "
                "expected finite numbers: clean or drop those rows"
            )


def check_float_array(a: Any, what: str) -> None:
    """``a`` is an array of a floating dtype; integer or boolean data is refused, never cast."""
    dt = getattr(a, "dtype", None)
    if dt is None:
        raise TypeError(
            f"{what} is {type(a).__name__}, expected a float array; wrap it with jnp.asarray"
        )
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(
            f"{what} has dtype {dt}, expected a floating dtype; convert with "
            f"{what}.astype(jnp.float32)"
        )


def check_data(params: Any, x: Any, y: Any | None = None) -> None:
    """``x: (batch, n_in)`` and ``y: (batch, n_out)`` float, finite, matching ``params``."""
    check_params(params)
    n_in, n_out = params[0]["W"].shape[1], params[-1]["W"].shape[0]
    check_float_array(x, "x")
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"x has shape {x.shape}, expected (batch, {n_in})")
    if x.shape[0] == 0:
        raise ValueError("x has an empty batch (shape (0, ...)); expected at least one example")
    if x.dtype != params[0]["W"].dtype:
        raise TypeError(
            f"x has dtype {x.dtype} but params are {params[0]['W'].dtype}; expected one dtype, "
            f"convert with x.astype({params[0]['W'].dtype})"
        )
    _check_finite(x, "x")
    if y is None:
        return
    check_float_array(y, "y")
    if y.shape != (x.shape[0], n_out):
        raise ValueError(f"y has shape {y.shape}, expected ({x.shape[0]}, {n_out})")
    if y.dtype != x.dtype:
        raise TypeError(
            f"y has dtype {y.dtype} but x has {x.dtype}; expected one dtype, "
            f"convert with y.astype({x.dtype})"
        )
    _check_finite(y, "y")


def check_choice(value: Any, what: str, valid: Sequence[str]) -> str:
    """``value`` is one of ``valid``; the error lists them."""
    if value not in valid:
        raise ValueError(f"{what}={value!r} is not known; expected one of {', '.join(valid)}")
    return value


def _leaf_table(tree: Any) -> dict[str, tuple[tuple[int, ...], Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        jax.tree_util.keystr(path): (
            tuple(getattr(leaf, "shape", ())),
            getattr(leaf, "dtype", None),
        )
        for path, leaf in leaves
    }


def _node(tree: Any) -> str:
    """Containers in brackets, leaves as ``array``: ``[{'W', 'b'}, {'W', 'b'}]``."""
    if isinstance(tree, dict):
        inner = [repr(k) if _is_leaf(v) else f"{k!r}: {_node(v)}" for k, v in tree.items()]
        return "{" + ", ".join(inner) + "}"
    if isinstance(tree, (list, tuple)):
        inner = [_node(v) for v in tree]
        if isinstance(tree, list):
            return "[" + ", ".join(inner) + "]"
        name = type(tree).__name__ if hasattr(tree, "_fields") else ""
        return f"{name}(" + ", ".join(inner) + ("," if len(inner) == 1 and not name else "") + ")"
    if tree is None:
        return "None"
    if _is_leaf(tree):
        return "array" if hasattr(tree, "shape") else type(tree).__name__
    return f"{type(tree).__name__}(...)"


def _is_leaf(tree: Any) -> bool:
    treedef = jax.tree.structure(tree)
    return treedef.num_nodes == 1 and treedef.num_leaves == 1


def describe_tree(tree: Any) -> str:
    """A pytree's containers in plain words, e.g. ``a list of 2 dicts {'W', 'b'}``."""
    kind = type(tree).__name__
    if isinstance(tree, (list, tuple)) and tree and not hasattr(tree, "_fields"):
        parts = {_node(v) for v in tree}
        if len(parts) == 1:
            part = parts.pop()
            plural = "" if len(tree) == 1 else "s"
            what = (
                f"array{plural}" if part == "array" else f"{type(tree[0]).__name__}{plural} {part}"
            )
            return f"a {kind} of {len(tree)} {what}"
    article = "an" if kind[:1] in "aeiou" else "a"
    return f"{article} {kind} {_node(tree)}"


def check_grads_like(params: Any, grads: Any, who: str = "grad_fn") -> None:
    """``grads`` has the containers, leaf shapes and dtype of ``params``.

    The error names every missing, extra, misshaped and wrongly typed leaf by its path, and
    both structures in plain words when their containers differ (a tuple for a list). A
    gradient in another dtype than its parameter is refused: the audit would compare it at
    the wrong precision, and the update would change the dtype of the weights. ``grads`` may
    hold ``jax.ShapeDtypeStruct`` leaves (from ``jax.eval_shape``).
    """
    want, got = _leaf_table(params), _leaf_table(grads)
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    shaped = [
        f"{k} has shape {got[k][0]}, expected {want[k][0]}"
        for k in want
        if k in got and got[k][0] != want[k][0]
    ]
    wrong: dict[Any, list[str]] = {}  # leaves by the wrong dtype they arrived in
    for k in want:
        # "is None", not "in": NumPy reads None as float64 when comparing dtypes
        if (
            k in got
            and got[k][1] is not None
            and want[k][1] is not None
            and got[k][1] != want[k][1]
        ):
            wrong.setdefault(got[k][1], []).append(k)
    dtype = next(iter({v[1] for v in want.values()}), None)
    typed = [
        f"{', '.join(keys)} {'has' if len(keys) == 1 else 'have'} dtype {dt}, expected "
        + (f"{dtype} like params" if jnp.issubdtype(dt, jnp.floating)
           else f"a floating dtype ({dtype}, like params)")
        for dt, keys in wrong.items()
    ]  # fmt: skip
    problems = []
    same_containers = jax.tree.structure(params) == jax.tree.structure(grads)
    if not same_containers:
        problems.append(f"they are {describe_tree(grads)}, params are {describe_tree(params)}")
    if missing:
        problems.append(f"missing leaves {missing}")
    if extra:
        problems.append(f"extra leaves {extra}")
    problems += shaped + typed
    if not problems:
        return
    if not same_containers:
        fix = (
            f"return a {type(params).__name__} like params, e.g. {type(params).__name__}(grads)"
            if not missing and not extra and type(grads) is not type(params)
            and isinstance(grads, (list, tuple)) and isinstance(params, (list, tuple))
            else f"return gradients with the structure of params, {describe_tree(params)}"
        )  # fmt: skip
    elif typed and not shaped:
        fix = f"compute them in {dtype} or cast each with .astype(jnp.{dtype})"
    else:
        fix = "each gradient must have the shape of its parameter"
    raise ValueError(
        f"{who} returned gradients that do not match params: {'; '.join(problems)}; {fix}"
    )


def check_seed_network(params: Any) -> None:
    """``params`` is a 2-2-1 network, the only one the note's formulas describe."""
    shapes = [(p["W"].shape, p["b"].shape) for p in params] if isinstance(params, list) else None
    if shapes != [((2, 2), (2,)), ((1, 2), (1,))]:
        raise ValueError(
            f"the seed formulas are for the 2-2-1 network only (W shapes (2, 2) and (1, 2)); "
            f"got layer shapes {shapes}; use jaxbp.closed_form_grads for other sizes"
        )


def check_seed_choices(sizes, names: tuple[str, str, str]) -> None:
    """The note's formulas describe a 2-2-1 sigmoid network with MSE and nothing else.

    Args:
      sizes: layer widths; names: ``(activation, output_activation, loss)``.
    """
    if tuple(sizes) != (2, 2, 1) or tuple(names) != ("sigmoid", "sigmoid", "mse"):
        raise ValueError(
            f"grad='seed' is the note's 2-2-1 sigmoid network with MSE; got sizes "
            f"{','.join(map(str, sizes))}, activation={names[0]!r}, "
            f"output_activation={names[1]!r}, loss={names[2]!r}: use grad='closed_form' for "
            "other networks"
        )
