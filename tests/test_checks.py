"""Bad input at the public API: each error pinned by its message.

Wrong values and shapes raise ValueError; wrong types (an int array, a tuple of layers, a
list for ``x``) raise TypeError. Each message says what arrived and what was expected.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp
from jaxbp.checks import check_seed, describe_tree

P = jaxbp.init((2, 2, 1), key=jax.random.key(0), dtype=jnp.float64)
X = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2)))
Y = jnp.asarray(np.random.default_rng(1).uniform(size=(4, 1)))


def with_layer(params, i, **leaves):
    return [dict(p, **leaves) if j == i else p for j, p in enumerate(params)]


# every public function that takes (params, x, y)
DATA_FNS = {
    "batch_loss": jaxbp.batch_loss,
    "closed_form_grads": jaxbp.closed_form_grads,
    "seed_grads": jaxbp.seed_grads,
    "autodiff_grads": jaxbp.autodiff_grads,
    "autodiff_deltas": jaxbp.autodiff_deltas,
    "closed_form()": jaxbp.closed_form(),
    "fit": lambda p, x, y: jaxbp.fit(p, x, y, steps=1),
}
data_fns = pytest.mark.parametrize("fn", DATA_FNS.values(), ids=DATA_FNS.keys())


# --------------------------------------------------------------------------------------------
# x and y
# --------------------------------------------------------------------------------------------


@data_fns
def test_y_of_rank_one_is_refused_not_broadcast(fn):
    with pytest.raises(ValueError, match=re.escape("y has shape (4,), expected (4, 1)")):
        fn(P, X, Y[:, 0])


@data_fns
@pytest.mark.parametrize(
    ("y", "message"),
    [
        (jnp.zeros((4, 2)), "y has shape (4, 2), expected (4, 1)"),
        (jnp.zeros((3, 1)), "y has shape (3, 1), expected (4, 1)"),
        (jnp.zeros((4, 1, 1)), "y has shape (4, 1, 1), expected (4, 1)"),
    ],
)
def test_y_of_wrong_shape(fn, y, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fn(P, X, y)


@data_fns
@pytest.mark.parametrize(
    ("x", "message"),
    [
        (jnp.zeros((4,)), "x has shape (4,), expected (batch, 2)"),
        (jnp.zeros((4, 3)), "x has shape (4, 3), expected (batch, 2)"),
        (jnp.zeros((4, 2, 1)), "x has shape (4, 2, 1), expected (batch, 2)"),
    ],
)
def test_x_of_wrong_rank_or_width(fn, x, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fn(P, x, Y)


@data_fns
def test_empty_batch(fn):
    with pytest.raises(ValueError, match=r"x has an empty batch \(shape \(0, \.\.\.\)\)"):
        fn(P, jnp.zeros((0, 2)), jnp.zeros((0, 1)))


@data_fns
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_or_boolean_x(fn, dtype):
    name = jnp.dtype(dtype).name
    with pytest.raises(TypeError, match=f"x has dtype {name}, expected a floating dtype"):
        fn(P, X.astype(dtype), Y)


def test_integer_y():
    with pytest.raises(TypeError, match="y has dtype int32, expected a floating dtype"):
        jaxbp.batch_loss(P, X, Y.astype(jnp.int32))


def test_x_that_is_not_an_array():
    with pytest.raises(TypeError, match="x is list, expected a float array; wrap it with jnp"):
        jaxbp.batch_loss(P, X.tolist(), Y)


def test_x_of_another_dtype_than_params():
    with pytest.raises(TypeError, match="x has dtype float32 but params are float64"):
        jaxbp.closed_form_grads(P, X.astype(jnp.float32), Y)
    with pytest.raises(TypeError, match="y has dtype float32 but x has float64"):
        jaxbp.closed_form_grads(P, X, Y.astype(jnp.float32))


@data_fns
@pytest.mark.parametrize(
    ("which", "value", "message"),
    [
        ("x", jnp.nan, r"x contains 1 NaN/Inf value\(s\), first at index \(2, 1\)"),
        ("x", jnp.inf, r"x contains 1 NaN/Inf value\(s\), first at index \(2, 1\)"),
        ("y", -jnp.inf, r"y contains 1 NaN/Inf value\(s\), first at index \(2, 0\)"),
        ("y", jnp.nan, r"y contains 1 NaN/Inf value\(s\), first at index \(2, 0\)"),
    ],
)
def test_nan_or_inf_in_data(fn, which, value, message):
    x = X.at[2, 1].set(value) if which == "x" else X
    y = Y.at[2, 0].set(value) if which == "y" else Y
    with pytest.raises(ValueError, match=message):
        fn(P, x, y)


def test_nan_count_and_forward():
    x = X.at[0, 0].set(jnp.nan).at[3, 1].set(jnp.nan)
    with pytest.raises(
        ValueError, match=r"x contains 2 NaN/Inf value\(s\), first at index \(0, 0\)"
    ):
        jaxbp.forward(P, x)


# --------------------------------------------------------------------------------------------
# params
# --------------------------------------------------------------------------------------------


@data_fns
def test_params_that_do_not_chain(fn):
    params = with_layer(P, 1, W=jnp.zeros((1, 3)))
    message = re.escape(
        'params[1]["W"] has shape (1, 3) but layer 0 has 2 outputs: expected (1, 2)'
    )
    with pytest.raises(ValueError, match=message):
        fn(params, X, Y)


@data_fns
def test_bias_of_shape_n_by_1(fn):
    params = with_layer(P, 0, b=jnp.zeros((2, 1)))
    message = re.escape('params[0]["b"] has shape (2, 1), expected (2,)')
    with pytest.raises(ValueError, match=message) as e:
        fn(params, X, Y)
    assert "a bias is a vector, not (n, 1)" in str(e.value)


def test_weight_of_wrong_rank():
    params = with_layer(P, 0, W=jnp.zeros((2, 2, 1)))
    with pytest.raises(ValueError, match=re.escape('params[0]["W"] has shape (2, 2, 1)')):
        jaxbp.batch_loss(params, X, Y)


@data_fns
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_or_boolean_params(fn, dtype):
    params = with_layer(P, 1, W=P[1]["W"].astype(dtype))
    name = jnp.dtype(dtype).name
    message = re.escape(f'params[1]["W"] has dtype {name}, expected a floating dtype')
    with pytest.raises(TypeError, match=message):
        fn(params, X, Y)


def test_params_of_mixed_dtypes():
    params = with_layer(P, 1, b=P[1]["b"].astype(jnp.float32))
    with pytest.raises(TypeError, match=r"params mix dtypes \['float32', 'float64'\]"):
        jaxbp.batch_loss(params, X, Y)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([], "params is an empty list, expected a non-empty list of layers"),
        (tuple(P), r"params is tuple, expected a non-empty list .* convert with list\(params\)"),
        (P[0], "params is dict, expected a non-empty list of layers"),
    ],
)
@data_fns
def test_params_that_are_not_a_list_of_layers(fn, params, message):
    with pytest.raises(TypeError, match=message):
        fn(params, X, Y)


def test_layer_with_other_keys():
    params = [P[0], {"w": P[1]["W"], "b": P[1]["b"]}]
    with pytest.raises(TypeError, match=r"params\[1\] has keys \['b', 'w'\], expected exactly"):
        jaxbp.batch_loss(params, X, Y)


# --------------------------------------------------------------------------------------------
# names of activations, losses and gradients
# --------------------------------------------------------------------------------------------

NAMED_FNS = {
    "forward": lambda **kw: jaxbp.forward(P, X, **kw),
    "batch_loss": lambda **kw: jaxbp.batch_loss(P, X, Y, **kw),
    "closed_form_grads": lambda **kw: jaxbp.closed_form_grads(P, X, Y, **kw),
    "autodiff_grads": lambda **kw: jaxbp.autodiff_grads(P, X, Y, **kw),
    "closed_form": jaxbp.closed_form,
    "autodiff": jaxbp.autodiff,
    "fit": lambda **kw: jaxbp.fit(P, X, Y, steps=1, **kw),
}
named_fns = pytest.mark.parametrize("fn", NAMED_FNS.values(), ids=NAMED_FNS.keys())


@named_fns
def test_unknown_activation_lists_the_valid_ones(fn):
    message = "activation='softplus' is not known; expected one of sigmoid, tanh, relu, identity"
    with pytest.raises(ValueError, match=message):
        fn(activation="softplus")


@named_fns
def test_unknown_loss_lists_the_valid_ones(fn):
    with pytest.raises(ValueError, match="loss='hinge' is not known; expected one of mse, bce, "):
        fn(loss="hinge")


@named_fns
def test_bce_needs_a_sigmoid_output(fn):
    message = "loss='bce' needs output_activation='sigmoid', got 'tanh'"
    with pytest.raises(ValueError, match=message):
        fn(loss="bce", output_activation="tanh")


@named_fns
def test_softmax_ce_needs_a_softmax_output(fn):
    with pytest.raises(ValueError, match="loss='softmax_ce' needs output_activation='softmax'"):
        fn(loss="softmax_ce", output_activation="sigmoid")


@named_fns
def test_unknown_output_activation_for_mse(fn):
    message = "output_activation='softmax' is not known for loss='mse'; expected one of sigmoid"
    with pytest.raises(ValueError, match=message):
        fn(output_activation="softmax")


def test_unknown_grad_name():
    message = "grad='magic' is not known; expected one of seed, closed_form, autodiff or a callable"
    with pytest.raises(ValueError, match=message):
        jaxbp.fit(P, X, Y, steps=1, grad="magic")


def test_grad_that_is_neither_name_nor_callable():
    with pytest.raises(TypeError, match="grad is int, expected one of"):
        jaxbp.fit(P, X, Y, steps=1, grad=3)


# --------------------------------------------------------------------------------------------
# the seed's formulas only fit the seed's network
# --------------------------------------------------------------------------------------------

P231 = jaxbp.init((2, 3, 1), key=jax.random.key(0), dtype=jnp.float64)
SEED_ONLY = r"the seed formulas are for the 2-2-1 network only .* got layer shapes \[\(\(3, 2\)"


def test_seed_grads_on_another_network():
    with pytest.raises(ValueError, match=SEED_ONLY) as e:
        jaxbp.seed_grads(P231, X, Y)
    assert "use jaxbp.closed_form_grads for other sizes" in str(e.value)


def test_fit_seed_on_another_network():
    with pytest.raises(ValueError, match=SEED_ONLY):
        jaxbp.fit(P231, X, Y, steps=1, grad="seed")


@pytest.mark.parametrize(
    "kw",
    [dict(activation="tanh"), dict(loss="bce"), dict(output_activation="identity")],
)
def test_fit_seed_with_other_activation_or_loss(kw):
    with pytest.raises(ValueError, match="grad='seed' is the note's 2-2-1 sigmoid network") as e:
        jaxbp.fit(P, X, Y, steps=1, grad="seed", **kw)
    assert "use grad='closed_form' for other networks" in str(e.value)


# --------------------------------------------------------------------------------------------
# fit's own arguments
# --------------------------------------------------------------------------------------------


def test_grad_fn_returning_the_wrong_pytree_names_the_leaf():
    def short_bias(params, x, y):
        g = jaxbp.closed_form_grads(params, x, y)
        return [g[0], {"W": g[1]["W"], "b": g[1]["b"][:, None]}]

    message = re.escape("short_bias returned gradients that do not match params: [1]['b'] has")
    with pytest.raises(ValueError, match=message) as e:
        jaxbp.fit(P, X, Y, steps=1, grad=short_bias)
    assert "[1]['b'] has shape (1, 1), expected (1,)" in str(e.value)


def test_grad_fn_with_missing_and_extra_leaves():
    def renamed(params, x, y):
        g = jaxbp.closed_form_grads(params, x, y)
        return [g[0], {"W": g[1]["W"], "bias": g[1]["b"]}]

    message = re.escape("""missing leaves ["[1]['b']"]; extra leaves ["[1]['bias']"]""")
    with pytest.raises(ValueError, match=message):
        jaxbp.fit(P, X, Y, steps=1, grad=renamed)


def test_grad_fn_returning_integers():
    def ints(params, x, y):
        return jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.int32), params)

    message = (
        "ints returned gradients that do not match params: [0]['W'], [0]['b'], [1]['W'], "
        "[1]['b'] have dtype int32, expected a floating dtype (float64, like params); compute "
        "them in float64 or cast each with .astype(jnp.float64)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        jaxbp.fit(P, X, Y, steps=1, grad=ints)


def test_grad_fn_returning_another_float_dtype():
    def half(params, x, y):
        g = jaxbp.closed_form_grads(params, x, y)
        return [g[0], jax.tree.map(lambda a: a.astype(jnp.float16), g[1])]

    message = (
        "half returned gradients that do not match params: [1]['W'], [1]['b'] have dtype "
        "float16, expected float64 like params; compute them in float64 or cast each with "
        ".astype(jnp.float64)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        jaxbp.fit(P, X, Y, steps=1, grad=half)


def test_grad_fn_returning_a_tuple_names_both_structures():
    def as_tuple(params, x, y):
        return tuple(jaxbp.closed_form_grads(params, x, y))

    message = (
        "as_tuple returned gradients that do not match params: they are a tuple of 2 dicts "
        "{'W', 'b'}, params are a list of 2 dicts {'W', 'b'}; return a list like params, "
        "e.g. list(grads)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        jaxbp.fit(P, X, Y, steps=1, grad=as_tuple)


def test_grad_fn_returning_flat_arrays_names_both_structures():
    def flat(params, x, y):
        g = jaxbp.closed_form_grads(params, x, y)
        return [g[0]["W"], g[0]["b"], g[1]["W"], g[1]["b"]]

    with pytest.raises(ValueError) as e:
        jaxbp.fit(P, X, Y, steps=1, grad=flat)
    assert str(e.value).startswith(
        "flat returned gradients that do not match params: they are a list of 4 arrays, "
        "params are a list of 2 dicts {'W', 'b'}; missing leaves "
    )
    assert str(e.value).endswith(
        "; return gradients with the structure of params, a list of 2 dicts {'W', 'b'}"
    )


@pytest.mark.parametrize(
    ("tree", "words"),
    [
        ([{"W": 1.0, "b": 2.0}], "a list of 1 dict {'W', 'b'}"),
        ((jnp.zeros(2), jnp.zeros(3)), "a tuple of 2 arrays"),
        ({"w": jnp.zeros(2), "c": [jnp.zeros(1)]}, "a dict {'w', 'c': [array]}"),
        ([{"W": 1.0}, None], "a list [{'W'}, None]"),
    ],
)
def test_describe_tree(tree, words):
    assert describe_tree(tree) == words


SOFTMAX_ONE_UNIT = (
    "loss='softmax_ce' with 1 output unit: softmax over a single unit is 1 whatever its input, "
    "so the loss is 0 and every gradient is 0, and nothing can be trained or checked; give the "
    "network one output unit per class (2 or more, with one-hot targets from jaxbp.one_hot), "
    "or use loss='bce' for one yes/no output"
)
SOFTMAX_FNS = {
    **{k: v for k, v in DATA_FNS.items() if k not in ("seed_grads", "closed_form()", "fit")},
    "fit": lambda p, x, y, **kw: jaxbp.fit(p, x, y, steps=1, **kw),
    "closed_form()": jaxbp.closed_form(loss="softmax_ce"),
    "autodiff()": jaxbp.autodiff(loss="softmax_ce"),
    "forward": lambda p, x, y, **kw: jaxbp.forward(p, x, **kw),
}


@pytest.mark.parametrize("fn", SOFTMAX_FNS.values(), ids=SOFTMAX_FNS.keys())
@pytest.mark.parametrize("wrap", ["eager", "jit", "vmap", "eval_shape"])
def test_softmax_over_one_output_unit_is_refused(fn, wrap):
    bound = fn in (SOFTMAX_FNS["closed_form()"], SOFTMAX_FNS["autodiff()"])
    kw = {} if bound else {"loss": "softmax_ce"}

    def call(p, x, y):
        return fn(p, x, y, **kw)

    run = {
        "eager": call,
        "jit": jax.jit(call),
        "vmap": lambda p, x, y: jax.vmap(call, in_axes=(None, 0, 0))(p, x[None], y[None]),
        "eval_shape": lambda p, x, y: jax.eval_shape(call, p, x, y),
    }[wrap]
    if fn is SOFTMAX_FNS["fit"] and wrap != "eager":
        pytest.skip("fit runs its own compiled loop")
    with pytest.raises(ValueError, match=re.escape(SOFTMAX_ONE_UNIT)):
        run(P, X, Y)


def test_softmax_over_two_units_and_mse_over_one_are_fine():
    p2 = jaxbp.init((2, 3, 2), key=jax.random.key(1), dtype=jnp.float64)
    y2 = jaxbp.one_hot(jnp.array([0, 1, 1, 0]), 2, dtype=jnp.float64)
    assert jaxbp.batch_loss(p2, X, y2, loss="softmax_ce") > 0
    assert jaxbp.batch_loss(P, X, Y, loss="mse") > 0


def test_check_output_units_takes_the_resolved_spec():
    spec = jaxbp.resolve_output("tanh", "softmax_ce")
    jaxbp.check_output_units(spec, 2)
    with pytest.raises(ValueError, match=re.escape(SOFTMAX_ONE_UNIT)):
        jaxbp.check_output_units(spec, 1)
    jaxbp.check_output_units(jaxbp.resolve_output("sigmoid", "bce"), 1)


@pytest.mark.parametrize(
    ("rate", "why"),
    [
        (float("nan"), "a NaN or infinite rate turns every weight into NaN at the first step"),
        (float("inf"), "a NaN or infinite rate turns every weight into NaN at the first step"),
        (-1.0, "a negative rate climbs the loss instead of descending it"),
        (0, "0 never moves the weights"),
        (0.0, "0 never moves the weights"),
        (jnp.asarray(-0.5), "a negative rate climbs the loss instead of descending it"),
    ],
)
def test_learning_rate_must_be_finite_and_positive(rate, why):
    message = (
        f"learning_rate={rate!r}, expected a finite number > 0 (the step size eta of "
        f"p <- p - eta dE/dp): {why}; pass e.g. learning_rate=0.5"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        jaxbp.fit(P, X, Y, steps=1, learning_rate=rate)


def test_gradient_descent_checks_its_rate_too():
    message = "learning_rate=-1.0, expected a finite number > 0 (the step size eta of"
    with pytest.raises(ValueError, match=re.escape(message)):
        jaxbp.gradient_descent(-1.0)


@pytest.mark.parametrize("rate", ["0.5", True, None, jnp.ones(2)])
def test_learning_rate_that_is_not_a_number(rate):
    with pytest.raises(TypeError, match=r"learning_rate is \w+.* expected a number > 0 such as"):
        jaxbp.fit(P, X, Y, steps=1, learning_rate=rate)


def test_learning_rate_is_not_checked_when_an_optimizer_is_given():
    result = jaxbp.fit(P, X, Y, steps=2, optimizer=optax.sgd(0.1), learning_rate=float("nan"))
    assert np.isfinite(np.asarray(result.losses)).all()


def test_numpy_ints_are_ints():
    result = jaxbp.fit(P, X, Y, steps=np.int64(3), chunk_size=np.int32(2), start_step=np.int8(1))
    assert result.losses.shape == (3,)


def _int_error(value):
    """An int out of range is a ValueError; anything that is not an int is a TypeError."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    return ValueError if is_int else TypeError


