"""The audit: handwritten gradients against ``jax.grad``, at many points, weight by weight.

Two entry points:

- :func:`audit_network` audits a jaxbp MLP: the seed's formulas, the general closed form or
  a user's ``grad_fn``, at the seed's worked example, ``points`` random draws and the
  training trajectory; it also audits the chain factors (or layer deltas) and compares
  training with both gradients.
- :func:`check_gradients` audits any ``grad_fn`` against ``jax.grad`` of any scalar
  ``loss_fn`` on any params pytree.
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
from audit.budget import clear_if_crowded, default_budget, memory_problem
from audit.compare import Tolerance, default_tolerance, unjudged_note
from audit.diagnose import diagnose
from audit.factors import delta_factors, seed_factor_audit
from audit.finite_diff import finite_differences, finite_differences_ahead
from audit.gradients import (
    evaluate,
    is_traceable,
    point_shapes,
    runs_in,
    second_look,
)
from audit.layout import layout_of
from audit.mistakes import missing_derivative_grads
from audit.points import (
    PointGroup,
    joined_labels,
    merge_same_shapes,
    numbered,
    random_batch,
    random_points,
    stack_points,
)
from audit.result import AuditResult, json_number
from audit.saturation import saturation_fn
from audit.tiers import compile_ahead, tiered
from audit.training import compare_training, finite_checkpoints
from jaxbp.checks import check_dtype, check_int, check_key, check_seed, check_sizes
from jaxbp.losses import OutputSpec, resolve_output
from jaxbp.network import mean_loss
from jaxbp.seed import check_seed_choices
from jaxbp.sharding import data_size
from jaxbp.train import GRADS

__all__ = ["GRAD_CHOICES", "RULE", "audit_network", "check_gradients"]

# jaxbp.fit's grads but "autodiff": jax.grad audited against itself would check nothing
GRAD_CHOICES = tuple(g for g in GRADS if g != "autodiff")
DIAGNOSE_POINTS = 512  # points the diagnosis looks at, at most
DIAGNOSE_BYTES = 64  # per weight and point it looks at: both values and the diagnosis's work
# finite differences agree with jax.grad within this relative distance plus their own
# estimated error (roundoff and truncation)
FD_AGREE = 1e-4


# The comparison rule in words, as every report states it (the numbers sit beside it).
RULE = (
    "an element passes when both values are finite and abs_err <= allowed, with allowed = "
    "max(rtol * max(|m|, |r|, floor * max|r| of the same tensor at the same point), atol, "
    "noise * roundoff of jax.grad in the audited dtype); score = abs_err / allowed. One "
    "that fails in a dtype narrower than float64 passes as PASS* when the handwritten "
    "function agrees with jax.grad in float64 there (rounding, not a wrong formula); where "
    "jax.grad is not finite the point is not judged. Each weight is shown at its worst "
    "point (a failure, else a PASS*, else the largest score)"
)


@functools.lru_cache(maxsize=64)
def _reference_grad_fn(spec: OutputSpec) -> Callable:
    def grad_fn(params, x, y):
        return jax.grad(mean_loss)(params, x, y, spec)

    return grad_fn


@functools.lru_cache(maxsize=64)
def _loss_fn(spec: OutputSpec) -> Callable:
    return functools.partial(mean_loss, spec=spec)


@functools.lru_cache(maxsize=64)
def _autodiff_of(loss_fn: Callable) -> Callable:
    """``jax.grad(loss_fn)``, one object per loss so repeated audits reuse the compiled code."""
    return jax.grad(loss_fn)


def _say(progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _select_fd(worst, fd_max: int) -> np.ndarray:
    score = np.nan_to_num(np.asarray(worst.score, dtype=np.float64), nan=np.inf)
    return np.sort(np.argsort(-score, kind="stable")[:fd_max])


def _compare_groups(
    grad_fn: Callable,
    ref_grad_fn: Callable,
    loss_fn: Callable,
    groups: list[PointGroup],
    *,
    traced: bool,
    names: Sequence[str],
    tol: Tolerance,
    ref_dtype,
    fd: bool,
    fd_max: int,
    candidates: Callable[[], dict] | None,
    saturation: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
    progress,
    timing: dict,
    mesh: jax.sharding.Mesh | None = None,
    memory: int | None = None,
) -> tuple[list[dict], list[str], int]:
    """The per-weight part shared by both entry points: weights, notes, and the most points
    one compiled call took.

    ``traced`` is :func:`audit.gradients.is_traceable` of ``grad_fn``, found by the caller.
    """
    notes: list[str] = []
    t0 = time.perf_counter()
    if not traced:
        notes.append(
            f"{getattr(grad_fn, '__name__', 'grad_fn')} cannot be traced by JAX (it converts "
            "arrays to NumPy or branches on values); it was called point by point, which is slower"
        )
    first = (
        point_shapes(groups[0])
        if traced
        else jax.tree.map(lambda a: a[0], (groups[0].params, groups[0].x, groups[0].y))
    )
    layout = layout_of(first[0])
    dt = jax.tree.leaves(first[0])[0].dtype
    with jax.enable_x64(True):
        look = second_look(dt, ref_dtype, runs_in(grad_fn, first, ref_dtype))
    if look == "spread":
        notes.append(_spread_note(grad_fn, dt, ref_dtype))
    n_points = sum(g.size for g in groups)
    fd_compiled = None
    if fd and len(groups) == 1:  # the pairs' count is known: compile while comparing
        with jax.enable_x64(True):
            fd_compiled = finite_differences_ahead(
                loss_fn, groups[0], min(fd_max, len(names)), dtype=ref_dtype
            )
    _say(progress, f"comparing {len(names)} weights at {n_points} points")
    ev = evaluate(grad_fn, ref_grad_fn, groups, traced=traced, ref_dtype=ref_dtype, tol=tol,
                  layout=layout, look=look, mesh=mesh, memory=memory)  # fmt: skip
    worst = jax.tree.map(np.asarray, ev.worst)
    timing["compare_s"] = time.perf_counter() - t0
    if not ev.nonzero:
        raise ValueError(
            f"jax.grad of the loss is exactly 0 for every parameter at all {n_points} points: "
            "the loss does not depend on the parameters there (a constant loss, a softmax over "
            "a single output, an empty batch), so a gradient returning zeros would pass and "
            "nothing can be checked; audit a loss that varies with the parameters"
        )
    labels = joined_labels([g.labels for g in groups])
    point_source = [src for g in groups for src in g.sources]
    failed = worst.n_failed > 0
    unjudged = unjudged_note(ev.unjudged_rows, n_points, ev.first_unjudged, labels, names)
    if unjudged:
        notes.append(unjudged)

    fd_values = np.full(len(names), np.nan)
    if fd:
        t0 = time.perf_counter()
        sel = _select_fd(worst, fd_max)
        _say(progress, f"finite differences for {len(sel)} weights")
        if fd_compiled is not None:
            fd_compiled.result()
        with jax.enable_x64(True):
            fd_values[sel], fd_noise = finite_differences(
                loss_fn, groups, sel, worst.index[sel], dtype=ref_dtype
            )
        if len(sel) < len(names):
            notes.append(
                f"finite differences were computed for the {len(sel)} worst weights of "
                f"{len(names)} (fd_max={fd_max}); the others show none"
            )
        ref = worst.reference[sel].astype(np.float64)
        gap = np.abs(fd_values[sel] - ref)
        off = gap > FD_AGREE * np.abs(ref) + fd_noise
        if off.any():
            bad = [names[i] for i in sel[off]][:8]
            notes.append(
                f"finite differences disagree with jax.grad for {bad} beyond their own "
                "estimated error: the loss may have a kink there (such as relu at 0); the "
                "verdict uses jax.grad"
            )
        timing["finite_diff_s"] = time.perf_counter() - t0

    hints: dict[int, str] = {}
    fail_idx = np.flatnonzero(failed)
    if fail_idx.size:
        t0 = time.perf_counter()
        # at most DIAGNOSE_POINTS points (fewer where their rows would not fit the memory
        # budget): every failing weight's worst point, then the first
        # ones, so a failure seen only late in the trajectory is still there to be named
        room = (default_budget() if memory is None else memory) // (DIAGNOSE_BYTES * len(names))
        most = int(max(1, min(DIAGNOSE_POINTS, room)))
        worst_pts = np.unique(worst.index[fail_idx])[:most]
        rest = np.setdiff1d(np.arange(n_points), worst_pts)[: most - len(worst_pts)]
        rows = np.sort(np.concatenate([worst_pts, rest]))
        batch = np.concatenate([np.full(g.size, g.batch) for g in groups])[rows]
        cands = {
            k: (np.asarray(v, np.float64)[rows], texts)
            for k, (v, texts) in (candidates() if candidates else {}).items()
        }
        manual_at, reference_at, failed_at = ev.rows(rows)
        hints = diagnose(
            fail_idx,
            np.asarray(manual_at, dtype=np.float64),
            np.asarray(reference_at, dtype=np.float64),
            names=names,
            leaf_of=layout.segments,
            leaf_shapes=layout.shapes,
            leaf_offsets=layout.offsets,
            batch=batch,
            labels=[labels[i] for i in rows],
            floor=tol.floor,
            rtol=max(10 * tol.rtol, 1e-6),
            candidates=cands,
            failed_at=failed_at,
        )
        timing["diagnose_s"] = time.perf_counter() - t0
    saturated = (
        saturation(np.arange(len(names)), worst.index) if saturation else np.zeros(len(names), bool)
    )
    if (saturated & failed).any():
        notes.append(
            "some failing weights feed units that are saturated at their worst point "
            "(f'(z) near 0), where relative error means little: "
            f"{[names[i] for i in np.flatnonzero(saturated & failed)][:8]}"
        )

    weights = _weight_entries(
        worst, names, dt, fd_values=fd_values, hints=hints, saturated=saturated,
        labels=labels, point_source=point_source,
    )  # fmt: skip
    return weights, notes, ev.points_per_call


def _json_numbers(a: np.ndarray) -> list:
    """``a`` as a list of JSON-safe numbers (NaN/Inf as strings), converted in one pass."""
    a = np.asarray(a, dtype=np.float64)
    out = a.tolist()
    for i in np.flatnonzero(~np.isfinite(a)):
        out[i] = json_number(a[i])
    return out


def _weight_entries(
    worst, names, dt, *, fd_values, hints, saturated, labels, point_source
) -> list[dict]:
    """One entry per weight, built column by column: a network of millions of weights takes
    seconds, not minutes. Each verdict is :meth:`audit.compare.Worst.verdict_at`'s."""
    status = np.select(
        [worst.n_failed > 0, ~np.isfinite(worst.reference), worst.n_flagged > 0],
        ["fail", "not_judged", "precision"],
        "pass",
    ).tolist()
    index = np.asarray(worst.index).tolist()
    fd = _json_numbers(fd_values)
    for i in np.flatnonzero(np.isnan(fd_values)):
        fd[i] = None
    cols = zip(
        names, _json_numbers(worst.manual), _json_numbers(worst.reference),
        _json_numbers(worst.abs_err), _json_numbers(worst.rel_err),
        _json_numbers(worst.allowed), _json_numbers(worst.score), fd, status,
        np.asarray(worst.n_unjudged).tolist(), np.asarray(saturated, bool).tolist(), index,
        strict=True,
    )  # fmt: skip
    seen: dict[int, dict] = {}

    def at(k: int) -> dict:
        if k not in seen:
            seen[k] = dict(index=k, source=point_source[k], label=labels[k])
        return dict(seen[k])

    weights = [
        dict(
            name=name, manual=m, reference=r, abs_err=ae, rel_err=re, allowed_err=al, score=sc,
            finite_diff=f, passed=st in ("pass", "precision"), status=st, precision=None,
            not_judgeable=u, hint=None, saturated=sat, worst_point=at(k),
        )
        for name, m, r, ae, re, al, sc, f, st, u, sat, k in cols
    ]  # fmt: skip
    for i in set(hints) | {i for i, st in enumerate(status) if st == "precision"}:
        if status[i] == "precision":
            cause = "cancellation in 1 - A near saturation" if saturated[i] else "rounding"
            precision = worst.verdict_at(i, dt, cause)["precision"]
            weights[i].update(precision=precision, hint=precision["text"])
        else:
            weights[i]["hint"] = hints[i]
    return weights


