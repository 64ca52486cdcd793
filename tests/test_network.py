"""Tests for jaxbp.activations, jaxbp.losses and jaxbp.network.

Each handwritten derivative is compared with ``jax.grad`` of an expression written here, and
the forward pass and batch loss with a plain ``jnp`` forward written here, all in float64.
"""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp
from jaxbp.activations import get_activation
from jaxbp.core import resolve_output
from jaxbp.losses import LOSSES

ACTS = ("sigmoid", "tanh", "relu", "identity")

# this file's own activations and per-example losses, written independently of jaxbp
REF_ACT = {
    "sigmoid": lambda z: 1 / (1 + jnp.exp(-z)),
    "tanh": jnp.tanh,
    "relu": lambda z: jnp.where(z > 0, z, 0.0),
    "identity": lambda z: z,
    "softmax": lambda z: jnp.exp(z - jax.nn.logsumexp(z, axis=-1, keepdims=True)),
}
REF_LOSS = {
    "mse": lambda z, a, y: 0.5 * jnp.sum((a - y) ** 2, axis=-1),
    "bce": lambda z, a, y: -jnp.sum(y * jnp.log(a) + (1 - y) * jnp.log(1 - a), axis=-1),
    "softmax_ce": lambda z, a, y: -jnp.sum(y * jnp.log(a), axis=-1),
}
OUT_ACT = {"bce": "sigmoid", "softmax_ce": "softmax"}


def ref_forward(params, x, activation, output_activation):
    """Plain batched forward: ``(zs, As)`` with ``x: (batch, n0)``."""
    a, zs, As = x, [], []
    for l, layer in enumerate(params):
        z = a @ layer["W"].T + layer["b"][None, :]
        f = REF_ACT[output_activation if l == len(params) - 1 else activation]
        a = f(z)
        zs.append(z)
        As.append(a)
    return zs, As


def ref_batch_loss(params, x, y, activation, loss, output_activation=None):
    out = output_activation or OUT_ACT.get(loss, activation)
    zs, As = ref_forward(params, x, activation, out)
    return jnp.mean(REF_LOSS[loss](zs[-1], As[-1], y))


def random_params(sizes, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return [
        {
            "W": jnp.asarray(rng.normal(size=(n_out, n_in)) * scale / math.sqrt(n_in)),
            "b": jnp.asarray(rng.normal(size=n_out) * scale),
        }
        for n_in, n_out in itertools.pairwise(sizes)
    ]


def targets(rng, loss, shape):
    if loss == "mse":
        return jnp.asarray(rng.normal(size=shape))
    return jnp.asarray(rng.uniform(size=shape))  # probabilities for bce / softmax_ce


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ACTS)
def test_activation_values_and_derivative(name):
    act = get_activation(name)
    z = jnp.linspace(-6.0, 6.0, 121) + 0.013  # off the relu kink at exactly 0
    a = act.f(z)
    np.testing.assert_allclose(a, REF_ACT[name](z), rtol=1e-14, atol=1e-300)
    want = jax.vmap(jax.grad(REF_ACT[name]))(z)
    np.testing.assert_allclose(act.df(z, a), want, rtol=1e-12, atol=1e-15)


def test_relu_derivative_at_zero_matches_jax():
    act = get_activation("relu")
    z = jnp.zeros(3)
    np.testing.assert_array_equal(act.df(z, act.f(z)), jax.vmap(jax.grad(jax.nn.relu))(z))


def test_sigmoid_derivative_is_written_through_the_output():
    # the note's (2): sigma'(z) = A (1 - A), whatever z is passed
    act = get_activation("sigmoid")
    a = jnp.array([0.25, 0.5, 0.9])
    np.testing.assert_allclose(act.df(jnp.zeros(3), a), a * (1 - a), rtol=0)


