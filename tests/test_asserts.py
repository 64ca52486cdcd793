"""audit.asserts: the one-line test forms and the message they raise."""

import jax
import jax.numpy as jnp
import pytest

import audit


def _loss(p, x, y):
    return jnp.mean((x @ p["w"] - y) ** 2) + jnp.sum(p["b"] ** 2)


def _right(p, x, y):  # d/dw mean((xw - y)^2) = 2 x^T (xw - y) / size; d/db sum(b^2) = 2 b
    return {"b": 2 * p["b"], "w": 2 * x.T @ (x @ p["w"] - y) / y.size}


def _point():
    kw, kb, kx, ky = jax.random.split(jax.random.key(5), 4)
    p = {"b": jax.random.normal(kb, (2,)), "w": jax.random.normal(kw, (3, 2))}
    return p, jax.random.normal(kx, (8, 3)), jax.random.normal(ky, (8, 2))


def test_a_right_gradient_passes_silently():
    p, x, y = _point()
    with jax.enable_x64(True):  # the derivation above, checked by another engine first
        g = jax.grad(_loss)(*jax.tree.map(lambda a: a.astype(jnp.float64), (p, x, y)))
        mine = _right(*jax.tree.map(lambda a: a.astype(jnp.float64), (p, x, y)))
        assert all(bool(jnp.allclose(g[k], mine[k], rtol=1e-12)) for k in g)
    assert audit.assert_gradients(_right, _loss, p, x, y, points=31, key=jax.random.key(0)) is None


def test_a_halved_leaf_is_named_with_its_hint_and_both_values():
    p, x, y = _point()

    def halved(p, x, y):
        g = _right(p, x, y)
        return {"b": g["b"], "w": g["w"] / 2}

    with pytest.raises(AssertionError) as info:
        audit.assert_gradients(halved, _loss, p, x, y, points=15, key=jax.random.key(0))
    lines = str(info.value).splitlines()
    assert lines[0] == "6 of 8 elements disagree (check_gradients)"
    assert lines[1].startswith("['w']: 6 of 6 elements disagree, typically x0.5 of jax.grad")
    assert "x1/2 everywhere in ['w']" in lines[1]
    assert len(lines) == 5 and all(" handwritten " in ln and " jax.grad " in ln for ln in lines[2:])
    assert not any("['b']" in ln for ln in lines)


def test_nan_never_passes():
    p, x, y = _point()

    def nan_in_b(p, x, y):
        g = _right(p, x, y)
        return {"b": g["b"].at[0].set(jnp.nan), "w": g["w"]}

    with pytest.raises(AssertionError, match=r"1 of 8 elements disagree \(check_gradients\)"):
        audit.assert_gradients(nan_in_b, _loss, p, x, y, key=jax.random.key(0))


def test_random_points_need_a_key_and_points_0_checks_the_given_point_alone():
    p, x, y = _point()
    with pytest.raises(ValueError, match=r"points > 0 needs key=jax.random.key\(seed\)"):
        audit.assert_gradients(_right, _loss, p, x, y)  # 15 random points by default
    assert audit.assert_gradients(_right, _loss, p, x, y, points=0) is None
