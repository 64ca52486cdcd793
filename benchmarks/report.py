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


def _audit_rows(s: dict) -> list[tuple]:
    out = []
    for r in s["results"]:
        net = "-".join(map(str, r["sizes"]))
        for name, what in (("evaluate", "evaluate"), ("with_fd", "evaluate + fd")):
            e = r[name]
            out.append((
                f"{net}, {r['points']} points, {what}", _si(e["points_per_s"], "points/s"),
                f"{e['vs_check_grads']:.3g}x check_grads loop", e["compile_s"],
            ))  # fmt: skip
        loop = r["check_grads_loop"]
        out.append((
            f"{net}, check_grads loop ({loop['points_timed']} points, extrapolated)",
            _si(loop["points_per_s"], "points/s"), "baseline", None,
        ))  # fmt: skip
    return out


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


def _cli_rows(s: dict) -> list[tuple]:
    sp = s["split"]
    out = [(
        s["command"] + f" ({len(s['runs'])} runs)",
        f"{s['wall_s_median']:.2f} s wall, {s['peak_rss_mb_max']:.0f} MB peak RSS",
        "median wall", None,
    )]  # fmt: skip
    out.append(("one more run, timed part by part", f"{sp['wall_s']:.2f} s", "", None))
    out.append(("  python start", f"{sp['python_start_s']:.2f} s", "", None))
    cum = s.get("imports", {}).get("import_time_cumulative_s", {})
    of = ", ".join(f"{k} {v:.2f}" for k, v in cum.items() if k != "audit")
    out.append(("  imports", f"{sp['import_s']:.2f} s", f"cumulative: {of}" if of else "", None))
    phases: dict[str, list[float]] = {}
    for p in sp.get("engine_phases", []):
        acc = phases.setdefault(_phase_label(p["step"]), [0.0, 0, 0.0])
        acc[0] += p["seconds"]
        acc[1] += p["compiles"]
        acc[2] += p["compiling_s"]
    for label, (secs, n, comp) in phases.items():
        out.append((f"  {label}", f"{secs:.2f} s", f"{n} compilations", comp))
    out.append(("  plots", f"{sp.get('plots_s', 0.0):.2f} s", "", None))
    rest = sp["main_s"] - sum(v[0] for v in phases.values()) - sp.get("plots_s", 0.0)
    out.append(("  table, report files, rest", f"{rest:.2f} s", "", None))
    c = sp["compile"]
    out.append((f"  all tracing + compiling ({c['count']} compilations)", f"{c['total_s']:.2f} s",
                f"{c['total_s'] / sp['wall_s']:.0%} of the run", None))  # fmt: skip
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


_SECTIONS = {
    "seed": ("1 seed XOR", _seed_rows),
    "mlp": ("2 mlp", _mlp_rows),
    "audit": ("3 audit", _audit_rows),
    "cli": ("4 cli", _cli_rows),
    "scaling": ("5 scaling", _scaling_rows),
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
            if r["sizes"] == [2, 2, 1]:
                e = r["evaluate"]
                add(f"audit seed {r['points']} points: points/s", round(e["points_per_s"]),
                    ">= 100000", e["points_per_s"] >= 1e5)  # fmt: skip
            for key in ("evaluate", "with_fd"):
                v = r[key]["vs_check_grads"]
                add(f"audit {'-'.join(map(str, r['sizes']))} {r['points']} points {key}: "
                    "x check_grads", round(v, 1), ">= 1000", v >= 1000)  # fmt: skip
    if "cli" in sec and "error" not in sec["cli"]:
        w = sec["cli"]["wall_s_median"]
        add("cli: default run wall time (s)", round(w, 2), "< 10", w < 10)
    if "scaling" in sec and "error" not in sec["scaling"]:
        n = sum(r["compiles"] for r in sec["scaling"]["recompilation"].values()
                if isinstance(r, dict) and "expected" not in r)  # fmt: skip
        add("scaling: compilations on repeated fit calls", n, "0", n == 0)
    return out