def test_activation_table_names():
    assert tuple(jaxbp.ACTIVATIONS) == ACTS
    assert isinstance(jaxbp.ACTIVATIONS["tanh"], jaxbp.Activation)


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "out"),
    [*(("mse", a) for a in ACTS), ("bce", "sigmoid"), ("softmax_ce", "softmax")],
)
def test_loss_value_and_output_delta(loss, out):
    rng = np.random.default_rng(0)
    spec = resolve_output("tanh", loss, None if loss != "mse" else out)
    for _ in range(5):
        z = jnp.asarray(rng.normal(size=3) * 2)
        y = targets(rng, loss, (3,))
        a = spec.output.f(z)
        E = spec.loss.value(z, a, y)
        assert E.shape == ()
        np.testing.assert_allclose(E, REF_LOSS[loss](z, REF_ACT[out](z), y), rtol=1e-13)

        def E_of_z(z, y=y):
            return REF_LOSS[loss](z, REF_ACT[out](z), y)

        want = jax.grad(E_of_z)(z)
        got = spec.loss.delta(z, a, y, spec.output)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_bce_is_stable_for_large_logits():
    spec = resolve_output("sigmoid", "bce")
    z, y = jnp.array([800.0, -800.0]), jnp.array([0.0, 1.0])
    E = spec.loss.value(z, spec.output.f(z), y)
    np.testing.assert_allclose(E, 1600.0, rtol=1e-15)


def test_resolve_output_defaults():
    assert resolve_output("tanh", "mse").names == ("tanh", "tanh", "mse")
    assert resolve_output("tanh", "mse", "identity").names == ("tanh", "identity", "mse")
    assert resolve_output("relu", "bce").names == ("relu", "sigmoid", "bce")
    assert resolve_output("relu", "softmax_ce").names == ("relu", "softmax", "softmax_ce")
    assert tuple(LOSSES) == ("mse", "bce", "softmax_ce")


# --------------------------------------------------------------------------------------------
# forward / batch_loss
# --------------------------------------------------------------------------------------------


@st.composite
def problems(draw):
    sizes = tuple(draw(st.lists(st.integers(1, 6), min_size=2, max_size=5)))
    loss = draw(st.sampled_from(tuple(LOSSES)))
    if loss == "softmax_ce":
        sizes = (*sizes[:-1], max(sizes[-1], 2))  # softmax over one unit is refused
    activation = draw(st.sampled_from(ACTS))
    out = draw(st.sampled_from(ACTS)) if loss == "mse" else OUT_ACT[loss]
    return sizes, draw(st.integers(1, 8)), activation, loss, out, draw(st.integers(0, 2**32 - 1))


# compiled once per shape and choice; separate functions so XLA cannot share work between them
@functools.partial(jax.jit, static_argnames=("activation", "loss", "output_activation"))
def jaxbp_forward_and_loss(params, x, y, activation, loss, output_activation):
    kw = dict(activation=activation, loss=loss, output_activation=output_activation)
    return jaxbp.forward(params, x, **kw), jaxbp.batch_loss(params, x, y, **kw)


@functools.partial(jax.jit, static_argnames=("activation", "loss", "output_activation"))
def ref_forward_and_loss(params, x, y, activation, loss, output_activation):
    out = ref_forward(params, x, activation, output_activation)[1][-1]
    return out, ref_batch_loss(params, x, y, activation, loss, output_activation)


@settings(max_examples=20, deadline=None)
@given(problem=problems())
def test_forward_and_batch_loss_match_plain_jnp(problem):
    sizes, batch, activation, loss, out, seed = problem
    rng = np.random.default_rng(seed)
    params = random_params(sizes, seed)
    x = jnp.asarray(rng.normal(size=(batch, sizes[0])))
    y = targets(rng, loss, (batch, sizes[-1]))
    choice = dict(activation=activation, loss=loss, output_activation=out)
    got, E = jaxbp_forward_and_loss(params, x, y, **choice)
    want, want_E = ref_forward_and_loss(params, x, y, **choice)
    assert got.shape == (batch, sizes[-1])
    assert got.dtype == jnp.float64
    assert E.shape == ()
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(
        E, want_E, rtol=1e-12, atol=1e-14 + ref_roundoff(params, x, y, **choice)
    )


