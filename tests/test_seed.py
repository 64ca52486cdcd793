"""Tests for jaxbp.seed: the note's 2-2-1 formulas, by hand and against jax.grad.

The note's network is written out again here (``z1 = x1 w11 + x2 w12 + b1``, ...,
``E = 1/2 (A3 - yt)^2``), with ``math.exp`` for the worked example and ``jnp`` for
``jax.grad``; the expected values never come from jaxbp. Gradient tolerance: rtol=1e-12 plus
an atol of 1e-12 times the largest |gradient| of that leaf.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp

# the note's "Example": numbers through the network
X1, X2, YT = 0.05, 0.10, 0.01
W = dict(w11=0.15, w12=0.20, w21=0.25, w22=0.30, w31=0.40, w32=0.45)


def sig(z):
    return 1 / (1 + math.exp(-z))


def by_hand(x1=X1, x2=X2, yt=YT, b1=0.0, b2=0.0, b3=0.0, **w):
    """The note's equations, one line each, with math.exp."""
    w = {**W, **w}
    z1 = x1 * w["w11"] + x2 * w["w12"] + b1
    A1 = sig(z1)
    z2 = x1 * w["w21"] + x2 * w["w22"] + b2
    A2 = sig(z2)
    z3 = A1 * w["w31"] + A2 * w["w32"] + b3
    A3 = sig(z3)
    E = 0.5 * (A3 - yt) ** 2
    return dict(z1=z1, A1=A1, z2=z2, A2=A2, z3=z3, A3=A3, E=E)


def note_loss(named, x, y):
    """Batch-mean E of the note's network in jnp; ``named`` holds w11 ... b3 as scalars."""
    n = named
    x1, x2 = x[:, 0], x[:, 1]
    A1 = 1 / (1 + jnp.exp(-(x1 * n["w11"] + x2 * n["w12"] + n["b1"])))
    A2 = 1 / (1 + jnp.exp(-(x1 * n["w21"] + x2 * n["w22"] + n["b2"])))
    A3 = 1 / (1 + jnp.exp(-(A1 * n["w31"] + A2 * n["w32"] + n["b3"])))
    return jnp.mean(0.5 * (A3 - y[:, 0]) ** 2)


note_grad = jax.jit(jax.grad(note_loss))
seed_grads_jit = jax.jit(jaxbp.seed_grads)


def named_grads(grads):
    """The gradient pytree as {name: value}, in the note's names."""
    return jaxbp.to_named(grads)


