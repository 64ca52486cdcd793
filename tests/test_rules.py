"""Tests for audit.rules and audit.custom_rules: custom_vjp / custom_jvp rules audited
against autodiff of their primal code.

The right rules are the textbook derivatives, written here by hand; the broken ones carry one
slip each, and the test names the elements it must hit. Every expectation is independent of
the audit: a slip is planted where the derivative is known to differ.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import audit
from audit.custom_rules import custom_rules

KEY = jax.random.key(0)


@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * jax.nn.sigmoid(x),))


def _layer_norm(x, g, b):
    mu = jnp.mean(x)
    xc = x - mu
    var = jnp.mean(xc * xc)
    return g * xc / jnp.sqrt(var + 1e-5) + b


def _layer_norm_bwd(res, dy, *, slip=None):
    """The layer norm's VJP by hand: xhat = xc / s, y = g xhat + b,
    dx = (g dy - mean(g dy) - xhat mean(g dy xhat)) / s."""
    x, g = res
    n = x.shape[0]
    mu = jnp.mean(x)
    xc = x - mu
    s = jnp.sqrt(jnp.mean(xc * xc) + 1e-5)
    xhat = xc / s
    gdy = g * dy
    dx = (gdy - jnp.mean(gdy) - xhat * jnp.mean(gdy * xhat)) / s
    if slip == "no_mean_term":  # the dropped d(mu)/dx term
        dx = (gdy - xhat * jnp.mean(gdy * xhat)) / s
    dg = dy * xhat
    if slip == "dg_sign":
        dg = -dg
    del n
    return dx, dg, dy


def _layer_norm_op(slip=None):
    op = jax.custom_vjp(_layer_norm)
    op.defvjp(
        lambda x, g, b: (_layer_norm(x, g, b), (x, g)),
        functools.partial(_layer_norm_bwd, slip=slip),
    )
    return op


def _ln_args(dtype):
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    return (
        jax.random.normal(k1, (32,), dtype),
        1 + 0.1 * jax.random.normal(k2, (32,), dtype),
        0.1 * jax.random.normal(k3, (32,), dtype),
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_right_softplus_rule_passes_at_many_points(dtype):
    x = jnp.linspace(-6, 6, 32, dtype=dtype)
    r = audit.check_vjp(softplus, x, key=KEY, points=1000, spread=2.0)
    assert r.passed, r.failed_weights
    assert len(r.weights) == 32 and r.weights[3]["name"] == "x[3]"
    assert r.config["check"] == "check_vjp"
    # the rule's VJP is sigmoid(x) times the cotangent, element by element
    w = r.weights[0]
    assert np.isfinite(w["manual"]) and w["status"] in ("pass", "precision")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_right_layer_norm_rule_passes(dtype):
    r = audit.check_vjp(_layer_norm_op(), *_ln_args(dtype), key=KEY, points=1000)
    assert r.passed, r.failed_weights
    assert {w["name"].split("[")[0] for w in r.weights} == {"x", "g", "b"}


def test_a_dropped_mean_term_fails_at_x_only():
    r = audit.check_vjp(_layer_norm_op("no_mean_term"), *_ln_args(jnp.float32), key=KEY)
    assert not r.passed
    failing = {name.split("[")[0] for name in r.failed_weights}
    assert failing == {"x"}
    assert len(r.failed_weights) == 32


def test_a_sign_slip_in_dg_fails_every_g_and_nothing_else():
    r = audit.check_vjp(_layer_norm_op("dg_sign"), *_ln_args(jnp.float32), key=KEY)
    assert r.failed_weights == [f"g[{i}]" for i in range(32)]


def test_check_gradients_says_the_reference_goes_through_the_rule():
    # the broken rule passes check_gradients, which can only say why it cannot judge it
    op = _layer_norm_op("no_mean_term")
    x, g, b = _ln_args(jnp.float32)

    def loss_fn(p, x, y):
        return jnp.sum((op(x, p["g"], p["b"]) - y) ** 2)

    grad_fn = jax.grad(loss_fn)
    r = audit.check_gradients(grad_fn, loss_fn, {"g": g, "b": b}, x, jnp.zeros(32), points=3,
                              key=KEY, fd=False)  # fmt: skip
    assert r.passed
    assert any("custom derivative rule" in n and "audit.check_vjp" in n for n in r.notes)
    plain = audit.check_gradients(
        jax.grad(lambda p, x, y: jnp.sum(p["g"] * x)),
        lambda p, x, y: jnp.sum(p["g"] * x),
        {"g": g},
        x,
        x,
        points=3,
        key=KEY,
        fd=False,
    )
    assert not any("custom derivative rule" in n for n in plain.notes)


@jax.custom_jvp
def logsumexp(x):
    return jnp.log(jnp.sum(jnp.exp(x)))


@logsumexp.defjvp
def _logsumexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return logsumexp(x), jnp.sum(jax.nn.softmax(x) * t)


@jax.custom_jvp
def bad_logsumexp(x):
    return jnp.log(jnp.sum(jnp.exp(x)))


@bad_logsumexp.defjvp
def _bad_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    p = jnp.exp(x) / jnp.sum(jnp.exp(x))
    return bad_logsumexp(x), jnp.sum(p.at[0].set(0.0) * t)  # the first element left out


def test_a_custom_jvp_rule_is_checked_through_its_transpose():
    x = jax.random.normal(jax.random.key(1), (8,))
    assert audit.check_jvp(logsumexp, x, key=KEY, points=500).passed
    r = audit.check_jvp(bad_logsumexp, x, key=KEY)
    assert r.failed_weights == ["x[0]"]


def test_pytree_arguments_are_named_by_path():
    @jax.custom_vjp
    def affine(p, x):
        return p["w"] @ x + p["b"]

    affine.defvjp(
        lambda p, x: (affine(p, x), (p, x)),
        lambda res, g: ({"w": jnp.outer(g, res[1]), "b": g}, res[0]["w"].T @ g),
    )
    p = {"w": jnp.ones((2, 3)), "b": jnp.zeros(2)}
    r = audit.check_vjp(affine, p, jnp.arange(3.0), key=KEY)
    assert r.passed
    assert [w["name"] for w in r.weights][:3] == ["p['b'][0]", "p['b'][1]", "p['w'][0,0]"]
    assert r.weights[-1]["name"] == "x[2]"


def test_assert_vjp_is_silent_when_right_and_names_the_leaf_when_wrong():
    audit.assert_vjp(softplus, jnp.linspace(-3, 3, 32), key=KEY)
    with pytest.raises(AssertionError) as info:
        audit.assert_vjp(_layer_norm_op("dg_sign"), *_ln_args(jnp.float32), key=KEY)
    message = str(info.value)
    lines = message.splitlines()
    assert lines[0] == "32 of 96 elements disagree (check_vjp)"
    # the rule's dg is negated: x-1 throughout g, named against autodiff (not jax.grad)
    assert lines[1] == (
        "g: 32 of 32 elements disagree, typically x-1 of autodiff; "
        "sign error: handwritten g = -1 x autodiff (x-1 everywhere)"
    )
    assert lines[2].startswith("  g[") and "rule " in lines[2] and "autodiff " in lines[2]
    assert len(lines) == 5  # the three worst elements of the one failing leaf


def test_assert_vjp_takes_a_custom_jvp_function():
    with pytest.raises(AssertionError, match=r"^1 of 8 elements disagree \(check_jvp\)"):
        audit.assert_vjp(bad_logsumexp, jnp.linspace(-1, 1, 8), key=KEY)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: audit.check_vjp(jnp.sin, jnp.ones(3), key=KEY), TypeError,
         "expected a function decorated with jax.custom_vjp or jax.custom_jvp"),
        (lambda: audit.check_vjp(softplus, jnp.arange(3), key=KEY), TypeError,
         "argument 0 is ArrayImpl with dtype int"),
        (lambda: audit.check_vjp(softplus, jnp.ones(3)), ValueError,
         r"check_vjp needs key=jax.random.key\(seed\)"),
        (lambda: audit.check_vjp(softplus, key=KEY), ValueError, "no arguments"),
        (lambda: audit.check_vjp(softplus, jnp.ones(3), key=3), TypeError,
         "key is int 3, expected one PRNG key"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_one_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_plain_primal_with_its_rule_pair_is_audited_as_the_decorated_op():
    # the same layer norm, its rule passed as defvjp's (fwd, bwd) pair: the same verdicts
    fwd = lambda x, g, b: (_layer_norm(x, g, b), (x, g))  # noqa: E731
    args = _ln_args(jnp.float64)
    right = audit.check_vjp(_layer_norm, *args, rule=(fwd, _layer_norm_bwd), key=KEY, points=63)
    assert right.passed and right.config["check"] == "check_vjp"
    slipped = functools.partial(_layer_norm_bwd, slip="dg_sign")
    wrong = audit.check_vjp(_layer_norm, *args, rule=(fwd, slipped), key=KEY, points=63)
    assert wrong.failed_weights == [f"g[{i}]" for i in range(32)]
    with pytest.raises(AssertionError, match=r"^32 of 96 elements disagree \(check_vjp\)"):
        audit.assert_vjp(_layer_norm, *args, rule=(fwd, slipped), key=KEY, points=63)


def test_a_plain_primal_with_its_jvp_rule_is_audited_through_the_transpose():
    def square(x):
        return x * x

    def right(p, t):
        return p[0] * p[0], 2 * p[0] * t[0]  # d(x^2) = 2 x dx

    def slipped(p, t):
        return p[0] * p[0], p[0] * t[0]

    x = jnp.arange(1.0, 5.0)
    assert audit.check_jvp(square, x, rule=right, key=KEY, points=31).passed
    wrong = audit.check_jvp(square, x, rule=slipped, key=KEY, points=31)
    assert wrong.failed_weights == ["x[0]", "x[1]", "x[2]", "x[3]"]
    assert wrong.config["check"] == "check_jvp"
    with pytest.raises(AssertionError, match=r"^4 of 4 elements disagree \(check_jvp\)"):
        audit.assert_vjp(square, x, rule=slipped, key=KEY, points=31)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: audit.check_vjp(softplus, jnp.ones(3), rule=(id, id), key=KEY),
         "softplus is already a custom_vjp function with a rule of its own"),
        (lambda: audit.check_vjp(jnp.sin, jnp.ones(3), rule=jnp.cos, key=KEY),
         r"rule is .*, expected the pair \(fwd, bwd\) that jax.custom_vjp's defvjp takes"),
        (lambda: audit.check_jvp(jnp.sin, jnp.ones(3), rule=(id, id), key=KEY),
         r"rule is tuple, expected the function jax.custom_jvp's defjvp takes"),
    ],
)  # fmt: skip
def test_a_rule_that_does_not_fit_is_refused_with_one_message(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_custom_rules_are_found_inside_jit_and_nested_calls():
    assert custom_rules(lambda x: jnp.sum(x * 2), jnp.ones(3)) == []
    inner = jax.jit(lambda x: softplus(x) + logsumexp(x))
    assert custom_rules(lambda x: jnp.sum(inner(x)), jnp.ones(3)) == [
        "custom_vjp_call",
        "custom_jvp_call",
    ]


# -- the verdict as users meet it: right rules at 10,000 points, broken ones named --------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_right_rules_never_fail_at_ten_thousand_points(dtype):
    wide = jnp.linspace(-12, 12, 32, dtype=dtype)  # saturated softplus at both ends
    results = [
        audit.check_vjp(softplus, wide, key=KEY, points=9999, spread=1.0, fd=False),
        audit.check_vjp(_layer_norm_op(), *_ln_args(dtype), key=KEY, points=9999, fd=False),
        audit.check_jvp(logsumexp, wide[:8], key=KEY, points=9999, fd=False),
    ]
    for r in results:
        assert r.passed, (r.config["grad"], r.failed_weights[:5], r.notes)
        assert r.points["total"] == 10_000
        assert r.counts["weights"]["not_judged"] == 0


def _matmul_op(slip=None):
    """``W @ x`` with its VJP by hand: dW = g x^T, dx = W^T g; ``slip`` plants one mistake."""

    @jax.custom_vjp
    def op(W, x):
        return W @ x

    def bwd(res, g):
        W, x = res
        dW, dx = jnp.outer(g, x), W.T @ g
        if slip == "transposed":  # W where W^T belongs (square W only)
            dx = W @ g
        if slip == "missing_1_over_n":
            dW = dW * x.shape[0]
        return dW, dx

    op.defvjp(lambda W, x: (W @ x, (W, x)), bwd)
    return op


def test_a_transposed_matrix_in_the_rule_fails_at_x_only():
    W = jax.random.normal(jax.random.key(5), (4, 4))
    x = jax.random.normal(jax.random.key(6), (4,))
    assert audit.check_vjp(_matmul_op(), W, x, key=KEY).passed
    r = audit.check_vjp(_matmul_op("transposed"), W, x, key=KEY)
    assert {n.split("[")[0] for n in r.failed_weights} == {"x"}


def test_a_scale_slip_is_named_as_a_constant_ratio():
    W = jax.random.normal(jax.random.key(5), (3, 4))
    x = jax.random.normal(jax.random.key(6), (4,))
    r = audit.check_vjp(_matmul_op("missing_1_over_n"), W, x, key=KEY)
    assert {n.split("[")[0] for n in r.failed_weights} == {"W"}
    assert len(r.failed_weights) == 12
    hints = {r.weight(n)["hint"] for n in r.failed_weights}
    assert all("x4" in h for h in hints), hints


def test_a_detached_branch_in_the_rule_is_caught():
    @jax.custom_vjp
    def gated(x, gate):
        return x * jax.nn.sigmoid(gate)

    def bwd(res, g):
        _, gate = res
        s = jax.nn.sigmoid(gate)
        return g * s, jnp.zeros_like(gate)  # the gate's branch left out

    gated.defvjp(lambda x, gate: (gated(x, gate), (x, gate)), bwd)
    x, gate = jnp.linspace(-1, 1, 6), jnp.linspace(-2, 2, 6)
    r = audit.check_vjp(gated, x, gate, key=KEY)
    assert r.failed_weights == [f"gate[{i}]" for i in range(6)]


# reference=: which opinion decides (audit.fd_verdict)


def _through_the_op(op):
    """A loss that calls the custom op, and its gradient by autodiff, which goes through
    the op's rule: right exactly when the rule is."""

    def loss_fn(p, g, b):
        return jnp.sum(jnp.sin(op(p["x"], p["g"], b)) * g)

    return jax.grad(loss_fn), loss_fn


