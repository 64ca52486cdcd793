"""Checks at the public boundary: one clear message for each kind of bad input.

Every check runs at trace time on shapes and dtypes. Value checks (NaN/Inf) run only on
concrete arrays, so the same functions can be called inside a user's ``jit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_dtype(dtype: Any, what: str) -> jnp.dtype:
    """A floating dtype usable under the current x64 setting."""
    try:
        dt = jnp.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{what}={dtype!r} is not a dtype; expected float32 or float64") from e
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"{what} is {dt}, expected a floating dtype such as float32 or float64")
    if dt == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{what} is float64 but 64-bit mode is off; call "
            'jax.config.update("jax_enable_x64", True) before creating arrays, or use float32'
        )
    return dt


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


def _check_array(a: Any, what: str) -> None:
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
    _check_array(x, "x")
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
    _check_array(y, "y")
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


def check_grads_like(params: Any, grads: Any, who: str = "grad_fn") -> None:
    """``grads`` has the pytree structure and leaf shapes of ``params``.

    The error names every missing, extra and misshaped leaf by its path, and both structures.
    ``grads`` may hold ``jax.ShapeDtypeStruct`` leaves (from ``jax.eval_shape``).
    """
    want, got = _leaf_table(params), _leaf_table(grads)
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    shaped = [
        f"{k} has shape {got[k][0]}, expected {want[k][0]}"
        for k in want
        if k in got and got[k][0] != want[k][0]
    ]
    floats = [
        f"{k} has dtype {got[k][1]}, expected a floating dtype"
        for k in want
        if k in got and got[k][1] is not None and not jnp.issubdtype(got[k][1], jnp.floating)
    ]
    problems = []
    if missing:
        problems.append(f"missing leaves {missing}")
    if extra:
        problems.append(f"extra leaves {extra}")
    problems += shaped + floats
    if problems:
        raise ValueError(
            f"{who} returned gradients that do not match params: {'; '.join(problems)}. "
            f"Expected the structure of params, {jax.tree.structure(params)}, "
            f"got {jax.tree.structure(grads)}"
        )
