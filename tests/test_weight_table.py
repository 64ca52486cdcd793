"""audit.weight_table: a list of per-weight dicts made on first reading, read as a list."""

import jax
import jax.numpy as jnp
import pytest

import audit
from audit.weight_table import WeightTable


def _table(made: list[int]) -> tuple[WeightTable, list[dict]]:
    names = ["a", "b", "c"]
    statuses = ["pass", "fail", "precision"]
    rows = [
        dict(name=n, status=s, passed=s != "fail") for n, s in zip(names, statuses, strict=True)
    ]

    def entry(i: int) -> dict:
        made.append(i)
        return dict(rows[i])

    return WeightTable(entry, names=names, statuses=statuses), rows


def test_reads_as_the_list_it_stands_for():
    made: list[int] = []
    table, rows = _table(made)
    assert len(table) == 3
    assert table == rows and rows == table
    assert list(table) == rows
    assert table[-1] == rows[2] and table[0:2] == rows[0:2]
    assert table + rows[:1] == [*rows, rows[0]]
    assert rows[:1] + table == [rows[0], *rows]
    assert table != rows[:2]
    with pytest.raises(IndexError, match="weight 3 of 3"):
        table[3]


def test_columns_make_no_entry_and_entries_are_made_once():
    made: list[int] = []
    table, _ = _table(made)
    assert table.column("name") == ["a", "b", "c"]
    assert table.column("passed") == [True, False, True]
    assert table.column("status") == ["pass", "fail", "precision"]
    assert made == []
    table[1]["hint"] = "kept"
    assert table[1]["hint"] == "kept" and made == [1]


def test_mismatched_columns_are_refused():
    with pytest.raises(ValueError, match="names has 2 entries and statuses 1"):
        WeightTable(dict, names=["a", "b"], statuses=["pass"])


def test_a_result_reads_the_same_through_the_table():
    """Every entry of a real audit, made from the columns, against the flags and names
    worked out independently: which elements the slip touches, and jax.grad's value."""

    def loss_fn(p, x, y):
        return jnp.mean((x @ p["w"] - y) ** 2)

    def grad_fn(p, x, y):  # a slip in column 1 only: the factor 2 dropped there
        g = 2 * x.T @ (x @ p["w"] - y) / y.size
        return {"w": g.at[:, 1].multiply(0.5)}

    kw, kx, ky = jax.random.split(jax.random.key(3), 3)
    w = jax.random.normal(kw, (3, 2))
    x, y = jax.random.normal(kx, (8, 3)), jax.random.normal(ky, (8, 2))
    r = audit.check_gradients(grad_fn, loss_fn, {"w": w}, x, y, points=7, key=kw)
    assert isinstance(r.weights, WeightTable)
    expect_failed = [f"['w'][{i},1]" for i in range(3)]
    assert r.failed_weights == expect_failed
    assert [e["name"] for e in r.weights if not e["passed"]] == expect_failed
    assert r.counts["weights"] == {"pass": 3, "precision": 0, "fail": 3, "not_judged": 0}
    assert r.verdict == "failed"
    at_given = audit.check_gradients(grad_fn, loss_fn, {"w": w}, x, y).weights  # one point
    with jax.enable_x64(True):
        ref = jax.grad(loss_fn)(
            {"w": w.astype(jnp.float64)}, x.astype(jnp.float64), y.astype(jnp.float64)
        )["w"]
    assert len(at_given) == 6
    for e in at_given:
        i, j = (int(c) for c in e["name"][6:-1].split(","))
        assert e["reference"] == pytest.approx(float(ref[i, j]), rel=1e-12)
    entry = r.weight("['w'][0,1]")
    assert entry is r.weights[1] and entry["status"] == "fail"
    assert r.to_dict()["weights"] == list(r.weights)
    with pytest.raises(KeyError, match=r"no weight named .w9.; names are \['w'\]\[0,0\], "):
        r.weight("w9")
