"""audit.summary: one line per tensor, counted and hinted as an independent computation says."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import audit
import jaxbp
from audit.summary import leaf_summaries, ratio_text, summary_cells
from audit.table import format_table

SIZES = (3, 16, 2)


def _forward(params, x, *, hidden):
    """A 3-16-2 tanh network with an identity output, its hidden activation given."""
    a = hidden(x @ params[0]["W"].T + params[0]["b"][None, :])
    return a @ params[1]["W"].T + params[1]["b"][None, :]


def _loss(params, x, y, hidden=jnp.tanh):
    return jnp.mean(0.5 * jnp.sum((_forward(params, x, hidden=hidden) - y) ** 2, axis=1))


def _tanh_without_derivative(z):
    """tanh going forward, the identity going back: dA/dz = tanh'(z) left out."""
    return z + jax.lax.stop_gradient(jnp.tanh(z) - z)


def missing_tanh_grads(params, x, y):
    """The gradient a derivation without layer 1's tanh'(z) gives."""
    return jax.grad(_loss)(params, x, y, _tanh_without_derivative)


def _data(n=16):
    kx, ky = jax.random.split(jax.random.key(7))
    return jax.random.normal(kx, (n, SIZES[0])), jax.random.normal(ky, (n, SIZES[-1]))


@pytest.fixture(scope="module")
def missing_tanh():
    x, y = _data()
    return audit.audit_network(
        missing_tanh_grads, sizes=SIZES, activation="tanh", output_activation="identity",
        data=(x, y), points=16, steps=0, fd=False,
    )  # fmt: skip


def _differs_per_leaf():
    """How many elements of each tensor differ between the broken and the right gradient, in
    float64 with jax.grad, at a few parameter draws of our own."""
    x, y = (np.asarray(a, np.float64) for a in _data())
    with jax.enable_x64(True):
        first = jaxbp.init(SIZES, key=jax.random.key(0), dtype=jnp.float64)
        params = jax.tree.map(jnp.asarray, first)
        assert np.allclose(
            _loss(params, x, y), jaxbp.batch_loss(params, x, y, activation="tanh",
                                                  output_activation="identity", loss="mse"),
        )  # fmt: skip
        differs = None
        for k in range(4):
            p = jaxbp.init(SIZES, key=jax.random.key(k), dtype=jnp.float64)
            right, broken = jax.grad(_loss)(p, x, y), missing_tanh_grads(p, x, y)
            d = [
                np.abs(np.asarray(b) - np.asarray(r)) > 1e-2 * np.abs(np.asarray(r)).max()
                for b, r in zip(jax.tree.leaves(broken), jax.tree.leaves(right), strict=True)
            ]
            differs = d if differs is None else [a | b for a, b in zip(differs, d, strict=True)]
    return [int(a.sum()) for a in differs], [a.size for a in differs]


def test_a_missing_tanh_derivative_reads_as_one_line_per_tensor(missing_tanh):
    counts, sizes = _differs_per_leaf()
    summaries = leaf_summaries(missing_tanh)
    assert [s["name"] for s in summaries] == ["layer 1 W", "layer 1 b", "layer 2 W", "layer 2 b"]
    assert [s["size"] for s in summaries] == sizes
    assert [s["failing"] for s in summaries] == counts
    assert counts[2:] == [0, 0] and counts[0] > 0  # the output layer has no tanh to miss
    for s in summaries[:2]:
        assert s["hint"] == "missing the activation derivative tanh'(z) of layer 1"
    text = format_table(missing_tanh)
    lines = text.splitlines()
    head = next(k for k, line in enumerate(lines) if line.startswith("tensor"))
    assert lines[head + 1].split()[:4] == ["layer", "1", "W", f"{counts[0]}/{sizes[0]}"]
    assert lines[head + 2].split()[:4] == ["layer", "1", "b", f"{counts[1]}/{sizes[1]}"]
    assert "swapped" not in text
    # the table is capped: 4 rows per tensor and a line per tensor saying what was left out
    assert f"({sizes[0] - 4} more of layer 1 W not shown, {counts[0] - 4} of them failing)" in text
    assert f"({sizes[2] - 4} more of layer 2 W not shown, all passing)" in text
    assert len(lines) < 50


