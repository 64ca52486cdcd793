"""The audit's own false-alarm rate: right formulas never fail, in float32 and float64.

Correct handwritten gradients audited the way users meet them: every default-run seed,
thousands of random points, saturated units (every activation and loss at 2,000 points is in
``test_engine.py``). A failure here is the audit crying wolf. Its catch rate on broken
gradients is pinned in ``test_engine.py`` too, in float32 and float64.
"""

import jax
import jax.numpy as jnp
import pytest

import audit
import jaxbp


def test_the_seed_formulas_pass_the_default_run_at_every_seed_0_to_199():
    # what `jaxbp-audit --seed S` runs: 64 random draws, the worked example, 5000 steps
    failing = {}
    flagged = 0
    for seed in range(200):
        result = audit.audit_network("seed", seed=seed, points=64, steps=5000)
        if not result.passed:
            failing[seed] = audit.verdict_line(result)
        flagged += any(e["status"] == "precision" for e in result.factors)
    assert not failing, failing
    assert flagged > 0  # the float32 roundoff these seeds meet is real, and was excused


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_seed_formulas_pass_at_thousands_of_points(dtype):
    result = audit.audit_network("seed", dtype=dtype, points=8192, steps=0, fd=False, seed=3)
    assert result.passed, audit.verdict_line(result)


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_saturated_units_do_not_raise_false_alarms(act):
    # weights 6x the usual scale: most hidden units sit deep in their flat tails, where
    # f'(z) = A (1 - A) or 1 - A^2 cancels in float32
    sizes = (4, 16, 16, 1)
    params = jax.tree.map(lambda a: 6 * a, jaxbp.init(sizes, key=jax.random.key(2), scale="normal"))
    x = jax.random.normal(jax.random.key(3), (8, 4), jnp.float32)
    y = jax.random.uniform(jax.random.key(4), (8, 1), jnp.float32)
    grad_fn = jaxbp.closed_form(activation=act, loss="mse")

    def loss_fn(p, x, y):
        return jaxbp.batch_loss(p, x, y, activation=act, loss="mse")

    result = audit.check_gradients(
        grad_fn, loss_fn, params, x, y, points=256, key=jax.random.key(5), fd=False
    )
    assert result.passed, audit.verdict_line(result)
    slopes = jax.vmap(lambda z: jax.grad(getattr(jax.nn, act) if act == "sigmoid"
                                         else jnp.tanh)(z))  # fmt: skip
    z1 = x @ params[0]["W"].T + params[0]["b"][None]
    assert float(jnp.mean(slopes(z1.ravel()) < 1e-3)) > 0.2  # the units are saturated


def test_with_64_bit_types_off_the_reference_still_runs_in_float64():
    # JAX's default: these seeds failed a factor when the reference ran in float32 too
    with jax.enable_x64(False):
        for seed in (4, 5, 10, 16, 21, 22):
            result = audit.audit_network("seed", seed=seed, points=64, steps=5000)
            assert result.passed, (seed, audit.verdict_line(result))
            assert result.config["reference_dtype"] == "float64"

        def default_dtypes(params, x, y):  # jnp.zeros is float32 here, as in the user's code
            g = jaxbp.seed_grads(params, x, y)
            return [{"W": g[0]["W"] + jnp.zeros((2, 2)), "b": g[0]["b"]}, g[1]]

        assert audit.audit_network(default_dtypes, points=16, steps=100).passed
        assert not jax.config.jax_enable_x64  # the audit left the caller's setting alone