def test_a_wrong_rule_inside_the_loss_fails_check_gradients_only_under_fd():
    # the dropped mean term is planted in dx: x is wrong, g is right
    x, g, b = _ln_args(jnp.float64)
    grad_fn, loss_fn = _through_the_op(_layer_norm_op("no_mean_term"))
    y = jnp.cos(jnp.arange(32.0))
    kw = dict(points=7, key=KEY)
    by_autodiff = audit.check_gradients(grad_fn, loss_fn, {"x": x, "g": g}, y, b, **kw)
    assert by_autodiff.passed and by_autodiff.config["reference"] == "autodiff"
    assert any("custom derivative rule" in n and "reference='fd'" in n for n in by_autodiff.notes)
    by_fd = audit.check_gradients(grad_fn, loss_fn, {"x": x, "g": g}, y, b, reference="fd", **kw)
    assert not by_fd.passed and by_fd.config["reference"] == "fd"
    assert {n[:5] for n in by_fd.failed_weights} == {"['x']"}
    assert by_fd.config["fd_points"] == 8  # 64 elements: every point fits the budget
    # the finite differences shown are the true gradient: autodiff of the plain layer norm
    true = jax.grad(lambda p: jnp.sum(jnp.sin(_layer_norm(p["x"], p["g"], b)) * y))
    for w in by_fd.weights:
        k = w["worst_point"]["index"]
        if k == 0:
            leaf, i = w["name"][2], int(w["name"].split("[")[2].rstrip("]"))
            want = float(true({"x": x, "g": g})[leaf][i])
            np.testing.assert_allclose(w["finite_diff"], want, rtol=1e-6, atol=1e-9)


