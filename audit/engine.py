"""``audit_network``: a jaxbp MLP's handwritten gradients against ``jax.grad``, at many points,
weight by weight.

It audits the seed's formulas, the general closed form or a user's ``grad_fn``, at the seed's
worked example, ``points`` random draws and the training trajectory; it also audits the chain
factors (or layer deltas) and compares training with both gradients. Any other pytree and
loss: :func:`audit.check_gradients` (``audit/check.py``).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp
from audit.budget import clear_if_crowded, memory_problem
from audit.compare import default_tolerance, tolerance_dict
from audit.factors import delta_factors, seed_factor_audit
from audit.fd_verdict import check_reference
from audit.gradients import is_traceable
from audit.mistakes import missing_derivative_grads
from audit.points import PointGroup, merge_same_shapes, random_batch, random_points, stack_points
from audit.result import AuditResult, column
from audit.saturation import saturation_fn
from audit.tiers import full_precision, tiered
from audit.training import compare_training, finite_checkpoints
from audit.weights import compare_groups, comparison_config, say
from jaxbp.checks import (
    check_dtype,
    check_float_array,
    check_int,
    check_key,
    check_seed,
    check_seed_choices,
    check_sizes,
)
from jaxbp.core import OutputSpec, mean_loss, resolve_output
from jaxbp.sharding import data_size
from jaxbp.train import GRADS

__all__ = ["GRAD_CHOICES", "audit_network"]


# jaxbp.fit's grads but "autodiff": jax.grad audited against itself would check nothing
GRAD_CHOICES = tuple(g for g in GRADS if g != "autodiff")


@functools.lru_cache(maxsize=64)
def _reference_grad_fn(spec: OutputSpec) -> Callable:
    def grad_fn(params, x, y):
        return jax.grad(mean_loss)(params, x, y, spec)

    return grad_fn


@functools.lru_cache(maxsize=64)
def _loss_fn(spec: OutputSpec) -> Callable:
    return functools.partial(mean_loss, spec=spec)


def _resolve_grad(grad, sizes, spec, factors_fn):
    """(grad_fn, its name, factor auditor or None)."""
    if isinstance(grad, str):
        if grad == "autodiff":
            raise ValueError(
                "grad='autodiff' is jax.grad itself, and auditing jax.grad against jax.grad "
                f"checks nothing; audit one of {', '.join(GRAD_CHOICES)} or your own "
                "grad_fn(params, x, y) -> grads (jaxbp.fit takes grad='autodiff' for training)"
            )
        if grad not in GRAD_CHOICES:
            raise ValueError(
                f"grad={grad!r} is not known; expected one of {', '.join(GRAD_CHOICES)}, or a "
                "callable grad_fn(params, x, y) -> grads"
            )
        if grad == "seed":
            check_seed_choices(sizes, spec.names)
            return jaxbp.seed_grads, "seed", "seed"
        act, out_act, loss = spec.names
        return (
            jaxbp.closed_form(activation=act, loss=loss, output_activation=out_act),
            grad,
            "delta",
        )
    if not callable(grad):
        raise TypeError(
            f"grad is {type(grad).__name__}, expected 'seed', 'closed_form' or a callable"
        )
    factors_fn = factors_fn or getattr(grad, "factors", None)
    return grad, getattr(grad, "__name__", "grad_fn"), factors_fn


def _check_data(data, sizes, dtype) -> tuple[jax.Array, jax.Array]:
    if data is None:
        data = jaxbp.truth_table("xor", dtype=dtype)
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError("data must be a pair (x, y) of arrays (batch, n_in) and (batch, n_out)")
    x, y = (np.asarray(a) for a in data)  # checked on the host: no program per shape
    for what, a, width, i in (("inputs", x, sizes[0], "first"), ("outputs", y, sizes[-1], "last")):
        if a.ndim != 2:
            raise ValueError(f"data {what} have shape {a.shape}, expected (batch, {width})")
        if a.shape[1] != width:
            raise ValueError(
                f"sizes {','.join(map(str, sizes))} but the data has {a.shape[1]} {what}: the "
                f"{i} size must be {a.shape[1]}"
            )
        # the same rule as jaxbp: integer data is refused, floating data is cast to ``dtype``
        check_float_array(a, "x" if what == "inputs" else "y")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"data have {x.shape[0]} inputs and {y.shape[0]} targets; expected equal, >= 1"
        )
    x, y = x.astype(dtype), y.astype(dtype)
    for what, a in (("inputs", x), ("targets", y)):
        if not np.isfinite(a).all():
            raise ValueError(f"data {what} contain NaN or Inf; expected finite numbers")
    return jax.device_put(x), jax.device_put(y)


@tiered(static_argnames=("sizes", "dtype"))
def _start(key, *, sizes, dtype):
    """The initial params (standard normal) and the key of the random points, in one
    compiled call rather than one small program per key split and leaf shape."""
    k_init, k_points = jax.random.split(key)
    return jaxbp.init(sizes, key=k_init, dtype=dtype, scale="normal"), k_points


@full_precision
def audit_network(
    grad: str | Callable = "seed",
    *,
    sizes: Sequence[int] = (2, 2, 1),
    activation: str = "sigmoid",
    loss: str = "mse",
    output_activation: str | None = None,
    data: tuple[jax.Array, jax.Array] | None = None,
    data_name: str | None = None,
    points: int = 64,
    seed: int = 0,
    key: jax.Array | None = None,
    dtype: Any = "float32",
    steps: int = 5000,
    learning_rate: float = 2.0,
    checkpoints: int = 5,
    rtol: float | None = None,
    atol: float | None = None,
    fd: bool = True,
    fd_max: int = 512,
    reference: str = "autodiff",
    factors_fn: Callable | None = None,
    progress: Callable[[str], None] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    memory: int | None = None,
) -> AuditResult:
    """Audit handwritten gradients of an MLP against ``jax.grad``.

    Points audited: the seed's worked example (2-2-1 networks), ``points`` random draws of
    parameters, inputs and targets, and the parameters along a ``jax.grad`` training run on
    ``data`` at ``checkpoints + 1`` steps (initialisation included). Every weight keeps its
    worst case over all of them.

    Args:
      grad: ``"seed"`` (the note's formulas), ``"closed_form"`` (the delta rule) or a
        ``grad_fn(params, x, y) -> grads`` returning the params pytree. A function JAX cannot
        trace (plain NumPy) is called point by point.
      sizes: layer widths ``(n0, ..., nL)``.
      activation, loss, output_activation: as in :func:`jaxbp.batch_loss`.
      data: ``(x: (n, n0), y: (n, nL))`` of a floating dtype, cast to ``dtype`` (integer
        data is refused, as in :func:`jaxbp.fit`); default the XOR truth table.
      data_name: how the report names the data.
      points: number of random draws, >= 1.
      seed: seeds every key of the audit, as ``key=jax.random.key(seed)``.
      key: the PRNG key every random draw of the audit comes from (initial params, random
        points), instead of ``seed``; the report then records its key data.
      dtype: dtype of the audited params and data; the reference runs in float64 whenever
        64-bit mode is on.
      steps: training steps (0: no training); learning_rate: gradient-descent rate.
      checkpoints: trajectory checkpoints after initialisation.
      rtol, atol: override the dtype's defaults (see :mod:`audit.compare`).
      fd: add central finite differences as a third opinion; fd_max: for at most this many
        weights (the worst first).
      reference: which opinion decides the per-weight verdict (one of
        :data:`audit.REFERENCES`): ``"autodiff"`` (``jax.grad``, default), ``"fd"`` (float64
        central differences of the loss, with their own error estimate) or ``"both"`` (a
        weight must agree with both); see :mod:`audit.fd_verdict`. The last two need ``fd``.
        The chain factors and layer deltas are compared with JAX's own factors either way.
      factors_fn: for a user's 2-2-1 function, ``factors_fn(params, x, yt) -> {name: value}``
        for one example, audited against the note's factors (also read from
        ``grad.factors``).
      progress: called with short status lines.
      mesh: split the points over the ``"data"`` devices of a mesh
        (:func:`jaxbp.data_mesh`) for the gradient and factor comparisons; any point count
        works (the last point is repeated to fill the devices, and the copies are dropped).
        None (default): one device. The report's ``config["devices"]`` lists those used.
      memory: bytes one compiled call may use (an int > 0): the points are evaluated in
        calls of as many as fit, by an upper-bound estimate of each point's working memory.
        None (default): half the free memory of the default device
        (:func:`audit.budget.default_budget`). ``config["points_per_call"]`` says how many
        one call took. The verdict does not depend on it.

    Returns:
      An :class:`AuditResult`.

    Example:
      >>> result = audit_network("seed", points=16, steps=500)
      >>> result.passed, result.failed_weights
      (True, [])
    """
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    sizes = check_sizes(sizes)
    dt = check_dtype(dtype, "dtype")
    spec = resolve_output(activation, loss, output_activation)
    jaxbp.check_output_units(spec, sizes[-1])
    seed = check_seed(seed)
    if key is not None:
        check_key(key)
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)  # a legacy uint32 (2,) key
    points = check_int(points, "points", 1)
    steps = check_int(steps, "steps", 0)
    checkpoints = check_int(checkpoints, "checkpoints", 1)
    fd_max = check_int(fd_max, "fd_max", 1)
    reference = check_reference(reference, fd=fd)
    memory = check_int(memory, "memory", 1, none_ok=True)
    if mesh is not None:
        data_size(mesh)
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate={learning_rate!r}, expected a finite number > 0")
    grad_fn, grad_name, factor_kind = _resolve_grad(grad, sizes, spec, factors_fn)
    x, y = _check_data(data, sizes, dt)
    problem = memory_problem(sizes, points=points, n_data=x.shape[0], steps=steps, dtype=dt,
                             checkpoints=checkpoints)  # fmt: skip
    if problem:
        raise ValueError(problem)
    crowded = clear_if_crowded()
    tol = default_tolerance(dt, rtol, atol)
    ref_dtype = jnp.float64  # the reference side runs with 64-bit types on, always
    act, out_act, loss_name = spec.names

    # the tier depends on the sizes alone: a seed's params never depend on the points
    start = _start.pick(sum(a * b + b for a, b in itertools.pairwise(sizes)))
    root = jax.random.key(seed) if key is None else key
    params0, k_points = start(root, sizes=sizes, dtype=jnp.dtype(dt).name)

    groups: list[PointGroup] = []
    if sizes == (2, 2, 1):
        p, ex, ey = jaxbp.seed_example(dtype=dt)
        groups.append(stack_points("seed_example", [(p, ex, ey)], ["seed worked example"]))
    groups.append(
        random_points(
            sizes, points, key=k_points, loss=loss_name, dtype=dt, batch=random_batch(x.shape[0])
        )
    )

    # the trajectory needs a traceable grad_fn only for the handwritten run; check it first
    traced = is_traceable(grad_fn, groups[0])
    t0 = time.perf_counter()
    bounds, ckpts, training = compare_training(
        grad_name if grad_name in GRAD_CHOICES else grad_fn, grad_name, traced, params0, x, y,
        spec=spec, steps=steps, lr=float(learning_rate), checkpoints=checkpoints,
        progress=progress,
    )  # fmt: skip
    timing["training_s"] = time.perf_counter() - t0
    bounds, ckpts, pre_notes = finite_checkpoints(bounds, ckpts, x, y, spec=spec)
    groups.append(
        stack_points("trajectory", [(p, x, y) for p in ckpts], [f"step {b}" for b in bounds])
    )
    groups = merge_same_shapes(groups)

    names = jaxbp.ParamNames(sizes)  # written when read: a wide network has millions
    weights, notes, per_call, phases, leaf_entries, fd_points = compare_groups(
        grad_fn, _reference_grad_fn(spec), _loss_fn(spec), groups, traced=traced, names=names,
        tol=tol, ref_dtype=ref_dtype, fd=fd, fd_max=fd_max,
        candidates=lambda: missing_derivative_grads(spec, groups, sizes),
        saturation=saturation_fn(spec, groups, sizes), progress=progress,
        mesh=mesh, memory=memory, reference=reference,
        leaf_names=[f"layer {l} {w}" for l in range(1, len(sizes)) for w in ("W", "b")],
    )  # fmt: skip
    timing.update(phases)
    notes = ([crowded] if crowded else []) + pre_notes + notes
    if not traced:
        notes.append("training with the handwritten gradients needs a traceable grad_fn: skipped")

    t0 = time.perf_counter()
    factors: list[dict] = []
    factor_notes: list[str] = []
    if factor_kind == "seed" or (callable(factor_kind) and sizes == (2, 2, 1)):
        say(progress, "auditing the note's chain factors")
        fn = jaxbp.seed_factors if factor_kind == "seed" else factor_kind
        with jax.enable_x64(True):
            factors, factor_notes = seed_factor_audit(
                fn, groups, ref_dtype=ref_dtype, tol=tol, mesh=mesh, memory=memory
            )
    elif factor_kind == "delta":
        say(progress, "auditing each layer's delta dE/dz")
        with jax.enable_x64(True):
            factors, factor_notes = delta_factors(
                spec, groups, ref_dtype=ref_dtype, tol=tol, mesh=mesh, memory=memory
            )
    timing["factors_s"] = time.perf_counter() - t0
    notes += factor_notes
    first_bad = next((f["name"] for f in factors if f["status"] == "fail"), None)

    config = dict(
        grad=grad_name,
        sizes=list(sizes),
        activation=act,
        loss=loss_name,
        output_activation=out_act,
        points=points,
        seed=seed if key is None else None,
        key=None if key is None else np.asarray(jax.random.key_data(key)).tolist(),
        dtype=dt.name,
        steps=steps,
        learning_rate=float(learning_rate),
        checkpoints=checkpoints,
        data=data_name or ("xor" if data is None else "user data"),
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
    )
    timing["total_s"] = time.perf_counter() - t_start
    passed = all(column(weights, "passed")) and all(f["passed"] for f in factors)
    return AuditResult(
        passed=passed,
        config=config,
        tolerance=tolerance_dict(tol),
        points=dict(
            total=sum(g.size for g in groups),
            seed_example=sum(g.sources.count("seed_example") for g in groups),
            random=points,
            trajectory=len(ckpts),
            traced=traced,
        ),
        weights=weights,
        factors=factors,
        first_failing_factor=first_bad,
        notes=notes,
        training=training,
        timing=timing,
    )
