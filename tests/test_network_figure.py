"""Tests for audit.network_figure: the picture shows what the audit found, where the note would
draw it. Colours are read from the rendered PNG at places fixed by the note's own drawing
(w12 runs from x2 to neuron 1), never from the palette of the code under test."""

import copy
import io
import itertools

import numpy as np
import pytest

import audit
import jaxbp
from audit import network_figure
from audit.plots import to_png
from examples.my_gradients import buggy_grads

QUICK = dict(points=4, steps=0, fd=False)
# the note's 2-2-1 network: weight -> (from, into)
EDGES = {
    "w11": ("x1", "1"), "w12": ("x2", "1"), "w21": ("x1", "2"), "w22": ("x2", "2"),
    "w31": ("1", "3"), "w32": ("2", "3"),
}  # fmt: skip


@pytest.fixture(scope="module")
def swapped():
    """examples/my_gradients.py's buggy_grads: dE/dw12 and dE/dw21 trade places."""
    return audit.audit_network(buggy_grads, **QUICK)


@pytest.fixture(scope="module")
def default_run():
    return audit.audit_network("seed", **QUICK)


@pytest.fixture(scope="module")
def missing_dA1dz1(default_run):
    """The default run's result as an audit of the note's chain with dA1/dz1 left out reads:
    the weights and bias into neuron 1 fail, and so does the factor (tests/test_engine.py
    checks that the audit fails exactly these weights, and names a wrong dA1/dz1 first)."""
    data = copy.deepcopy(default_run.to_dict())
    for row in data["weights"] + data["factors"]:
        if row["name"] in ("w11", "w12", "b1", "dA1/dz1"):
            row.update(status="fail", passed=False, score=1.2e3)
    data.update(passed=False, first_failing_factor="dA1/dz1")
    return data


def rendered(result):
    """The figure, its PNG as an (h, w, 4) float array, and a function giving the pixel
    position of a data point of the figure's first axes."""
    from matplotlib.image import imread

    fig = network_figure.draw(result)
    image = imread(io.BytesIO(to_png(fig)))  # to_png draws the figure: transforms are final
    height = image.shape[0]

    def pixel(ax, xy):
        x, y = ax.transData.transform(xy)
        return round(height - y), round(x)

    return fig, image, pixel


def artist(fig, gid):
    found = fig.findobj(lambda a: a.get_gid() == gid)
    assert len(found) == 1, (gid, len(found))
    return found[0]


def centre(fig, name):
    return tuple(artist(fig, f"node {name}").get_xydata()[0])


def kind(rgb):
    """A pixel's colour family, told by its channels (no palette from the code)."""
    r, g, b = rgb[:3]
    if r > 0.6 and g < 0.45 and b < 0.45:
        return "red"
    if b > 0.55 and r < 0.45:
        return "blue"
    return "other"


def colours_between(fig, image, pixel, a, b):
    """How many of 60 places on the straight line between nodes ``a`` and ``b`` (away from
    the nodes themselves) show red or blue within a pixel of the line."""
    ax = fig.axes[0]
    p, q = np.array(centre(fig, a)), np.array(centre(fig, b))
    seen = {"red": 0, "blue": 0}
    for t in np.linspace(0.12, 0.88, 60):
        row, col = pixel(ax, p + t * (q - p))
        near = {kind(rgb) for rgb in image[row - 1 : row + 2, col - 1 : col + 2].reshape(-1, 4)}
        for k in seen:
            seen[k] += k in near
    return seen


def test_the_swapped_weights_are_the_red_edges(swapped):
    assert swapped.failed_weights == ["w12", "w21"]  # the example's slip, as documented
    fig, image, pixel = rendered(swapped)
    for weight, (a, b) in EDGES.items():
        line = artist(fig, f"edge {weight}").get_xydata()
        assert {tuple(line[0]), tuple(line[-1])} == {centre(fig, a), centre(fig, b)}, weight
        seen = colours_between(fig, image, pixel, a, b)
        if weight in ("w12", "w21"):
            assert seen["red"] > 20 and seen["blue"] < 5, (weight, seen)
        else:
            assert seen["blue"] > 15 and seen["red"] == 0, (weight, seen)
    texts = {t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))}
    assert any(t.startswith("w12 ") for t in texts) and any(t.startswith("w21 ") for t in texts)
    assert not fig.findobj(lambda a: a.get_gid() == "first failing")  # no factor was audited


