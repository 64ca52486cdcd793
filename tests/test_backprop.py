"""Tests for jaxbp.backprop: the delta rule against gradients computed independently here.

The expected values never come from jaxbp: this file writes its own forward pass and
per-example losses in plain ``jnp`` and differentiates them with ``jax.grad`` (and, at a few
points, with central finite differences), all in float64.

Tolerance: rtol=1e-12, plus an atol of 1e-12 times the largest |gradient| in that leaf, so
an element that is tiny only through cancellation is judged on the leaf's scale. Parameters
are drawn at scale <= 1 / sqrt(n_in), which keeps units out of deep saturation: there
``A (1 - A)`` and ``1 - A^2`` lose relative digits in any implementation.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp

ACTS = ("sigmoid", "tanh", "relu", "identity")
LOSSES = ("mse", "bce", "softmax_ce")
OUT_ACT = {"bce": "sigmoid", "softmax_ce": "softmax"}
RTOL = 1e-12

REF_ACT = {
    "sigmoid": lambda z: 1 / (1 + jnp.exp(-z)),
    "tanh": jnp.tanh,
    "relu": lambda z: jnp.where(z > 0, z, 0.0),  # derivative 0 at z = 0, like jax.nn.relu
    "identity": lambda z: z,
    "softmax": lambda z: jnp.exp(z - jax.nn.logsumexp(z, axis=-1, keepdims=True)),
}
REF_LOSS = {  # per example, summed over outputs; z, a, y: (batch, n_L)
    "mse": lambda z, a, y: 0.5 * jnp.sum((a - y) ** 2, axis=-1),
    "bce": lambda z, a, y: (
        -jnp.sum(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z), -1)
    ),
    "softmax_ce": lambda z, a, y: -jnp.sum(y * jax.nn.log_softmax(z, axis=-1), axis=-1),
}


def ref_per_example(params, x, y, activation, loss, output_activation, shifts=None):
    """Per-example losses ``(batch,)``; ``shifts[l]: (batch, n_l)`` is added to ``z_l``."""
    a = x
    for l, layer in enumerate(params):
        z = a @ layer["W"].T + layer["b"][None, :]
        if shifts is not None:
            z = z + shifts[l]
        a = REF_ACT[output_activation if l == len(params) - 1 else activation](z)
    return REF_LOSS[loss](z, a, y)


STATIC = ("activation", "loss", "output_activation")


def ref_loss(params, x, y, activation, loss, output_activation):
    """The batch-mean loss: what closed_form_grads differentiates."""
    return jnp.mean(ref_per_example(params, x, y, activation, loss, output_activation))


@functools.partial(jax.jit, static_argnames=STATIC)
def ref_backprop(params, x, y, activation, loss, output_activation):
    """``(loss, grads, deltas)``: jax.grad of the batch-mean loss in the params, and of the
    batch-SUM loss in a shift of every ``z_l`` at zero (each example's own ``dE/dz_l``)."""
    value, grads = jax.value_and_grad(ref_loss)(params, x, y, activation, loss, output_activation)
    zero = [jnp.zeros((x.shape[0], p["b"].shape[0]), x.dtype) for p in params]

    def sum_loss(shifts):
        return jnp.sum(ref_per_example(params, x, y, activation, loss, output_activation, shifts))

    return value, grads, jax.grad(sum_loss)(zero)


cf_backprop = jax.jit(
    functools.partial(jaxbp.closed_form_grads, return_deltas=True), static_argnames=STATIC
)


def assert_tree_close(got, want, rtol=RTOL, what=""):
    """Leaf by leaf, naming every failing leaf; atol scales with each leaf's largest entry."""
    assert jax.tree.structure(got) == jax.tree.structure(want), (
        f"{what}: structure {jax.tree.structure(got)} != {jax.tree.structure(want)}"
    )
    failures = []
    flat_want = jax.tree_util.tree_flatten_with_path(want)[0]
    for (path, w), g in zip(flat_want, jax.tree.leaves(got), strict=True):
        w, g = np.asarray(w), np.asarray(g)
        if g.shape != w.shape or g.dtype != w.dtype:
            failures.append(
                f"{jax.tree_util.keystr(path)}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
            )
            continue
        atol = rtol * float(np.max(np.abs(w), initial=0.0))
        try:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
        except AssertionError as e:
            failures.append(f"{jax.tree_util.keystr(path)}: {e}")
    assert not failures, f"{what}:\n" + "\n".join(failures)


@st.composite
def problems(draw, max_layers=4):
    """Sizes of 1-4 layers of width 1-6, batch 1-8, a choice of activations and loss."""
    n_layers = draw(st.integers(1, max_layers))
    sizes = tuple(draw(st.integers(1, 6)) for _ in range(n_layers + 1))
    loss = draw(st.sampled_from(LOSSES))
    if loss == "softmax_ce":
        sizes = (*sizes[:-1], max(sizes[-1], 2))  # softmax over one unit is refused
    activation = draw(st.sampled_from(ACTS))
    out = draw(st.sampled_from(ACTS)) if loss == "mse" else OUT_ACT[loss]
    batch = draw(st.integers(1, 8))
    scale = draw(st.sampled_from((0.5, 1.0)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    params = [
        {
            "W": jnp.asarray(rng.normal(size=(n_out, n_in)) * scale / np.sqrt(n_in)),
            "b": jnp.asarray(rng.normal(size=n_out) * scale),
        }
        for n_in, n_out in itertools.pairwise(sizes)
    ]
    x = jnp.asarray(rng.normal(size=(batch, sizes[0])))
    shape = (batch, sizes[-1])
    y = jnp.asarray(rng.normal(size=shape) if loss == "mse" else rng.uniform(size=shape))
    return params, x, y, dict(activation=activation, loss=loss, output_activation=out)


@settings(max_examples=25, deadline=None)
@given(problem=problems())
def test_closed_form_grads_and_deltas_equal_independent_jax_grad(problem):
    params, x, y, choice = problem
    what = f"{choice}, sizes {jaxbp.sizes_of(params)}, batch {x.shape[0]}"
    want_loss, want_grads, want_deltas = ref_backprop(params, x, y, **choice)
    out = cf_backprop(params, x, y, **choice)
    assert isinstance(out, jaxbp.Backprop)
    assert_tree_close(out.grads, want_grads, what=f"closed_form_grads {what}")
    assert [d.shape for d in out.deltas] == [(x.shape[0], p["b"].shape[0]) for p in params]
    assert_tree_close(out.deltas, want_deltas, what=f"deltas (batch-sum dE/dz_l) {what}")
    np.testing.assert_allclose(out.loss, want_loss, rtol=1e-12, atol=1e-14)


def central_differences(f, params, h=1e-5):
    """d f / d p for every scalar parameter, by (f(p + h) - f(p - h)) / 2h in float64."""
    grads = []
    for layer in params:
        g = {}
        for name, leaf in layer.items():
            out = np.zeros(leaf.shape)
            for idx in np.ndindex(leaf.shape):

                def bumped(step, name=name, idx=idx, layer=layer):
                    changed = dict(layer, **{name: layer[name].at[idx].add(step)})
                    return [changed if q is layer else q for q in params]

                out[idx] = (float(f(bumped(h))) - float(f(bumped(-h)))) / (2 * h)
            g[name] = out
        grads.append(g)
    return grads


@pytest.mark.parametrize(
    ("sizes", "choice"),
    [
        ((2, 3, 1), dict(activation="sigmoid", loss="mse", output_activation="sigmoid")),
        ((3, 4, 2, 2), dict(activation="tanh", loss="mse", output_activation="identity")),
        ((2, 3, 2), dict(activation="relu", loss="bce", output_activation="sigmoid")),
        ((2, 2, 3), dict(activation="tanh", loss="softmax_ce", output_activation="softmax")),
    ],
)
def test_closed_form_grads_match_central_differences(sizes, choice):
    rng = np.random.default_rng(sum(sizes))
    params = [
        {"W": jnp.asarray(rng.normal(size=(o, i))), "b": jnp.asarray(rng.normal(size=o))}
        for i, o in itertools.pairwise(sizes)
    ]
    x = jnp.asarray(rng.normal(size=(5, sizes[0])))
    y = jnp.asarray(rng.uniform(size=(5, sizes[-1])))
    loss = jax.jit(lambda p: ref_loss(p, x, y, **choice))
    fd = central_differences(loss, params)
    got = cf_backprop(params, x, y, **choice).grads
    for g, f in zip(jax.tree.leaves(got), jax.tree.leaves(fd), strict=True):
        np.testing.assert_allclose(g, f, rtol=1e-7, atol=1e-9)


def test_backprop_loss_is_batch_loss_and_grads_match_plain_call():
    rng = np.random.default_rng(0)
    params = jaxbp.init((3, 4, 2), key=jax.random.key(0), dtype=jnp.float64, scale="normal")
    x, y = jnp.asarray(rng.normal(size=(6, 3))), jnp.asarray(rng.normal(size=(6, 2)))
    out = jaxbp.closed_form_grads(params, x, y, activation="tanh", return_deltas=True)
    assert isinstance(out, jaxbp.Backprop)
    np.testing.assert_allclose(
        out.loss, jaxbp.batch_loss(params, x, y, activation="tanh"), rtol=1e-14
    )
    plain = jaxbp.closed_form_grads(params, x, y, activation="tanh")
    assert isinstance(plain, list)
    assert_tree_close(plain, out.grads, rtol=0.0)


def test_closed_form_factory_is_a_grad_fn():
    rng = np.random.default_rng(1)
    params = jaxbp.init((3, 4, 2), key=jax.random.key(1), dtype=jnp.float64)
    x, y = jnp.asarray(rng.normal(size=(6, 3))), jnp.asarray(rng.uniform(size=(6, 2)))
    grad_fn = jaxbp.closed_form(activation="relu", loss="softmax_ce")
    assert grad_fn.__name__ == "closed_form_relu_softmax_ce"
    want = jaxbp.closed_form_grads(params, x, y, activation="relu", loss="softmax_ce")
    assert_tree_close(grad_fn(params, x, y), want, rtol=0.0)


def test_closed_form_grads_keep_float32():
    params = jaxbp.init((3, 4, 2), key=jax.random.key(0))
    x, y = jnp.ones((6, 3), jnp.float32), jnp.zeros((6, 2), jnp.float32)
    grads = jaxbp.closed_form_grads(params, x, y)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    assert [g["b"].shape for g in grads] == [(4,), (2,)]


def test_the_same_choices_give_the_same_grad_fn_so_jit_reuses_it():
    a = jaxbp.closed_form(activation="tanh", loss="bce")
    assert a is jaxbp.closed_form(activation="tanh", loss="bce")
    assert a is not jaxbp.closed_form(activation="relu", loss="bce")
    assert jaxbp.autodiff(loss="mse") is jaxbp.autodiff(loss="mse")
    assert a.__name__ == "closed_form_tanh_bce"
