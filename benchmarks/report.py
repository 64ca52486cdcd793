"""The printed table and the target checks, both read from the results dict."""

from __future__ import annotations

from typing import Any

__all__ = ["format_table", "rows", "targets"]


def _si(v: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def _seed_rows(s: dict) -> list[tuple]:
    label = {"bare": "bare lax.scan + jax.grad", "seed": "fit grad=seed",
             "closed_form": "fit grad=closed_form", "autodiff": "fit grad=autodiff"}  # fmt: skip
    out = []
    calls = [(s["steps_per_call"], s["results"])]
    if "long_call" in s:
        calls.append((s["long_call"]["steps_per_call"], s["long_call"]["results"]))
    for steps, res in calls:
        for name, r in res.items():
            vs = f"{r['fraction_of_bare']:.2f}x bare"
            if name != "bare":
                vs += f", {r['steps_per_s'] / res['autodiff']['steps_per_s']:.2f}x autodiff"
            fig = f"{_si(r['steps_per_s'], 'steps/s')}, {r['median_s'] * 1e3:.3g} ms/call"
            out.append((f"{label[name]}, {steps} steps", fig, vs, r["compile_s"]))
    d = s.get("per_call_drift")
    if d:
        out.append((
            f"fit grad=seed, {d['calls']} calls in a row",
            f"{d['first_tenth_median_us']:.0f} -> {d['last_tenth_median_us']:.0f} us/call",
            f"{d['last_over_first']:.2f}x first tenth, {d['compiled_loops_added']} compiles",
            None,
        ))  # fmt: skip
    return out


def _mlp_rows(s: dict) -> list[tuple]:
    out = []
    label = {"bare": "bare lax.scan + jax.grad", "closed_form": "fit grad=closed_form",
             "autodiff": "fit grad=autodiff"}  # fmt: skip
    for name, r in s["results"].items():
        fig = f"{r['ms_per_step']:.3g} ms/step, {_si(r['flop_per_s'], 'FLOP/s')}"
        vs = (f"{r['fraction_of_mid_matmul']:.2f} of mid matmul, "
              f"{r['fraction_of_own_matmuls']:.2f} of its matmuls, "
              f"{r['time_vs_autodiff']:.2f}x autodiff time")  # fmt: skip
        out.append((label[name], fig, vs, r["compile_s"]))
    for name, r in s["roofline"].items():
        out.append((name, _si(r["flop_per_s"], "FLOP/s"), "roofline", None))
    return out


_AUDIT_COLUMNS = {
    "check_gradients": "audit.check_gradients",
    "check_gradients_no_fd": "audit.check_gradients fd=False",
    "audit_network": "audit.audit_network",
    "limit": "limit: one jitted vmap, max |diff|",
    "limit_f64": "limit with a float64 jax.grad",
    "naive_loop": "naive loop: 2 jitted calls + allclose",
    "check_grads_loop": "check_grads loop",
}


def _audit_rows(s: dict) -> list[tuple]:
    out = []
    for r in s["results"]:
        net = "-".join(map(str, r["sizes"]))
        for name, c in r["columns"].items():
            case = f"{net}, {r['points']} points, {_AUDIT_COLUMNS.get(name, name)}"
            if "skipped" in c:
                out.append((case, "not run", c["skipped"], None))
                continue
            if "vs_limit" in c:
                vs = f"{c['vs_limit']:.2g}x limit, {c['vs_naive']:.3g}x naive loop"
                if "vs_limit_f64" in c:
                    vs += f", {c['vs_limit_f64']:.2g}x float64 limit"
            elif c.get("points_timed", r["points"]) < r["points"]:
                vs = f"baseline, timed on {c['points_timed']} points"
            else:
                vs = "baseline"
            out.append((case, _si(c["points_per_s"], "points/s"), vs, c.get("compile_s")))
    for key, what in (
        ("first_call", "first check_gradients call (2-2-1, 16 points, fresh process)"),
        ("first_vjp_call", "first assert_vjp call (32-vector softplus, fresh process)"),
    ):
        first = s.get(key)
        if first:
            out.append((
                what, _first_figure(first), f"target {first['target_s']:g} s (median)", None,
            ))  # fmt: skip
    return out


def _first_figure(first: dict) -> str:
    """A first-call figure: the median over fresh processes, with the fastest beside it."""
    median = first.get("median_s", first["first_s"])  # results written before medians
    return f"{median:.2f} s median, {first['first_s']:.2f} s min of {len(first['runs'])}"


def _phase_label(step: str) -> str:
    for prefix, label in (
        ("start", "engine: setup, random points"),
        ("training", "engine: training, trajectory"),
        ("comparing", "engine: gradients compared"),
        ("finite", "engine: finite differences"),
        ("auditing", "engine: factors"),
    ):
        if step.startswith(prefix):
            return label
    return f"engine: {step[:30]}"


def _split_rows(sp: dict, title: str) -> list[tuple]:
    cache = sp.get("cache", {})
    hits = f", {cache['hits']} programs loaded from the cache" if cache.get("hits") else ""
    out = [(title, f"{sp['wall_s']:.2f} s", hits.lstrip(", "), None)]
    out.append(("  python start and exit", f"{sp['python_start_s']:.2f} s", "", None))
    out.append(("  imports", f"{sp['import_s']:.2f} s", "", None))
    phases: dict[str, list[float]] = {}
    for p in sp.get("engine_phases", []):
        acc = phases.setdefault(_phase_label(p["step"]), [0.0, 0, 0.0])
        acc[0] += p["seconds"]
        acc[1] += p["compiles"]
        acc[2] += p["compiling_s"]
    for label, (secs, n, comp) in phases.items():
        out.append((f"  {label}", f"{secs:.2f} s", f"{n} compilations", comp))
    out.append(("  plots (matplotlib imported by the first)", f"{sp.get('plots_s', 0.0):.2f} s",
                "", None))  # fmt: skip
    rest = sp["main_s"] - sum(v[0] for v in phases.values()) - sp.get("plots_s", 0.0)
    out.append(("  table, report files, rest", f"{rest:.2f} s", "", None))
    c = sp["compile"]
    out.append((f"  all tracing + compiling ({c['count']} compilations)", f"{c['total_s']:.2f} s",
                f"{c['total_s'] / sp['wall_s']:.0%} of the run", None))  # fmt: skip
    return out


def _cli_rows(s: dict) -> list[tuple]:
    if "bare" not in s:  # results.json of an older run
        return [(s["command"], f"{s['wall_s_median']:.2f} s wall", "median wall", None)]
    bare = s["bare"]["wall_s_median"]

    def run(kind: str, label: str) -> tuple:
        r = s[kind]
        return (
            f"{s['command']}, {label} ({len(r['runs'])} runs)",
            f"{r['wall_s_median']:.2f} s wall, {r['peak_rss_mb_max']:.0f} MB peak RSS",
            f"{r['wall_s_median'] / bare:.2f}x bare import", None,
        )  # fmt: skip

    out = [
        (f"{s['bare_command']} ({len(s['bare']['runs'])} runs), {s['backend']}",
         f"{bare:.2f} s wall", "baseline", None),
        run("first", "first run, empty cache"),
        run("warm", "cache warm"),
        ("  compilation cache after one run", f"{s['cache']['entries']} files",
         f"{s['cache']['bytes'] / 1e6:.2f} MB", None),
    ]  # fmt: skip
    if "programs" in s["cache"]:
        out.append(("  kept programs after one run", f"{s['cache']['programs']} files",
                    f"{s['cache']['program_bytes'] / 1e6:.2f} MB", None))  # fmt: skip
    cum = s.get("imports", {}).get("import_time_cumulative_s", {})
    of = ", ".join(f"{k} {v:.2f}" for k, v in cum.items() if k != "audit")
    imp = s.get("imports", {})
    if "import_audit_s" in imp:
        out.append(("python -c 'import audit'", f"{imp['import_audit_s']:.2f} s",
                    f"cumulative: {of}" if of else "", None))  # fmt: skip
    out += _split_rows(s["split"], "one more first run, timed part by part")
    out += _split_rows(s["split_warm"], "one more warm run, timed part by part")
    return out


def _scaling_rows(s: dict) -> list[tuple]:
    out = []
    for r in s["batch"]["rows"]:
        out.append((f"batch {r['batch']} (mlp, closed_form)", f"{r['ms_per_step']:.3g} ms/step",
                    f"{r['us_per_example']:.3g} us/example", r["compile_s"]))  # fmt: skip
    for r in s["width"]["rows"]:
        out.append((f"width {r['width']} (64-w-w-10, batch 512)", f"{r['ms_per_step']:.3g} ms/step",
                    _si(r["flop_per_s"], "FLOP/s"), r["compile_s"]))  # fmt: skip
    for r in s["audit_points"]["rows"]:
        out.append((f"{r['points']} audit points (seed)", f"{1e3 * r['median_s']:.3g} ms",
                    f"{r['us_per_point']:.3g} us/point", r["compile_s"]))  # fmt: skip
    for name, r in s["recompilation"].items():
        if isinstance(r, dict):
            out.append((f"fit again: {name}", f"{r['compiles']} compiles",
                        f"in {r['calls']} calls", None))  # fmt: skip
    return out


def _big_rows(s: dict) -> list[tuple]:
    net = "-".join(map(str, s["case"]["sizes"]))
    case = (
        f"{net}, {s['case']['examples']} examples, {s['case']['points']} points, "
        f"check_gradients (no fd), memory={s['case']['budget']}"
    )
    mib = 2**20
    return [
        (case, f"{s['wall_s']:.1f} s", f"{'passed' if s['passed'] else 'FAILED'}, "
         f"{s['points_per_call']} points a call, {s['backend']}", None),
        ("  peak resident memory", f"{s['peak_rss_bytes'] / mib:,.0f} MiB",
         f"{s['rss_before_call_bytes'] / mib:,.0f} MiB before the call", None),
    ]  # fmt: skip


_SECTIONS = {
    "seed": ("1 seed XOR", _seed_rows),
    "mlp": ("2 mlp", _mlp_rows),
    "audit": ("3 audit", _audit_rows),
    "cli": ("4 cli", _cli_rows),
    "scaling": ("5 scaling", _scaling_rows),
    "big": ("6 big network", _big_rows),
}


def rows(results: dict[str, Any]) -> list[tuple]:
    """``(section, case, figure, comparison, compile_s or None)`` for every printed line."""
    out = []
    for key, sec in results["sections"].items():
        title, fn = _SECTIONS[key]
        if "error" in sec:
            out.append((title, "FAILED", sec["error"][:60], "", None))
            continue
        out += [(title, *r) for r in fn(sec)]
    return out


def format_table(table_rows: list[tuple]) -> str:
    """Fixed-width text table."""
    head = ("section", "case", "figure", "comparison", "compile s")
    cells = [head] + [(a, b, c, d, "" if e is None else f"{e:.2f}") for a, b, c, d, e in table_rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(5)]
    lines = []
    for i, r in enumerate(cells):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the brief: what was measured, what was asked, whether it was met."""
    sec = results["sections"]
    out = []

    def add(name, value, goal, met):
        out.append(dict(target=name, measured=value, goal=goal, met=bool(met)))

    if "seed" in sec and "error" not in sec["seed"]:
        res = sec["seed"]["results"]
        low = min(res[g]["fraction_of_bare"] for g in ("seed", "closed_form", "autodiff"))
        add("seed: fit vs bare loop (worst grad)", round(low, 3), ">= 0.90", low >= 0.90)
        drift = sec["seed"].get("per_call_drift")
        if drift:
            r = drift["last_over_first"]
            add("seed: late fit calls vs early ones (time)", round(r, 3), "<= 1.1 (noise)",
                r <= 1.1 and drift["compiled_loops_added"] == 0)  # fmt: skip
        for g in ("seed", "closed_form"):
            r = res[g]["steps_per_s"] / res["autodiff"]["steps_per_s"]
            add(f"seed: {g} vs autodiff speed", round(r, 3), ">= 1 (0.95: noise)", r >= 0.95)
    if "mlp" in sec and "error" not in sec["mlp"]:
        r = sec["mlp"]["results"]["closed_form"]
        add("mlp: closed_form / mid matmul roofline", round(r["fraction_of_mid_matmul"], 3),
            ">= 0.85", r["fraction_of_mid_matmul"] >= 0.85)  # fmt: skip
        add("mlp: closed_form time / autodiff time", round(r["time_vs_autodiff"], 3), "<= 1.05",
            r["time_vs_autodiff"] <= 1.05)  # fmt: skip
    if "audit" in sec and "error" not in sec["audit"]:
        for r in sec["audit"]["results"]:
            net = "-".join(map(str, r["sizes"]))
            for name, c in r["columns"].items():
                if "vs_limit" not in c:
                    continue
                if r["points"] >= 4096:
                    add(f"audit {net} {r['points']} points {name}: x limit",
                        round(c["vs_limit"], 3), ">= 0.5", c["vs_limit"] >= 0.5)  # fmt: skip
                if r["points"] >= 16:
                    add(f"audit {net} {r['points']} points {name}: x naive loop",
                        round(c["vs_naive"], 3), ">= 1", c["vs_naive"] >= 1)  # fmt: skip
        for key, what in (("first_call", "check_gradients"), ("first_vjp_call", "assert_vjp")):
            first = sec["audit"].get(key)
            if first:
                median = first.get("median_s", first["first_s"])
                add(f"audit: first {what} call, median of fresh processes (s)",
                    round(median, 2), f"<= {first['target_s']:g}",
                    median <= first["target_s"])  # fmt: skip
    if "cli" in sec and "error" not in sec["cli"]:
        c = sec["cli"]
        for key, goal, what in (("first_over_bare", 4.0, "first run, empty cache"),
                                ("warm_over_bare", 2.0, "cache warm")):  # fmt: skip
            r = c[key]
            add(f"cli: default run, {what} / bare import", round(r, 2), f"<= {goal:g}", r <= goal)
    if "big" in sec and "error" not in sec["big"]:
        b = sec["big"]
        add("big: 784-1024-1024-10 audit passes", b["passed"], "True", b["passed"])
        if b["backend"] == "gpu":
            add("big: 784-1024-1024-10 audit on one GPU (s)", round(b["wall_s"], 1), "<= 10",
                b["wall_s"] <= 10)  # fmt: skip
    if "scaling" in sec and "error" not in sec["scaling"]:
        n = sum(r["compiles"] for r in sec["scaling"]["recompilation"].values()
                if isinstance(r, dict) and "expected" not in r)  # fmt: skip
        add("scaling: compilations on repeated fit calls", n, "0", n == 0)
    return out
