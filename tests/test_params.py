"""Tests for jaxbp.params: initialisation, the seed's weight names and the named round trip."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

import jaxbp
from jaxbp.params import SEED_NAMES

sizes_st = st.lists(st.integers(1, 6), min_size=2, max_size=5).map(tuple)


# --------------------------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "dtype", "scale"),
    [
        ((2, 2, 1), jnp.float32, "glorot"),
        ((3, 5, 4, 2), jnp.float64, "normal"),
        ((1, 1), jnp.float32, "normal"),
        ((7, 1, 3), jnp.float64, "glorot"),
    ],
)
def test_init_shapes_and_dtype(sizes, dtype, scale):
    params = jaxbp.init(sizes, key=jax.random.key(1), dtype=dtype, scale=scale)
    assert isinstance(params, list)
    assert len(params) == len(sizes) - 1
    for layer, (n_in, n_out) in zip(params, itertools.pairwise(sizes), strict=True):
        assert set(layer) == {"W", "b"}
        assert layer["W"].shape == (n_out, n_in)
        assert layer["b"].shape == (n_out,)  # a vector, never (n_out, 1)
        assert layer["W"].dtype == dtype
        assert layer["b"].dtype == dtype
    assert jaxbp.sizes_of(params) == sizes


def test_init_default_is_float32_glorot_with_zero_biases():
    params = jaxbp.init((4, 3, 2), key=jax.random.key(0))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    for layer in params:
        np.testing.assert_array_equal(layer["b"], 0.0)


def test_init_normal_draws_biases():
    params = jaxbp.init((4, 3, 2), key=jax.random.key(0), scale="normal")
    for layer in params:
        assert np.all(np.asarray(layer["b"]) != 0.0)


def test_init_is_deterministic_per_key_and_differs_across_keys():
    a = jaxbp.init((3, 4, 2), key=jax.random.key(7), scale="normal")
    b = jaxbp.init((3, 4, 2), key=jax.random.key(7), scale="normal")
    c = jaxbp.init((3, 4, 2), key=jax.random.key(8), scale="normal")
    for la, lb, lc in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c), strict=True):
        np.testing.assert_array_equal(la, lb)
        assert not np.array_equal(la, lc)


def test_init_accepts_a_raw_prngkey():
    a = jaxbp.init((2, 2, 1), key=jax.random.PRNGKey(3))
    assert [layer["W"].shape for layer in a] == [(2, 2), (1, 2)]


def test_init_glorot_scale():
    # variance 2 / (n_in + n_out): 2 / 400 for a 200x200 layer, so std 0.0707
    (layer,) = jaxbp.init((200, 200), key=jax.random.key(0), dtype=jnp.float64)
    assert abs(float(jnp.std(layer["W"])) - np.sqrt(2 / 400)) < 0.003
    (layer,) = jaxbp.init((200, 200), key=jax.random.key(0), dtype=jnp.float64, scale="normal")
    assert abs(float(jnp.std(layer["W"])) - 1.0) < 0.03


# --------------------------------------------------------------------------------------------
# param_names
# --------------------------------------------------------------------------------------------


def test_param_names_seed_network():
    assert jaxbp.param_names((2, 2, 1)) == [
        "w11", "w12", "w21", "w22", "b1", "b2", "w31", "w32", "b3",
    ]  # fmt: skip
    assert tuple(jaxbp.param_names((2, 2, 1))) == SEED_NAMES


def test_param_names_follow_flatten_order():
    # the k-th name labels the k-th element of ravel_pytree(params)
    sizes = (2, 3, 2)
    params = jaxbp.init(sizes, key=jax.random.key(0), dtype=jnp.float64, scale="normal")
    flat, _ = ravel_pytree(params)
    named = jaxbp.to_named(params)
    assert list(named) == jaxbp.param_names(sizes)
    np.testing.assert_array_equal(np.array(list(named.values())), np.asarray(flat))


def test_param_names_second_layer_of_2_2_2():
    # output neurons are 3 and 4; their sources are hidden neurons 1 and 2
    names = jaxbp.param_names((2, 2, 2))
    assert names[:6] == ["w11", "w12", "w21", "w22", "b1", "b2"]
    assert names[6:] == ["w31", "w32", "w41", "w42", "b3", "b4"]


def test_param_names_deeper_network_numbers_neurons_consecutively():
    # 1-2-2-1: hidden 1, 2; hidden 3, 4 (sources 1, 2); output 5 (sources 3, 4)
    assert jaxbp.param_names((1, 2, 2, 1)) == [
        "w11", "w21", "b1", "b2",
        "w31", "w32", "w41", "w42", "b3", "b4",
        "w53", "w54", "b5",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("sizes", "some"),
    [
        ((1, 9, 1), ["w1_1", "w9_1", "w10_1", "w10_9", "b10"]),  # neuron index 10
        ((10, 1), ["w1_1", "w1_9", "w1_10", "b1"]),  # input index 10
        ((2, 5, 5), ["w1_1", "w1_2", "w6_1", "w10_5", "b10"]),
    ],
)
def test_param_names_wide_use_underscore_everywhere(sizes, some):
    names = jaxbp.param_names(sizes)
    for name in some:
        assert name in names
    weights = [n for n in names if n.startswith("w")]
    assert all("_" in n for n in weights)
    assert len(set(names)) == len(names)


def test_param_names_narrow_never_use_underscore():
    # (2, 8, 1): the largest neuron number is 9, so plain two-digit names stay unambiguous
    names = jaxbp.param_names((2, 8, 1))
    assert all("_" not in n for n in names)
    assert names[-9:] == ["w91", "w92", "w93", "w94", "w95", "w96", "w97", "w98", "b9"]


@settings(max_examples=40, deadline=None)
@given(sizes=sizes_st)
def test_param_names_unique_and_counted(sizes):
    names = jaxbp.param_names(sizes)
    n_params = sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes))
    assert len(names) == n_params
    assert len(set(names)) == n_params


# --------------------------------------------------------------------------------------------
# to_named / from_named
# --------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(sizes=sizes_st, seed=st.integers(0, 2**31 - 1))
def test_named_round_trip(sizes, seed):
    rng = np.random.default_rng(seed)
    params = [
        {"W": jnp.asarray(rng.normal(size=(n_out, n_in))), "b": jnp.asarray(rng.normal(size=n_out))}
        for n_in, n_out in itertools.pairwise(sizes)
    ]
    named = jaxbp.to_named(params)
    assert list(named) == jaxbp.param_names(sizes)
    back = jaxbp.from_named(named, sizes, dtype=jnp.float64)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
        assert a.shape == b.shape
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)  # float64 -> float -> float64 is exact
    # and the other way: names -> pytree -> names
    assert jaxbp.to_named(back) == named


def test_from_named_accepts_any_order():
    named = {n: float(i) for i, n in enumerate(jaxbp.param_names((2, 2, 1)))}
    shuffled = dict(reversed(list(named.items())))
    assert jaxbp.to_named(jaxbp.from_named(shuffled, (2, 2, 1))) == named


def test_from_named_lists_missing_and_unexpected_names():
    named = {n: 0.0 for n in jaxbp.param_names((2, 2, 1))}
    del named["w21"], named["b3"]
    named["w13"] = 1.0
    expected = r"2-2-1 network: missing \['w21', 'b3'\], unexpected"
    with pytest.raises(ValueError, match=expected) as e:
        jaxbp.from_named(named, (2, 2, 1))
    assert "unexpected ['w13']" in str(e.value)
    assert "expected exactly ['w11', 'w12', 'w21'" in str(e.value)


def test_from_named_dtype():
    named = {n: 0.5 for n in jaxbp.param_names((3, 2))}
    assert jaxbp.from_named(named, (3, 2))[0]["W"].dtype == jnp.float32
    assert jaxbp.from_named(named, (3, 2), dtype=jnp.float64)[0]["b"].dtype == jnp.float64


# --------------------------------------------------------------------------------------------
# seed_params
# --------------------------------------------------------------------------------------------

# distinct values, so a weight put in the wrong slot changes z
SEED_VALUES = dict(
    w11=0.11, w12=-0.12, w21=0.21, w22=-0.22, w31=0.31, w32=-0.32, b1=0.01, b2=-0.02, b3=0.03
)  # fmt: skip


def test_seed_params_places_each_name_where_the_note_uses_it():
    v = SEED_VALUES
    params = jaxbp.seed_params(**v, dtype=jnp.float64)
    x1, x2 = 0.7, -1.3
    f = jaxbp.seed_forward(params, jnp.array([x1, x2]), jnp.array([0.0]))
    z1 = x1 * v["w11"] + x2 * v["w12"] + v["b1"]
    z2 = x1 * v["w21"] + x2 * v["w22"] + v["b2"]
    A1, A2 = 1 / (1 + np.exp(-z1)), 1 / (1 + np.exp(-z2))
    z3 = A1 * v["w31"] + A2 * v["w32"] + v["b3"]
    np.testing.assert_allclose(float(f["z1"]), z1, rtol=1e-15)
    np.testing.assert_allclose(float(f["z2"]), z2, rtol=1e-15)
    np.testing.assert_allclose(float(f["z3"]), z3, rtol=1e-15)
    # the same slots through the general pytree layout
    assert params[0]["W"].tolist() == [[v["w11"], v["w12"]], [v["w21"], v["w22"]]]
    assert params[0]["b"].tolist() == [v["b1"], v["b2"]]
    assert params[1]["W"].tolist() == [[v["w31"], v["w32"]]]
    assert params[1]["b"].tolist() == [v["b3"]]
    assert jaxbp.to_named(params) == {n: v[n] for n in SEED_NAMES}


def test_seed_params_biases_default_to_zero():
    params = jaxbp.seed_params(w11=0.15, w12=0.20, w21=0.25, w22=0.30, w31=0.40, w32=0.45)
    assert params[0]["b"].dtype == jnp.float32
    np.testing.assert_array_equal(params[0]["b"], [0.0, 0.0])
    np.testing.assert_array_equal(params[1]["b"], [0.0])
    assert params[1]["b"].shape == (1,)


# --------------------------------------------------------------------------------------------
# ParamNames: the same names, written when read
# --------------------------------------------------------------------------------------------


def _names_written_out(sizes):
    """Every name from the note's numbering, independently of jaxbp: neurons of layers
    1..L numbered from 1, w{into}{from} (w{into}_{from} once any index reaches 10)."""
    first, out = 1, []
    wide = max(sum(sizes[1:]), sizes[0]) >= 10
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        src0 = 1 if layer == 0 else first - n_in
        sep = "_" if wide else ""
        out += [f"w{first + i}{sep}{src0 + j}" for i in range(n_out) for j in range(n_in)]
        out += [f"b{first + i}" for i in range(n_out)]
        first += n_out
    return out


@pytest.mark.parametrize("sizes", [(2, 2, 1), (1, 2, 2, 1), (2, 8, 1), (1, 9, 1), (10, 1),
                                   (3, 12, 4, 2)])  # fmt: skip
def test_param_names_written_when_read_read_as_the_list(sizes):
    names = jaxbp.ParamNames(sizes)
    expected = _names_written_out(sizes)
    assert len(names) == len(expected)
    assert [names[i] for i in range(len(names))] == expected
    assert [names[i] for i in range(-len(names), 0)] == expected
    assert list(names) == expected and names == expected and expected == names
    assert names[np.int64(2)] == expected[2] and names[1:7:2] == expected[1:7:2]
    assert [names.index(n) for n in expected] == list(range(len(expected)))
    assert jaxbp.param_names(sizes) == expected
    with pytest.raises(IndexError):
        names[len(expected)]


@pytest.mark.parametrize(
    ("sizes", "name"),
    [((2, 2, 1), "w13"), ((2, 2, 1), "w41"), ((2, 2, 1), "b4"), ((2, 2, 1), "b01"),
     ((2, 2, 1), "w3_1"), ((2, 2, 1), "w311"), ((2, 2, 1), "x11"), ((1, 9, 1), "w101"),
     ((1, 9, 1), "w10_01"), ((1, 9, 1), "w10_10"), ((1, 9, 1), "w1_2"), ((1, 9, 1), "b")],
)  # fmt: skip
def test_param_names_refuse_names_no_parameter_has(sizes, name):
    names = jaxbp.ParamNames(sizes)
    assert name not in names
    with pytest.raises(ValueError, match="not a parameter name"):
        names.index(name)