def _spread_note(grad_fn: Callable, dtype, ref_dtype) -> str:
    """Says, never silently, that a failing element's tolerance may be widened."""
    who = getattr(grad_fn, "__name__", "grad_fn")
    wide, own = jnp.dtype(ref_dtype).name, jnp.dtype(dtype).name
    return (
        f"{who} does not compute in {wide} when given {wide} inputs (it casts to a dtype of "
        f"its own, or fails): where a {own} value fails, rounding cannot be told from a wrong "
        f"formula by evaluating it again in {wide}, so its tolerance is widened to noise x "
        "its measured spread under one-ulp nudges of the inputs, and such a pass is flagged; "
        "keep the function dtype-generic for the sharper rule"
    )


def _environment(mesh: jax.sharding.Mesh | None) -> dict:
    """JAX's version and backend, and the devices the audit ran on."""
    used = [jax.devices()[0]] if mesh is None else list(mesh.devices.flat)
    return dict(
        jax_version=jax.__version__,
        backend=jax.default_backend(),
        devices=[str(d) for d in used],
        mesh={"data": len(used)},
    )


def _tolerance_dict(tol: Tolerance) -> dict:
    return dict(rtol=tol.rtol, atol=tol.atol, floor=tol.floor, noise=tol.noise, rule=RULE)


