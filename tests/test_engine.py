"""The audit engine: correct gradients pass, each deliberate mistake fails with its hint."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import audit
import jaxbp
from audit.summary import leaf_summaries
from jaxbp.seed import seed_factors
from tests.broken_gradients import BROKEN, SEED_NAMES, batched, swap, weight_mistake

QUICK = dict(points=16, steps=300)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_mistake_fails_names_exactly_the_broken_weights_and_hints(case, dtype):
    mistake, broken, words = BROKEN[case]
    result = audit.audit_network(batched(mistake, case), dtype=dtype, **QUICK)
    assert not result.passed
    assert result.failed_weights == broken
    for name in broken:
        assert result.weight(name)["status"] == "fail"
        assert words in result.weight(name)["hint"], result.weight(name)["hint"]
    for w in result.weights:
        if w["name"] not in broken:
            assert w["passed"] and w["status"] in ("pass", "precision")


@pytest.mark.parametrize(
    ("case", "reference"),
    [("swapped_w12_w21", "fd"), ("missing_dA1dz1", "fd"), ("sign_w31", "both"), ("nan_b2", "both")],
)
def test_finite_differences_deciding_name_the_same_weights_with_the_same_hints(case, reference):
    mistake, broken, words = BROKEN[case]
    result = audit.audit_network(batched(mistake, case), reference=reference, **QUICK)
    assert result.config["reference"] == reference
    assert not result.passed and result.failed_weights == broken
    for name in broken:
        assert words in result.weight(name)["hint"], result.weight(name)["hint"]


@pytest.mark.parametrize(("grad", "reference"), [("seed", "fd"), ("closed_form", "both")])
def test_right_formulas_pass_when_finite_differences_decide_or_take_part(grad, reference):
    result = audit.audit_network(grad, reference=reference, dtype="float32", **QUICK)
    assert result.passed, (result.failed_weights, result.notes)
    assert result.config["fd_points"] == result.points["total"]  # 9 weights: every point


def test_swap_hint_names_the_partner():
    result = audit.audit_network(batched(weight_mistake(swap), "swapped"), **QUICK)
    assert "w12 <-> w21" in result.weight("w12")["hint"]
    assert "w21 <-> w12" in result.weight("w21")["hint"]


def test_summed_over_the_batch_is_named():
    def summed(params, x, y):
        return jax.tree.map(lambda g: g * x.shape[0], jaxbp.seed_grads(params, x, y))

    result = audit.audit_network(summed, **QUICK)
    assert result.failed_weights == SEED_NAMES
    assert all("summed over the batch" in w["hint"] for w in result.weights)


def test_averaged_twice_is_named():
    def twice(params, x, y):
        return jax.tree.map(lambda g: g / x.shape[0], jaxbp.seed_grads(params, x, y))

    result = audit.audit_network(twice, **QUICK)
    # the seed's worked example has a batch of one, where the mistake cannot show
    assert result.failed_weights == SEED_NAMES
    assert all("averaged over the batch twice" in w["hint"] for w in result.weights)


def test_transposed_weight_matrix_is_named():
    cf = jaxbp.closed_form(activation="tanh")

    def transposed(params, x, y):
        g = cf(params, x, y)
        return [g[0], {"W": g[1]["W"].T, "b": g[1]["b"]}, g[2]]

    x = jax.random.normal(jax.random.key(1), (8, 2))
    y = jax.random.uniform(jax.random.key(2), (8, 1))
    result = audit.audit_network(
        transposed, sizes=(2, 3, 3, 1), activation="tanh", data=(x, y), **QUICK
    )
    assert not result.passed
    failed = set(result.failed_weights)
    off_diagonal = {f"w{i}{j}" for i in (4, 5, 6) for j in (1, 2, 3) if i - 3 != j}
    assert failed == {n for n in off_diagonal if n in failed} and len(failed) >= 4
    words = "transposed: handwritten layer 2 W is jax.grad's layer 2 W^T"
    assert all(result.weight(n)["hint"] == words for n in failed)
    summaries = {s["name"]: s for s in leaf_summaries(result)}
    assert summaries["layer 2 W"]["hint"] == words
    assert summaries["layer 2 W"]["failing"] == len(failed)


# --- correct gradients never raise a false alarm ---------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_seed_formulas_pass_with_every_factor(dtype):
    result = audit.audit_network("seed", dtype=dtype, points=200, steps=2000)
    assert result.passed, [w for w in result.weights if not w["passed"]]
    assert [f["name"] for f in result.factors][:3] == ["dE/dA3", "dA3/dz3", "dz3/dw31"]
    assert len(result.factors) == 15 and all(f["passed"] for f in result.factors)
    assert result.first_failing_factor is None
    assert result.points == dict(total=207, seed_example=1, random=200, trajectory=6, traced=True)
    fd = np.array([w["finite_diff"] for w in result.weights])
    ref = np.array([w["reference"] for w in result.weights])
    np.testing.assert_allclose(fd, ref, rtol=1e-5, atol=1e-9)  # third opinion agrees
    t = result.training
    assert t["max_loss_diff"] < (1e-5 if dtype == "float32" else 1e-12)
    assert t["loss_autodiff"][-1] < t["loss_autodiff"][0]


ACTS = ["sigmoid", "tanh", "relu", "identity"]
LOSSES = ["mse", "bce", "softmax_ce"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTS)
def test_closed_form_passes_for_every_activation_loss_and_dtype(activation, loss, dtype):
    sizes = (3, 4, 2)
    x = jax.random.normal(jax.random.key(7), (6, 3))
    if loss == "softmax_ce":
        y = jax.nn.one_hot(jax.random.randint(jax.random.key(8), (6,), 0, 2), 2)
    else:
        y = jax.random.uniform(jax.random.key(8), (6, 2))
    result = audit.audit_network(
        "closed_form", sizes=sizes, activation=activation, loss=loss, dtype=dtype,
        data=(x, y), points=2000 if dtype == "float32" else 500, steps=0, fd=False,
    )  # fmt: skip
    assert result.passed, [w for w in result.weights if not w["passed"]][:3]
    assert [f["name"] for f in result.factors] == ["delta_2 (dE/dz_2)", "delta_1 (dE/dz_1)"]


def test_a_broken_layer_delta_is_the_first_failing_factor(monkeypatch):
    import audit.factors as factors
    from jaxbp.core import Backprop

    real = factors.backprop_batch

    def broken(params, x, y, spec):
        out = real(params, x, y, spec)
        deltas = list(out.deltas)
        deltas[1] = 2 * deltas[1]  # layer 2 of 3 is wrong; layer 1 inherits nothing here
        return Backprop(out.loss, out.grads, deltas)

    monkeypatch.setattr(factors, "backprop_batch", broken)
    x = jax.random.normal(jax.random.key(1), (5, 2))
    y = jax.random.uniform(jax.random.key(2), (5, 1))
    result = audit.audit_network(
        "closed_form", sizes=(2, 3, 3, 1), activation="tanh", data=(x, y), points=8, steps=0
    )
    assert result.first_failing_factor == "delta_2 (dE/dz_2)"
    passed = {f["name"]: f["passed"] for f in result.factors}
    assert passed == {
        "delta_3 (dE/dz_3)": True,
        "delta_2 (dE/dz_2)": False,
        "delta_1 (dE/dz_1)": True,
    }


def test_a_users_wrong_chain_factor_is_named_first():
    def factors_fn(params, x, yt):
        c = dict(seed_factors(params, x, yt))
        c["dA1/dz1"] = c["dA1/dz1"] * 1.5
        return c

    result = audit.audit_network("seed", factors_fn=None, **QUICK)
    assert result.first_failing_factor is None

    def grad_fn(params, x, y):
        return jaxbp.seed_grads(params, x, y)

    grad_fn.factors = factors_fn
    result = audit.audit_network(grad_fn, **QUICK)
    assert result.failed_weights == []
    assert result.first_failing_factor == "dA1/dz1"
    assert [f["name"] for f in result.factors if not f["passed"]] == ["dA1/dz1"]


# --- the report content ------------------------------------------------------------------


def test_json_has_the_documented_keys_and_is_deterministic():
    a = audit.audit_network("seed", **QUICK).to_dict()
    b = audit.audit_network("seed", **QUICK).to_dict()
    for key in ("passed", "config", "tolerance", "weights", "factors", "training", "files"):
        assert key in a
    for key in ("rtol", "atol"):
        assert key in a["tolerance"]
    for key in ("jax_version", "backend", "devices", "grad", "sizes", "dtype", "points", "seed"):
        assert key in a["config"]
    assert [w["name"] for w in a["weights"]] == SEED_NAMES
    for w in a["weights"]:
        assert set(w) >= {"name", "manual", "reference", "finite_diff", "abs_err", "rel_err",
                          "passed", "hint", "worst_point"}  # fmt: skip
    for f in a["factors"]:
        assert set(f) >= {"name", "abs_err", "rel_err", "passed"}
    assert set(a["training"]) >= {"steps", "loss_manual", "loss_autodiff", "max_loss_diff",
                                  "max_param_diff"}  # fmt: skip
    a.pop("timing"), b.pop("timing")
    assert json.dumps(a, allow_nan=False) == json.dumps(b, allow_nan=False)


def test_nan_gradients_give_json_safe_values():
    mistake, _, _ = BROKEN["nan_b2"]
    d = audit.audit_network(batched(mistake, "nan"), **QUICK).to_dict()
    json.dumps(d, allow_nan=False)
    b2 = next(w for w in d["weights"] if w["name"] == "b2")
    assert b2["manual"] == "nan" and b2["rel_err"] == "inf" and not b2["passed"]


# --- functions JAX cannot trace, any pytree, bad input --------------------------------


def test_a_numpy_function_is_audited_point_by_point():
    def numpy_grads(params, x, y):
        g = jaxbp.seed_grads(params, x, y)
        return [{k: np.asarray(v) for k, v in layer.items()} for layer in g]

    result = audit.audit_network(numpy_grads, points=4, steps=100)
    assert result.passed
    assert result.points["traced"] is False
    assert any("cannot be traced" in n for n in result.notes)
    assert result.training is None


def test_check_gradients_on_any_pytree():
    def loss_fn(p, x, y):
        return jnp.mean((x @ p["w"] + p["c"] - y) ** 2)

    def grad_fn(p, x, y):
        r = x @ p["w"] + p["c"] - y
        return {"w": 2 * x.T @ r / r.size, "c": 2 * jnp.mean(r)}

    def wrong(p, x, y):
        g = grad_fn(p, x, y)
        return {"w": g["w"].at[1].multiply(-1), "c": g["c"]}

    x = jax.random.normal(jax.random.key(0), (10, 3))
    y = jax.random.normal(jax.random.key(1), (10,))
    params = {"w": jnp.array([0.5, -1.0, 2.0]), "c": jnp.array(0.3)}
    ok = audit.check_gradients(grad_fn, loss_fn, params, x, y, points=50, key=jax.random.key(2))
    assert ok.passed and ok.points["total"] == 51
    assert [w["name"] for w in ok.weights] == ["['c']", "['w'][0]", "['w'][1]", "['w'][2]"]
    bad = audit.check_gradients(wrong, loss_fn, params, x, y, points=50, key=jax.random.key(2))
    assert bad.failed_weights == ["['w'][1]"]
    assert "sign error" in bad.weight("['w'][1]")["hint"]


@pytest.mark.parametrize("reference", ["fd", "both"])
def test_check_gradients_with_finite_differences_deciding(reference):
    def loss_fn(p, x, y):
        return jnp.mean((jnp.tanh(x @ p["w"]) + p["c"] - y) ** 2)

    def grad_fn(p, x, y):  # by hand: d/dw = 2/n x^T (r (1 - t^2)), d/dc = 2 mean(r)
        t = jnp.tanh(x @ p["w"])
        r = t + p["c"] - y
        return {"w": 2 * x.T @ (r * (1 - t**2)) / r.size, "c": 2 * jnp.mean(r)}

    def wrong(p, x, y):
        g = grad_fn(p, x, y)
        return {"w": g["w"].at[2].multiply(0.98), "c": g["c"]}  # a 2% slip

    x = jax.random.normal(jax.random.key(0), (10, 3))
    y = jax.random.normal(jax.random.key(1), (10,))
    params = {"w": jnp.array([0.5, -1.0, 2.0]), "c": jnp.array(0.3)}
    kw = dict(points=50, key=jax.random.key(2), reference=reference)
    ok = audit.check_gradients(grad_fn, loss_fn, params, x, y, **kw)
    assert ok.passed, ok.failed_weights
    assert ok.config["reference"] == reference and ok.config["fd_points"] == 51
    assert f"reference={reference} fd_points=51" in audit.format_table(ok).splitlines()[0]
    assert any(n.startswith(f"reference={reference!r}") and "all 4 elements at 51 of 51" in n
               for n in ok.notes)  # fmt: skip
    bad = audit.check_gradients(wrong, loss_fn, params, x, y, **kw)
    assert bad.failed_weights == ["['w'][2]"]
    w = bad.weight("['w'][2]")
    # the finite difference shown is jax.grad's value, computed here on its own
    k = w["worst_point"]["index"]
    if k == 0:
        want = float(jax.grad(loss_fn)(params, x, y)["w"][2])
        np.testing.assert_allclose(w["finite_diff"], want, rtol=1e-7)
    np.testing.assert_allclose(w["manual"] / w["finite_diff"], 0.98, rtol=1e-5)
    assert "x0.98" in w["hint"]


def test_check_gradients_judges_every_element_where_the_budget_allows(monkeypatch):
    import audit.fd_verdict

    def loss_fn(p, x, y):
        return jnp.sum(jnp.sin(p) * x)

    def grad_fn(p, x, y):
        return jnp.cos(p) * x

    p, x = jnp.linspace(-1, 1, 50), jnp.ones(50)
    kw = dict(points=7, key=jax.random.key(0), reference="fd")
    monkeypatch.setattr(audit.fd_verdict, "FD_LOSS_EVALS", 900)  # 2 more points of 50 x 9
    r = audit.check_gradients(grad_fn, loss_fn, p, x, None, **kw)
    assert r.passed and r.config["fd_points"] == 3 and r.config["fd_loss_evals"] == 900
    assert len(r.weights) == 50 and all(w["finite_diff"] is not None for w in r.weights)
    assert {w["worst_point"]["index"] for w in r.weights} <= {0, 1, 7}  # given; first, last other
    assert any("all 50 elements at 3 of 8 points" in note for note in r.notes)
    monkeypatch.setattr(audit.fd_verdict, "FD_LOSS_EVALS", 449)  # not one point more
    r = audit.check_gradients(grad_fn, loss_fn, p, x, None, **kw)
    assert r.config["fd_points"] == 1 and all(w["worst_point"]["index"] == 0 for w in r.weights)
    assert len(r.weights) == 50 and all(w["finite_diff"] is not None for w in r.weights)


def test_finite_differences_of_a_wide_network_agree_with_the_exact_gradient(monkeypatch):
    # 100,000 parameters: differences go through the loss a few at a time, not 64, and the
    # six steps of each as six copies; sin(p) . x has the exact gradient cos(p) * x
    import audit.finite_diff

    def loss_fn(p, x, y):
        return jnp.sum(jnp.sin(p) * x)

    def grad_fn(p, x, y):
        return jnp.cos(p) * x

    n = 100_000
    assert audit.finite_diff.FD_BATCH_VALUES // n < audit.finite_diff.FD_BATCH_MAX
    assert n > audit.finite_diff.VMAP_STEPS_MAX
    p = jax.random.normal(jax.random.key(0), (n,))
    x = jax.random.normal(jax.random.key(1), (n,))
    assert p.dtype == jnp.float64
    kw = dict(points=3, key=jax.random.key(2), fd_max=53)  # 5 calls of 10, then 3
    results = [audit.check_gradients(grad_fn, loss_fn, p, x, None, **kw)]
    monkeypatch.setattr(audit.finite_diff, "FD_BATCH_VALUES", 64 * n)  # 64 at a time
    results.append(audit.check_gradients(grad_fn, loss_fn, p, x, None, **kw))
    for r in results:
        assert r.passed
        shown = [w for w in r.weights if w["finite_diff"] is not None]
        assert len(shown) == 53
        for w in shown:
            i = int(w["name"].strip("[]"))
            k = w["worst_point"]["index"]
            # float64 here (conftest): the handwritten gradient is jax.grad's to the bit, so
            # every score is 0 and each element's worst point is the first, the given one
            assert k == 0
            want = np.cos(np.float64(p[i])) * np.float64(x[i])
            np.testing.assert_allclose(w["finite_diff"], want, rtol=1e-6, atol=1e-6)


def test_check_gradients_refuses_an_unknown_reference():
    with pytest.raises(
        ValueError, match=r"reference='jax\.grad', expected one of 'autodiff', 'fd', 'both'"
    ):
        audit.check_gradients(_lin_grad, _lin_loss, {"w": jnp.ones(3)}, _lin_batch(), None,
                              reference="jax.grad")  # fmt: skip
    by_default = audit.check_gradients(_lin_grad, _lin_loss, {"w": jnp.ones(3)}, _lin_batch(),
                                       None)  # fmt: skip
    assert by_default.config["reference"] == "autodiff" and "fd_points" not in by_default.config


def test_gradients_of_the_wrong_structure_name_the_leaf():
    def missing_bias(params, x, y):
        g = jaxbp.seed_grads(params, x, y)
        return [g[0], {"W": g[1]["W"]}]

    with pytest.raises(ValueError, match=r"missing leaves \[\"\[1\]\['b'\]\"\]"):
        audit.audit_network(missing_bias, **QUICK)

    def misshaped(params, x, y):
        g = jaxbp.seed_grads(params, x, y)
        return [g[0], {"W": g[1]["W"].T, "b": g[1]["b"]}]

    with pytest.raises(ValueError, match=r"\[1\]\['W'\] has shape \(2, 1\), expected \(1, 2\)"):
        audit.audit_network(misshaped, **QUICK)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(points=0), r"points=0, expected an int >= 1"),
        (dict(sizes=(3, 2, 1), grad="closed_form"), r"sizes 3,2,1 but the data has 2 inputs"),
        (dict(sizes=(2, 3, 1)), r"grad='seed' is the note's 2-2-1 sigmoid network"),
        (dict(grad="autograd"), r"grad='autograd' is not known; expected one of seed, closed_form"),
        (dict(grad="autodiff"), r"grad='autodiff' is jax.grad itself, .* checks nothing"),
        (dict(rtol=-1.0), r"rtol=-1.0, expected a finite number >= 0"),
        (dict(activation="softplus"), r"activation='softplus' is not known"),
        (dict(learning_rate=0.0), r"learning_rate=0.0, expected a finite number > 0"),
        (dict(memory=0), r"memory=0, expected an int >= 1"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, message):
    grad = kwargs.pop("grad", "seed")
    with pytest.raises(ValueError, match=message):
        audit.audit_network(grad, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(memory=2.5e9), r"memory=2500000000.0, expected an int >= 1 or None \(got float\)"),
        (dict(points="64"), r"points='64', expected an int >= 1 \(got str\)"),
    ],
)
def test_a_count_that_is_not_an_int_is_a_type_error(kwargs, message):
    with pytest.raises(TypeError, match=message):
        audit.audit_network("seed", **kwargs)


def test_nan_in_the_data_is_refused():
    x, y = jaxbp.truth_table("xor")
    with pytest.raises(ValueError, match="data inputs contain NaN or Inf"):
        audit.audit_network("seed", data=(x.at[0, 0].set(jnp.nan), y))


def test_a_diverging_training_run_is_noted_not_failed():
    x = jax.random.normal(jax.random.key(0), (8, 2)) * 10
    y = jax.random.normal(jax.random.key(1), (8, 1)) * 10
    result = audit.audit_network(
        "closed_form", sizes=(2, 4, 1), activation="identity", data=(x, y), points=8,
        steps=50, learning_rate=5.0, fd=False,
    )  # fmt: skip
    assert result.passed
    assert any("diverged" in n for n in result.notes)


def test_a_failure_seen_only_past_the_first_512_points_is_still_diagnosed():
    # trajectory points come after 600 random draws; only they (batch 70) get a sign error
    def wrong_on_the_data(params, x, y):
        g = jaxbp.closed_form(activation="tanh")(params, x, y)
        return jax.tree.map(lambda a: -a, g) if x.shape[0] == 70 else g

    x = jax.random.normal(jax.random.key(3), (70, 2))
    y = jax.random.uniform(jax.random.key(4), (70, 1))
    result = audit.audit_network(
        wrong_on_the_data, sizes=(2, 3, 1), activation="tanh", data=(x, y), points=600,
        steps=50, learning_rate=0.1, fd=False,
    )  # fmt: skip
    assert len(result.failed_weights) == len(result.weights)
    for w in result.weights:
        assert w["worst_point"]["source"] == "trajectory"
        assert "sign error" in w["hint"], w["hint"]


# --- rounding in a right formula is not a wrong formula; unjudgeable points ----------------


def test_seed_22_correct_formulas_lose_digits_in_float32_and_pass_flagged():
    # at --seed 22 the note's dA2/dz2 = A2 (1 - A2) is 1.4305e-05 in float32 against
    # 1.4277e-05 from jax.grad in float64 (step 5000, example 3): 2.0e-3 relative, twice rtol
    result = audit.audit_network("seed", seed=22, points=64, steps=5000)
    assert result.passed
    f = next(f for f in result.factors if f["name"] == "dA2/dz2")
    assert f["status"] == "precision" and f["passed"]
    assert f["score"] > 1  # the float32 value really is off by more than rtol
    # the same point in float64, from jax.grad: the seed formula agrees there
    assert f["precision"]["how"] == "float64"
    assert f["precision"]["digits_lost"] >= 3
    assert "cancellation in 1 - A near saturation" in f["precision"]["text"]
    assert "1 factor (dA2/dz2) passes as rounding (PASS*)" in audit.verdict_line(result)
    assert "PASS*" in audit.format_table(result)
    assert result.counts["factors"] == {"pass": 14, "precision": 1, "fail": 0, "not_judged": 0}
    assert result.to_dict()["counts"]["weights"]["pass"] == 9


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_is_audited_by_the_same_rule(dtype):
    for grad in ("seed", "closed_form"):
        result = audit.audit_network(grad, dtype=dtype, points=256, steps=500)
        assert result.passed, audit.verdict_line(result)
    mistake, broken, _ = BROKEN["swapped_w12_w21"]
    wrong = audit.audit_network(batched(mistake, "swapped"), dtype=dtype, points=256, steps=500)
    assert wrong.failed_weights == broken


def test_a_non_dtype_generic_function_gets_a_stated_widened_tolerance():
    def float32_only(params, x, y):  # casts inside: cannot be evaluated again in float64
        p = jax.tree.map(lambda a: a.astype(jnp.float32), params)
        return jaxbp.seed_grads(p, x.astype(jnp.float32), y.astype(jnp.float32))

    result = audit.audit_network(float32_only, **QUICK)
    assert result.passed
    assert any("does not compute in float64" in n and "widened" in n for n in result.notes)
    wrong = audit.audit_network(
        lambda p, x, y: jax.tree.map(lambda g: 2 * g, float32_only(p, x, y)), **QUICK
    )
    assert wrong.failed_weights == SEED_NAMES


def test_a_diverged_reference_is_not_judgeable_never_blamed_on_the_handwritten_side():
    # lr 1e30: jax.grad of dA3/dz3 and dA2/dz2 becomes NaN along the trajectory
    result = audit.audit_network("seed", points=16, steps=500, learning_rate=1e30)
    assert result.passed
    assert all(f["status"] != "fail" for f in result.factors)
    unjudged = [f["name"] for f in result.factors if f["not_judgeable"]]
    assert "dA3/dz3" in unjudged
    note = next(n for n in result.notes if "not finite" in n)
    assert "JAX's factor nan" in note and "handwritten" in note


def test_an_element_the_reference_never_judges_is_not_a_pass():
    def loss_fn(p, x, y):  # d/dw0 sqrt(w0^2) at w0 = 0 is 0 * inf: NaN; the loss is finite
        return jnp.sqrt(p["w"][0] ** 2) + jnp.sum(p["w"][1:] ** 2 * x)

    def grad_fn(p, x, y):
        return {"w": jnp.concatenate([jnp.zeros(1), 2 * p["w"][1:] * x])}

    w = jnp.array([0.0, 1.0, 2.0])
    result = audit.check_gradients(grad_fn, loss_fn, {"w": w}, jnp.ones(2), None)
    statuses = [e["status"] for e in result.weights]
    assert statuses == ["not_judged", "pass", "pass"]
    assert not result.passed
    assert audit.verdict_line(result).startswith(
        "NOT JUDGED: nothing disagrees with jax.grad at 1 points, but 1 weight (['w'][0]) not "
        "judged"
    )


# --- check_gradients takes any pytree and refuses what would check nothing -----------------


def _lin_loss(p, b, _):
    return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2)


def _lin_grad(p, b, _):
    x, y = b["x"], b["y"]
    return {"w": 2 * x.T @ (x @ p["w"] - y) / x.shape[0]}


def _lin_batch(n=5):
    x = jax.random.normal(jax.random.key(1), (n, 3))
    return {"x": x, "y": jnp.ones(n)}


def test_check_gradients_takes_a_dict_batch_and_no_y():
    w = {"w": jnp.array([0.3, -0.2, 0.5])}
    key = jax.random.key(0)
    ok = audit.check_gradients(_lin_grad, _lin_loss, w, _lin_batch(), None, points=8, key=key)
    assert ok.passed and ok.points["total"] == 9

    def doubled(p, b, y):
        return {"w": 2 * _lin_grad(p, b, y)["w"]}

    bad = audit.check_gradients(doubled, _lin_loss, w, _lin_batch(), None, points=8, key=key)
    assert not bad.passed and "x2" in bad.weights[0]["hint"]


def test_check_gradients_takes_a_scalar_x():
    w = {"w": jnp.array([0.3, -0.2])}

    def loss_fn(p, x, y):
        return x * jnp.sum(p["w"] ** 2)

    def grad_fn(p, x, y):
        return {"w": 2 * x * p["w"]}

    ok = audit.check_gradients(grad_fn, loss_fn, w, 3.0, None, points=4, key=jax.random.key(0))
    assert ok.passed
    bad = audit.check_gradients(
        lambda p, x, y: {"w": x * p["w"]}, loss_fn, w, 3.0, None, points=4, key=jax.random.key(0)
    )
    assert bad.failed_weights == ["['w'][0]", "['w'][1]"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", r"x\['x'\] is empty \(shape \(0, 3\)\): a batch with no examples"),
        ("vector", r"_lin_vector\(params, x, y\) returned shape \(5,\) float64, expected a "
                   r"scalar float loss"),
        ("nan", r"_lin_nan\(params, x, y\) is nan at the given point, expected a finite loss"),
        ("constant", r"jax.grad of the loss is exactly 0 for every parameter at all 4 points"),
    ],
)  # fmt: skip
def test_check_gradients_refuses_what_checks_nothing(case, message):
    w = {"w": jnp.array([0.3, -0.2, 0.5])}

    def _lin_vector(p, b, _):
        return b["x"] @ p["w"]

    def _lin_nan(p, b, _):
        return _lin_loss(p, b, _) * jnp.nan

    def constant(p, b, _):
        return jnp.sum(b["x"]) + 0 * jnp.sum(p["w"])

    batch = _lin_batch(0) if case == "empty" else _lin_batch()
    loss = {"vector": _lin_vector, "nan": _lin_nan, "constant": constant}.get(case, _lin_loss)
    grad = (lambda p, b, y: {"w": jnp.zeros(3)}) if case == "constant" else _lin_grad
    with pytest.raises(ValueError, match=message):
        audit.check_gradients(grad, loss, w, batch, None, points=3, key=jax.random.key(0))


# --- a memory budget: the points in several calls, the same verdict -------------------------


def _verdicts(result):
    return [(e["name"], e["status"]) for e in result.weights + result.factors]


@pytest.mark.parametrize("grad", ["seed", "swapped"])
def test_a_small_memory_budget_splits_the_calls_not_the_verdict(grad):
    grad_fn = "seed" if grad == "seed" else batched(*BROKEN["swapped_w12_w21"][:1], "swapped")
    whole = audit.audit_network(grad_fn, **QUICK)
    # 50 kB: the estimate of one point of the 2-2-1 audit (batch 4) is about 10 kB, so a few
    # points per call, the last call padded; by default the 22 points of a batch of 4 (the
    # random draws and the trajectory) go in one call
    split = audit.audit_network(grad_fn, memory=50_000, **QUICK)
    assert whole.config["points_per_call"] == 22
    assert 1 < split.config["points_per_call"] < 8
    assert split.config["memory"] == 50_000 and whole.config["memory"] is None
    assert _verdicts(split) == _verdicts(whole)
    assert split.failed_weights == whole.failed_weights
    assert [w["hint"] for w in split.weights] == [w["hint"] for w in whole.weights]
    for a, b in zip(split.weights, whole.weights, strict=True):
        np.testing.assert_allclose(float(a["reference"]), float(b["reference"]), rtol=1e-12)


def test_check_gradients_in_calls_of_one_point():
    def loss_fn(p, x, y):
        return jnp.mean((jnp.tanh(x @ p["w"]) - y) ** 2)

    def grad_fn(p, x, y):
        t = jnp.tanh(x @ p["w"])
        return {"w": x.T @ (2 * (t - y) * (1 - t * t)) / y.size}

    def halved_w1(p, x, y):
        g = grad_fn(p, x, y)
        return {"w": g["w"].at[1].multiply(0.5)}

    x = jax.random.normal(jax.random.key(0), (6, 3))
    y = jax.random.normal(jax.random.key(1), (6,))
    params = {"w": jnp.array([0.5, -1.0, 2.0])}
    kw = dict(points=20, key=jax.random.key(2), fd=False)
    for fn, failing in ((grad_fn, []), (halved_w1, ["['w'][1]"])):
        whole = audit.check_gradients(fn, loss_fn, params, x, y, **kw)
        split = audit.check_gradients(fn, loss_fn, params, x, y, memory=1, **kw)
        assert (whole.config["points_per_call"], split.config["points_per_call"]) == (21, 1)
        assert whole.failed_weights == split.failed_weights == failing
        assert _verdicts(split) == _verdicts(whole)
        # the worst case of a failing weight is the largest error over all points, found
        # whichever call holds it
        for name in failing:
            a, b = split.weight(name), whole.weight(name)
            assert a["worst_point"]["index"] == b["worst_point"]["index"]
            np.testing.assert_allclose(float(a["abs_err"]), float(b["abs_err"]), rtol=1e-12)


def test_finite_differences_compiled_ahead_are_compiled_once():
    # compiled in a background thread while the points are compared, then called: the call
    # finds the program in JAX's cache, so finite differences add exactly one compilation
    from benchmarks.timing import compile_log

    x = jax.random.normal(jax.random.key(0), (5, 3), jnp.float32)
    y = jax.random.normal(jax.random.key(1), (5,), jnp.float32)
    params = {"w": jnp.array([0.5, -1.0, 2.0], jnp.float32)}

    def fresh():  # new function objects: nothing of them is compiled yet
        def loss_fn(p, x, y):
            return jnp.mean((jnp.tanh(x @ p["w"]) - y) ** 2)

        def grad_fn(p, x, y):
            t = jnp.tanh(x @ p["w"])
            return {"w": x.T @ (2 * (t - y) * (1 - t * t)) / y.size}

        return grad_fn, loss_fn

    key = jax.random.key(2)
    audit.check_gradients(*fresh(), params, x, y, points=7, key=key, fd=False)  # the draws
    counts = {}
    for fd in (False, True):
        with compile_log() as log:
            r = audit.check_gradients(*fresh(), params, x, y, points=7, key=key, fd=fd)
        assert r.passed
        counts[fd] = log().count
    assert counts[True] == counts[False] + 1, counts


def test_an_explicit_key_draws_what_the_seed_would():
    # audit_network(seed=s) is audit_network(key=jax.random.key(s)), as check_gradients(key=)
    common = dict(points=4, steps=10, fd=False)
    by_seed = audit.audit_network("seed", seed=7, **common)
    by_key = audit.audit_network("seed", key=jax.random.key(7), **common)
    by_raw = audit.audit_network("seed", key=jax.random.PRNGKey(7), **common)
    for r in (by_key, by_raw):
        assert [w["manual"] for w in r.weights] == [w["manual"] for w in by_seed.weights]
        assert r.config["key"] == [0, 7] and r.config["seed"] is None
    assert by_seed.config["seed"] == 7 and by_seed.config["key"] is None
    with pytest.raises(TypeError, match="key is int 3, expected one PRNG key"):
        audit.audit_network("seed", key=3, **common)


def test_integer_data_is_refused_as_jaxbp_refuses_it():
    # one rule in both halves: jaxbp.fit refuses integer data, and so does the audit
    xi = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    yi = np.array([[0], [1], [1], [0]])
    message = re.escape("x has dtype int64, expected a floating dtype; convert with x.astype(")
    with pytest.raises(TypeError, match=message):
        audit.audit_network("seed", data=(xi, yi), points=1, steps=0)
    with pytest.raises(TypeError, match=message):
        jaxbp.fit(jaxbp.init((2, 2, 1), key=jax.random.key(0)), xi, yi, steps=1)


def test_check_gradients_refuses_a_key_that_is_not_a_prng_key():
    params = {"w": jnp.ones((3, 2))}
    x, y = jnp.ones((4, 3)), jnp.ones((4, 2))

    def loss_fn(p, x, y):
        return jnp.mean((x @ p["w"] - y) ** 2)

    def grad_fn(p, x, y):
        return {"w": 2 * x.T @ (x @ p["w"] - y) / y.size}

    with pytest.raises(TypeError, match="key is int 5, expected one PRNG key"):
        audit.check_gradients(grad_fn, loss_fn, params, x, y, points=3, key=5)
