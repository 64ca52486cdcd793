"""audit.element_names: names written when read, against the list written out in full."""

import jax.numpy as jnp
import numpy as np
import pytest

import audit
from audit.element_names import ElementNames, tree_names


def _params() -> dict:
    """Every kind of leaf: a matrix, a scalar, a 3-d block, an empty one, a list's entries."""
    return {
        "W": np.zeros((3, 12)),
        "b": np.zeros(()),
        "block": np.zeros((2, 1, 3)),
        "empty": np.zeros((0, 4)),
        "layers": [np.zeros(2), np.zeros((1, 1))],
    }


def _written_out(params) -> list[str]:
    """The names one by one, from the paths as written here and np.ndindex."""
    paths = {
        "W": "['W']",
        "b": "['b']",
        "block": "['block']",
        "empty": "['empty']",
        "layers": ["['layers'][0]", "['layers'][1]"],
    }
    names = []
    for key in sorted(params):  # a dict flattens by sorted key
        leaves = params[key] if isinstance(params[key], list) else [params[key]]
        bases = paths[key] if isinstance(paths[key], list) else [paths[key]]
        for base, leaf in zip(bases, leaves, strict=True):
            if leaf.shape == ():
                names.append(base)
            else:
                names += [f"{base}[{','.join(map(str, ix))}]" for ix in np.ndindex(*leaf.shape)]
    return names


def test_every_name_reads_as_the_list_written_out():
    names, expect = tree_names(_params()), _written_out(_params())
    assert len(names) == len(expect) == 36 + 1 + 6 + 0 + 2 + 1
    assert names == expect and expect == names
    assert list(names) == expect
    assert [names[i] for i in range(len(names))] == expect
    assert [names[-i] for i in range(1, len(names) + 1)] == expect[::-1]
    assert names[np.int64(13)] == expect[13] == "['W'][1,1]"
    assert names[40:44] == expect[40:44] and names[::7] == expect[::7]
    assert [names.index(n) for n in expect] == list(range(len(expect)))
    assert all(n in names for n in expect)
    assert names != expect[:-1] and names != [*expect[:-1], "other"]


@pytest.mark.parametrize(
    "name",
    ["['W'][3,0]", "['W'][01,2]", "['W'][1]", "['W'][1,2,0]", "['W']", "['b'][0]", "['empty'][0,0]",
     "['layers'][0][-1]", "['W'][a,b]", "w11", ""],
)  # fmt: skip
def test_a_name_no_element_has_is_refused(name):
    names = tree_names(_params())
    assert name not in names and name not in _written_out(_params())
    with pytest.raises(ValueError, match="is not a name of these 46 elements"):
        names.index(name)


def test_index_keeps_to_its_range_and_out_of_range_reads_fail():
    names = tree_names(_params())
    assert names.index("['W'][0,5]", 5) == 5
    with pytest.raises(ValueError):
        names.index("['W'][0,5]", 6)
    with pytest.raises(IndexError, match="element 46 of 46"):
        names[46]
    with pytest.raises(IndexError, match="element -47 of 46"):
        names[-47]
    with pytest.raises(ValueError, match="bases has 2 entries and shapes 1"):
        ElementNames(["a", "b"], [(2,)])


def test_an_audit_writes_no_name_it_is_not_asked_for():
    """The result's table holds the names unwritten, and reads a weight by its name."""

    def loss_fn(p, x, y):
        return jnp.mean((x @ p["w"] + p["c"] - y) ** 2)

    def grad_fn(p, x, y):  # the factor 2 dropped for w[2, 1]
        r = 2 * (x @ p["w"] + p["c"] - y) / y.size
        return {"c": jnp.sum(r), "w": (x.T @ r).at[2, 1].multiply(0.5)}

    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)
    y = jnp.ones((8, 2), jnp.float32)
    params = {"c": jnp.float32(0.5), "w": jnp.full((3, 2), 0.25, jnp.float32)}
    r = audit.check_gradients(grad_fn, loss_fn, params, x, y)
    assert isinstance(r.weights.names, ElementNames)
    assert r.weights.column("name") == ["['c']"] + [
        f"['w'][{i},{j}]" for i in range(3) for j in (0, 1)
    ]
    assert r.failed_weights == ["['w'][2,1]"]
    assert r.weight("['w'][2,1]") is r.weights[6] and not r.weights[6]["passed"]
    with pytest.raises(KeyError, match=r"no weight named 'w21'; names are \['c'\], \['w'\]\[0,0\]"):
        r.weight("w21")
