"""audit.tiers: small calls run the quickly compiled program, large ones the optimized one,
and the verdict is the same whichever runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import audit
import jaxbp
from audit import tiers
from audit.points import random_points
from tests.broken_gradients import BROKEN, batched


def test_pick_switches_at_the_quick_work_bound():
    square = tiers.tiered(lambda a: a * a)
    assert square.pick(tiers.QUICK_WORK) is square.quick
    assert square.pick(tiers.QUICK_WORK + 1) is square.full
    assert float(square.quick(jnp.float32(3.0))) == float(square.full(jnp.float32(3.0))) == 9.0


def test_a_program_can_set_its_own_quick_bound():
    draw = tiers.tiered(lambda a: a + 1, quick_work=10)
    assert draw.pick(10) is draw.quick and draw.pick(11) is draw.full


def test_static_arguments_reach_both_forms():
    scaled = tiers.tiered(lambda a, *, k: a * k, static_argnames=("k",))
    assert float(scaled.pick(1)(jnp.float32(2.0), k=3)) == 6.0
    assert float(scaled(jnp.float32(2.0), k=4)) == 8.0


def test_work_counts_points_values_and_examples():
    # 5 points of a 2-2-1 network: 9 values a point
    stacked = jax.tree.map(lambda a: np.zeros((5, *a.shape)), jaxbp.seed_example()[0])
    assert tiers.work(stacked, batch=4) == 5 * 9 * 4
    assert tiers.work(stacked, batch=4, points=2) == 2 * 9 * 4
    assert tiers.work([], batch=4) == 0


def _audit(monkeypatch, quick_work, grad):
    monkeypatch.setattr(tiers, "QUICK_WORK", quick_work)
    return audit.audit_network(grad, points=16, steps=300, fd=False)


@pytest.mark.parametrize("case", [None, "swapped_w12_w21", "missing_dA1dz1"])
def test_the_verdict_does_not_depend_on_the_tier(monkeypatch, case):
    grad = "seed" if case is None else batched(BROKEN[case][0], case)
    quick = _audit(monkeypatch, 1 << 62, grad)  # every program compiled quick
    full = _audit(monkeypatch, -1, grad)  # every program fully optimized
    assert quick.passed == full.passed == (case is None)
    for a, b in zip(quick.weights + quick.factors, full.weights + full.factors, strict=True):
        keys = ("name", "passed", "status", "hint")
        assert [a.get(k) for k in keys] == [b.get(k) for k in keys]


def test_the_same_values_from_either_tier(monkeypatch):
    params, x, y = jaxbp.seed_example()

    def loss_fn(p, x, y):
        return jaxbp.batch_loss(p, x, y, activation="sigmoid", loss="mse")

    out = []
    for quick_work in (1 << 62, -1):
        monkeypatch.setattr(tiers, "QUICK_WORK", quick_work)
        r = audit.check_gradients(jaxbp.seed_grads, loss_fn, params, x, y, points=0, fd=False)
        out.append(np.array([[w["manual"], w["reference"]] for w in r.weights], np.float64))
    np.testing.assert_allclose(out[0], out[1], rtol=1e-6, atol=0)


def test_random_draws_do_not_depend_on_the_size_of_the_call():
    # a quickly compiled program may round a normal draw's last bit differently, so the
    # draws always come from the optimized one: draw i is the same at any number of draws
    key = jax.random.key(3)
    small = random_points((2, 2, 1), 8, key=key, loss="mse", dtype="float32", batch=4)
    large = random_points((2, 2, 1), 5000, key=key, loss="mse", dtype="float32", batch=4)
    for a, b in zip(jax.tree.leaves(small[1:4]), jax.tree.leaves(large[1:4]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[:8])
