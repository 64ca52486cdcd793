"""Tests for audit.budget: the memory estimate, what is available, and the refusal's words."""

import pytest

from audit import budget
from audit.budget import (
    FIXED_BYTES,
    STEP_BYTES,
    audit_memory,
    available_memory,
    format_bytes,
    largest_points,
    memory_problem,
)


def test_estimate_counts_parameters_factors_and_steps():
    e = audit_memory((2, 2, 1), points=100, n_data=4, steps=5000, dtype="float32")
    assert (e.params, e.factors, e.values) == (9, 4 * 15, 69)  # seed: 15 factors a row
    assert e.value_bytes == 8 * 4
    assert e.per_point == 69 * e.value_bytes
    assert e.training == 5000 * STEP_BYTES and e.fixed == FIXED_BYTES
    assert e.total == FIXED_BYTES + 101 * e.per_point + e.trajectory + e.training
    deep = audit_memory((3, 8, 4, 2), points=1, n_data=1000, steps=0, dtype="float64")
    assert deep.params == 3 * 8 + 8 + 8 * 4 + 4 + 4 * 2 + 2
    assert deep.factors == 3 * (8 + 4 + 2)  # large data: random draws of batch 3
    assert deep.value_bytes == 8 * 8
    assert deep.trajectory == 1 * (deep.params + 1000 * 14) * deep.value_bytes


def test_estimate_grows_linearly_in_points():
    a, b = (audit_memory((2, 8, 1), points=n) for n in (1000, 2000))
    assert b.total - a.total == 1000 * a.per_point


def test_largest_points_is_the_boundary():
    avail = 2 * 10**9
    most = largest_points((2, 16, 1), available=avail, n_data=200, steps=100)
    assert audit_memory((2, 16, 1), points=most, n_data=200, steps=100).total <= avail
    assert audit_memory((2, 16, 1), points=most + 1, n_data=200, steps=100).total > avail
    assert largest_points((2, 16, 1), available=10, n_data=200) == 0


def test_available_memory_is_a_positive_number_here():
    found = available_memory()
    assert found is None or found > 0


def test_available_memory_follows_a_container_limit(monkeypatch):
    monkeypatch.setattr(budget, "_cgroup_room", lambda: 123 * 2**20)
    assert available_memory() <= 123 * 2**20


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1 kB"), (8 * 10**9, "8 GB"), (9.384e12, "9.38 TB")],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_memory_problem_names_what_was_asked_and_the_most_that_fits():
    message = memory_problem((2, 2, 1), points=10**9, n_data=4, available=8 * 10**9)
    assert message == (
        "points=1000000000 needs about 2.21 TB of memory, but 8 GB is available: the audit "
        "keeps every point, 69 values each (9 gradients and 60 chain factors or deltas) at "
        "about 32 bytes a value; the most that fits is points=3501245"
    )
    assert memory_problem((2, 2, 1), points=3501245, n_data=4, available=8 * 10**9) is None


def test_memory_problem_blames_steps_when_they_are_the_cost():
    message = memory_problem(
        (2, 2, 1), points=64, steps=10**10, available=8 * 10**9, option="--{name} {value}"
    )
    assert message == (
        "--steps 10000000000 needs about 1.6 TB of memory, but 8 GB is available: both loss "
        "histories are kept, about 160 bytes a step; the most that fits is --steps 48321367"
    )


def test_memory_problem_when_even_one_point_does_not_fit():
    message = memory_problem((2, 2, 1), points=5, n_data=10**10, steps=0, available=10**9)
    assert message.startswith("an audit of sizes 2,2,1 on 10000000000 data rows needs about ")
    assert message.endswith(
        "even at points=1, but 1 GB is available; use a smaller network or less data"
    )


def test_unknown_available_memory_never_refuses(monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: None)
    assert memory_problem((2, 2, 1), points=10**12) is None


# --- the budget of one compiled call -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n"),
    [("4GiB", 4 * 2**30), ("500MB", 5 * 10**8), ("2e9", 2 * 10**9), (" 1.5 kib ", 1536), ("7", 7)],
)
def test_parse_bytes(text, n):
    assert budget.parse_bytes(text) == n


