"""``check_gradients``: any handwritten ``grad_fn`` against ``jax.grad`` of any scalar loss, on
any params pytree, at the given point and random perturbations of it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from audit.budget import clear_if_crowded
from audit.compare import default_tolerance, tolerance_dict
from audit.custom_rules import custom_rules
from audit.element_names import tree_names
from audit.fd_verdict import check_reference
from audit.finite_diff import finite_differences_ahead
from audit.gradients import is_traceable, point_shapes, runs_in
from audit.memo import ShapeMemo, shape_key
from audit.points import PointGroup, numbered, perturbed
from audit.result import AuditResult, column
from audit.tiers import compile_ahead, full_precision, tiered, traced_once
from audit.weights import compare_groups, comparison_config
from jaxbp.checks import check_int, check_key
from jaxbp.sharding import data_size

__all__ = ["check_gradients"]


@functools.lru_cache(maxsize=64)
def _autodiff_of(loss_fn: Callable) -> Callable:
    """``jax.grad(loss_fn)``, one object per loss so repeated audits reuse the compiled code."""
    return jax.grad(traced_once(loss_fn))


def _stacked(params):
    return jax.tree.map(lambda a: _on_device(np.asarray(a)[None]), params)


def _on_device(a) -> jax.Array:
    """``a`` as a JAX array, as ``jnp.asarray`` makes it; NumPy data is put on the device
    directly, without the small program ``jnp.asarray`` compiles per shape and dtype."""
    if isinstance(a, jax.Array):
        return a
    if isinstance(a, (np.ndarray, np.generic)):
        return jax.device_put(a)
    return jnp.asarray(a)


def _leaf_names(params) -> list[str]:
    """``"['W1']"``: each leaf's path, ``params`` for a bare array."""
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    return [jax.tree_util.keystr(path) or "params" for path, _ in paths]


def _rules_note(loss_fn: Callable, rules: list[str], reference: str = "autodiff") -> list[str]:
    """Says, never silently, that the reference goes through custom derivative rules."""
    if not rules:
        return []
    who = getattr(loss_fn, "__name__", "loss_fn")
    kinds = ", ".join(sorted(set(rules)))
    head = (
        f"jax.grad of {who} goes through {len(rules)} custom derivative rule(s) ({kinds}): "
        "there jax.grad is the rule itself"
    )
    if reference != "autodiff":
        how = "decided" if reference == "fd" else "took part"
        return [
            f"{head}, so finite differences of the loss {how} here (reference={reference!r}); "
            "check each rule on its own with audit.check_vjp or audit.check_jvp, which name "
            "the input it gets wrong"
        ]
    return [
        f"{head}, so with reference={reference!r} this audit checks that part of the gradient "
        "against itself; pass reference='fd' to let finite differences of the loss decide, or "
        "check each rule on its own with audit.check_vjp or audit.check_jvp, which "
        "differentiate its primal code"
    ]


def _given_point(params, x, y) -> PointGroup:
    """The given point alone, as a one-point group (views on the host: nothing compiles)."""
    params, x, y = (jax.tree.map(lambda a: np.asarray(a)[None], t) for t in (params, x, y))
    return PointGroup(("random",), params, x, y, ["given point"])


@tiered(static_argnames=("loss_fn",))
def _loss_value(params, x, y, *, loss_fn: Callable) -> jax.Array:
    """The loss at one point: one program, reusing the trace the audit's other programs
    start from."""
    return traced_once(loss_fn)(params, x, y)


def _loss_program(params, x) -> Callable:
    """:func:`_loss_value` compiled for the size of one evaluation (:mod:`audit.tiers`):
    quickly for a small loss, which runs once, optimized for a large one."""
    batch = max((int(np.shape(a)[0]) for a in jax.tree.leaves(x) if np.ndim(a)), default=1)
    return _loss_value.pick(sum(int(np.size(a)) for a in jax.tree.leaves(params)) * batch)


# per functions and shapes: the custom rules, element and leaf names, whether grad_fn traces
_FOUND = ShapeMemo()