@pytest.mark.parametrize("start_step", [-1, 1.0, True])
def test_start_step_must_be_a_non_negative_int(start_step):
    message = re.escape(f"start_step={start_step!r}, expected an int >= 0")
    with pytest.raises(_int_error(start_step), match=message):
        jaxbp.fit(P, X, Y, steps=1, start_step=start_step)


@pytest.mark.parametrize("key", [0, np.zeros(3, np.uint32), "key"])
def test_key_that_is_not_a_prng_key(key):
    with pytest.raises(TypeError, match=r"key is \w+.*, expected one PRNG key; pass key=jax"):
        jaxbp.fit(P, X, Y, steps=1, batch_size=2, key=key)


def test_resuming_does_not_change_the_callers_opt_state():
    first = jaxbp.fit(P, X, Y, steps=2, learning_rate=0.5)
    before = float(first.opt_state.hyperparams["learning_rate"])
    jaxbp.fit(first.params, X, Y, steps=2, learning_rate=0.1, opt_state=first.opt_state)
    assert float(first.opt_state.hyperparams["learning_rate"]) == before == 0.5


@pytest.mark.parametrize("seed", [0, -1, 2**63 - 1, -(2**63), np.int64(5)])
def test_check_seed_accepts_what_jax_random_key_accepts(seed):
    assert check_seed(seed) == int(seed)
    jax.random.key(check_seed(seed))


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 10**23])
def test_check_seed_out_of_range(seed):
    message = (
        f"seed={seed} is out of range; jax.random.key takes a whole number from "
        f"-9223372036854775808 to 9223372036854775807 (a 64-bit integer), so pass a smaller "
        "seed such as seed=0"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        check_seed(seed)


@pytest.mark.parametrize("seed", [1.5, "3", True])
def test_check_seed_not_an_int(seed):
    with pytest.raises(TypeError, match=r"seed is \w+ .*, expected an int such as 0"):
        check_seed(seed)


@pytest.mark.parametrize("steps", [0, -3, 2.0, True, None])
def test_steps_must_be_a_positive_int(steps):
    message = re.escape(f"steps={steps!r}, expected an int >= 1")
    with pytest.raises(_int_error(steps), match=message):
        jaxbp.fit(P, X, Y, steps=steps)


@pytest.mark.parametrize("batch_size", [0, 5, -1, 2.0, True])
def test_batch_size_out_of_range(batch_size):
    message = re.escape(f"batch_size={batch_size!r}, expected an int in [1, 4] or None")
    with pytest.raises(_int_error(batch_size), match=message):
        jaxbp.fit(P, X, Y, steps=1, batch_size=batch_size, key=jax.random.key(0))


def test_batch_size_without_key():
    message = "batch_size is set but key is None; pass key=jax.random.key"
    with pytest.raises(ValueError, match=message):
        jaxbp.fit(P, X, Y, steps=1, batch_size=2)


@pytest.mark.parametrize("chunk_size", [0, 1.5, True])
def test_chunk_size_must_be_a_positive_int(chunk_size):
    message = re.escape(f"chunk_size={chunk_size!r}, expected an int >= 1 or None")
    with pytest.raises(_int_error(chunk_size), match=message):
        jaxbp.fit(P, X, Y, steps=2, chunk_size=chunk_size)


# --------------------------------------------------------------------------------------------
# building params
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(2,), (2, 0, 1), (2, -1), (2, 2.5)])
def test_init_bad_sizes(sizes):
    message = re.escape(f"sizes={sizes!r}: expected at least two positive ints")
    with pytest.raises(ValueError, match=message):
        jaxbp.init(sizes, key=jax.random.key(0))


