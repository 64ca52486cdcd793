"""audit.points: labels made on demand, stacking and merging groups, random draws."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from audit.placement import shard_points
from audit.points import (
    RANDOM_BATCH,
    Labels,
    by_group,
    hashed_normal,
    joined_labels,
    merge_same_shapes,
    numbered,
    perturbed,
    random_batch,
    random_points,
    stack_points,
)


def test_labels_are_made_on_demand_and_indexed_like_a_list():
    made = []

    def label(i):
        made.append(i)
        return f"point {i}"

    labels = Labels(label, 10**9)  # a billion labels cost nothing until one is read
    assert len(labels) == 10**9 and made == []
    assert labels[3] == "point 3" and labels[-1] == f"point {10**9 - 1}"
    assert labels[2:5] == ["point 2", "point 3", "point 4"]
    with pytest.raises(IndexError):
        labels[10**9]


def test_numbered_and_joined_labels():
    first = numbered("random draw", 3, first=["seed worked example"])
    assert list(first) == ["seed worked example", "random draw 0", "random draw 1"]
    both = joined_labels([first, ["step 0", "step 5"]])
    assert list(both) == [*first, "step 0", "step 5"]
    assert len(joined_labels([])) == 0


@pytest.mark.parametrize(("n", "batch"), [(1, RANDOM_BATCH), (3, 3), (64, 64), (65, RANDOM_BATCH)])
def test_random_batch_is_the_datas_own_when_small(n, batch):
    assert random_batch(n) == batch


def seed_point(scale=1.0):
    params, x, y = jaxbp.seed_example()
    return jax.tree.map(lambda a: a * scale, params), x, y


def test_stack_points_puts_the_points_on_a_leading_axis():
    g = stack_points("trajectory", [seed_point(1.0), seed_point(2.0)], ["a", "b"])
    assert g.size == 2 and g.batch == 1 and g.sources == ("trajectory", "trajectory")
    assert g.params[0]["W"].shape == (2, 2, 2) and g.x.shape == (2, 1, 2)
    np.testing.assert_array_equal(
        np.asarray(g.params[1]["W"][1]), 2 * np.asarray(g.params[1]["W"][0])
    )


def test_merge_joins_same_shapes_and_keeps_others_apart():
    a = stack_points("seed_example", [seed_point()], ["seed"])
    b = stack_points("trajectory", [seed_point(2.0)], ["step 0"])
    x4, y4 = jaxbp.truth_table("xor")
    c = stack_points("trajectory", [(seed_point()[0], x4, y4)], ["step 1"])
    merged = merge_same_shapes([a, c, b])
    assert [g.size for g in merged] == [2, 1]
    assert merged[0].sources == ("seed_example", "trajectory")
    assert list(merged[0].labels) == ["seed", "step 0"]
    np.testing.assert_array_equal(np.asarray(merged[0].x[1]), np.asarray(b.x[0]))


@pytest.mark.parametrize("loss", ["mse", "bce", "softmax_ce"])
def test_random_points_shapes_and_targets(loss):
    g = random_points((3, 4, 2), 5, key=jax.random.key(0), loss=loss, dtype="float32", batch=6)
    assert g.size == 5 and g.batch == 6 and g.sources == ("random",) * 5
    assert [p["W"].shape for p in g.params] == [(5, 4, 3), (5, 2, 4)]
    assert [p["b"].shape for p in g.params] == [(5, 4), (5, 2)]
    assert g.x.shape == (5, 6, 3) and g.y.shape == (5, 6, 2)
    y = np.asarray(g.y)
    if loss == "softmax_ce":  # one-hot classes
        assert set(np.unique(y)) <= {0.0, 1.0} and np.all(y.sum(axis=2) == 1)
    else:  # targets and probabilities in [0, 1)
        assert np.all((y >= 0) & (y < 1))
    # parameters and inputs are standard normal draws, different at every point
    w = np.asarray(g.params[0]["W"])
    assert len({w[i].tobytes() for i in range(5)}) == 5


def test_random_points_differ_by_key_and_agree_for_the_same_key():
    a, b, c = (
        random_points((2, 2, 1), 4, key=jax.random.key(k), loss="mse", dtype="float32")
        for k in (0, 0, 1)
    )
    np.testing.assert_array_equal(np.asarray(a.x), np.asarray(b.x))
    assert not np.array_equal(np.asarray(a.x), np.asarray(c.x))


@pytest.mark.parametrize("loss", ["mse", "softmax_ce"])
def test_random_draw_i_is_the_same_whatever_the_count_in_either_layout(loss):
    # 5 draws of 3 * 4 + 4 + 2 * 4 + 2 + 6 * 3 = 44 numbers are drawn along the numbers, 300
    # along the draws; draw i is the same in both, bit for bit
    few, many = (
        random_points((3, 4, 2), n, key=jax.random.key(3), loss=loss, dtype="float32", batch=6)
        for n in (5, 300)
    )
    for a, b in zip(jax.tree.leaves((few.params, few.x, few.y)),
                    jax.tree.leaves((many.params, many.x, many.y)), strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[:5])


def test_random_draws_are_standard_normal_and_targets_uniform():
    """Over 20,000 draws of a 2-2-1 point (9 parameters, 4 x 2 inputs, 4 targets): normal
    moments for parameters and inputs, uniform ones for targets, classes equally likely;
    bounds at about 5 standard errors."""
    g = random_points((2, 2, 1), 20000, key=jax.random.key(11), loss="mse", dtype="float32",
                      batch=4)  # fmt: skip
    z = np.concatenate([np.asarray(a, np.float64).reshape(20000, -1)
                        for a in jax.tree.leaves((g.params, g.x))], axis=1)  # fmt: skip
    assert z.shape == (20000, 17)
    assert abs(z.mean()) < 5 / math.sqrt(z.size)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / z.size)
    assert np.all(np.abs(z.mean(axis=0)) < 5 / math.sqrt(20000))  # every column centred
    y = np.asarray(g.y, np.float64)
    assert abs(y.mean() - 0.5) < 5 * math.sqrt(1 / 12 / y.size)
    assert abs(y.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / y.size)
    assert abs(np.corrcoef(y[:, 0, 0], y[:, 1, 0])[0, 1]) < 5 / math.sqrt(20000)
    c = random_points((2, 2, 3), 20000, key=jax.random.key(12), loss="softmax_ce",
                      dtype="float32", batch=4).y  # fmt: skip
    share = np.asarray(c, np.float64).reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(share - 1 / 3) < 5 * math.sqrt(2 / 9 / 80000))


def test_hashed_normal_is_standard_normal_and_the_same_whatever_the_rows():
    """Moments and quantiles against the standard normal's (math.erf), over 10^6 numbers;
    row i depends on the key, i and the column alone."""
    key = jax.random.key(7)
    z = np.asarray(hashed_normal(key, 200, 5000, jnp.float32), dtype=np.float64)
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 5 / np.sqrt(z.size)  # five standard errors
    assert abs(z.std() - 1) < 0.005
    for t in (-2.0, -1.0, 0.0, 0.5, 1.5, 3.0):
        expected = 0.5 * (1 + math.erf(t / math.sqrt(2)))
        assert abs(np.mean(z <= t) - expected) < 0.002, t
    more = np.asarray(hashed_normal(key, 300, 5000, jnp.float32), dtype=np.float64)
    np.testing.assert_array_equal(more[:200], z)
    other = np.asarray(hashed_normal(jax.random.key(8), 200, 5000, jnp.float32))
    assert abs(np.corrcoef(z.ravel(), other.ravel())[0, 1]) < 0.01
    # neighbouring rows and columns are uncorrelated
    assert abs(np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(z[:, :-1].ravel(), z[:, 1:].ravel())[0, 1]) < 0.01


def test_perturbed_keeps_the_given_point_first_and_scales_by_each_leafs_rms():
    params = {"w": jnp.full((40, 50), 3.0, jnp.float32), "b": jnp.zeros((50,), jnp.float32)}
    out = perturbed(params, jax.random.key(0), 0.5, points=64)
    np.testing.assert_array_equal(np.asarray(out["w"][0]), np.asarray(params["w"]))
    step_w = (np.asarray(out["w"][1:], dtype=np.float64) - 3.0) / (0.5 * 3.0)
    step_b = np.asarray(out["b"][1:], dtype=np.float64) / 0.5  # an all-zero leaf's rms is 1
    for step in (step_w, step_b):
        assert abs(step.std() - 1) < 0.05 and abs(step.mean()) < 0.05
    again = perturbed(params, jax.random.key(0), 0.5, points=16)
    np.testing.assert_array_equal(np.asarray(again["w"]), np.asarray(out["w"][:17]))


def test_hashed_normal_transposed_is_the_same_numbers():
    key = jax.random.key(3)
    draw = jax.jit(hashed_normal, static_argnums=(1, 2, 3), static_argnames="transposed")
    for rows, cols in ((1000, 9), (7, 300)):
        z = np.asarray(draw(key, rows, cols, jnp.float32))
        t = np.asarray(draw(key, rows, cols, jnp.float32, transposed=True))
        assert t.shape == (cols, rows)
        np.testing.assert_array_equal(t.T, z)


def test_perturbed_draws_the_same_points_in_either_layout():
    # 9 values: 4 points are drawn along the values, 200 along the points (the long axis);
    # perturbation i is the same in both, bit for bit, from the noise written out here
    params = [{"W": jnp.arange(4.0).reshape(2, 2), "b": jnp.ones(2)},
              {"W": jnp.full((1, 2), -2.0), "b": jnp.zeros(1)}]  # fmt: skip
    key = jax.random.key(5)
    few = perturbed(params, key, 0.5, points=4)
    many = perturbed(params, key, 0.5, points=200)
    for a, b in zip(jax.tree.leaves(few), jax.tree.leaves(many), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[:5])
    z = np.asarray(hashed_normal(key, 200, 9, jnp.float32))
    w0 = np.asarray(many[0]["W"])
    rms = np.float32(np.sqrt(np.mean(np.arange(4.0, dtype=np.float32) ** 2)))
    noise = z[:, :4].reshape(200, 2, 2)  # the first leaf's values come first
    expected = np.arange(4.0, dtype=np.float32).reshape(2, 2) + np.float32(0.5) * rms * noise
    np.testing.assert_allclose(w0[1:], expected, rtol=1e-6, atol=1e-6)


def test_a_repeated_batch_goes_to_the_device_dense_and_unchanged():
    # the same batch at every point, as check_gradients hands it: a view with a stride of 0
    x = np.arange(8.0, dtype=np.float32).reshape(4, 2)
    view = np.broadcast_to(x, (5, 4, 2))
    params = np.ones((5, 3), np.float32)
    out_params, out_x, none = shard_points(None, (params, view, None))
    assert out_params is params and none is None  # a dense leaf and None as they are
    assert 0 not in out_x.strides and out_x.flags.c_contiguous
    np.testing.assert_array_equal(out_x, np.stack([x] * 5))
    inner = np.broadcast_to(np.arange(3.0)[None, :, None], (5, 3, 2))  # repeated inside too
    (out,) = shard_points(None, (inner,))
    assert out.flags.c_contiguous and 0 not in out.strides
    np.testing.assert_array_equal(out, np.stack([np.stack([np.arange(3.0)] * 2, axis=1)] * 5))
    across = np.broadcast_to(np.arange(5.0)[:, None], (5, 4))  # a stride of 0 not first
    (out,) = shard_points(None, (across,))
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.repeat(np.arange(5.0)[:, None], 4, axis=1))


def test_by_group_splits_global_points_over_groups_laid_end_to_end():
    # groups of 3, 0 and 4 points: global 0-2 are the first group's, 3-6 the third's
    split = by_group([3, 0, 4], np.array([5, 0, 2, 6, 3]))
    assert [k for k, _, _ in split] == [0, 2]
    np.testing.assert_array_equal(split[0][1], [1, 2])  # positions of 0 and 2
    np.testing.assert_array_equal(split[0][2], [0, 2])
    np.testing.assert_array_equal(split[1][1], [0, 3, 4])  # positions of 5, 6 and 3
    np.testing.assert_array_equal(split[1][2], [2, 3, 0])
    assert by_group([2, 2], np.array([], int)) == []