def test_both_fails_where_the_references_disagree_and_shows_both_values():
    x, g, b = _ln_args(jnp.float64)
    grad_fn, loss_fn = _through_the_op(_layer_norm_op("no_mean_term"))
    y = jnp.cos(jnp.arange(32.0))
    r = audit.check_gradients(grad_fn, loss_fn, {"x": x, "g": g}, y, b, reference="both")
    assert {n[:5] for n in r.failed_weights} == {"['x']"}
    w = r.weight("['x'][0]")
    assert "the references disagree" in w["hint"]
    assert f"jax.grad {w['reference']:.6g}" in w["hint"]
    assert f"finite differences {w['finite_diff']:.6g}" in w["hint"]
    assert any("reference='both'" in n for n in r.notes)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("reference", ["fd", "both"])
def test_right_rules_pass_when_finite_differences_decide(dtype, reference):
    x = jnp.linspace(-6, 6, 32, dtype=dtype)
    r = audit.check_vjp(softplus, x, key=KEY, points=700, spread=2.0, reference=reference)
    assert r.passed, r.failed_weights
    assert r.config["fd_points"] == 1 + 2**17 // (9 * 32)  # the budget, all 32 elements each
    ln = audit.check_vjp(_layer_norm_op(), *_ln_args(dtype), key=KEY, reference=reference)
    assert ln.passed, ln.failed_weights
    assert len(ln.weights) == 96 and ln.config["fd_points"] == 1 + 2**17 // (9 * 96)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_wrong_rule_fails_when_finite_differences_decide(dtype):
    r = audit.check_vjp(_layer_norm_op("no_mean_term"), *_ln_args(dtype), key=KEY,
                        reference="fd")  # fmt: skip
    assert r.failed_weights == [f"x[{i}]" for i in range(32)]
    assert all(w["finite_diff"] is not None for w in r.weights)
    msg = audit.asserts.failure_message(r)
    assert msg.startswith("32 of 96 elements disagree (check_vjp, reference='fd')")
    assert "finite differences" in msg


