"""Tests for jaxbp.train: the compiled loop against hand-written updates and against itself."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp.train import compiled_loops

XOR_X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
XOR_Y = [[0.0], [1.0], [1.0], [0.0]]


def xor(dtype=jnp.float64):
    return jnp.asarray(XOR_X, dtype), jnp.asarray(XOR_Y, dtype)


def regression_data(n=12, n_in=3, n_out=2, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, n_in))), jnp.asarray(rng.uniform(size=(n, n_out)))


def assert_params_close(a, b, rtol, atol=0.0):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, u), v in zip(
        jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b), strict=True
    ):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def test_xor_is_learned_by_the_seed_network():
    # the documented run: init((2, 2, 1), key=jax.random.key(0), scale="normal"), 5000 steps of
    # the seed's formulas at learning rate 2.0; it reaches a loss of about 3.1e-4 (float32)
    x, y = xor(jnp.float32)
    p0 = jaxbp.init((2, 2, 1), key=jax.random.key(0), scale="normal")
    result = jaxbp.fit(p0, x, y, steps=5000, grad="seed", learning_rate=2.0)
    assert isinstance(result, jaxbp.FitResult)
    assert result.losses.shape == (5000,)
    assert result.losses.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(result.params))
    assert float(result.losses[-1]) < 5e-4
    assert float(result.losses[-1]) < float(result.losses[0]) / 100
    pred = np.asarray(jaxbp.forward(result.params, x))[:, 0]
    np.testing.assert_array_equal(pred > 0.5, [False, True, True, False])
    np.testing.assert_array_equal(np.round(pred), [0.0, 1.0, 1.0, 0.0])


def test_seed_closed_form_and_autodiff_follow_the_same_trajectory():
    x, y = xor()
    p0 = jaxbp.init((2, 2, 1), key=jax.random.key(0), dtype=jnp.float64, scale="normal")
    runs = {g: jaxbp.fit(p0, x, y, steps=300, grad=g, learning_rate=2.0) for g in jaxbp.GRADS}
    ref = runs["autodiff"]
    for g in ("seed", "closed_form"):
        np.testing.assert_allclose(runs[g].losses, ref.losses, rtol=1e-11, err_msg=g)
        assert_params_close(runs[g].params, ref.params, rtol=1e-11, atol=1e-13)
    assert float(ref.losses[-1]) < float(ref.losses[0])


def test_closed_form_and_autodiff_same_trajectory_deeper_net():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 3, 2), key=jax.random.key(1), dtype=jnp.float64)
    kw = dict(steps=200, learning_rate=0.5, activation="tanh", loss="softmax_ce")
    a = jaxbp.fit(p0, x, y, grad="closed_form", **kw)
    b = jaxbp.fit(p0, x, y, grad="autodiff", **kw)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-11)
    assert_params_close(a.params, b.params, rtol=1e-10, atol=1e-13)


STATIC = ("activation", "loss", "output_activation")
batch_loss = jax.jit(jaxbp.batch_loss, static_argnames=STATIC)
closed_form_grads = jax.jit(jaxbp.closed_form_grads, static_argnames=STATIC)


def hand_gd(params, x, y, lr, steps, **kw):
    """The note's update, written out: p <- p - lr * dE/dp."""
    losses = []
    for _ in range(steps):
        losses.append(float(batch_loss(params, x, y, **kw)))
        g = closed_form_grads(params, x, y, **kw)
        params = jax.tree.map(lambda p, g: p - lr * g, params, g)
    return params, np.array(losses)


def test_default_optimizer_is_plain_gradient_descent():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(2), dtype=jnp.float64)
    result = jaxbp.fit(p0, x, y, steps=4, learning_rate=0.3)
    params, losses = hand_gd(p0, x, y, 0.3, 4)
    np.testing.assert_allclose(result.losses, losses, rtol=1e-14)
    assert_params_close(result.params, params, rtol=1e-14)


