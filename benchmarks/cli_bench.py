"""The default ``python -m audit`` run, start to finish, against a bare import; where its time goes.

Runs as subprocesses under ``/usr/bin/time -v`` give wall time and peak memory:

- ``bare``: ``python -c "import jax, optax, matplotlib"``, the floor any such tool pays;
- ``first run``: the CLI with an empty compilation cache (a fresh folder each run), which
  compiles everything and fills the cache;
- ``warm cache``: the CLI again with a cache a previous run filled, which loads its programs.

Each figure is the median of several runs. Every run gets a cache folder of its own under a
temporary directory (never the user's), and matplotlib keeps its own font cache. One more run
of each kind, in a small driver, splits the time: interpreter start, imports, the audit
engine's own phases (the ``timing`` dict of ``report.json``), the terminal table, the report
files and plots, and, across all of them, the time JAX spent tracing and compiling.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["run_cli"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUICK_ARGS = ["--steps", "50", "--points", "8"]
GNU_TIME = "/usr/bin/time"
RUNS = 3  # runs of the whole CLI (each takes seconds)
IMPORTS = ("numpy", "jax", "optax", "jaxbp", "matplotlib", "audit")

BARE = "import jax, optax, matplotlib"

# Runs the CLI in-process with a stopwatch around each part; writes a json to argv[1]. argv[2]
# is where report.json will be, argv[3] the compilation cache folder ("" for none; the kept
# programs go beside it, in argv[3] + "-programs"), the rest the CLI's arguments. (main
# called with a list leaves the caches alone: they are turned on here, before anything
# compiles, and the exit is sped up, as a command-line run does both.)
_DRIVER = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import jax, jaxbp, audit, audit.cli, audit.plots, audit.report, audit.table
from audit import compile_cache, program_cache
from benchmarks.timing import compile_log
t_import = time.perf_counter() - t0
cache_off = compile_cache.enable(Path(sys.argv[3])) if sys.argv[3] else "not asked for"
if sys.argv[3] and cache_off is None:  # the programs themselves too, as the CLI keeps them
    cache_off = program_cache.enable(Path(sys.argv[3] + "-programs"))
hits = []
jax.monitoring.register_event_listener(
    lambda name, **_: hits.append(1) if name == "/jax/compilation_cache/cache_hits" else None)
parts = {"table_s": 0.0, "report_s": 0.0, "plots_s": 0.0}
compiles = {}
def timed(mod, name, key):
    orig = getattr(mod, name)
    def wrapper(*a, **k):
        c0 = log()
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            parts[key] += time.perf_counter() - t
            compiles[key] = compiles.get(key, 0) + log().count - c0.count
    setattr(mod, name, wrapper)
phases = []
engine = audit.audit_network
def audit_network(*a, progress=None, **k):
    def mark(msg):
        c = log()
        phases.append(dict(step=msg, at_s=time.perf_counter(), compiles=c.count,
                           compiling_s=c.total_s))
        if progress is not None:
            progress(msg)
    mark("start")
    try:
        return engine(*a, progress=mark, **k)
    finally:
        mark("end")
with compile_log() as log:
    audit.audit_network = audit_network
    timed(audit.report, "write_report", "report_s")
    timed(audit.table, "format_table", "table_s")
    for name in ("loss_curves", "weight_errors", "scatter"):
        if hasattr(audit.plots, name):
            timed(audit.plots, name, "plots_s")
    t = time.perf_counter()
    code = audit.cli.main(sys.argv[4:])
    main_s = time.perf_counter() - t
    c = log()
report = json.load(open(sys.argv[2]))
json.dump(dict(exit=code, import_s=t_import, main_s=main_s, engine=report.get("timing", {}),
               cache=dict(folder=sys.argv[3], off=cache_off, hits=len(hits)),
               compile=dict(count=c.count, trace_s=c.trace_s, lower_s=c.lower_s,
                            xla_s=c.compile_s, total_s=c.total_s),
               compiles_outside_engine=compiles, engine_phases=[
                   dict(step=p["step"], seconds=q["at_s"] - p["at_s"],
                        compiles=q["compiles"] - p["compiles"],
                        compiling_s=q["compiling_s"] - p["compiling_s"])
                   for p, q in zip(phases, phases[1:])], **parts), open(sys.argv[1], "w"))
import gc
gc.freeze()  # as a command-line run does once its outcome is printed
"""