def ref_roundoff(params, x, y, activation, loss, output_activation):
    """A bound on the plain reference's own rounding in ``E``: ``log(a)`` and ``log(1 - a)`` of
    the bce reference lose ``eps / a`` and ``eps / (1 - a)`` where the sigmoid saturates (a
    logit of 15 leaves ``1 - a = 3e-7``, so about 1e-9 in ``E``), while jaxbp's loss works from
    the logits. 8 ulps of each log's argument, weighted as the loss weights them."""
    if loss != "bce":
        return 0.0
    a = ref_forward(params, x, activation, "sigmoid")[1][-1]
    eps = float(jnp.finfo(a.dtype).eps)
    per = jnp.sum(y * eps / a + (1 - y) * eps / (1 - a), axis=-1)
    return 8 * float(jnp.mean(per))


def test_forward_and_batch_loss_check_input_eagerly():
    # outside jit the public functions run their checks and give the same numbers
    params = random_params((3, 2, 2), 5)
    x, y = jnp.ones((2, 3)), jnp.zeros((2, 2))
    kw = dict(activation="relu", loss="softmax_ce")
    np.testing.assert_allclose(
        jaxbp.forward(params, x, **kw), ref_forward(params, x, "relu", "softmax")[1][-1], rtol=1e-14
    )
    np.testing.assert_allclose(
        jaxbp.batch_loss(params, x, y, **kw),
        ref_batch_loss(params, x, y, "relu", "softmax_ce"),
        rtol=1e-14,
    )


def test_softmax_outputs_are_probabilities():
    params = random_params((3, 4, 5), 1)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 3)))
    p = jaxbp.forward(params, x, activation="relu", loss="softmax_ce")
    np.testing.assert_allclose(jnp.sum(p, axis=1), 1.0, rtol=1e-14)
    assert np.all(np.asarray(p) > 0)


def test_batch_loss_is_the_mean_of_single_example_losses():
    params = random_params((2, 3, 2), 2)
    rng = np.random.default_rng(2)
    x, y = jnp.asarray(rng.normal(size=(5, 2))), jnp.asarray(rng.normal(size=(5, 2)))
    singles = [jaxbp.batch_loss(params, x[i : i + 1], y[i : i + 1]) for i in range(5)]
    np.testing.assert_allclose(jaxbp.batch_loss(params, x, y), np.mean(singles), rtol=1e-14)


def test_batch_loss_of_one_example_is_the_notes_E():
    # one example through the seed's 2-2-1 sigmoid network: E = 1/2 (A3 - yt)^2, no batch factor
    v = dict(w11=0.15, w12=0.20, w21=0.25, w22=0.30, w31=0.40, w32=0.45)
    params = jaxbp.seed_params(**v, dtype=jnp.float64)
    x1, x2, yt = 0.05, 0.10, 0.01
    A1 = 1 / (1 + math.exp(-(x1 * v["w11"] + x2 * v["w12"])))
    A2 = 1 / (1 + math.exp(-(x1 * v["w21"] + x2 * v["w22"])))
    A3 = 1 / (1 + math.exp(-(A1 * v["w31"] + A2 * v["w32"])))
    E = jaxbp.batch_loss(params, jnp.array([[x1, x2]]), jnp.array([[yt]]))
    np.testing.assert_allclose(float(E), 0.5 * (A3 - yt) ** 2, rtol=1e-14)


def test_forward_keeps_float32():
    params = jaxbp.init((2, 3, 1), key=jax.random.key(0))
    out = jaxbp.forward(params, jnp.ones((4, 2), jnp.float32))
    assert out.dtype == jnp.float32
    assert (
        jaxbp.batch_loss(params, jnp.ones((4, 2), jnp.float32), jnp.ones((4, 1), jnp.float32)).dtype
        == jnp.float32
    )


def test_forward_and_batch_loss_work_under_jit():
    params = random_params((2, 3, 1), 3)
    x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
    loss = jax.jit(lambda p, x, y: jaxbp.batch_loss(p, x, y, activation="tanh"))
    np.testing.assert_allclose(
        loss(params, x, y), ref_batch_loss(params, x, y, "tanh", "mse"), rtol=1e-14
    )