def _resolve_grad(grad, sizes, spec, factors_fn):
    """(grad_fn, its name, factor auditor or None)."""
    if isinstance(grad, str):
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
        if not jnp.issubdtype(a.dtype, jnp.floating) and not jnp.issubdtype(a.dtype, jnp.integer):
            raise TypeError(f"data {what} have dtype {a.dtype}, expected numbers")
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


def _full_precision(fn):
    """Run ``fn`` with float32 matrix products at full precision.

    GPUs and TPUs multiply float32 matrices in reduced precision by default (TF32, bf16
    passes); their 1e-3 relative errors would read as wrong gradients.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapper


@_full_precision
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
      data: ``(x: (n, n0), y: (n, nL))``; default the XOR truth table.
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

    names = jaxbp.param_names(sizes)
    weights, notes, per_call = _compare_groups(
        grad_fn, _reference_grad_fn(spec), _loss_fn(spec), groups, traced=traced, names=names,
        tol=tol, ref_dtype=ref_dtype, fd=fd, fd_max=fd_max,
        candidates=lambda: missing_derivative_grads(spec, groups, sizes),
        saturation=saturation_fn(spec, groups, sizes), progress=progress, timing=timing,
        mesh=mesh, memory=memory,
    )  # fmt: skip
    notes = ([crowded] if crowded else []) + pre_notes + notes
    if not traced:
        notes.append("training with the handwritten gradients needs a traceable grad_fn: skipped")

    t0 = time.perf_counter()
    factors: list[dict] = []
    factor_notes: list[str] = []
    if factor_kind == "seed" or (callable(factor_kind) and sizes == (2, 2, 1)):
        _say(progress, "auditing the note's chain factors")
        fn = jaxbp.seed_factors if factor_kind == "seed" else factor_kind
        with jax.enable_x64(True):
            factors, factor_notes = seed_factor_audit(
                fn, groups, ref_dtype=ref_dtype, tol=tol, mesh=mesh, memory=memory
            )
    elif factor_kind == "delta":
        _say(progress, "auditing each layer's delta dE/dz")
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
        rtol=tol.rtol,
        atol=tol.atol,
        fd=fd,
        fd_max=fd_max,
        reference_dtype=jnp.dtype(ref_dtype).name,
        memory=memory,
        points_per_call=per_call,
        **_environment(mesh),
    )
    timing["total_s"] = time.perf_counter() - t_start
    passed = all(w["passed"] for w in weights) and all(f["passed"] for f in factors)
    return AuditResult(
        passed=passed,
        config=config,
        tolerance=_tolerance_dict(tol),
        points=dict(
            total=sum(g.size for g in groups),
            seed_example=sum(src == "seed_example" for g in groups for src in g.sources),
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


def _rms(a: jax.Array) -> jax.Array:
    """Root mean square of a leaf, or 1 for an all-zero leaf."""
    return jnp.where(jnp.any(a != 0), jnp.sqrt(jnp.mean(a * a)), 1).astype(a.dtype)


# random draws run 13x slower quickly compiled (4,095 points of a 2-2-1 network: 15 ms
# against 1.1 ms): the quick form only for a handful of points
@tiered(static_argnames=("points",), quick_work=1 << 11)
def _perturbed(params, key, spread, *, points: int):
    """``points + 1`` stacked params: the given point, then ``points`` perturbations of it.

    Every leaf gets ``spread * rms(leaf) * normal`` noise, all drawn in one call with the
    RBG generator seeded from ``key``: the same points for the same key, and a program that
    compiles in a fraction of threefry's time (which dominated the first call).
    """
    leaves, treedef = jax.tree.flatten(params)
    sizes = [a.size for a in leaves]
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    data = jax.random.key_data(key) if typed else key
    rbg = jax.random.wrap_key_data(jnp.concatenate([data, ~data]).astype(jnp.uint32), impl="rbg")
    noise = jax.random.normal(rbg, (points, sum(sizes)), leaves[0].dtype)
    out, start = [], 0
    for a, n in zip(leaves, sizes, strict=True):
        step = spread * _rms(a) * noise[:, start : start + n].reshape(points, *a.shape)
        out.append(jnp.concatenate([a[None], a[None] + step]))
        start += n
    return jax.tree.unflatten(treedef, out)


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


def _tree_names(params) -> list[str]:
    """``"['w'][0,1]"``: each scalar's leaf path and index, in flatten order, row-major."""
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        base = jax.tree_util.keystr(path)
        shape = np.shape(leaf)
        if shape == ():
            names.append(base)
        else:
            digits = [[str(i) for i in range(d)] for d in shape]
            names += [f"{base}[{','.join(ix)}]" for ix in itertools.product(*digits)]
    return names