def _env(cache_home: str | None = None) -> dict[str, str]:
    """The subprocesses' environment; ``cache_home`` the XDG cache folder, None for no cache.

    matplotlib is pointed at its usual cache folder, so a fresh XDG folder does not make it
    rebuild its font list (a one-off of a first ever run, not a cost of each run).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("NO_COLOR", "1")
    env.pop("JAXBP_NO_CACHE", None)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache_home is None:
        env["JAXBP_NO_CACHE"] = "1"
    else:
        env["XDG_CACHE_HOME"] = cache_home
        env.setdefault("MPLCONFIGDIR", _matplotlib_cache())
    return env


def _matplotlib_cache() -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import matplotlib; print(matplotlib.get_cachedir())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout.strip()


def _time_v(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall time, peak RSS and exit status of one subprocess."""
    gnu_time = GNU_TIME if os.path.exists(GNU_TIME) else None
    t0 = time.perf_counter()
    if gnu_time:
        proc = subprocess.run([gnu_time, "-v", *cmd], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        rss_mb = int(m.group(1)) / 1024 if m else None
        how = "/usr/bin/time -v"
    else:  # ru_maxrss of children is the largest so far, not this one's: an upper bound
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        how = "getrusage(RUSAGE_CHILDREN)"
    tail = proc.stderr[-400:] if proc.returncode not in (0, 1) else ""
    return dict(wall_s=wall, peak_rss_mb=rss_mb, exit=proc.returncode, rss_from=how,
                stderr_tail=tail)  # fmt: skip


def _import_times(repeats: int) -> dict[str, Any]:
    """Interpreter start alone, and with ``import audit`` (which imports jax and jaxbp)."""
    out = {}
    for name, code in (("python_start_s", "pass"), ("import_audit_s", "import audit")):
        walls = [_time_v([sys.executable, "-c", code], _env())["wall_s"] for _ in range(repeats)]
        out[name] = statistics.median(walls)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import audit"],
                          capture_output=True, text=True, env=_env())  # fmt: skip
    cumulative = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)", line)
        if m and m.group(2) in IMPORTS and m.group(2) not in cumulative:
            cumulative[m.group(2)] = int(m.group(1)) / 1e6
    # cumulative: a module's time includes what it imports first (jax's numpy, say)
    out["import_time_cumulative_s"] = {
        k: round(cumulative[k], 3) for k in IMPORTS if k in cumulative
    }
    return out


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    bad = [r for r in runs if r["exit"] not in (0, 1)]
    if bad:
        raise RuntimeError(f"a run exited {bad[0]['exit']}: {bad[0]['stderr_tail']}")
    walls = [r["wall_s"] for r in runs]
    return dict(
        runs=runs,
        wall_s_median=statistics.median(walls),
        wall_s_min=min(walls),
        wall_s_max=max(walls),
        peak_rss_mb_max=max((r["peak_rss_mb"] or 0) for r in runs),
    )


def _folder_size(path: pathlib.Path) -> tuple[int, int]:
    files = [f for f in path.rglob("*") if f.is_file()] if path.exists() else []
    return len(files), sum(f.stat().st_size for f in files)


def _split(tmp: str, name: str, cache: str, extra: list[str]) -> dict[str, Any]:
    """One run in the driver: where its time goes."""
    out = os.path.join(tmp, name)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, os.path.join(tmp, f"{name}.json"),
         os.path.join(out, "report.json"), cache, "--out", out, *extra],
        capture_output=True, text=True, env=_env(os.path.join(tmp, "unused")), cwd=ROOT,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the timing driver failed: {proc.stderr[-600:]}")
    split = json.loads(pathlib.Path(tmp, f"{name}.json").read_text())
    engine = split["engine"]
    split["python_start_s"] = wall - split["import_s"] - split["main_s"]
    split["wall_s"] = wall
    split["cli_other_s"] = (
        split["main_s"] - engine.get("total_s", 0.0) - split["table_s"] - split["report_s"]
    )
    return split


def run_cli(*, quick: bool, repeats: int) -> dict[str, Any]:
    """Wall time and peak memory of ``python -m audit --out TMP``: first run, warm cache, bare.

    ``repeats`` is not used: each CLI run takes seconds, so :data:`RUNS` of each kind (one
    in quick mode) are timed, interleaved, so that a burst of load falls on all kinds alike.
    """
    import jax

    extra = QUICK_ARGS if quick else []
    n = 1 if quick else RUNS
    cmd = [sys.executable, "-m", "audit", *extra]
    kinds: dict[str, list[dict[str, Any]]] = {"bare": [], "first": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        warm_home = os.path.join(tmp, "warm-cache")
        fill = _time_v([*cmd, "--out", os.path.join(tmp, "fill")], _env(warm_home))
        _summary([fill])  # fails loudly if the CLI does
        entries, size = _folder_size(pathlib.Path(warm_home, "jaxbp", "jax"))
        programs, program_bytes = _folder_size(pathlib.Path(warm_home, "jaxbp", "programs"))
        for i in range(n):
            kinds["bare"].append(_time_v([sys.executable, "-c", BARE], _env()))
            first_home = os.path.join(tmp, f"first-cache-{i}")  # empty: a first run
            out = os.path.join(tmp, f"first{i}")
            kinds["first"].append(_time_v([*cmd, "--out", out], _env(first_home)))
            out = os.path.join(tmp, f"warm{i}")
            kinds["warm"].append(_time_v([*cmd, "--out", out], _env(warm_home)))
        split_first = _split(tmp, "split-first", os.path.join(tmp, "split-cache"), extra)
        split_warm = _split(tmp, "split-warm", os.path.join(tmp, "split-cache"), extra)
    bare, first, warm = (_summary(kinds[k]) for k in ("bare", "first", "warm"))
    return dict(
        command="python -m audit --out TMP" + (" " + " ".join(extra) if extra else ""),
        bare_command=f'python -c "{BARE}"',
        backend=jax.default_backend(),
        devices=[str(d) for d in jax.devices()],
        bare=bare,
        first=first,
        warm=warm,
        first_over_bare=first["wall_s_median"] / bare["wall_s_median"],
        warm_over_bare=warm["wall_s_median"] / bare["wall_s_median"],
        cache=dict(entries=entries, bytes=size, programs=programs, program_bytes=program_bytes),
        split=split_first,
        split_warm=split_warm,
        imports=_import_times(n),
    )