def assert_named_close(got, want, rtol=1e-12):
    """Every name compared; atol is rtol times the largest |gradient| of that layer's leaf."""
    assert set(got) == set(want)
    leaves = [("w11", "w12", "w21", "w22"), ("b1", "b2"), ("w31", "w32"), ("b3",)]
    failures = []
    for leaf in leaves:
        atol = rtol * max(abs(float(want[k])) for k in leaf)
        for k in leaf:
            if not abs(got[k] - float(want[k])) <= atol + rtol * abs(float(want[k])):
                failures.append(f"{k}: got {got[k]!r}, want {float(want[k])!r}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------------------------
# the worked example
# --------------------------------------------------------------------------------------------


def test_seed_forward_worked_example_by_hand():
    params = jaxbp.seed_params(**W, dtype=jnp.float64)
    got = jaxbp.seed_forward(params, jnp.array([X1, X2]), jnp.array([YT]))
    want = by_hand()
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(float(got[k]), v, rtol=1e-15, err_msg=k)
    # the numbers themselves, so a change in the note's example is seen
    np.testing.assert_allclose(want["A3"], 0.606477732206728, rtol=1e-14)
    np.testing.assert_allclose(want["E"], 0.17789284250924053, rtol=1e-14)


def test_batch_of_one_E_is_half_squared_error():
    params = jaxbp.seed_params(**W, dtype=jnp.float64)
    E = jaxbp.batch_loss(params, jnp.array([[X1, X2]]), jnp.array([[YT]]))
    A3 = by_hand()["A3"]
    np.testing.assert_allclose(float(E), 0.5 * (A3 - YT) ** 2, rtol=1e-14)


def test_seed_grads_worked_example_by_hand():
    # the note's products (5), with the numbers above
    h = by_hand()
    A1, A2, A3 = h["A1"], h["A2"], h["A3"]
    d3 = (A3 - YT) * A3 * (1 - A3)
    want = dict(
        w31=d3 * A1, w32=d3 * A2, b3=d3,
        w11=d3 * W["w31"] * A1 * (1 - A1) * X1, w12=d3 * W["w31"] * A1 * (1 - A1) * X2,
        b1=d3 * W["w31"] * A1 * (1 - A1),
        w21=d3 * W["w32"] * A2 * (1 - A2) * X1, w22=d3 * W["w32"] * A2 * (1 - A2) * X2,
        b2=d3 * W["w32"] * A2 * (1 - A2),
    )  # fmt: skip
    params = jaxbp.seed_params(**W, dtype=jnp.float64)
    x, y = jnp.array([[X1, X2]]), jnp.array([[YT]])
    assert_named_close(named_grads(jaxbp.seed_grads(params, x, y)), want, rtol=1e-14)
    example = jaxbp.seed_grads_example(params, x[0], y[0])
    assert_named_close(named_grads(example), want, rtol=1e-14)
    np.testing.assert_allclose(want["w31"], 0.07215707291213626, rtol=1e-14)


# --------------------------------------------------------------------------------------------
# seed_factors: each chain factor against its own derivative
# --------------------------------------------------------------------------------------------


def independent_factors(named, x1, x2, yt):
    """jax.grad of each sub-expression the note differentiates, written here."""
    n = named

    def sigma(z):
        return 1 / (1 + jnp.exp(-z))

    z1 = x1 * n["w11"] + x2 * n["w12"] + n["b1"]
    z2 = x1 * n["w21"] + x2 * n["w22"] + n["b2"]
    A1, A2 = sigma(z1), sigma(z2)
    z3 = A1 * n["w31"] + A2 * n["w32"] + n["b3"]
    A3 = sigma(z3)

    def z1_of(w11, w12, b1):
        return x1 * w11 + x2 * w12 + b1

    def z2_of(w21, w22, b2):
        return x1 * w21 + x2 * w22 + b2

    def z3_of(w31, w32, b3, A1, A2):
        return A1 * w31 + A2 * w32 + b3

    d1 = jax.grad(z1_of, argnums=(0, 1, 2))(n["w11"], n["w12"], n["b1"])
    d2 = jax.grad(z2_of, argnums=(0, 1, 2))(n["w21"], n["w22"], n["b2"])
    d3 = jax.grad(z3_of, argnums=(0, 1, 2, 3, 4))(n["w31"], n["w32"], n["b3"], A1, A2)
    return {
        "dE/dA3": jax.grad(lambda A3: 0.5 * (A3 - yt) ** 2)(A3),
        "dA3/dz3": jax.grad(sigma)(z3),
        "dz3/dw31": d3[0], "dz3/dw32": d3[1], "dz3/db3": d3[2],
        "dz3/dA1": d3[3], "dz3/dA2": d3[4],
        "dA1/dz1": jax.grad(sigma)(z1),
        "dA2/dz2": jax.grad(sigma)(z2),
        "dz1/dw11": d1[0], "dz1/dw12": d1[1], "dz1/db1": d1[2],
        "dz2/dw21": d2[0], "dz2/dw22": d2[1], "dz2/db2": d2[2],
    }  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_seed_factors_equal_independent_derivatives(seed):
    rng = np.random.default_rng(seed)
    if seed == 0:  # the worked example
        named = {**W, "b1": 0.0, "b2": 0.0, "b3": 0.0}
        x1, x2, yt = X1, X2, YT
    else:
        values = rng.normal(size=9).tolist()
        named = dict(zip(jaxbp.param_names((2, 2, 1)), values, strict=True))
        x1, x2, yt = (float(v) for v in rng.normal(size=3))
    params = jaxbp.from_named(named, (2, 2, 1), dtype=jnp.float64)
    got = jaxbp.seed_factors(params, jnp.array([x1, x2]), jnp.array([yt]))
    want = independent_factors({k: jnp.float64(v) for k, v in named.items()}, x1, x2, yt)
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(float(got[k]), float(want[k]), rtol=1e-13, err_msg=k)


def test_seed_factors_worked_example_values():
    params = jaxbp.seed_params(**W, dtype=jnp.float64)
    c = jaxbp.seed_factors(params, jnp.array([X1, X2]), jnp.array([YT]))
    h = by_hand()
    np.testing.assert_allclose(float(c["dE/dA3"]), h["A3"] - YT, rtol=1e-15)
    np.testing.assert_allclose(float(c["dA3/dz3"]), h["A3"] * (1 - h["A3"]), rtol=1e-15)
    np.testing.assert_allclose(float(c["dz3/dw31"]), h["A1"], rtol=1e-15)
    assert float(c["dz3/dA2"]) == W["w32"]
    assert float(c["dz2/dw22"]) == X2


# --------------------------------------------------------------------------------------------
# seed_grads against jax.grad, many points
# --------------------------------------------------------------------------------------------


@st.composite
def seed_problems(draw):
    batch = draw(st.integers(1, 8))
    scale = draw(st.sampled_from((0.5, 1.0)))  # out of deep saturation, see test_backprop
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    named = dict(zip(jaxbp.param_names((2, 2, 1)), rng.normal(size=9) * scale, strict=True))
    x = jnp.asarray(rng.normal(size=(batch, 2)))
    y = jnp.asarray(rng.uniform(size=(batch, 1)))
    return named, x, y


@settings(max_examples=30, deadline=None)
@given(problem=seed_problems())
def test_seed_grads_equal_independent_jax_grad(problem):
    named, x, y = problem
    params = jaxbp.from_named(named, (2, 2, 1), dtype=jnp.float64)
    want = note_grad({k: jnp.float64(v) for k, v in named.items()}, x, y)
    assert_named_close(named_grads(seed_grads_jit(params, x, y)), want)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seed_grads_match_central_differences(seed):
    rng = np.random.default_rng(seed)
    named = dict(zip(jaxbp.param_names((2, 2, 1)), rng.normal(size=9), strict=True))
    x, y = jnp.asarray(rng.normal(size=(4, 2))), jnp.asarray(rng.uniform(size=(4, 1)))
    loss = jax.jit(note_loss)
    h = 1e-5
    fd = {}
    for k in named:
        up, down = dict(named), dict(named)
        up[k] += h
        down[k] -= h
        fd[k] = (float(loss(up, x, y)) - float(loss(down, x, y))) / (2 * h)
    params = jaxbp.from_named(named, (2, 2, 1), dtype=jnp.float64)
    got = named_grads(jaxbp.seed_grads(params, x, y))
    for k in named:
        np.testing.assert_allclose(got[k], fd[k], rtol=1e-7, atol=1e-10, err_msg=k)


def test_seed_grads_agree_with_closed_form_and_are_the_mean_of_examples():
    rng = np.random.default_rng(5)
    params = jaxbp.from_named(
        dict(zip(jaxbp.param_names((2, 2, 1)), rng.normal(size=9), strict=True)),
        (2, 2, 1),
        dtype=jnp.float64,
    )
    x, y = jnp.asarray(rng.normal(size=(6, 2))), jnp.asarray(rng.uniform(size=(6, 1)))
    seed = jaxbp.seed_grads(params, x, y)
    closed = jaxbp.closed_form_grads(params, x, y)
    per = [jaxbp.seed_grads_example(params, x[i], y[i]) for i in range(6)]
    mean = jax.tree.map(lambda *g: sum(g) / 6, *per)
    for s, c, m in zip(*map(jax.tree.leaves, (seed, closed, mean)), strict=True):
        np.testing.assert_allclose(s, c, rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(s, m, rtol=1e-13, atol=1e-16)
    assert [g["b"].shape for g in seed] == [(2,), (1,)]


@pytest.mark.parametrize(
    ("x", "yt", "message"),
    [
        (jnp.zeros(3), jnp.zeros(1), r"x has shape \(3,\), expected \(2,\) \(x1, x2\)"),
        (jnp.zeros((1, 2)), jnp.zeros(1), r"x has shape \(1, 2\), expected \(2,\)"),
        (jnp.zeros(2), jnp.zeros(()), r"yt has shape \(\), expected \(1,\) \(the target\)"),
    ],
)
def test_one_example_functions_refuse_other_shapes(x, yt, message):
    params = jaxbp.seed_example()[0]
    for fn in (jaxbp.seed_forward, jaxbp.seed_factors, jaxbp.seed_grads_example):
        with pytest.raises(ValueError, match=message):
            fn(params, x, yt)


def test_one_example_functions_refuse_another_network():
    params = jaxbp.init((2, 3, 1), key=jax.random.key(0))
    with pytest.raises(ValueError, match="the seed formulas are for the 2-2-1 network only"):
        jaxbp.seed_forward(params, jnp.zeros(2), jnp.zeros(1))
