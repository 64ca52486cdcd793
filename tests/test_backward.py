"""Tests for audit.backward: a hand-written backward pass audited intermediate by intermediate.

The network is a small MLP with batch norm, tanh and softmax cross-entropy, every
intermediate's gradient derived by hand here (the derivation is in ``backward``'s comments).
Each broken variant plants one slip at a known intermediate; the audit must name exactly
that one as the first failing intermediate in backward order, and pass the ones after it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import audit
from audit.backward import tapped
from audit.summary import leaf_summaries

N, D, H, C = 8, 4, 6, 3
EPS = 1e-5
KEY = jax.random.key(0)


def forward(tap, params, x, Y):
    """``x: (N, D)``, one-hot ``Y: (N, C)``; mean cross-entropy of a BN-tanh MLP."""
    W1, W2 = tap("W1", params["W1"]), tap("W2", params["W2"])
    gain = tap("gain", params["gain"])
    hprebn = tap("hprebn", x @ W1)
    mu = jnp.mean(hprebn, axis=0, keepdims=True)
    var = jnp.mean((hprebn - mu) ** 2, axis=0, keepdims=True)  # biased, as in training
    bnraw = tap("bnraw", (hprebn - mu) / jnp.sqrt(var + EPS))
    hpre = tap("hpre", gain[None, :] * bnraw + params["bias"][None, :])
    h = tap("h", jnp.tanh(hpre))
    logits = tap("logits", h @ W2)
    return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(logits, axis=1), axis=1))


def backward(params, x, Y, *, slip=None):
    W1, W2, gain = params["W1"], params["W2"], params["gain"]
    hprebn = x @ W1
    mu = jnp.mean(hprebn, axis=0, keepdims=True)
    std = jnp.sqrt(jnp.mean((hprebn - mu) ** 2, axis=0, keepdims=True) + EPS)
    bnraw = (hprebn - mu) / std
    h = jnp.tanh(gain[None, :] * bnraw + params["bias"][None, :])
    logits = h @ W2
    probs = jax.nn.softmax(logits, axis=1)
    dlogits = (probs - Y) / N  # d(-mean log softmax)/dlogits, rows of Y sum to 1
    if slip == "missing_1_over_n":
        dlogits = probs - Y
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    dhpre = (1 - h**2) * dh
    if slip == "sign":
        dhpre = (h**2 - 1) * dh
    dgain = jnp.sum(bnraw * dhpre, axis=0)
    dbnraw = gain[None, :] * dhpre
    # bnraw = (hprebn - mu) / std: the mean and the variance both depend on every row
    dhprebn = (
        N * dbnraw
        - jnp.sum(dbnraw, 0, keepdims=True)
        - bnraw * jnp.sum(dbnraw * bnraw, 0, keepdims=True)
    ) / (N * std)
    if slip == "variance_term":  # the variance's dependence on hprebn forgotten
        dhprebn = (N * dbnraw - jnp.sum(dbnraw, 0, keepdims=True)) / (N * std)
    dW1 = x.T @ dhprebn
    if slip == "transposed":
        dW1 = dhprebn.T @ x  # (H, D) where (D, H) belongs: caught by the shape check
    return {"W1": dW1, "W2": dW2, "gain": dgain, "hprebn": dhprebn, "bnraw": dbnraw,
            "hpre": dhpre, "h": dh, "logits": dlogits}  # fmt: skip


def _point(dtype):
    k = jax.random.split(jax.random.key(3), 5)
    params = {
        "W1": jax.random.normal(k[0], (D, H), dtype) / 2,
        "W2": jax.random.normal(k[1], (H, C), dtype) / 2,
        "gain": 1 + 0.1 * jax.random.normal(k[2], (H,), dtype),
        "bias": 0.1 * jax.random.normal(k[3], (H,), dtype),
    }
    x = jax.random.normal(k[4], (N, D), dtype)
    Y = jax.nn.one_hot(jnp.arange(N) % C, C, dtype=dtype)
    return params, x, Y


def _slipped(slip):
    def back(params, x, Y):
        return backward(params, x, Y, slip=slip)

    back.__name__ = f"backward_{slip}"
    return back


def test_the_marked_intermediates_in_forward_order():
    names = [n for n, _ in tapped(forward, *_point(jnp.float32))]
    assert names == ["W1", "W2", "gain", "hprebn", "bnraw", "hpre", "h", "logits"]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_right_backward_pass_passes_at_ten_thousand_points(dtype):
    r = audit.check_backward(forward, backward, *_point(dtype), key=KEY, points=9999)
    assert r.passed, (r.failed_weights[:5], r.notes)
    assert [f["name"] for f in r.factors] == ["logits", "h", "hpre", "bnraw", "hprebn",
                                              "gain", "W2", "W1"]  # fmt: skip
    assert r.first_failing_factor is None
    assert len(r.weights) == 4 * N * H + N * C + D * H + H * C + H  # 264
    assert audit.verdict_line(r).startswith("PASSED: 264/264 elements, 8/8 intermediates agree")


@pytest.mark.parametrize(
    ("slip", "first", "also"),
    [
        ("missing_1_over_n", "logits", None),  # everything before it inherits the error
        ("sign", "hpre", None),
        ("variance_term", "hprebn", {"W1"}),
    ],
)
def test_each_slip_is_named_at_its_intermediate(slip, first, also):
    r = audit.check_backward(forward, _slipped(slip), *_point(jnp.float32), key=KEY)
    assert not r.passed
    assert r.first_failing_factor == first
    order = [f["name"] for f in r.factors]
    passing_before = order[: order.index(first)]
    assert all(f["passed"] for f in r.factors if f["name"] in passing_before)
    if also is not None:  # only the slip's own intermediate and what is computed from it
        assert {f["name"] for f in r.factors if not f["passed"]} == {first} | also


def test_a_missing_factor_of_n_is_hinted_as_a_constant_ratio():
    r = audit.check_backward(forward, _slipped("missing_1_over_n"), *_point(jnp.float32), key=KEY)
    logits = next(f for f in r.factors if f["name"] == "logits")
    assert logits["hint"].startswith(f"{N * C} of {N * C} elements disagree")
    assert f"x{N}" in logits["hint"]


def test_a_wrong_shape_is_refused_naming_the_intermediate():
    with pytest.raises(ValueError, match=r"\['W1'\] has shape \(6, 4\), expected \(4, 6\)"):
        audit.check_backward(forward, _slipped("transposed"), *_point(jnp.float32), key=KEY)


def test_assert_backward_names_the_first_failing_intermediate():
    audit.assert_backward(forward, backward, *_point(jnp.float32), key=KEY)
    with pytest.raises(AssertionError) as info:
        audit.assert_backward(forward, _slipped("sign"), *_point(jnp.float32), key=KEY)
    lines = str(info.value).splitlines()
    assert lines[0] == "first failing intermediate in backward order: hpre"
    assert "by hand" in lines[3] and "autodiff" in lines[3]


def _loss_only(tap, w, x):
    return jnp.sum(w * x)


@pytest.mark.parametrize(
    ("fwd", "back", "error", "message"),
    [
        (_loss_only, lambda w, x: {}, ValueError, "marks no intermediate: call tap"),
        (lambda tap, w, x: jnp.sum(tap("a", w) * tap("a", x)), lambda w, x: {}, ValueError,
         r"tap\('a', \.\.\.\) marks two values"),
        (lambda tap, w, x: tap("a", w * x), lambda w, x: {"a": x}, ValueError,
         "expected a scalar float loss"),
        (lambda tap, w, x: jnp.sum(tap("a", w * x)), lambda w, x: {"b": x}, ValueError,
         r"has no entry for \['a'\]"),
        (lambda tap, w, x: jnp.sum(tap("a", w * x)), lambda w, x: [x], TypeError,
         "expected a dict"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_one_message(fwd, back, error, message):
    with pytest.raises(error, match=message):
        audit.check_backward(fwd, back, jnp.ones(3), jnp.ones(3), key=KEY)


def test_points_need_a_key():
    with pytest.raises(ValueError, match=r"points > 0 needs key=jax.random.key\(seed\)"):
        audit.check_backward(forward, backward, *_point(jnp.float32))
    r = audit.check_backward(forward, backward, *_point(jnp.float32), points=0)
    assert r.passed and r.points["total"] == 1
    assert np.isfinite(r.factors[0]["manual"])


def _tanh_forward(tap, w, x):
    h = tap("h", x @ w)
    a = tap("a", jnp.tanh(h))
    return jnp.mean(a**2)


def _tanh_backward_without_derivative(w, x):
    a = jnp.tanh(x @ w)
    da = 2 * a / a.size
    return {"a": da, "h": da}  # a slip: dh = da * (1 - a**2)


def test_a_missing_elementwise_derivative_is_summed_up_per_intermediate():
    w = jax.random.normal(jax.random.key(1), (3, 4))
    x = jax.random.normal(jax.random.key(2), (5, 3))
    result = audit.check_backward(
        _tanh_forward, _tanh_backward_without_derivative, w, x, key=KEY, points=15
    )
    # independently, in float64 at draws of our own: how many elements of dh differ from the
    # true dE/dh = da * (1 - a^2) (jax.grad) at some draw, and of da from dE/da
    differs = {"a": np.zeros((5, 4), bool), "h": np.zeros((5, 4), bool)}
    with jax.enable_x64(True):
        x64 = np.asarray(x, np.float64)
        for k in range(8):
            w64 = np.asarray(jax.random.normal(jax.random.key(10 + k), (3, 4)), np.float64)
            h = x64 @ w64
            true = {
                "h": jax.grad(lambda h: jnp.mean(jnp.tanh(h) ** 2))(h),
                "a": jax.grad(lambda a: jnp.mean(a**2))(jnp.tanh(h)),
            }
            given = _tanh_backward_without_derivative(w64, x64)
            for name in differs:
                gap = np.abs(np.asarray(given[name]) - np.asarray(true[name]))
                differs[name] |= gap > 1e-2 * np.abs(np.asarray(true[name])).max()
    summaries = leaf_summaries(result)
    assert [s["name"] for s in summaries] == ["a", "h"]  # backward order
    assert [(s["failing"], s["size"]) for s in summaries] == [
        (int(differs["a"].sum()), 20),
        (int(differs["h"].sum()), 20),
    ]
    words = "handwritten h equals autodiff's a"
    assert summaries[1]["hint"].startswith(words)
    assert words in result.factors[1]["hint"]
    hints = [w["hint"] or "" for w in result.weights] + [f["hint"] or "" for f in result.factors]
    assert not any("jax.grad" in h or "swapped indices" in h for h in hints)
    table = audit.format_table(result)
    assert table.splitlines()[table.splitlines().index("") + 1].startswith("intermediate")
    assert "ratio to autodiff" in table and "jax.grad" not in table.split("weight  ")[1]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("reference", ["fd", "both"])
def test_a_right_backward_pass_passes_when_finite_differences_decide(dtype, reference):
    r = audit.check_backward(forward, backward, *_point(dtype), key=KEY, points=63,
                             reference=reference)  # fmt: skip
    assert r.passed, (r.failed_weights[:5], r.notes)
    # 264 elements: 2**17 loss evaluations at 9 per element and point allow 55 more points
    # beside the given one, of the 63 there are
    assert r.config["reference"] == reference and r.config["fd_points"] == 56
    assert audit.verdict_line(r).endswith("agree with autodiff and finite differences at 64 "
                                          "points" if reference == "both" else
                                          "agree with finite differences at 64 points")  # fmt: skip


def test_a_slip_is_named_at_its_intermediate_when_finite_differences_decide():
    r = audit.check_backward(forward, _slipped("sign"), *_point(jnp.float64), key=KEY,
                             points=15, reference="fd")  # fmt: skip
    assert r.first_failing_factor == "hpre"
    assert all(w["finite_diff"] is not None for w in r.weights)
    with pytest.raises(AssertionError, match=r"disagree \(check_backward, reference='fd'\)"):
        audit.assert_backward(forward, _slipped("sign"), *_point(jnp.float64), key=KEY,
                              points=15, reference="fd")  # fmt: skip
    with pytest.raises(ValueError, match="expected one of 'autodiff', 'fd', 'both'"):
        audit.check_backward(forward, backward, *_point(jnp.float64), reference="FD")
