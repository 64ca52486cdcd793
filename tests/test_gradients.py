"""Evaluation in two passes judges exactly as the full rule applied to every point.

With rtol 2e-6 and no roundoff allowance, far below float32's reach, the note's correct
float32 gradients fail the plain rule at many points and pass on the second look (flagged);
a halved w11 fails. Both go through the second pass.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from audit.compare import Summary, Tolerance
from audit.gradients import audit_program, in_two_passes
from audit.layout import layout_of
from audit.points import random_points


def _halved_w11(params, x, y):
    g = jaxbp.seed_grads(params, x, y)
    return [{"W": g[0]["W"].at[0, 0].multiply(0.5), "b": g[0]["b"]}, g[1]]


def _strict_audit(grad_fn, n: int, *, seed: int):
    """``n`` random float32 2-2-1 points, the audit program at rtol 2e-6 with no roundoff
    allowance, and its input tree."""
    group = random_points((2, 2, 1), n, key=jax.random.key(seed), loss="mse", dtype="float32")
    layout = layout_of(jax.tree.map(lambda a: a[0], group.params))
    program = audit_program(
        grad_fn, jaxbp.autodiff(), ref_dtype="float64", shapes=layout.shapes,
        tol=Tolerance(2e-6, 0.0, 1e-2, noise=0.0), look="recheck", traced=True, work=1 << 62,
    )  # fmt: skip
    return group, program, (None, None, group.params, group.x, group.y)


@pytest.mark.parametrize("narrow", [False, True], ids=["whole", "narrow_first"])
@pytest.mark.parametrize("grad_fn", [jaxbp.seed_grads, _halved_w11], ids=["right", "w11_halved"])
def test_two_passes_equal_one_full_pass(grad_fn, narrow):
    group, program, tree = _strict_audit(grad_fn, 2000, seed=16)
    with jax.enable_x64(True):
        two = in_two_passes(program, tree, group.size, 1, narrow=narrow)
        full, _ = program(tree, group.size, mode="second")  # the full rule at every point
    full = Summary(*(np.asarray(f) for f in full))
    # the verdict of every element is the full rule's; counts agree up to points on the very
    # edge of the rule, where the second pass's own evaluation rounds the other way
    np.testing.assert_array_equal(two.rank, full.rank)
    np.testing.assert_array_equal(two.n_failed > 0, full.n_failed > 0)
    for field in ("n_failed", "n_flagged", "n_unjudged"):
        gap = np.abs(getattr(two, field) - getattr(full, field))
        assert gap.max() <= 0.005 * group.size, (field, gap)
    # a failing element is shown at the same point with the same numbers; a plain pass's
    # score skips the roundoff allowance, so it can only read higher
    bad = two.rank == 3
    np.testing.assert_array_equal(two.index[bad], full.index[bad])
    np.testing.assert_allclose(two.score[bad], full.score[bad], rtol=1e-5)
    plain = two.rank == 1
    assert np.all(two.score[plain] >= full.score[plain] * (1 - 1e-5))
    assert (two.n_flagged > 0).sum() >= 3  # the second look was really taken
    if grad_fn is _halved_w11:
        assert two.n_failed[0] > 0 and two.n_failed[1:].sum() == 0


@pytest.mark.parametrize("grad_fn", [jaxbp.seed_grads, _halved_w11], ids=["right", "w11_halved"])
def test_points_in_chunks_judge_as_one_call(grad_fn):
    # 1000 points in calls of 64 (the last one padded): the same summary as one call, row
    # indices counted over all points
    group, program, tree = _strict_audit(grad_fn, 1000, seed=5)
    with jax.enable_x64(True):
        one = in_two_passes(program, tree, group.size, 1)
        chunked = in_two_passes(program, tree, group.size, 1, chunk=64)
    np.testing.assert_array_equal(chunked.rank, one.rank)
    # a program of another size may round a float32 value the other way (vector and scalar
    # loops): at this rtol, far below float32's reach, a few points sit on the edge
    for field in ("n_failed", "n_flagged", "n_unjudged"):
        gap = np.abs(getattr(chunked, field) - getattr(one, field))
        assert gap.max() <= 0.02 * group.size, (field, gap)
    # a failing element's worst score is the same (its point may be another one of equal
    # score: halving w11 gives every point the same relative error)
    bad = one.rank == 3
    np.testing.assert_allclose(chunked.score[bad], one.score[bad], rtol=1e-5)
    assert chunked.index.max() >= 64  # the worst points come from later calls too
    assert (one.rank >= 2).all()  # every element failed the plain rule somewhere


def _rows_of(tol):
    """``rows_fn`` for :func:`audit.gradients.blocked` over a tree ``(m, r)`` of
    ``(points, rows_per_point * 3)`` values, reshaped to 3 elements a row."""
    from audit.compare import compare

    segments = np.array([0, 0, 1])

    def rows(tree):
        m, r = (a.reshape(-1, 3) for a in tree)
        return m, r, compare(m, r, None, segments, 2, tol)

    return rows


def _made_up_points(n, rows_per_point):
    """Hand-made values: ties in score, failures, a NaN handwritten value, a non-finite
    reference (not judged) and exact agreement, spread over the points."""
    rng = np.random.default_rng(3)
    r = rng.normal(size=(n, rows_per_point * 3))
    m = r * (1 + 1e-4 * rng.integers(-3, 4, size=r.shape))  # repeated errors: ties
    m[5, 1] = r[5, 1] * 1.5  # fails
    m[n - 2, 2] = np.nan  # fails, NaN never passes
    r[7, 0] = np.inf  # not judged there
    r[n - 1, :] = 0.0
    m[n - 1, :] = 0.0  # exact
    return m, r


@pytest.mark.parametrize("rows_per_point", [1, 2])
@pytest.mark.parametrize("block", [1, 3, 4, 64])
def test_a_scan_over_blocks_summarizes_as_one_step(rows_per_point, block):
    from audit.gradients import blocked

    n = 23
    tol = Tolerance(1e-3, 0.0, 1e-2, noise=0.0)
    tree = _made_up_points(n, rows_per_point)
    rows = _rows_of(tol)
    valid = (n - 1) * rows_per_point  # the last point pads: it counts nowhere
    with jax.enable_x64(True):
        for mode in ("first", "second"):
            run = jax.jit(
                lambda t, v, b, mode=mode: blocked(
                    rows, t, v, mode=mode, rows_per_point=rows_per_point, block=b
                ),
                static_argnums=2,
            )
            one, bad_one = run(tree, valid, None)
            many, bad_many = run(tree, valid, block)
            for name, a, b in zip(Summary._fields, one, many, strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
            if mode == "first":
                np.testing.assert_array_equal(np.asarray(bad_one), np.asarray(bad_many))
                assert np.flatnonzero(np.asarray(bad_many)).tolist() == [5, n - 2]
    summary = Summary(*(np.asarray(f) for f in one))
    assert summary.n_failed.sum() > 0 and summary.unjudged_rows == 1
    assert summary.first_unjudged[0] == 7 * rows_per_point


@pytest.mark.parametrize("segments", [[0, 0, 1], [1, 0, 1]], ids=["runs", "interleaved"])
def test_the_rule_judged_on_the_host_summarizes_as_traced(segments):
    # the same values through the rule in NumPy (a small call's path) and traced in a
    # compiled program: every field of the summary identical, in both passes, with every
    # clause of the rule in play (roundoff, the float64 recheck and its roundoff, spread)
    from audit.compare import DEFAULT_TOLERANCES
    from audit.gradients import RawRows, finish, host_judged, judge

    segments = np.array(segments)
    n = 23
    m, r = _made_up_points(n, 1)
    rng = np.random.default_rng(4)
    raw = RawRows(
        m.astype(np.float32),  # the audited dtype, promoted to the reference's by the rule
        r,
        np.abs(r) * 10.0 ** rng.integers(-9, -3, size=r.shape),
        m * (1 + 1e-9 * rng.integers(-3, 4, size=r.shape)),
        np.abs(r) * 1e-12,
        np.abs(m) * 1e-4,
    )
    tol = DEFAULT_TOLERANCES["float32"]
    valid = n - 1
    with jax.enable_x64(True):
        for mode in ("first", "second"):

            def traced(tree, v, mode=mode):
                return finish(judge(RawRows(*tree), segments, tol), v, mode=mode,
                              rows_per_point=1)  # fmt: skip

            on_device, bad_device = jax.jit(traced)(tuple(raw), valid)
            on_host, bad_host = host_judged(lambda t, v, mode: t, segments, tol, 1)(
                raw, valid, mode=mode
            )
            for name, a, b in zip(Summary._fields, on_device, on_host, strict=True):
                assert isinstance(b, np.ndarray | np.generic), name  # nothing traced
                np.testing.assert_array_equal(np.asarray(a), b, err_msg=name)
            if mode == "first":
                np.testing.assert_array_equal(np.asarray(bad_device), bad_host)
                assert bad_host.any()


@pytest.mark.parametrize("grad_fn", [jaxbp.seed_grads, _halved_w11], ids=["right", "w11_halved"])
def test_a_small_audit_judged_on_the_host_reads_as_one_judged_on_the_device(grad_fn, monkeypatch):
    import audit
    import audit.gradients

    params, x, y = jaxbp.seed_example()

    def loss_fn(p, x, y):
        return jaxbp.batch_loss(p, x, y, activation="sigmoid", loss="mse")

    def run():
        return audit.check_gradients(grad_fn, loss_fn, params, x, y, points=40,
                                     key=jax.random.key(2), fd=False)  # fmt: skip

    assert audit.gradients.on_host(41 * 9)  # this audit is small enough
    host = run()
    monkeypatch.setattr(audit.gradients, "HOST_VALUES", 0)
    assert not audit.gradients.on_host(41 * 9)  # the same audit now judged on the device
    device = run()
    assert host.passed == device.passed == (grad_fn is jaxbp.seed_grads)
    assert host.failed_weights == device.failed_weights
    for a, b in zip(host.weights, device.weights, strict=True):
        assert (a["name"], a["status"], a["hint"]) == (b["name"], b["status"], b["hint"])
        assert a["worst_point"] == b["worst_point"]
        np.testing.assert_allclose(a["abs_err"], b["abs_err"], rtol=1e-12, atol=0)


def _centred_loss(p, x, y):
    """``sum((x @ w + b - mean(x @ w + b))^2)``: ``b`` cancels, its gradient is 0 in exact
    arithmetic and cancellation residue on both sides."""
    z = x @ p["w"] + p["b"]
    return jnp.sum((z - jnp.mean(z)) ** 2)


def _centred_grads(p, x, y):
    """The handwritten gradient: ``dL/dz = 2 (z - mean z)`` (its mean term sums to 0), then
    ``dL/dw = x^T dL/dz`` and ``dL/db = sum(dL/dz)``, residue of a sum that is 0."""
    z = x @ p["w"] + p["b"]
    dz = 2 * (z - jnp.mean(z))
    return {"w": x.T @ dz, "b": jnp.sum(dz)}


def test_the_narrow_pass_leaves_the_whole_rule_only_to_points_that_need_it():
    # float32, no roundoff allowance in float32 (noise 0): db fails the plain rule at most
    # points (where both residues are not exactly 0), and the float64 second look then
    # compares two residues of about 1e-16, which only the float64 spread allowance can pass
    # at some points. The narrow pass leaves those points to the whole rule; what it passes,
    # it passes as the whole rule does.
    n = 300
    keys = jax.random.split(jax.random.key(7), 3)
    params = {
        "w": jax.random.normal(keys[0], (n, 4), jnp.float32),
        "b": jax.random.normal(keys[1], (n,), jnp.float32),
    }
    x = jnp.broadcast_to(jax.random.normal(keys[2], (6, 4), jnp.float32), (n, 6, 4))
    y = jnp.zeros((n, 6), jnp.float32)
    layout = layout_of(jax.tree.map(lambda a: a[0], params))
    with jax.enable_x64(True):
        program = audit_program(
            _centred_grads, jax.grad(_centred_loss), ref_dtype="float64", shapes=layout.shapes,
            tol=Tolerance(1e-3, 0.0, 1e-2, noise=0.0), look="recheck", traced=True, work=1 << 62,
        )  # fmt: skip
        seen = []

        def recorded(tree, valid, *, mode):
            seen.append((mode, valid))
            return program(tree, valid, mode=mode)

        tree = (None, None, params, x, y)
        staged = in_two_passes(recorded, tree, n, 1, narrow=True)
        modes = [m for m, _ in seen]
        direct = in_two_passes(program, tree, n, 1)
        full, _ = program(tree, n, mode="second")  # the whole rule at every point
    full = Summary(*(np.asarray(f) for f in full))
    assert modes == ["first", "narrow", "second"], seen
    assert seen[1][1] > n // 2, seen  # db fails the plain rule at most points
    assert 0 < seen[2][1] < seen[1][1], seen  # the widening was needed at some, not all
    b = layout.shapes.index(())
    assert staged.flag[b] == full.flag[b] == 1  # passed on the second look, as rounding
    for got in (staged, direct):
        np.testing.assert_array_equal(got.rank, full.rank)
        for field in ("n_failed", "n_flagged", "n_unjudged"):
            np.testing.assert_array_equal(getattr(got, field), getattr(full, field), field)


def _stub_summary(index: int, rank: int, score: float) -> Summary:
    """A :class:`Summary` of two elements, both at row ``index`` with ``rank`` and ``score``."""
    zero = np.zeros(2)
    return Summary(
        np.full(2, index, np.int32), np.full(2, rank, np.int8), zero, zero, zero, zero, zero,
        np.full(2, score), np.zeros(2, np.int8), *(np.zeros(2, np.int32),) * 3, np.bool_(True),
        np.int32(0), np.array([-1.0, 0.0, 0.0, 0.0]),
    )  # fmt: skip


def test_a_pass_that_counted_no_row_of_an_element_may_name_a_padding_row():
    # three points fail the plain and the narrow rule; the narrow call takes them padded to
    # four, and names the padding row for elements none of its rows counted (rank -1), as
    # an argmax over rows that all rank -1 may. The whole rule then judges all three.
    def program(tree, valid, *, mode):
        rows = np.asarray(tree).shape[0]
        if mode == "first":
            return _stub_summary(0, -1, 0.0), np.ones(rows, bool)
        if mode == "narrow":
            return _stub_summary(rows - 1, -1, 5.0), np.ones(rows, bool)
        return _stub_summary(1, 3, 2.0), None

    summary = in_two_passes(program, np.arange(3.0), 3, 1, narrow=True)
    assert summary.index.tolist() == [1, 1]
    assert summary.rank.tolist() == [3, 3]


def test_a_wide_networks_points_get_the_same_bits_whatever_points_come_with_them():
    # past BLOCK_VALUES parameters a point's gradient is computed alone (lax.map, not vmap),
    # so the first pass's step of several points and a second pass's one or two agree to
    # the bit, and a step of a few points is judged together
    import audit.gradients as gradients

    n_in, n_out, batch = 300, 240, 16
    assert n_in * n_out > gradients.BLOCK_VALUES
    assert gradients.block_points(n_in * n_out, 64) == gradients.WIDE_STEP_VALUES // (n_in * n_out)
    assert gradients.block_points(9, 64) is None  # a small network's 64 points: one step

    def grad_fn(p, x, y):
        return {"w": x.T @ (x @ p["w"] - y) / y.shape[0]}

    keys = jax.random.split(jax.random.key(0), 3)
    p = {"w": jax.random.normal(keys[0], (8, n_in, n_out), jnp.float32)}
    x = jax.random.normal(keys[1], (8, batch, n_in), jnp.float32)
    y = jax.random.normal(keys[2], (8, batch, n_out), jnp.float32)
    rows = jax.jit(gradients._flat_of(grad_fn))
    every = np.asarray(rows(p, x, y))
    for some in ([0], [3], [7], [2, 5]):
        idx = np.array(some)
        part = np.asarray(rows({"w": p["w"][idx]}, x[idx], y[idx]))
        np.testing.assert_array_equal(part, every[idx])
    want = np.einsum("bi,bo->io", np.asarray(x[4], np.float64),
                     np.asarray(x[4] @ p["w"][4] - y[4], np.float64)) / batch  # fmt: skip
    np.testing.assert_allclose(every[4], want.ravel(), rtol=1e-4, atol=1e-5)
