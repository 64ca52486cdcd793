"""jaxbp.taps: the note's chain and the MLP's deltas, audited intermediate by intermediate.

The marked forward passes must compute the same loss as the library's own; the closed-form
backward passes must pass ``audit.check_backward`` at many points; and a slip planted in one
chain factor must first show at the intermediate whose gradient multiplies that factor in
(the chain in the module docstring), with every intermediate before it in backward order
passing.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import audit
import jaxbp
from jaxbp.seed import seed_factors

KEY = jax.random.key(0)


def _no_tap(name, value):
    return value


def test_the_marked_forward_passes_compute_the_librarys_loss():
    params, x, y = jaxbp.seed_example(dtype=jnp.float64)
    e = jaxbp.seed_forward(params, x[0], y[0])["E"]
    np.testing.assert_allclose(jaxbp.seed_loss_tapped(_no_tap, params, x[0], y[0]), e, rtol=1e-15)
    spec = jaxbp.resolve_output("tanh", "softmax_ce")
    p = jaxbp.init((3, 5, 4, 3), key=jax.random.key(1), dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(2), (7, 3), jnp.float64)
    ys = jax.nn.one_hot(jnp.arange(7) % 3, 3, dtype=jnp.float64)
    np.testing.assert_allclose(
        jaxbp.mlp_loss_tapped(_no_tap, p, xs, ys, spec), jaxbp.mean_loss(p, xs, ys, spec),
        rtol=1e-14,
    )  # fmt: skip


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_the_notes_chain_passes_intermediate_by_intermediate(dtype):
    params, x, y = jaxbp.seed_example(dtype=dtype)
    r = audit.check_backward(
        jaxbp.seed_loss_tapped, jaxbp.seed_backward, params, x[0], y[0], key=KEY, points=255
    )
    assert r.passed, (r.failed_weights, r.notes)
    assert [f["name"] for f in r.factors] == ["A3", "z3", "A2", "z2", "A1", "z1"]


def _slipped(name, value):
    def factors(params, x, yt):
        c = dict(seed_factors(params, x, yt))
        c[name] = value(c)
        return c

    def backward(params, x, yt):
        return jaxbp.seed_backward(params, x, yt, factors=factors)

    backward.__name__ = f"backward ({name} slipped)"
    return backward


@pytest.mark.parametrize(
    ("factor", "value", "first", "after"),
    [
        ("dA3/dz3", lambda c: jnp.ones_like(c["dA3/dz3"]), "z3", ["A3"]),
        ("dz3/dA1", lambda c: c["dz3/dA2"], "A1", ["A3", "z3", "A2", "z2"]),
        ("dA1/dz1", lambda c: jnp.ones_like(c["dA1/dz1"]), "z1", ["A3", "z3", "A2", "z2", "A1"]),
    ],
)
def test_a_slipped_factor_first_shows_where_the_chain_multiplies_it_in(factor, value, first, after):
    params, x, y = jaxbp.seed_example()
    r = audit.check_backward(
        jaxbp.seed_loss_tapped, _slipped(factor, value), params, x[0], y[0], key=KEY, points=63
    )
    assert r.first_failing_factor == first
    passing = [f["name"] for f in r.factors if f["passed"]]
    assert passing[: len(after)] == after


def test_the_mlps_deltas_pass_as_the_gradients_of_its_pre_activations():
    spec = jaxbp.resolve_output("tanh", "softmax_ce")
    n_out = 3
    p = jaxbp.init((3, 5, n_out), key=jax.random.key(1))
    xs = jax.random.normal(jax.random.key(2), (6, 3), jnp.float32)
    ys = jax.nn.one_hot(jnp.arange(6) % n_out, n_out, dtype=jnp.float32)

    def forward(tap, params, x, y):
        return jaxbp.mlp_loss_tapped(tap, params, x, y, spec)

    def backward(params, x, y):
        return jaxbp.mlp_deltas_backward(params, x, y, spec)

    r = audit.check_backward(forward, backward, p, xs, ys, key=KEY, points=127)
    assert r.passed, (r.failed_weights, r.notes)
    assert [f["name"] for f in r.factors] == ["z2", "z1"]

    def without_derivative(params, x, y):  # hidden delta missing f'(z1)
        d = backward(params, x, y)
        z1 = x @ params[0]["W"].T + params[0]["b"][None, :]
        return {"z2": d["z2"], "z1": d["z1"] / spec.hidden.df(z1, spec.hidden.f(z1))}

    bad = audit.check_backward(forward, without_derivative, p, xs, ys, key=KEY, points=31)
    assert bad.first_failing_factor == "z1" and bad.factors[0]["passed"]
