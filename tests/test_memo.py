"""audit.memo: what an audit finds from functions and shapes alone is found once, never a
failure kept, never served for other shapes or another 64-bit setting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import audit
from audit.memo import ShapeMemo, shape_key


def _linear(traces):
    """A least-squares loss and its handwritten gradient, counting their traces."""

    def loss_fn(p, x, y):
        traces.append("loss")
        return jnp.mean((x @ p["w"] - y) ** 2)

    def grad_fn(p, x, y):
        traces.append("grad")
        return {"w": 2 * x.T @ (x @ p["w"] - y) / y.size}

    return loss_fn, grad_fn


def _data(n_in=3, n_out=2, batch=8, seed=0):
    kw, kx, ky = jax.random.split(jax.random.key(seed), 3)
    return (
        {"w": jax.random.normal(kw, (n_in, n_out))},
        jax.random.normal(kx, (batch, n_in)),
        jax.random.normal(ky, (batch, n_out)),
    )


def test_a_second_call_at_the_same_shapes_checks_nothing_again_and_agrees(monkeypatch):
    import audit.check
    import audit.weights

    traces = []
    loss_fn, grad_fn = _linear(traces)
    p, x, y = _data()
    audit.check_gradients(grad_fn, loss_fn, p, x, y, points=8, key=jax.random.key(1))
    assert "loss" in traces and "grad" in traces
    traces.clear()
    asked = []
    for module, name in ((audit.check, "_check_loss"), (audit.check, "is_traceable"),
                         (audit.weights, "runs_in"), (audit.weights, "layout_of")):  # fmt: skip
        real = getattr(module, name)

        def counted(*a, _real=real, _name=name, **k):
            asked.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(module, name, counted)
    p2 = {"w": p["w"] + 1.0}  # other values, the same shapes
    kept = audit.check_gradients(grad_fn, loss_fn, p2, x, y, points=8, key=jax.random.key(2))
    assert asked == [] and traces == []
    audit.check._FOUND.clear()
    audit.weights._FOUND.clear()
    fresh = audit.check_gradients(grad_fn, loss_fn, p2, x, y, points=8, key=jax.random.key(2))
    assert sorted(set(asked)) == ["_check_loss", "is_traceable", "layout_of", "runs_in"]
    assert kept.passed and fresh.passed
    assert kept.weights == fresh.weights and kept.notes == fresh.notes


def test_other_shapes_are_checked_again():
    traces = []
    loss_fn, grad_fn = _linear(traces)
    p, x, y = _data()
    audit.check_gradients(grad_fn, loss_fn, p, x, y, points=4, key=jax.random.key(1))

    def fixed_grad(p, x, y):  # right for (3, 2) only: wrong shapes for a (4, 2) weight
        return {"w": jnp.zeros((3, 2), p["w"].dtype)}

    audit.check_gradients(fixed_grad, loss_fn, p, x, y, points=4, key=jax.random.key(1))
    p4, x4, y4 = _data(n_in=4)
    with pytest.raises(ValueError, match="shape"):
        audit.check_gradients(fixed_grad, loss_fn, p4, x4, y4, points=4, key=jax.random.key(1))


def test_a_failure_is_raised_at_every_call():
    def vector_loss(p, x, y):
        return (x @ p["w"] - y) ** 2  # not reduced: refused

    def grad_fn(p, x, y):
        return {"w": jnp.zeros_like(p["w"])}

    p, x, y = _data()
    for _ in range(2):
        with pytest.raises(ValueError, match="expected a scalar float loss"):
            audit.check_gradients(grad_fn, vector_loss, p, x, y, points=2, key=jax.random.key(0))


def test_the_64_bit_setting_is_part_of_the_key():
    p, x, y = jax.tree.map(lambda a: np.asarray(a, np.float32), _data())
    loss_fn, grad_fn = _linear([])
    with jax.enable_x64(False):
        off = shape_key(grad_fn, loss_fn, trees=(p, x, y))
    with jax.enable_x64(True):
        on = shape_key(grad_fn, loss_fn, trees=(p, x, y))
    assert off != on


def test_shape_key_names_shapes_and_dtypes_not_values():
    p, x, y = _data()
    same = ({"w": p["w"] * 2}, x + 1, y)
    assert shape_key("f", trees=(p, x, y)) == shape_key("f", trees=same)
    assert shape_key("f", trees=(p, x, y)) != shape_key("g", trees=(p, x, y))
    wider = ({"w": p["w"]}, jnp.zeros((9, 3)), jnp.zeros((9, 2)))
    assert shape_key("f", trees=(p, x, y)) != shape_key("f", trees=wider)
    halves = jax.tree.map(lambda a: a.astype(jnp.float16), (p, x, y))
    assert shape_key("f", trees=(p, x, y)) != shape_key("f", trees=halves)
    # stacked: the points on the leading axis are left out
    stacked = jax.tree.map(lambda a: np.stack([np.asarray(a)] * 5), (p, x, y))
    other = jax.tree.map(lambda a: np.stack([np.asarray(a)] * 7), (p, x, y))
    assert shape_key("f", trees=stacked, stacked=True) == shape_key("f", trees=other, stacked=True)
    assert shape_key({}, trees=(p,)) is None  # an unhashable part: nothing is kept
    # a leaf that is no array (a static argument) by its value
    assert shape_key("f", trees=((p, 0.5),)) == shape_key("f", trees=((same[0], 0.5),))
    assert shape_key("f", trees=((p, 0.5),)) != shape_key("f", trees=((p, 2.0),))


def test_shape_memo_keeps_the_newest_and_nothing_for_no_key():
    memo = ShapeMemo(size=2)
    memo.put(None, 1)
    assert memo.get(None) is None
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # read: now the newest
    memo.put("c", 3)  # drops b, the oldest
    assert memo.get("b") is None and memo.get("a") == 1 and memo.get("c") == 3
    memo.clear()
    assert memo.get("a") is None


def test_clearing_jax_caches_forgets_what_every_memo_kept():
    import audit.check
    import audit.weights
    from audit.tiers import forget_compiled_ahead

    loss_fn, grad_fn = _linear([])
    p, x, y = _data()
    audit.check_gradients(grad_fn, loss_fn, p, x, y, points=4, key=jax.random.key(1))
    key = shape_key(grad_fn, loss_fn, trees=(p, x, y))
    assert audit.check._FOUND.get(key) is not None
    assert audit.weights._FOUND._kept  # the layout and the second look of this call
    forget_compiled_ahead()  # as audit.budget.clear_if_crowded calls it after jax.clear_caches
    assert audit.check._FOUND.get(key) is None and not audit.weights._FOUND._kept


def test_the_factor_audit_finds_its_factors_once_per_function_and_shapes(monkeypatch):
    import audit.factors
    import jaxbp

    asked = []
    real = audit.factors._factor_names_and_look

    def counted(*a, **k):
        asked.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(audit.factors, "_factor_names_and_look", counted)
    audit.factors._FOUND.clear()
    first = audit.audit_network("seed", points=4, steps=10, fd=False)
    again = audit.audit_network("seed", points=4, steps=10, fd=False, seed=1)
    assert asked == [jaxbp.seed_factors]  # the second audit found them kept
    audit.factors._FOUND.clear()
    fresh = audit.audit_network("seed", points=4, steps=10, fd=False, seed=1)
    assert len(asked) == 2
    assert [f["name"] for f in first.factors] == [f["name"] for f in again.factors]
    assert again.factors == fresh.factors and again.notes == fresh.notes

    def no_factors(params, x, yt):  # none of the note's names: refused at every call
        return {"dE/dx": jnp.zeros(())}

    for _ in range(2):
        with pytest.raises(ValueError, match="expected some of the note's factor names"):
            audit.audit_network(jaxbp.seed_grads, factors_fn=no_factors, points=4, steps=10)
