"""Tests for jaxbp.core: the spec-level core both halves build on.

The delta rule of ``jaxbp.core`` is checked against ``jax.grad`` of a forward pass written
here in plain ``jnp``, in float64. Its backward sweep with one factor changed is checked
against ``jax.grad`` of a network whose activation at that layer passes gradients straight
through (``z + stop_gradient(f(z) - z)``), whose derivative is exactly "f'(z) replaced by 1".
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp import core

SIGMOID = jax.nn.sigmoid


def _params(sizes, key):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "W": jax.random.normal(k, (n, m), jnp.float64) / np.sqrt(m),
            "b": 0.1 * jax.random.normal(jax.random.fold_in(k, 1), (n,), jnp.float64),
        }
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def _loss(params, x, y, straight_through=None):
    """Batch-mean 1/2 (A - y)^2 of a sigmoid MLP; at layer ``straight_through`` the sigmoid's
    derivative is replaced by 1 (forward value unchanged)."""
    a = x
    for l, layer in enumerate(params):
        z = a @ layer["W"].T + layer["b"][None, :]
        a = SIGMOID(z)
        if l == straight_through:
            a = z + jax.lax.stop_gradient(a - z)
    return jnp.mean(0.5 * jnp.sum((a - y) ** 2, axis=-1))


SIZES = (3, 5, 4, 2)


@pytest.fixture(scope="module")
def problem():
    key = jax.random.key(7)
    params = _params(SIZES, key)
    x = jax.random.normal(jax.random.fold_in(key, 2), (6, SIZES[0]), jnp.float64)
    y = jax.random.uniform(jax.random.fold_in(key, 3), (6, SIZES[-1]), jnp.float64)
    return params, x, y


def _close(got, want):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_backprop_batch_is_jax_grad_of_the_plain_forward(problem):
    params, x, y = problem
    out = core.backprop_batch(params, x, y, core.resolve_output("sigmoid", "mse"))
    _close(out.grads, jax.grad(_loss)(params, x, y))
    np.testing.assert_allclose(out.loss, _loss(params, x, y), rtol=1e-14)


@pytest.mark.parametrize("skip", [0, 1])
def test_the_sweep_with_one_hidden_factor_replaced(problem, skip):
    params, x, y = problem
    spec = core.resolve_output("sigmoid", "mse")

    def df(l, z, a):
        return jnp.ones_like(z) if l == skip else spec.hidden.df(z, a)

    def one(xi, yi):
        zs, As = core.forward_example(params, xi, spec)
        delta = spec.loss.delta(zs[-1], As[-1], yi, spec.output)
        return core.hidden_deltas(params, zs, As, delta, df), As

    deltas, As = jax.vmap(one)(x, y)
    grads = core.grads_from_deltas(deltas, As)
    _close(grads, jax.grad(_loss)(params, x, y, straight_through=skip))
    # and it differs from the true gradient, so the test above could fail
    true = jax.grad(_loss)(params, x, y)
    assert not np.allclose(grads[0]["W"], true[0]["W"], rtol=1e-3)


def test_hidden_deltas_shapes_and_the_output_delta_kept(problem):
    params, x, _ = problem
    spec = core.resolve_output("tanh", "softmax_ce")
    zs, As = core.forward_example(params, x[0], spec)
    out = jnp.arange(SIZES[-1], dtype=jnp.float64)
    deltas = core.hidden_deltas(params, zs, As, out, lambda l, z, a: spec.hidden.df(z, a))
    assert [d.shape for d in deltas] == [(n,) for n in SIZES[1:]]
    assert deltas[-1] is out


def test_the_string_keyword_functions_build_on_the_core(problem):
    params, x, y = problem
    spec = core.resolve_output("relu", "mse", "sigmoid")
    kw = dict(activation="relu", loss="mse", output_activation="sigmoid")
    _close(
        jaxbp.closed_form_grads(params, x, y, **kw), core.backprop_batch(params, x, y, spec).grads
    )
    assert float(jaxbp.batch_loss(params, x, y, **kw)) == float(core.mean_loss(params, x, y, spec))


def test_output_activations_are_what_resolve_output_takes():
    for name in core.OUTPUT_ACTIVATIONS:
        loss = "softmax_ce" if name == "softmax" else "mse"
        assert core.resolve_output("sigmoid", loss, name).names[1] == name
    with pytest.raises(ValueError, match="output_activation='softplus' is not known"):
        core.resolve_output("sigmoid", "mse", "softplus")
