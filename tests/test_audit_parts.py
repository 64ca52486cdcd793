"""The audit's own parts on hand-made inputs: saturation flags, the missing-derivative
candidates, and the training comparison (audit/saturation.py, audit/mistakes.py,
audit/training.py)."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp
from audit.mistakes import missing_derivative_grads
from audit.points import stack_points
from audit.saturation import saturation_fn
from audit.training import compare_training, finite_checkpoints
from jaxbp.core import resolve_output
from jaxbp.seed import seed_factors
from tests.broken_gradients import as_tree, assemble

SPEC = resolve_output("sigmoid", "mse")
SIZES = (2, 2, 1)


def seed_params(**kw):
    values = dict(w11=0.15, w12=0.2, w21=0.25, w22=0.3, w31=0.4, w32=0.45, b1=0.35, b2=0.35,
                  b3=0.6) | kw  # fmt: skip
    return jaxbp.seed_params(**values, dtype=jnp.float64)


def xor_group(*params):
    x, y = jaxbp.truth_table("xor", dtype=jnp.float64)
    return stack_points(
        "random", [(p, x, y) for p in params], [f"p{k}" for k in range(len(params))]
    )


def test_a_unit_saturated_for_the_whole_batch_flags_its_own_weights():
    # point 1: unit 1's input weights and bias are huge, so A1 = 1 for every XOR row and
    # dA1/dz1 = A1 (1 - A1) is 0 to float64: the weights into unit 1 (w11, w12, b1) are flagged
    g = xor_group(seed_params(), seed_params(w11=80.0, w12=80.0, b1=80.0))
    saturated = saturation_fn(SPEC, [g], SIZES)
    weights = np.arange(9)  # w11 w12 w21 w22 b1 b2 w31 w32 b3
    at0 = saturated(weights, np.zeros(9, int))
    at1 = saturated(weights, np.ones(9, int))
    assert not at0.any()
    np.testing.assert_array_equal(at1, [1, 1, 0, 0, 1, 0, 0, 0, 0])


def _saturated_by_hand(params, x):
    """Per unit (1, 2, 3), whether sigmoid'(z) = A (1 - A) < 1e-3 * 0.25 at every row of x."""
    w = jaxbp.to_named(params)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    x = np.asarray(x, np.float64)
    a1 = sig(w["w11"] * x[:, 0] + w["w12"] * x[:, 1] + w["b1"])
    a2 = sig(w["w21"] * x[:, 0] + w["w22"] * x[:, 1] + w["b2"])
    a3 = sig(w["w31"] * a1 + w["w32"] * a2 + w["b3"])
    return [bool(np.all(a * (1 - a) < 1e-3 * 0.25)) for a in (a1, a2, a3)]


def test_saturation_is_read_at_the_asked_points_of_every_group():
    # two groups of different batches; points asked out of order, repeated, in both groups
    sets = [
        seed_params(),
        seed_params(w11=80.0, w12=80.0, b1=80.0),
        seed_params(w31=90.0, w32=90.0, b3=90.0),
        seed_params(w21=-70.0, w22=-70.0, b2=-70.0),
    ]
    g1 = xor_group(*sets)
    x1, y1 = np.array([[1.0, 1.0]]), np.array([[0.0]])
    g2 = stack_points("seed_example", [(p, x1, y1) for p in sets[1:3]], ["a", "b"])
    saturated = saturation_fn(SPEC, [g1, g2], SIZES)
    unit = [1, 1, 2, 2, 1, 2, 3, 3, 3]  # the unit each of w11 w12 w21 w22 b1 b2 w31 w32 b3 feeds
    xor_x = jaxbp.truth_table("xor", dtype=jnp.float64)[0]
    where = [(sets[k], xor_x) for k in range(4)] + [(sets[1], x1), (sets[2], x1)]
    rng = np.random.default_rng(0)
    weights = np.tile(np.arange(9), 4)
    points = rng.integers(0, 6, weights.size)
    expected = [
        _saturated_by_hand(*where[p])[unit[w] - 1] for w, p in zip(weights, points, strict=True)
    ]
    assert any(expected) and not all(expected)
    np.testing.assert_array_equal(saturated(weights, points), expected)