def _check_loss(loss_fn: Callable, params, x, y) -> None:
    """``loss_fn`` at the given point: a batch with examples, a float scalar."""
    who = getattr(loss_fn, "__name__", "loss_fn")
    for what, tree in (("x", x), ("y", y)):
        for path, a in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if a.size == 0:
                raise ValueError(
                    f"{what}{jax.tree_util.keystr(path)} is empty (shape {a.shape}): a batch "
                    "with no examples makes the loss NaN and every gradient 0, which checks "
                    "nothing; pass at least one example"
                )
    try:
        out = jax.eval_shape(traced_once(loss_fn), params, x, y)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}(params, x, y) failed on the given point: {e}") from e
    if not (
        isinstance(out, jax.ShapeDtypeStruct)
        and out.shape == ()
        and jnp.issubdtype(out.dtype, jnp.floating)
    ):
        got = (
            f"shape {out.shape} {out.dtype}"
            if isinstance(out, jax.ShapeDtypeStruct)
            else f"a {type(out).__name__} pytree"
        )
        raise ValueError(
            f"{who}(params, x, y) returned {got}, expected a scalar float loss: reduce over "
            "the batch (jnp.mean or jnp.sum) and return one number"
        )


def _check_loss_value(loss_fn: Callable, params, x, y) -> None:
    """``loss_fn`` at the given point is finite (its shape checked by :func:`_check_loss`)."""
    who = getattr(loss_fn, "__name__", "loss_fn")
    value = float(_loss_program(params, x)(params, x, y, loss_fn=loss_fn))
    if not np.isfinite(value):
        raise ValueError(
            f"{who}(params, x, y) is {value} at the given point, expected a finite loss: "
            "jax.grad there would judge nothing"
        )