def test_a_missing_dA1dz1_reds_neuron_1s_inputs_and_marks_the_factor(missing_dA1dz1):
    fig, image, pixel = rendered(missing_dA1dz1)
    ax = fig.axes[0]
    for weight, (a, b) in EDGES.items():
        seen = colours_between(fig, image, pixel, a, b)
        into_neuron_1 = b == "1"  # w11 and w12: their chain runs through dA1/dz1
        assert (seen["red"] > seen["blue"]) == into_neuron_1, (weight, seen)

    tag = artist(fig, "factor dA1/dz1")
    # the tag sits at neuron 1, whose activation derivative it is
    nodes = {n: np.array(centre(fig, n)) for n in ("x1", "x2", "1", "2", "3")}
    where = np.array(tag.get_position())
    assert min(nodes, key=lambda n: np.linalg.norm(nodes[n] - where)) == "1"
    # marked: its frame is the thickest of all factors, and the word sits right under it
    widths = {
        t.get_text(): t.get_bbox_patch().get_linewidth()
        for t in fig.findobj(lambda a: str(a.get_gid()).startswith("factor "))
    }
    assert len(widths) == 15
    assert widths["dA1/dz1"] > max(w for name, w in widths.items() if name != "dA1/dz1")
    mark = artist(fig, "first failing")
    box, under = tag.get_window_extent(), mark.get_window_extent()
    assert under.y1 <= box.y0 + 2 and abs(under.x0 + under.x1 - box.x0 - box.x1) < 4

    def red_share(name):  # red pixels in a factor tag's frame, read from the PNG
        row, col = pixel(ax, artist(fig, f"factor {name}").get_position())
        patch = image[row - 14 : row + 15, col - 45 : col + 46]
        return np.mean([kind(p) == "red" for p in patch.reshape(-1, 4)])

    assert red_share("dA1/dz1") > 0.05
    assert red_share("dA2/dz2") == 0  # the same factor of neuron 2 passes


def test_the_default_run_draws_every_edge_passing_and_every_factor_on_its_link(default_run):
    assert default_run.passed
    fig, image, pixel = rendered(default_run)
    for weight, (a, b) in EDGES.items():
        seen = colours_between(fig, image, pixel, a, b)
        assert seen["red"] == 0 and seen["blue"] > 15, (weight, seen)
    ax = fig.axes[0]
    for weight, (a, b) in EDGES.items():
        # dz/dw of a weight sits on that weight's edge, between its two neurons
        name = f"dz{b}/d{weight}"
        p, q = np.array(centre(fig, a)), np.array(centre(fig, b))
        s = np.array(artist(fig, f"factor {name}").get_position())
        t = np.dot(s - p, q - p) / np.dot(q - p, q - p)
        assert 0 < t < 1 and np.linalg.norm(p + t * (q - p) - s) < 1e-9, name
    assert not fig.findobj(lambda a: a.get_gid() == "first failing")
    assert ax.get_xlim()[0] < centre(fig, "x1")[0] < centre(fig, "3")[0]


def wide_result(sizes, failing):
    """A report dict of a network audit, ``failing`` weights (by name) 50% off."""
    names = jaxbp.param_names(sizes)
    weights = [
        {"name": n, "manual": 1.5 if n in failing else 1.0, "reference": 1.0,
         "score": 500.0 if n in failing else 0.01, "passed": n not in failing,
         "status": "fail" if n in failing else "pass"}
        for n in names
    ]  # fmt: skip
    return {"passed": not failing, "config": {"sizes": list(sizes)}, "weights": weights,
            "factors": [], "first_failing_factor": None}  # fmt: skip


def test_a_64_32_10_network_is_one_grid_per_layer_with_the_failures_named_where_they_are():
    # w4_8: into hidden neuron 4 from input 8 (jaxbp.param_names); w38_20: into output 38 - 32
    result = wide_result((64, 32, 10), {"w4_8", "w38_20"})
    fig, image, pixel = rendered(result)
    assert fig.get_size_inches()[0] <= 14
    layer1, layer2 = (a for a in fig.axes if a.get_gid() != "legend")
    for ax, (col, row), other in ((layer1, (8, 4), (40, 20)), (layer2, (20, 6), (5, 2))):
        r, c = pixel(ax, (col, row))
        assert kind(image[r, c]) == "red", (ax.get_title(), image[r, c])
        r, c = pixel(ax, other)
        assert kind(image[r, c]) == "blue"
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert "w4_8" in texts and "w38_20" in texts
    assert any("2 of 2410 weights fail" in t for t in texts)


def test_a_backward_pass_is_one_bar_per_intermediate_in_backward_order():
    weights = [
        {"name": f"{leaf}[{i}]", "status": "fail" if leaf == "h" and i < 3 else "pass",
         "passed": not (leaf == "h" and i < 3)}
        for leaf, i in itertools.product(("h", "a", "loss"), range(4))
    ]  # fmt: skip
    result = {
        "passed": False, "weights": weights, "factors": [],
        "config": {"check": "check_backward", "intermediates": ["loss", "a", "h"],
                   "leaves": [{"name": n, "shape": [4]} for n in ("h", "a", "loss")]},
        "first_failing_factor": "h",
    }  # fmt: skip
    fig = network_figure.draw(result)
    to_png(fig)
    heights = [artist(fig, f"tensor {n}").get_window_extent().y0 for n in ("loss", "a", "h")]
    assert heights == sorted(heights, reverse=True)  # top to bottom: the loss's side first
    mark = artist(fig, "first failing")
    assert abs(mark.get_window_extent().y0 - heights[2]) < 3
    assert "3/4 fail" in mark.get_text()


def test_the_same_result_draws_the_same_bytes(swapped):
    assert network_figure.network_png(swapped) == network_figure.network_png(swapped.to_dict())


def test_describe_names_the_failures(swapped, missing_dA1dz1):
    assert "failing: w12, w21" in network_figure.describe(swapped)
    assert network_figure.describe(missing_dA1dz1).endswith("first failing: dA1/dz1")