def test_init_sizes_not_a_sequence_of_numbers():
    with pytest.raises(TypeError, match=r"sizes=\('a', 2\) must be a sequence of ints"):
        jaxbp.init(("a", 2), key=jax.random.key(0))


def test_init_unknown_scale():
    with pytest.raises(ValueError, match="scale='he' is not known; expected one of 'glorot'"):
        jaxbp.init((2, 2, 1), key=jax.random.key(0), scale="he")


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_init_integer_dtype(dtype):
    with pytest.raises(TypeError, match=r"dtype=\w+ is not a floating dtype"):
        jaxbp.init((2, 2, 1), key=jax.random.key(0), dtype=dtype)


def test_init_not_a_dtype():
    with pytest.raises(TypeError, match="dtype='single precision' is not a dtype"):
        jaxbp.init((2, 2, 1), key=jax.random.key(0), dtype="single precision")


X64_OFF = "dtype=float64 was asked for but 64-bit types are disabled in JAX.*jax.config.update"


@pytest.mark.skipif(not hasattr(jax, "enable_x64"), reason="needs the jax.enable_x64 context")
def test_float64_when_x64_is_off():
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=X64_OFF):
            jaxbp.init((2, 2, 1), key=jax.random.key(0), dtype=jnp.float64)
        with pytest.raises(ValueError, match=X64_OFF):
            jaxbp.seed_params(w11=1, w12=1, w21=1, w22=1, w31=1, w32=1, dtype=jnp.float64)
        named = dict.fromkeys(jaxbp.param_names((2, 1)), 0.0)
        with pytest.raises(ValueError, match=X64_OFF):
            jaxbp.from_named(named, (2, 1), dtype=np.float64)
        # and float32 still works there
        assert jaxbp.init((2, 1), key=jax.random.key(0))[0]["W"].dtype == jnp.float32


def test_one_dtype_check_for_every_public_function():
    # dtype=None would silently mean float64 to NumPy; every function refuses it the same way
    for call in (
        lambda: jaxbp.init((2, 2, 1), key=jax.random.key(0), dtype=None),
        lambda: jaxbp.truth_table("xor", dtype=None),
        lambda: jaxbp.seed_params(w11=1, w12=1, w21=1, w22=1, w31=1, w32=1, dtype=None),
    ):
        with pytest.raises(TypeError, match=r"dtype=None is not a dtype; expected a floating"):
            call()