def test_no_saturation_flags_without_a_bounded_activation():
    spec = resolve_output("relu", "mse", "identity")
    assert saturation_fn(spec, [xor_group(seed_params())], SIZES) is None


def _without(params, x, y, drop):
    """dE/dw averaged over the batch, from the note's chain factors with ``drop`` set to 1."""

    def one(xi, yi):
        c = dict(seed_factors(params, xi, yi))
        for name in drop:
            c[name] = jnp.ones_like(c[name])
        return as_tree(assemble(c))

    per = jax.vmap(one)(x, y)
    return np.concatenate([np.asarray(jnp.mean(a, axis=0)).ravel() for a in jax.tree.leaves(per)])


def test_missing_derivative_candidates_match_the_notes_factors_dropped():
    p0, p1 = seed_params(), seed_params(w11=-0.7, w32=1.3, b3=-0.2)
    g = xor_group(p0, p1)
    cands = missing_derivative_grads(SPEC, [g], SIZES)
    assert set(cands) == {"layer 1", "layer 2"}
    x, y = jaxbp.truth_table("xor", dtype=jnp.float64)
    for k, p in enumerate((p0, p1)):
        np.testing.assert_allclose(
            np.asarray(cands["layer 1"][0][k]), _without(p, x, y, ["dA1/dz1", "dA2/dz2"]),
            rtol=1e-12, atol=1e-15,
        )  # fmt: skip
        np.testing.assert_allclose(
            np.asarray(cands["layer 2"][0][k]), _without(p, x, y, ["dA3/dz3"]), rtol=1e-12,
            atol=1e-15,
        )  # fmt: skip
    texts = cands["layer 1"][1]
    assert texts[0].startswith("missing the activation derivative dA1/dz1 = A(1 - A) (layer 1)")
    assert texts[2].startswith("missing the activation derivative dA2/dz2")
    assert cands["layer 2"][1][0].startswith("missing the activation derivative dA3/dz3")


def test_no_output_layer_candidate_where_the_loss_has_no_separate_factor():
    spec = resolve_output("sigmoid", "bce")
    assert set(missing_derivative_grads(spec, [xor_group(seed_params())], SIZES)) == {"layer 1"}


def test_training_comparison_checkpoints_are_the_jax_grad_runs_params():
    x, y = jaxbp.truth_table("xor", dtype=jnp.float64)
    p0 = seed_params()
    bounds, ckpts, training = compare_training(
        "seed", "seed", True, p0, x, y, spec=SPEC, steps=30, lr=2.0, checkpoints=3,
        progress=None,
    )  # fmt: skip
    assert bounds == [0, 10, 20, 30] and len(ckpts) == 4
    whole = jaxbp.fit(p0, x, y, steps=30, grad="autodiff", learning_rate=2.0)
    for u, v in zip(jax.tree.leaves(ckpts[-1]), jax.tree.leaves(whole.params), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12)
    np.testing.assert_allclose(training["loss_autodiff"], np.asarray(whole.losses), rtol=1e-12)
    assert len(training["loss_manual"]) == 30
    assert training["max_loss_diff"] < 1e-12 and training["max_param_diff"] < 1e-12


def test_an_untraceable_function_trains_only_the_reference():
    x, y = jaxbp.truth_table("xor", dtype=jnp.float64)
    bounds, ckpts, training = compare_training(
        "numpy_fn", "numpy_fn", False, seed_params(), x, y, spec=SPEC, steps=4, lr=2.0,
        checkpoints=2, progress=None,
    )  # fmt: skip
    assert bounds == [0, 2, 4] and len(ckpts) == 3 and training is None


def test_diverged_checkpoints_are_dropped_with_a_note():
    x, y = jaxbp.truth_table("xor", dtype=jnp.float64)
    good = seed_params()
    bad = jax.tree.map(lambda a: a * jnp.nan, good)
    bounds, ckpts, notes = finite_checkpoints([0, 5, 10], [good, good, bad], x, y, spec=SPEC)
    assert bounds == [0, 5] and len(ckpts) == 2
    assert len(notes) == 1 and "diverged (loss not finite) by step 10" in notes[0]
    assert finite_checkpoints([0, 5], [good, good], x, y, spec=SPEC) == ([0, 5], [good, good], [])