@pytest.mark.parametrize("text", ["", "lots", "0", "-1GB", "4XB", "0.1"])
def test_parse_bytes_refuses_what_is_not_a_size(text):
    with pytest.raises(ValueError, match=f"memory size {text!r} is not understood"):
        budget.parse_bytes(text)


@pytest.mark.parametrize(
    ("per_point", "room", "n", "want"),
    [(10, 100, 5, 5), (10, 100, 10, 10), (10, 100, 11, 8), (30, 100, 50, 2), (1000, 10, 4, 1)],
)
def test_points_per_call_is_all_or_a_power_of_two_that_fits(per_point, room, n, want):
    assert budget.points_per_call(per_point, room, n) == want


def test_traced_bytes_counts_every_value_computed():
    import jax
    import jax.numpy as jnp

    def f(a, b):  # a @ b: (3, 4) float32 = 48 bytes; + 1: 48 more; sum: a float32 scalar, 4
        return jnp.sum(a @ b + 1.0)

    a = jax.ShapeDtypeStruct((3, 5), jnp.float32)
    b = jax.ShapeDtypeStruct((5, 4), jnp.float32)
    assert budget.traced_bytes(f, a, b) == 48 + 48 + 4
    # a nested program counts its own values once, beside its output
    assert budget.traced_bytes(jax.jit(f), a, b) == 4 + 48 + 48 + 4


def test_default_budget_is_half_what_is_free_here():
    free = available_memory()
    assert 0.4 * free <= budget.default_budget() <= 0.6 * free


# --- memory mappings: compiled programs must not exhaust them ------------------------------


def test_memory_maps_are_counted_here():
    count, limit = budget.memory_maps()
    assert 0 < count < limit


def test_an_audit_in_a_crowded_process_clears_the_caches_first(monkeypatch):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import audit

    monkeypatch.setattr(budget, "RECHECK_S", 0.0)  # read the count on every call
    f = jax.jit(lambda a: a + 1)
    f(jnp.ones(2))
    assert f._cache_size() == 1
    assert budget.clear_if_crowded() is None  # this process is far from the limit
    assert f._cache_size() == 1
    limit = budget.memory_maps()[1]
    monkeypatch.setattr(budget, "memory_maps", lambda: (int(0.8 * limit), limit))

    def loss_fn(p, x, y):
        return jnp.sum((p * x - y) ** 2)

    def grad_fn(p, x, y):
        return 2 * x * (p * x - y)

    x, y = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    result = audit.check_gradients(grad_fn, loss_fn, np.array([0.3, 0.7]), x, y, fd=False)
    assert result.passed
    assert f._cache_size() == 0
    assert any("memory mappings" in n and "cleared" in n for n in result.notes)


def test_a_small_call_needs_no_look_at_free_memory(monkeypatch):
    def unread():
        raise AssertionError("free memory was read for a small call")

    monkeypatch.setattr(budget, "default_budget", unread)
    assert budget.points_per_call(1000, None, 1000) == 1000  # 1 MB in all
    monkeypatch.setattr(budget, "default_budget", lambda: 10**9)
    assert budget.points_per_call(10**6, None, 5000) == 512  # 5 GB asked, 1 GB free


def test_a_recent_roomy_read_of_free_memory_is_reused(monkeypatch):
    reads = []
    now = [100.0]

    def read():
        reads.append(now[0])
        return 10**10

    monkeypatch.setattr(budget, "default_budget", read)
    monkeypatch.setattr(budget, "_BUDGET_READ", [-float("inf"), 0])
    import time

    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    per_point = budget.SMALL_CALL  # every call below is past the size read without asking
    assert budget.points_per_call(per_point, None, 4) == 4
    assert reads == [100.0]
    now[0] += 0.5
    assert budget.points_per_call(per_point, None, 4) == 4  # a quarter of it at most: reused
    assert reads == [100.0]
    assert budget.points_per_call(per_point, None, 64) == 64  # more than a quarter: read again
    assert reads == [100.0, 100.5]
    now[0] += budget.RECHECK_S  # too old: read again
    assert budget.points_per_call(per_point, None, 4) == 4
    assert reads == [100.0, 100.5, 101.5]
    monkeypatch.setattr(budget, "default_budget", lambda: 2 * per_point)
    now[0] += budget.RECHECK_S
    assert budget.points_per_call(per_point, None, 4) == 2  # less free now: fewer a call
