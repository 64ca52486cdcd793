"""Tests for jaxbp.reference: the autodiff references against a loss written here.

The audit trusts these functions as ground truth, so they get the same independent check as
the closed forms: ``jax.grad`` of this file's own ``jnp`` forward and loss, in float64, to
rtol=1e-12 plus an atol of 1e-12 times the largest |value| of each leaf.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp

ACTS = ("sigmoid", "tanh", "relu", "identity")
OUT_ACT = {"bce": "sigmoid", "softmax_ce": "softmax"}
STATIC = ("activation", "loss", "output_activation")

REF_ACT = {
    "sigmoid": lambda z: 1 / (1 + jnp.exp(-z)),
    "tanh": jnp.tanh,
    "relu": lambda z: jnp.where(z > 0, z, 0.0),
    "identity": lambda z: z,
    "softmax": lambda z: jnp.exp(z - jax.nn.logsumexp(z, axis=-1, keepdims=True)),
}


def ref_per_example(params, x, y, activation, loss, output_activation, shifts):
    """``(batch,)`` losses; ``shifts[l]: (batch, n_l)`` is added to ``z_l``."""
    a = x
    for l, layer in enumerate(params):
        z = a @ layer["W"].T + layer["b"][None, :] + shifts[l]
        a = REF_ACT[output_activation if l == len(params) - 1 else activation](z)
    if loss == "mse":
        return 0.5 * jnp.sum((a - y) ** 2, axis=-1)
    if loss == "bce":
        return -jnp.sum(y * jnp.log(a) + (1 - y) * jnp.log1p(-a), axis=-1)
    return -jnp.sum(y * jax.nn.log_softmax(z, axis=-1), axis=-1)


@functools.partial(jax.jit, static_argnames=STATIC)
def ref_grads_and_deltas(params, x, y, activation, loss, output_activation):
    zero = [jnp.zeros((x.shape[0], p["b"].shape[0]), x.dtype) for p in params]
    args = (x, y, activation, loss, output_activation)

    def mean_loss(params):
        return jnp.mean(ref_per_example(params, *args, zero))

    def sum_loss(shifts):
        return jnp.sum(ref_per_example(params, *args, shifts))

    return jax.grad(mean_loss)(params), jax.grad(sum_loss)(zero)


@functools.partial(jax.jit, static_argnames=STATIC)
def autodiff_both(params, x, y, activation, loss, output_activation):
    kw = dict(activation=activation, loss=loss, output_activation=output_activation)
    return jaxbp.autodiff_grads(params, x, y, **kw), jaxbp.autodiff_deltas(params, x, y, **kw)


def assert_leaves_close(got, want, rtol=1e-12, what=""):
    assert jax.tree.structure(got) == jax.tree.structure(want), what
    failures = []
    flat = jax.tree_util.tree_flatten_with_path(want)[0]
    for (path, w), g in zip(flat, jax.tree.leaves(got), strict=True):
        atol = rtol * float(np.max(np.abs(w), initial=0.0))
        if g.shape != w.shape or not np.allclose(g, w, rtol=rtol, atol=atol):
            failures.append(f"{jax.tree_util.keystr(path)}: got {g}, want {w}")
    assert not failures, f"{what}\n" + "\n".join(failures)


@st.composite
def problems(draw):
    sizes = tuple(draw(st.lists(st.integers(1, 6), min_size=2, max_size=5)))
    loss = draw(st.sampled_from(("mse", "bce", "softmax_ce")))
    if loss == "softmax_ce":
        sizes = (*sizes[:-1], max(sizes[-1], 2))  # softmax over one unit is refused
    activation = draw(st.sampled_from(ACTS))
    out = draw(st.sampled_from(ACTS)) if loss == "mse" else OUT_ACT[loss]
    batch = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = [
        {
            "W": jnp.asarray(rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)),
            "b": jnp.asarray(rng.normal(size=n_out)),
        }
        for n_in, n_out in itertools.pairwise(sizes)
    ]
    x = jnp.asarray(rng.normal(size=(batch, sizes[0])))
    y = jnp.asarray(rng.uniform(size=(batch, sizes[-1])))
    return params, x, y, dict(activation=activation, loss=loss, output_activation=out)


@settings(max_examples=15, deadline=None)
@given(problem=problems())
def test_autodiff_grads_and_deltas_equal_independent_jax_grad(problem):
    params, x, y, choice = problem
    want_grads, want_deltas = ref_grads_and_deltas(params, x, y, **choice)
    grads, deltas = autodiff_both(params, x, y, **choice)
    assert_leaves_close(grads, want_grads, what=f"autodiff_grads {choice}")
    assert_leaves_close(deltas, want_deltas, what=f"autodiff_deltas {choice}")


def test_autodiff_factory_is_a_grad_fn_and_deltas_have_one_row_per_example():
    rng = np.random.default_rng(0)
    params = jaxbp.init((3, 2, 2), key=jax.random.key(0), dtype=jnp.float64)
    x, y = jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray(rng.uniform(size=(4, 2)))
    grad_fn = jaxbp.autodiff(activation="tanh", loss="bce")
    assert grad_fn.__name__ == "autodiff_tanh_bce"
    want = jaxbp.autodiff_grads(params, x, y, activation="tanh", loss="bce")
    for g, w in zip(jax.tree.leaves(grad_fn(params, x, y)), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(g, w)
    deltas = jaxbp.autodiff_deltas(params, x, y, activation="tanh", loss="bce")
    assert [d.shape for d in deltas] == [(4, 2), (4, 2)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seed_factors_autodiff_equal_the_handwritten_factors(seed):
    rng = np.random.default_rng(seed)
    named = dict(zip(jaxbp.param_names((2, 2, 1)), rng.normal(size=9).tolist(), strict=True))
    params = jaxbp.from_named(named, (2, 2, 1), dtype=jnp.float64)
    x, yt = jnp.asarray(rng.normal(size=2)), jnp.asarray(rng.uniform(size=1))
    auto = jaxbp.seed_factors_autodiff(params, x, yt)
    hand = jaxbp.seed_factors(params, x, yt)
    assert list(auto) == list(hand)
    for k in hand:
        np.testing.assert_allclose(float(auto[k]), float(hand[k]), rtol=1e-13, err_msg=k)
    # and the ones with a known closed value, by hand
    assert float(auto["dz3/dA1"]) == named["w31"]
    assert float(auto["dz1/dw12"]) == float(x[1])
    assert float(auto["dz2/db2"]) == 1.0


def test_seed_factors_autodiff_refuses_other_networks():
    params = jaxbp.init((2, 3, 1), key=jax.random.key(0), dtype=jnp.float64)
    with pytest.raises(ValueError, match=r"seed formulas are for the 2-2-1 network only"):
        jaxbp.seed_factors_autodiff(params, jnp.ones(2), jnp.ones(1))