@full_precision
def check_gradients(
    grad_fn: Callable,
    loss_fn: Callable,
    params: Any,
    x: Any,
    y: Any,
    *,
    points: int = 0,
    key: jax.Array | None = None,
    spread: float = 0.5,
    rtol: float | None = None,
    atol: float | None = None,
    fd: bool = True,
    fd_max: int = 512,
    names: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    memory: int | None = None,
    leaf_names: Sequence[str] | None = None,
    reference_name: str = "jax.grad",
    reference: str = "autodiff",
) -> AuditResult:
    """Audit ``grad_fn`` against ``jax.grad(loss_fn)`` on any pytree.

    Args:
      grad_fn: ``(params, x, y) -> grads``, the same pytree as ``params``.
      loss_fn: ``(params, x, y) -> scalar``, differentiable by JAX.
      params: any pytree of float arrays (one dtype); x, y: whatever ``loss_fn`` takes.
      points: extra points: ``params`` perturbed by ``spread`` times each leaf's RMS (or 1
        for an all-zero leaf) times standard normal noise; needs ``key``.
      key: PRNG key for the perturbations.
      rtol, atol, fd, fd_max, progress, mesh, memory: as in :func:`audit_network`.
      names: one name per scalar parameter in flatten order; default the leaf paths.
      leaf_names: one name per leaf of ``params`` in flatten order, as the report's
        summary lines and hints say it; default the leaf paths (``['W1']``).
      reference_name: what hints and notes call the reference (``jax.grad``).
      reference: which opinion decides (:mod:`audit.fd_verdict`): ``"autodiff"``
        (``jax.grad(loss_fn)`` in float64 at every point; finite differences only note a
        disagreement), ``"fd"`` (float64 central differences of ``loss_fn``, with their own
        error estimate, at the given point and as many more as
        :data:`audit.fd_verdict.FD_LOSS_EVALS` loss evaluations allow) or ``"both"``.

    Returns:
      An :class:`AuditResult` (``factors`` empty, ``training`` None).

    Example:
      >>> def loss_fn(p, x, y): return jnp.mean((x @ p["w"] - y) ** 2)
      >>> def grad_fn(p, x, y): return {"w": 2 * x.T @ (x @ p["w"] - y) / y.size}
      >>> kw, kx, ky = jax.random.split(jax.random.key(0), 3)
      >>> w = jax.random.normal(kw, (3, 2))
      >>> x, y = jax.random.normal(kx, (8, 3)), jax.random.normal(ky, (8, 2))
      >>> check_gradients(grad_fn, loss_fn, {"w": w}, x, y, points=100, key=kw).passed
      True
    """
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params has no array leaves; expected a pytree of float arrays")
    dtypes = {jnp.result_type(a) for a in leaves}
    if len(dtypes) != 1 or not jnp.issubdtype(next(iter(dtypes)), jnp.floating):
        raise TypeError(
            f"params leaves have dtypes {sorted(map(str, dtypes))}; expected one float dtype"
        )
    dt = next(iter(dtypes))
    reference = check_reference(reference, fd=fd)
    points = check_int(points, "points", 0)
    memory = check_int(memory, "memory", 1, none_ok=True)
    if mesh is not None:
        data_size(mesh)
    if points and key is None:
        raise ValueError("points > 0 needs key=jax.random.key(seed) for the perturbations")
    if points:
        check_key(key)
    params = jax.tree.map(_on_device, params)
    x, y = jax.tree.map(_on_device, x), jax.tree.map(_on_device, y)
    crowded = clear_if_crowded()
    n_params = sum(int(np.size(a)) for a in leaves)
    # the tier depends on the size alone, so the same key and points draw the same bits; the
    # program compiles while the loss is checked (XLA lets go of Python's lock)
    draw = perturbed.pick(points * n_params)
    drawing = compile_ahead(draw, params, key, spread, points=points) if points else None
    found_key = shape_key(grad_fn, loss_fn, trees=(params, x, y))
    found = _FOUND.get(found_key)
    if found is None:
        _check_loss(loss_fn, params, x, y)
    compile_ahead(_loss_program(params, x), params, x, y, loss_fn=loss_fn)  # read below
    # while the points' program compiles: grad_fn is traced at the given point, whose shapes
    # every perturbed point shares (point 0 of the stacked points is the given point)
    given = _given_point(params, x, y)
    if found is None:
        found = (tuple(custom_rules(loss_fn, params, x, y)), tree_names(params),
                 tuple(_leaf_names(params)), is_traceable(grad_fn, given))  # fmt: skip
        _FOUND.put(found_key, found)
    rules, own_names, own_leaves, traced = found
    all_names = list(names) if names is not None else own_names
    if len(all_names) != n_params:
        raise ValueError(
            f"names has {len(all_names)} entries, expected one per scalar parameter ({n_params})"
        )
    tree_leaves = list(own_leaves) if leaf_names is None else list(leaf_names)
    if len(tree_leaves) != len(leaves):
        raise ValueError(
            f"leaf_names has {len(tree_leaves)} entries, expected one per leaf of params "
            f"({len(leaves)})"
        )
    tol = default_tolerance(dt, rtol, atol)
    ref_dtype = jnp.float64  # the reference side runs with 64-bit types on, always

    n = points + 1
    if drawing is not None and not drawing.done():  # a first call: work ahead while it waits
        if traced:  # whether it runs in float64 (the second look), asked again from a cache
            with jax.enable_x64(True):
                runs_in(grad_fn, point_shapes(given), ref_dtype)
        if fd and reference == "autodiff":  # finite differences' program, as compare_groups
            with jax.enable_x64(True):  # asks for it, compiles while the points are compared
                finite_differences_ahead(loss_fn, given, min(fd_max, n_params), dtype=ref_dtype)
    _check_loss_value(loss_fn, params, x, y)
    if drawing is not None:
        drawing.result()
    stacked = draw(params, key, spread, points=points) if points else _stacked(params)

    def repeated(a):  # the same batch at every point: a view on the host, copied only where a
        return np.broadcast_to(np.asarray(a), (n, *a.shape))  # compiled call takes it

    group = PointGroup(
        ("random",) * n,
        stacked,
        jax.tree.map(repeated, x),
        jax.tree.map(repeated, y),
        numbered("perturbed point", n, first=["given point"]),
    )

    weights, notes, per_call, phases, leaf_entries, fd_points = compare_groups(
        grad_fn, _autodiff_of(loss_fn), loss_fn, [group], traced=traced, names=all_names,
        tol=tol, ref_dtype=ref_dtype, fd=fd, fd_max=fd_max, candidates=None, saturation=None,
        progress=progress, mesh=mesh, memory=memory, leaf_names=tree_leaves,
        reference_name=reference_name, reference=reference,
    )  # fmt: skip
    timing.update(phases)
    timing["total_s"] = time.perf_counter() - t_start
    return AuditResult(
        passed=all(column(weights, "passed")),
        config=dict(
            grad=getattr(grad_fn, "__name__", "grad_fn"),
            loss=getattr(loss_fn, "__name__", "loss_fn"),
            points=points,
            dtype=jnp.dtype(dt).name,
            **comparison_config(
                tol,
                ref_dtype,
                fd=fd,
                fd_max=fd_max,
                memory=memory,
                per_call=per_call,
                mesh=mesh,
                reference=reference,
                fd_points=fd_points,
            ),
            leaves=leaf_entries,
        ),
        tolerance=tolerance_dict(tol),
        points=dict(total=group.size, seed_example=0, random=points, trajectory=0, traced=traced),
        weights=weights,
        factors=[],
        first_failing_factor=None,
        notes=([crowded] if crowded else []) + _rules_note(loss_fn, rules, reference) + notes,
        training=None,
        timing=timing,
    )