def test_the_rows_of_a_tensor_show_its_failures_first(missing_tanh):
    text = format_table(missing_tanh, leaf_rows=3)
    rows = [line.split() for line in text.splitlines() if re.match(r"[wb]\d", line)]
    verdicts = [r[6] for r in rows]
    # layer 1 W, then layer 1 b: failing; layer 2 W, b: passing
    assert verdicts[:6] == ["FAIL"] * 6 and set(verdicts[6:]) == {"PASS"}


def test_the_summary_leads_the_markdown_and_html_reports(missing_tanh, tmp_path):
    audit.write_report(missing_tanh, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Weights")
    counts, sizes = _differs_per_leaf()
    assert f"| layer 1 W | {counts[0]}/{sizes[0]} |" in md
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.index("<h2>Summary</h2>") < html.index("<h2>Weights</h2>")


def test_a_report_without_its_tensors_is_read_from_the_names():
    weights = [
        {"name": f"x[{k}]", "manual": 2.0 * (k + 1), "reference": k + 1.0, "status": "fail"}
        for k in range(3)
    ] + [{"name": "scale", "manual": 1.0, "reference": 1.0, "status": "pass"}]
    summaries = leaf_summaries({"weights": weights})
    assert [(s["name"], s["failing"], s["size"]) for s in summaries] == [
        ("x", 3, 3),
        ("scale", 0, 1),
    ]
    assert summaries[0]["ratio"] == 2.0
    assert summary_cells(summaries[1])[:4] == ["scale", "0/1", "-", "PASS"]


def test_a_network_report_without_its_tensors_is_read_from_its_sizes():
    names = jaxbp.param_names((2, 3, 1))
    weights = [{"name": n, "manual": 1.0, "reference": 1.0, "status": "pass"} for n in names]
    data = {"weights": weights, "config": {"sizes": [2, 3, 1]}}
    assert [(s["name"], s["size"]) for s in leaf_summaries(data)] == [
        ("layer 1 W", 6),
        ("layer 1 b", 3),
        ("layer 2 W", 3),
        ("layer 2 b", 1),
    ]


@pytest.mark.parametrize(
    ("ratio", "text"), [(0.98, "x0.98"), (-1.0, "x-1"), (1.0001, "x1.0001"), (None, "-")]
)
def test_ratio_text(ratio, text):
    assert ratio_text(ratio) == text


def _linear_loss(p, x, y):
    return jnp.mean(jnp.sum((x @ p["W1"] + p["b"][None, :] - y) ** 2, axis=1))


def _right(p, x, y):
    r = 2 * (x @ p["W1"] + p["b"][None, :] - y) / x.shape[0]
    return {"W1": x.T @ r, "b": jnp.sum(r, axis=0)}


def test_any_pytree_gets_a_constant_ratio_and_a_sum_instead_of_a_mean_per_leaf():
    def slipped(p, x, y):
        g = _right(p, x, y)
        # W1 off by 2% everywhere; b summed over the batch instead of averaged
        return {"W1": 0.98 * g["W1"], "b": g["b"] * x.shape[0]}

    kw, kx, ky = jax.random.split(jax.random.key(3), 3)
    p = {"W1": jax.random.normal(kw, (3, 2)), "b": jnp.zeros(2)}
    x, y = jax.random.normal(kx, (8, 3)), jax.random.normal(ky, (8, 2))
    with jax.enable_x64(True):  # the right gradient is the right one, by jax.grad in float64
        p64, x64, y64 = (jax.tree.map(lambda a: np.asarray(a, np.float64), t) for t in (p, x, y))
        auto = jax.grad(_linear_loss)(p64, x64, y64)
        for k, v in _right(p64, x64, y64).items():
            np.testing.assert_allclose(v, auto[k], rtol=1e-12)
    result = audit.check_gradients(slipped, _linear_loss, p, x, y, points=16, key=kw, fd=False)
    summaries = {s["name"]: s for s in leaf_summaries(result)}
    assert summaries["['W1']"]["hint"] == "x0.98 everywhere in ['W1']: a constant factor"
    assert summaries["['W1']"]["ratio"] == pytest.approx(0.98, rel=1e-4)
    assert summaries["['b']"]["hint"].startswith("x batch size everywhere in ['b']")
    assert summaries["['b']"]["ratio"] == pytest.approx(8, rel=1e-4)
    assert [(s["failing"], s["size"]) for s in summaries.values()] == [(6, 6), (2, 2)]