def _check_loss(loss_fn: Callable, params, x, y) -> None:
    """``loss_fn`` at the given point: a batch with examples, a finite float scalar."""
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
        out = jax.eval_shape(loss_fn, params, x, y)
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
    value = float(jax.jit(loss_fn)(params, x, y))  # one program, not one per operation
    if not np.isfinite(value):
        raise ValueError(
            f"{who}(params, x, y) is {value} at the given point, expected a finite loss: "
            "jax.grad there would judge nothing"
        )


@_full_precision
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
    points = check_int(points, "points", 0)
    memory = check_int(memory, "memory", 1, none_ok=True)
    if mesh is not None:
        data_size(mesh)
    if points and key is None:
        raise ValueError("points > 0 needs key=jax.random.key(seed) for the perturbations")
    params = jax.tree.map(_on_device, params)
    x, y = jax.tree.map(_on_device, x), jax.tree.map(_on_device, y)
    crowded = clear_if_crowded()
    # the perturbation program compiles while the loss is checked (XLA lets go of Python's lock)
    # the tier depends on the size alone, so the same key and points draw the same bits
    perturbed = _perturbed.pick(points * sum(int(np.size(a)) for a in leaves))
    drawing = compile_ahead(perturbed, params, key, spread, points=points) if points else None
    _check_loss(loss_fn, params, x, y)
    all_names = list(names) if names is not None else _tree_names(params)
    n_params = sum(int(np.size(a)) for a in leaves)
    if len(all_names) != n_params:
        raise ValueError(
            f"names has {len(all_names)} entries, expected one per scalar parameter ({n_params})"
        )
    tol = default_tolerance(dt, rtol, atol)
    ref_dtype = jnp.float64  # the reference side runs with 64-bit types on, always

    n = points + 1
    if drawing is not None:
        drawing.result()
    stacked = perturbed(params, key, spread, points=points) if points else _stacked(params)

    def repeated(a):  # the same batch at every point: a view on the host, copied only where a
        return np.broadcast_to(np.asarray(a), (n, *a.shape))  # compiled call takes it

    group = PointGroup(
        ("random",) * n,
        stacked,
        jax.tree.map(repeated, x),
        jax.tree.map(repeated, y),
        numbered("perturbed point", n, first=["given point"]),
    )

    traced = is_traceable(grad_fn, group)
    weights, notes, per_call = _compare_groups(
        grad_fn, _autodiff_of(loss_fn), loss_fn, [group], traced=traced, names=all_names,
        tol=tol, ref_dtype=ref_dtype, fd=fd, fd_max=fd_max, candidates=None, saturation=None,
        progress=progress, timing=timing, mesh=mesh, memory=memory,
    )  # fmt: skip
    timing["total_s"] = time.perf_counter() - t_start
    return AuditResult(
        passed=all(w["passed"] for w in weights),
        config=dict(
            grad=getattr(grad_fn, "__name__", "grad_fn"),
            loss=getattr(loss_fn, "__name__", "loss_fn"),
            points=points,
            dtype=jnp.dtype(dt).name,
            rtol=tol.rtol,
            atol=tol.atol,
            fd=fd,
            fd_max=fd_max,
            reference_dtype=jnp.dtype(ref_dtype).name,
            memory=memory,
            points_per_call=per_call,
            **_environment(mesh),
        ),
        tolerance=_tolerance_dict(tol),
        points=dict(total=group.size, seed_example=0, random=points, trajectory=0, traced=traced),
        weights=weights,
        factors=[],
        first_failing_factor=None,
        notes=([crowded] if crowded else []) + notes,
        training=None,
        timing=timing,
    )