def test_new_learning_rate_reuses_the_compiled_loop():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(2), dtype=jnp.float64)
    jaxbp.fit(p0, x, y, steps=4, learning_rate=0.1)
    before = compiled_loops()
    result = jaxbp.fit(p0, x, y, steps=4, learning_rate=0.7)
    assert compiled_loops() == before, "a new learning_rate compiled the loop again"
    # and the new rate is the one used
    params, losses = hand_gd(p0, x, y, 0.7, 4)
    np.testing.assert_allclose(result.losses, losses, rtol=1e-14)
    assert_params_close(result.params, params, rtol=1e-14)


def test_gradient_descent_helper_matches_the_default():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(2), dtype=jnp.float64)
    a = jaxbp.fit(p0, x, y, steps=4, optimizer=jaxbp.gradient_descent(0.3))
    b = jaxbp.fit(p0, x, y, steps=4, learning_rate=0.3)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-14)
    assert_params_close(a.params, b.params, rtol=1e-14)


def test_optax_adam_runs_and_matches_a_hand_loop():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(3), dtype=jnp.float64)
    opt = optax.adam(0.05)
    result = jaxbp.fit(p0, x, y, steps=5, optimizer=opt)
    params, state = p0, opt.init(p0)
    for _ in range(5):
        updates, state = opt.update(closed_form_grads(params, x, y), state, params)
        params = optax.apply_updates(params, updates)
    assert_params_close(result.params, params, rtol=1e-12, atol=1e-15)
    long = jaxbp.fit(p0, x, y, steps=100, optimizer=opt)
    assert float(long.losses[-1]) < float(long.losses[0])


def test_user_grad_fn():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(4), dtype=jnp.float64)

    def my_loss(params, x, y):  # written here, not jaxbp's
        a = jax.nn.sigmoid(x @ params[0]["W"].T + params[0]["b"][None, :])
        a = jax.nn.sigmoid(a @ params[1]["W"].T + params[1]["b"][None, :])
        return jnp.mean(0.5 * jnp.sum((a - y) ** 2, axis=1))

    def my_grad(params, x, y):
        return jax.grad(my_loss)(params, x, y)

    mine = jaxbp.fit(p0, x, y, steps=20, grad=my_grad, learning_rate=0.5)
    closed = jaxbp.fit(p0, x, y, steps=20, grad="closed_form", learning_rate=0.5)
    np.testing.assert_allclose(mine.losses, closed.losses, rtol=1e-12)
    assert_params_close(mine.params, closed.params, rtol=1e-12, atol=1e-15)


def test_chunks_give_the_same_losses_and_report_progress():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(5), dtype=jnp.float64)
    whole = jaxbp.fit(p0, x, y, steps=10, learning_rate=0.5)
    calls = []
    chunked = jaxbp.fit(
        p0, x, y, steps=10, learning_rate=0.5, chunk_size=4, on_chunk=lambda *a: calls.append(a)
    )
    np.testing.assert_array_equal(chunked.losses, whole.losses)
    assert_params_close(chunked.params, whole.params, rtol=0.0)
    assert [c[:2] for c in calls] == [(4, 10), (8, 10), (10, 10)]
    assert [c[2] for c in calls] == [float(chunked.losses[i]) for i in (3, 7, 9)]
    assert all(isinstance(c[2], float) for c in calls)


def test_minibatches_are_deterministic_per_key_and_chunk_independent():
    x, y = regression_data(n=12)
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(6), dtype=jnp.float64)
    kw = dict(steps=8, learning_rate=0.5, batch_size=4)
    a = jaxbp.fit(p0, x, y, key=jax.random.key(1), **kw)
    b = jaxbp.fit(p0, x, y, key=jax.random.key(1), **kw)
    c = jaxbp.fit(p0, x, y, key=jax.random.key(2), **kw)
    d = jaxbp.fit(p0, x, y, key=jax.random.key(1), chunk_size=4, **kw)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert_params_close(a.params, b.params, rtol=0.0)
    assert not np.array_equal(a.losses, c.losses)
    np.testing.assert_array_equal(a.losses, d.losses)
    full = jaxbp.fit(p0, x, y, steps=8, learning_rate=0.5)
    assert not np.array_equal(a.losses, full.losses)  # each step saw 4 of the 12 examples


