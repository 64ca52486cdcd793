"""Smoke test of ``python -m benchmarks``: tiny sizes, a complete and valid json.

No figure is checked against a target: timings depend on the machine and its load.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from benchmarks.report import targets
from benchmarks.run import SECTIONS, build_parser

ROOT = pathlib.Path(__file__).resolve().parent.parent
# the cli section times the real jaxbp-audit run, which takes seconds even when small
FAST = ("seed", "mlp", "audit", "scaling")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _numbers(v)
    elif isinstance(tree, float):
        yield tree


def test_quick_run_prints_the_table_and_writes_valid_json(tmp_path):
    out = tmp_path / "results.json"
    proc = _run("-m", "benchmarks", "--quick", "--only", ",".join(FAST), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())

    assert list(data["sections"]) == list(FAST)
    for name, section in data["sections"].items():
        assert "error" not in section, (name, section.get("error"))
    m = data["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["jax"] and m["backend"] and m["devices"]
    assert len(m["load_average"]) == 3
    assert all(math.isfinite(v) for v in _numbers(data["sections"]))
    seed = data["sections"]["seed"]["results"]
    assert set(seed) == {"bare", "seed", "closed_form", "autodiff"}
    assert all(r["steps_per_s"] > 0 and r["steady_compiles"] == 0 for r in seed.values())
    long_call = data["sections"]["seed"]["long_call"]["results"]
    assert set(long_call) == set(seed)
    drift = data["sections"]["seed"]["per_call_drift"]
    assert drift["compiled_loops_added"] == 0 and drift["last_over_first"] > 0
    assert data["sections"]["mlp"]["flops_per_step"]["total"] > 0
    assert data["quick"] and data["targets"] == []  # targets are judged on full runs only
    for title in ("1 seed XOR", "2 mlp", "3 audit", "5 scaling"):
        assert title in proc.stdout


def test_targets_are_judged_from_the_figures():
    results = {
        "sections": {
            "seed": {"results": {g: {"steps_per_s": s, "fraction_of_bare": f} for g, s, f in (
                ("bare", 10.0, 1.0), ("seed", 9.0, 0.9), ("closed_form", 9.0, 0.9),
                ("autodiff", 6.0, 0.6))}},
            "cli": {"first_over_bare": 3.5, "warm_over_bare": 2.5},
        }
    }  # fmt: skip
    met = {t["target"]: t["met"] for t in targets(results)}
    assert met["seed: fit vs bare loop (worst grad)"] is False  # autodiff at 0.6 of bare
    assert met["seed: seed vs autodiff speed"] is True
    assert met["cli: default run, first run, empty cache / bare import"] is True
    assert met["cli: default run, cache warm / bare import"] is False


def test_runs_as_a_file_too():
    proc = _run("benchmarks/run.py", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "--only" in proc.stdout


def test_only_names_the_valid_sections(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--only", "seed,nope"])
    err = capsys.readouterr().err
    assert "unknown section nope" in err
    assert ", ".join(SECTIONS) in err


def _split(wall):
    return {
        "wall_s": wall, "python_start_s": 0.1, "import_s": 0.8, "main_s": wall - 0.9,
        "plots_s": 0.5, "cache": {"hits": 3},
        "engine_phases": [{"step": "start", "seconds": 1.0, "compiles": 4, "compiling_s": 0.7}],
        "compile": {"count": 4, "total_s": 0.7},
    }  # fmt: skip


def test_cli_rows_show_first_and_warm_runs_against_the_bare_import():
    from benchmarks.report import format_table, rows

    def kind(wall):
        return {"runs": [{}] * 3, "wall_s_median": wall, "peak_rss_mb_max": 400.0}

    cli = {
        "command": "python -m audit --out TMP", "bare_command": 'python -c "import jax"',
        "backend": "cpu", "bare": kind(1.0), "first": kind(3.5), "warm": kind(1.5),
        "first_over_bare": 3.5, "warm_over_bare": 1.5, "cache": {"entries": 61, "bytes": 5e5},
        "split": _split(4.0), "split_warm": _split(2.0),
        "imports": {"import_audit_s": 0.8, "import_time_cumulative_s": {"jax": 0.5}},
    }  # fmt: skip
    text = format_table(rows({"sections": {"cli": cli}}))
    assert "3.50x bare import" in text and "1.50x bare import" in text
    assert "61 files" in text and "3 programs loaded from the cache" in text
    met = {t["target"]: t["met"] for t in targets({"sections": {"cli": cli}})}
    assert all(met.values()) and len(met) == 2