@pytest.mark.parametrize("call", [audit.check_vjp, audit.check_jvp])
def test_an_unknown_reference_is_refused_with_the_valid_ones(call):
    f = softplus if call is audit.check_vjp else logsumexp
    with pytest.raises(
        ValueError, match="reference='jax', expected one of 'autodiff', 'fd', 'both'"
    ):
        call(f, jnp.ones(3), key=KEY, reference="jax")
    with pytest.raises(ValueError, match="fd=False turns them off"):
        call(f, jnp.ones(3), key=KEY, reference="fd", fd=False)


@jax.custom_vjp
def fake_quant(x, s):
    return jnp.round(x / s) * s


def _fake_quant_bwd(res, g):
    """Straight through for x; for the step s, the derivative of round(x/s) s with round's
    own derivative taken as 1: round(x/s) - x/s."""
    x, s = res
    return g, jnp.sum(g * (jnp.round(x / s) - x / s))


fake_quant.defvjp(lambda x, s: (fake_quant(x, s), (x, s)), _fake_quant_bwd)


@jax.custom_vjp
def st_round(x):
    return jnp.round(x)


st_round.defvjp(lambda x: (jnp.round(x), None), lambda _, g: (g,))


def test_a_straight_through_rule_is_said_to_have_a_flat_primal():
    x, s = jnp.linspace(0.1, 3.3, 8), jnp.array(0.7)
    r = audit.check_vjp(fake_quant, x, s, key=KEY, points=3)
    note = next(n for n in r.notes if "zero or no useful derivative" in n)
    assert "(round)" in note and "reference='autodiff' decided" in note
    assert "reference='fd'" in note and "straight-through" in note
    # autodiff takes round's derivative as 0, the rule as 1: in x, 0 against g; in s,
    # sum(g round(x/s)) against sum(g (round(x/s) - x/s))
    assert r.failed_weights == [*(f"x[{i}]" for i in range(8)), "s"]
    by_fd = audit.check_vjp(fake_quant, x, s, key=KEY, points=3, reference="fd")
    assert any("reference='fd' decided" in n for n in by_fd.notes)
    smooth = audit.check_vjp(softplus, x, key=KEY, points=3)
    assert not any("zero or no useful derivative" in n for n in smooth.notes)


def test_a_primal_flat_everywhere_is_refused_naming_its_operations():
    with pytest.raises(ValueError, match=r"exactly 0.*\(round\)"):
        audit.check_vjp(st_round, jnp.linspace(0.1, 3.3, 8), key=KEY, points=3)
