"""Smoke test of the audit benchmark: tiny sizes, every column there with a positive rate.

No speed is asserted: figures depend on the machine and its load, and are read in
``python -m benchmarks``, never judged in tests.
"""

import math

import pytest

from benchmarks.audit_bench import (
    MAX_CALL_S,
    PUBLIC,
    estimate_s,
    plan_calls,
    run_audit,
    time_case,
    xor_net,
)

COLUMNS = {*PUBLIC, "limit", "limit_f64", "naive_loop", "check_grads_loop"}


def test_quick_run_times_every_column_of_both_networks():
    out = run_audit(quick=True, repeats=1)

    m = out["machine"]
    assert m["cpu"] and m["jax"] and m["backend"] and m["devices"]
    assert [r["net"] for r in out["results"]] == ["2-2-1 XOR", "8-16-16-4"]
    for r in out["results"]:
        cols = r["columns"]
        assert set(cols) == COLUMNS, r["net"]
        for name, c in cols.items():
            assert c["points_per_s"] > 0 and math.isfinite(c["points_per_s"]), (r["net"], name)
        for name in PUBLIC:
            c = cols[name]
            assert c["passed"] is True, (r["net"], name)
            assert c["points"] >= r["points"]  # audit_network adds its own points
            assert c["vs_limit"] > 0 and c["vs_naive"] > 0 and c["vs_limit_f64"] > 0
            assert c["first_s"] > 0 and c["median_s"] > 0
        assert cols["limit"]["max_abs_diff"] < 1e-4  # the handwritten gradients are right
        assert cols["naive_loop"]["points_timed"] <= r["points"]
    for key in ("first_call", "first_vjp_call"):
        first = out[key]
        assert first["first_s"] > 0 and first["runs"]
        assert first["median_s"] >= first["first_s"]
        for run in first["runs"]:
            assert run["first"]["passed"] and run["second"]["passed"]
            assert run["import_jax_s"] > 0 and run["wall_s"] > run["first"]["seconds"]
            assert run["first"]["compiles"] > run["second"]["compiles"]  # the second reuses


def test_estimates_come_from_the_two_largest_smaller_sizes():
    assert estimate_s([], 100) == (None, False)
    assert estimate_s([(10, 1.0)], 100) == (10.0, False)  # in proportion: only to plan
    est, sure = estimate_s([(10, 1.0), (20, 2.0), (40, 3.0)], 80)
    assert sure and est == pytest.approx(5.0)


def test_plan_cuts_the_timed_calls_to_the_budget():
    assert plan_calls({}, 9) == (9, 1)
    assert plan_calls({"a": 0.001}, 9) == (9, 1)
    timed, warmup = plan_calls({"a": 1e6}, 9)
    assert (timed, warmup) == (3, 0)  # a median of three, however long: never one sample
    assert plan_calls({"a": 1e6}, 2) == (2, 0)  # fewer asked for: as asked
    assert plan_calls({"a": 10.0}, 9) == (9, 1)  # within the budget: all of them


def _refuse(n):
    raise ValueError(f"points={n} needs about 9 GB of memory, but 1 GB is available: details")


def test_a_call_predicted_too_slow_or_refused_is_not_timed_and_says_why():
    history = {"check_gradients": [(4, MAX_CALL_S), (8, 2 * MAX_CALL_S)]}
    net = xor_net()._replace(audit_network=_refuse)
    row = time_case(net, 16, repeats=1, naive_points=4, history=history, quick=False)

    cols = row["columns"]
    slow, refused = cols["check_gradients"], cols["audit_network"]
    assert "points_per_s" not in slow and "points_per_s" not in refused
    assert slow["estimated_s_per_call"] == pytest.approx(4 * MAX_CALL_S)
    assert "predicted" in slow["skipped"]
    assert (
        refused["skipped"] == "refused: points=16 needs about 9 GB of memory, but 1 GB is available"
    )
    assert cols["check_gradients_no_fd"]["points_per_s"] > 0
    assert history["check_gradients_no_fd"] == [(16, cols["check_gradients_no_fd"]["median_s"])]
    assert "audit_network" not in history
    assert row["peak_rss_mb"] > 0