def test_minibatch_epoch_covers_every_example_once():
    # with zero updates the params never move, so with batch_size 1 each epoch's losses
    # are the six single-example losses in some order (fit refuses learning_rate=0)
    x, y = regression_data(n=6)
    p0 = jaxbp.init((3, 2, 2), key=jax.random.key(7), dtype=jnp.float64)
    result = jaxbp.fit(
        p0, x, y, steps=12, optimizer=optax.set_to_zero(), batch_size=1, key=jax.random.key(3)
    )
    singles = sorted(float(batch_loss(p0, x[i : i + 1], y[i : i + 1])) for i in range(6))
    for epoch in range(2):
        got = sorted(np.asarray(result.losses[6 * epoch : 6 * epoch + 6]).tolist())
        np.testing.assert_allclose(got, singles, rtol=1e-14)
    assert not np.array_equal(result.losses[:6], result.losses[6:])  # reshuffled


def test_batch_size_equal_to_n_is_the_full_batch():
    x, y = regression_data(n=8)
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(8), dtype=jnp.float64)
    a = jaxbp.fit(p0, x, y, steps=5, batch_size=8, key=jax.random.key(0))
    b = jaxbp.fit(p0, x, y, steps=5)
    np.testing.assert_array_equal(a.losses, b.losses)


@pytest.mark.parametrize("grad", ["closed_form", "autodiff"])
def test_fit_returns_params_of_the_same_structure(grad):
    x, y = regression_data()
    p0 = jaxbp.init((3, 2), key=jax.random.key(9), dtype=jnp.float64)
    result = jaxbp.fit(p0, x, y, steps=2, grad=grad, activation="identity", loss="bce")
    assert jax.tree.structure(result.params) == jax.tree.structure(p0)
    assert [(p["W"].shape, p["b"].shape) for p in result.params] == [((2, 3), (2,))]


def test_a_resumed_run_equals_one_long_run():
    x = jax.random.normal(jax.random.key(0), (20, 3))
    y = jax.random.uniform(jax.random.key(1), (20, 2))
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(2), dtype=jnp.float64)
    opt = optax.adam(1e-2)
    common = dict(optimizer=opt, batch_size=5, key=jax.random.key(3))
    whole = jaxbp.fit(p0, x, y, steps=40, **common)
    a = jaxbp.fit(p0, x, y, steps=20, **common)
    b = jaxbp.fit(a.params, x, y, steps=20, opt_state=a.opt_state, start_step=20, **common)
    np.testing.assert_array_equal(whole.losses, jnp.concatenate([a.losses, b.losses]))
    for u, v in zip(jax.tree.leaves(whole.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="opt_state has structure"):
        jaxbp.fit(p0, x, y, steps=2, optimizer=optax.sgd(0.1), opt_state=a.opt_state)
    with pytest.raises(ValueError, match=r"start_step=-1, expected an int >= 0"):
        jaxbp.fit(p0, x, y, steps=2, start_step=-1)


def test_default_optimizer_state_is_the_one_optax_builds():
    # the state is built inside the compiled call; it must equal inject_hyperparams(sgd)'s own
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(10), dtype=jnp.float64)
    result = jaxbp.fit(p0, x, y, steps=7, learning_rate=0.3)
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.3)
    state = opt.init(p0)
    params = p0
    for _ in range(7):
        updates, state = opt.update(closed_form_grads(params, x, y), state, params)
        params = optax.apply_updates(params, updates)
    assert jax.tree.structure(result.opt_state) == jax.tree.structure(state)
    for u, v in zip(jax.tree.leaves(result.opt_state), jax.tree.leaves(state), strict=True):
        assert u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)
    assert_params_close(result.params, params, rtol=1e-14)


