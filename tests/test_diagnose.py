"""audit.diagnose on hand-made values: each pattern is named from many points, never one."""

import numpy as np
import pytest

from audit.diagnose import MIN_POINTS, diagnose, diagnose_leaves

# one 2x2 leaf W (w11 w12 / w21 w22) and a bias leaf b (b1 b2): P = 6, flatten order
NAMES = ["w11", "w12", "w21", "w22", "b1", "b2"]
LEAF_OF = np.array([0, 0, 0, 0, 1, 1])
SHAPES = [(2, 2), (2,)]
OFFSETS = [0, 4]


def reference(n=6, seed=0):
    """``(n, 6)`` reference values, all clearly non-zero and distinct."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, (n, 6)) * rng.choice([-1.0, 1.0], (n, 6))


def run(manual, ref, failing, *, batch=None, candidates=None, failed_at=None):
    n = ref.shape[0]
    return diagnose(
        np.asarray(failing), manual, ref, names=NAMES, leaf_of=LEAF_OF, leaf_shapes=SHAPES,
        leaf_offsets=OFFSETS, batch=np.full(n, 1) if batch is None else batch,
        labels=[f"point {k}" for k in range(n)], floor=1e-2, rtol=1e-3, candidates=candidates,
        failed_at=failed_at,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("factor", "words"),
    [
        (-1.0, "sign error"),
        (2.0, "x2: a dropped 1/2"),
        (0.5, "x1/2: a factor 1/2 too many"),
        (0.0, "a missing term"),
        (3.7, "x3.7 at every point: a constant factor"),
    ],
)
def test_a_constant_ratio_is_named(factor, words):
    ref = reference()
    manual = ref.copy()
    manual[:, 1] *= factor
    hints = run(manual, ref, [1])
    assert list(hints) == [1] and words in hints[1]


def test_summed_or_averaged_twice_over_the_batch():
    ref = reference()
    batch = np.array([2, 3, 4, 2, 3, 4])
    summed, twice = ref.copy(), ref.copy()
    summed[:, 4] *= batch
    twice[:, 4] /= batch
    assert "summed over the batch" in run(summed, ref, [4], batch=batch)[4]
    assert "averaged over the batch twice" in run(twice, ref, [4], batch=batch)[4]


def test_swapped_indices_name_the_partner():
    ref = reference()
    manual = ref.copy()
    manual[:, [1, 2]] = ref[:, [2, 1]]  # w12 and w21 swapped
    hints = run(manual, ref, [1, 2])
    assert "swapped indices (w12 <-> w21)" in hints[1]
    assert "swapped indices (w21 <-> w12)" in hints[2]


def test_a_transposed_matrix_is_named_for_the_whole_leaf():
    # a 3x3 W (a 2x2 one transposed is one swapped pair, named as such above)
    rng = np.random.default_rng(1)
    ref = rng.uniform(0.5, 2.0, (6, 9)) * rng.choice([-1.0, 1.0], (6, 9))
    manual = np.transpose(ref.reshape(-1, 3, 3), (0, 2, 1)).reshape(-1, 9)
    failing = [k for k in range(9) if k not in (0, 4, 8)]  # the diagonal agrees
    hints = diagnose(
        np.array(failing), manual, ref, names=[f"w{k}" for k in range(9)],
        leaf_of=np.zeros(9, int), leaf_shapes=[(3, 3)], leaf_offsets=[0], batch=np.ones(6),
        labels=[f"point {k}" for k in range(6)], floor=1e-2, rtol=1e-3,
    )  # fmt: skip
    assert set(hints) == set(failing)
    assert set(hints.values()) == {"transposed: handwritten tensor 0 is jax.grad's tensor 0^T"}


def test_nonfinite_values_name_the_first_point_and_the_side():
    ref = reference()
    manual = ref.copy()
    manual[3, 0] = np.nan
    ref_bad = ref.copy()
    ref_bad[2, 5] = np.inf
    assert run(manual, ref, [0])[0] == "NaN/Inf in the handwritten gradient (first at point 3)"
    assert run(ref, ref_bad, [5])[5].startswith("jax.grad is NaN/Inf at point 2")


def test_a_ratio_at_too_few_points_is_not_named():
    ref = reference(n=MIN_POINTS - 1)
    manual = ref.copy()
    manual[:, 1] *= 2.0
    assert "a dropped 1/2" not in run(manual, ref, [1]).get(1, "")


def test_a_pattern_is_read_at_the_failing_points_only():
    # a x2 that shows only at points 0-3 (a branch taken for some batches) is still a x2
    ref = reference()
    manual = ref.copy()
    manual[:4, 1] *= 2.0
    failed_at = np.zeros(ref.shape, bool)
    failed_at[:4, 1] = True
    assert "a dropped 1/2" in run(manual, ref, [1], failed_at=failed_at)[1]
    # over all points it is no constant ratio
    assert "a dropped 1/2" not in run(manual, ref, [1])[1]


def test_a_supplied_candidate_mistake_is_named():
    ref = reference()
    wrong = ref * np.linspace(0.3, 0.9, 6)  # what the gradient would be without a derivative
    manual = ref.copy()
    manual[:, 3] = wrong[:, 3]
    hints = run(manual, ref, [3], candidates={"layer 1": (wrong, [f"hint {k}" for k in range(6)])})
    assert hints[3] == "hint 3"


# the tensor as a whole: the hint a report's summary line shows


def leaves(manual, ref, failing, *, batch=None, reference_name="jax.grad", shapes=None):
    n, p = ref.shape
    shapes = shapes or [(p,)]
    sizes = [int(np.prod(s)) for s in shapes]
    leaf_of = np.repeat(np.arange(len(shapes)), sizes)
    return diagnose_leaves(
        np.asarray(failing), manual, ref, names=[f"e{k}" for k in range(p)], leaf_of=leaf_of,
        leaf_shapes=shapes, leaf_offsets=list(np.cumsum([0, *sizes[:-1]])),
        batch=np.full(n, 1) if batch is None else batch, labels=[f"point {k}" for k in range(n)],
        floor=1e-2, rtol=1e-3, leaf_names=[f"T{k}" for k in range(len(shapes))],
        reference_name=reference_name,
    )  # fmt: skip


def test_a_constant_ratio_over_the_whole_tensor_is_named_once():
    ref = reference(n=8)
    found = leaves(0.98 * ref, ref, range(6))
    assert found.leaves == {0: "x0.98 everywhere in T0: a constant factor"}
    assert set(found.elements.values()) == {"x0.98 at every point: a constant factor"}


def test_a_sign_flip_of_the_tensor_names_the_reference_the_audit_used():
    ref = reference(n=8)
    found = leaves(-ref, ref, range(6), reference_name="autodiff")
    assert found.leaves == {0: "sign error: handwritten T0 = -1 x autodiff (x-1 everywhere)"}
    assert all("autodiff" in h and "jax.grad" not in h for h in found.elements.values())


def test_a_sum_instead_of_a_mean_is_named_for_the_tensor():
    ref = reference(n=8)
    batch = np.array([2, 3, 4, 5, 2, 3, 4, 5])
    found = leaves(ref * batch[:, None], ref, range(6), batch=batch)
    assert found.leaves[0].startswith("x batch size everywhere in T0: summed over the batch")


def test_a_transposed_square_tensor_is_named_for_the_tensor():
    rng = np.random.default_rng(3)
    ref = rng.uniform(0.5, 2.0, (6, 16)) * rng.choice([-1.0, 1.0], (6, 16))
    manual = np.transpose(ref.reshape(-1, 4, 4), (0, 2, 1)).reshape(-1, 16)
    failing = [k for k in range(16) if k % 5]  # all but the diagonal
    found = leaves(manual, ref, failing, shapes=[(4, 4)])
    assert found.leaves == {0: "transposed: handwritten T0 is jax.grad's T0^T"}


def test_another_tensors_reference_is_named():
    # the handwritten dh is autodiff's da: the elementwise step from h to a was left out
    rng = np.random.default_rng(4)
    ref = rng.uniform(0.5, 2.0, (6, 8)) * rng.choice([-1.0, 1.0], (6, 8))
    manual = ref.copy()
    manual[:, :4] = ref[:, 4:]
    found = leaves(manual, ref, range(4), shapes=[(4,), (4,)])
    assert found.leaves[0].startswith("handwritten T0 equals jax.grad's T1")


def test_an_elementwise_slip_never_reads_as_swapped_indices():
    # a missing elementwise factor f'(z) in (0, 1]: the handwritten value is the reference
    # divided by it, element by element; one element happens to equal its neighbour's
    # reference at every point (a coincidence one way round, not a swap)
    rng = np.random.default_rng(5)
    ref = rng.uniform(0.5, 2.0, (8, 6))
    manual = ref / rng.uniform(0.2, 0.9, (8, 6))
    manual[:, 0] = ref[:, 1]
    found = leaves(manual, ref, range(6))
    assert not any("swap" in h for h in [*found.elements.values(), *found.leaves.values()])
    assert "an elementwise factor missing or wrong" in found.leaves[0]


def test_a_swap_is_named_only_where_it_explains_every_failure_of_the_tensor():
    ref = reference()
    manual = ref.copy()
    manual[:, [1, 2]] = ref[:, [2, 1]]  # w12 and w21 swapped
    assert run(manual, ref, [1, 2])[1].endswith("swapped indices (w12 <-> w21)")
    manual[:, 0] *= 3.0  # and w11 wrong on its own: the pair may be a coincidence
    hints = run(manual, ref, [0, 1, 2])
    assert not any("swap" in h for h in hints.values())


def test_one_offset_shared_by_the_whole_tensor_is_named():
    # a dropped mean's term: every element is off by the same amount at each point
    ref = reference(n=8)
    offset = np.linspace(0.5, 1.5, 8)[:, None]
    found = leaves(ref + offset, ref, range(6))
    assert found.leaves[0].startswith("handwritten T0 - jax.grad is one value shared by every")