def test_int_and_float_learning_rates_share_the_compiled_loop():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(11), dtype=jnp.float64)
    a = jaxbp.fit(p0, x, y, steps=3, learning_rate=1.0)
    before = compiled_loops()
    b = jaxbp.fit(p0, x, y, steps=3, learning_rate=1)
    c = jaxbp.fit(p0, x, y, steps=3, learning_rate=np.float32(1.0))
    assert compiled_loops() == before
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.losses, c.losses)


def test_repeated_calls_compile_nothing_new():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(12), dtype=jnp.float64)
    params = p0
    for _ in range(2):
        params = jaxbp.fit(params, x, y, steps=3, grad="autodiff").params
    before = compiled_loops()
    for i in range(20):  # new params each time, as a resumed run passes them
        params = jaxbp.fit(params, x, y, steps=3, grad="autodiff", learning_rate=0.1 + i).params
    assert compiled_loops() == before


def test_data_is_checked_again_whenever_it_may_have_changed():
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(13), dtype=jnp.float64)
    jaxbp.fit(p0, x, y, steps=2)
    jaxbp.fit(p0, x, y, steps=2)  # the same arrays pass again
    bad = x.at[2, 1].set(jnp.nan)
    with pytest.raises(ValueError, match=r"x contains 1 NaN/Inf .*index \(2, 1\)"):
        jaxbp.fit(p0, bad, y, steps=2)
    # NumPy arrays change in place: checked on every call
    xn, yn = np.array(x), np.array(y)
    jaxbp.fit(p0, xn, yn, steps=2)
    yn[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"y contains 1 NaN/Inf .*index \(3, 0\)"):
        jaxbp.fit(p0, xn, yn, steps=2)
    # other params of another layout with the same data are checked too
    wide = jaxbp.init((3, 5, 2), key=jax.random.key(13), dtype=jnp.float64)
    jaxbp.fit(wide, x, y, steps=2)
    with pytest.raises(TypeError, match="params mix dtypes"):
        mixed = [dict(wide[0]), {"W": wide[1]["W"].astype(jnp.float32), "b": wide[1]["b"]}]
        jaxbp.fit(mixed, x, y, steps=2)


def test_fit_keeps_no_reference_to_the_data():
    import gc
    import weakref

    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(14), dtype=jnp.float64)
    jaxbp.fit(p0, x, y, steps=2)
    refs = weakref.ref(x), weakref.ref(y)
    del x, y
    gc.collect()
    assert refs[0]() is None and refs[1]() is None


def test_a_wrong_grad_fn_is_refused_on_every_call():
    # the check runs when the loop is traced; a refused trace is not cached
    x, y = regression_data()
    p0 = jaxbp.init((3, 4, 2), key=jax.random.key(15), dtype=jnp.float64)

    def transposed(params, x, y):
        g = jaxbp.closed_form_grads(params, x, y)
        return [{"W": g[0]["W"].T, "b": g[0]["b"]}, g[1]]

    for _ in range(2):
        with pytest.raises(ValueError, match=r"transposed returned gradients that do not match"):
            jaxbp.fit(p0, x, y, steps=2, grad=transposed)


def test_fit_leaves_its_arguments_unchanged():
    # resuming with another learning rate must not rewrite the caller's optimizer state
    x, y = jaxbp.truth_table("xor")
    p0 = jaxbp.init((2, 2, 1), key=jax.random.key(3), scale="normal")
    before = [np.asarray(a).copy() for a in jax.tree.leaves(p0)]
    r = jaxbp.fit(p0, x, y, steps=10, learning_rate=0.5)
    state = [np.asarray(a).copy() for a in jax.tree.leaves(r.opt_state)]
    s = jaxbp.fit(r.params, x, y, steps=10, learning_rate=3.0, opt_state=r.opt_state)
    assert float(r.opt_state.hyperparams["learning_rate"]) == 0.5
    assert float(s.opt_state.hyperparams["learning_rate"]) == 3.0
    for u, v in zip(state, jax.tree.leaves(r.opt_state), strict=True):
        np.testing.assert_array_equal(u, np.asarray(v))
    for u, v in zip(before, jax.tree.leaves(p0), strict=True):
        np.testing.assert_array_equal(u, np.asarray(v))
