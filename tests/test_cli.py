"""Tests for the jaxbp-audit command line: arguments, exit codes and one-line errors.

Most tests run ``main`` in-process with a stand-in engine that returns a fixed result; the
last few run the real audit, in-process and as ``python -m audit``.
"""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_report import make_result

import audit
from audit.cli import main
from audit.result import AuditResult

ROOT = Path(__file__).resolve().parent.parent

GRADS_PY = """
import jax
import jax.numpy as jnp
import jaxbp

def grads(params, x, y):
    return jaxbp.seed_grads(params, x, y)

def takes_two(params, x):
    return params

def one_layer(params, x, y):
    return [{"W": jnp.zeros((2, 2)), "b": jnp.zeros((2,))}]

def swapped(params, x, y):
    g = jaxbp.seed_grads(params, x, y)
    return [{"W": g[0]["W"][:, ::-1], "b": g[0]["b"]}, g[1]]
"""


@pytest.fixture
def engine(monkeypatch):
    """A stand-in for audit.audit_network that records its call and returns ``state.result``."""
    state = SimpleNamespace(calls=[], result=make_result())

    def fake(grad, **kwargs):
        state.calls.append((grad, kwargs))
        kwargs["progress"]("training steps 0-50 of 50")
        return AuditResult(**copy.deepcopy(state.result))

    monkeypatch.setattr(audit, "audit_network", fake)
    return state


@pytest.fixture
def grads_py(tmp_path):
    path = tmp_path / "my_grads.py"
    path.write_text(textwrap.dedent(GRADS_PY), encoding="utf-8")
    return path


def write_csv(path, text):
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def one_error_line(capsys):
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxbp-audit: error: ")
    assert out == ""
    return lines[0]


# --------------------------------------------------------------------------------------------
# success paths, with the stand-in engine
# --------------------------------------------------------------------------------------------


def test_default_run_passes_writes_the_report_and_calls_the_engine(engine, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["--out", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert "PASSED: 9/9 weights" in stdout
    assert f"report: {out / 'report.html'}" in stdout
    assert "jaxbp-audit: training steps 0-50 of 50" in stderr
    assert sorted(os.listdir(out)) == sorted(
        ["report.json", "report.md", "report.html", "network.png", "loss_curves.png",
         "weight_errors.png", "scatter.png", "loss_curves.csv"]
    )  # fmt: skip
    [(grad, kw)] = engine.calls
    assert grad == "seed"
    x, y = kw.pop("data")
    assert x.shape == (4, 2) and y.shape == (4, 1) and x.dtype == jnp.float32
    kw.pop("progress")
    assert kw == dict(
        sizes=(2, 2, 1), activation="sigmoid", loss="mse", output_activation=None,
        data_name="xor", points=64, seed=0, dtype="float32", steps=5000, learning_rate=2.0,
        rtol=None, atol=None, fd=True, memory=None, reference="autodiff",
    )  # fmt: skip


def test_options_reach_the_engine(engine, capsys):
    argv = [
        "--grad", "closed_form", "--sizes", "2,5,3,1", "--activation", "tanh", "--loss", "bce",
        "--points", "7", "--seed", "3", "--dtype", "float64", "--steps", "0", "--lr", "0.5",
        "--rtol", "1e-3", "--atol", "1e-6", "--no-fd", "--no-report", "--data", "and",
        "--memory", "1.5GiB",
    ]  # fmt: skip
    assert main(argv) == 0
    [(grad, kw)] = engine.calls
    assert grad == "closed_form"
    assert kw["data"][0].dtype == jnp.float64
    assert (kw["sizes"], kw["activation"], kw["loss"]) == ((2, 5, 3, 1), "tanh", "bce")
    assert (kw["points"], kw["seed"], kw["dtype"], kw["steps"]) == (7, 3, "float64", 0)
    assert (kw["learning_rate"], kw["rtol"], kw["atol"], kw["fd"]) == (0.5, 1e-3, 1e-6, False)
    assert kw["memory"] == 3 * 2**29
    assert "report:" not in capsys.readouterr().out


def test_failing_result_exits_1(engine, capsys):
    engine.result = make_result(failing=("w12", "w21"))
    assert main(["--no-report"]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("FAILED: 2 of 9 weights (w12, w21)")
    assert "FAIL" in out


def test_a_result_nothing_could_judge_exits_2_not_0_or_1(engine, capsys):
    result = make_result()
    result["passed"] = False
    result["weights"][0].update(status="not_judged", passed=False, reference="nan")
    engine.result = result
    assert main(["--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "jaxbp-audit: error: NOT JUDGED: nothing disagrees with jax.grad at 70 points, but 1 "
        "weight (w11) not judged"
    )


def test_quiet_prints_only_the_verdict(engine, tmp_path, capsys):
    assert main(["--quiet", "--out", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["PASSED: 9/9 weights, 3/3 factors agree with jax.grad at 70 points"]
    assert err == ""
    assert (tmp_path / "r" / "report.json").exists()


def test_no_report_writes_nothing(engine, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--no-report"]) == 0
    assert os.listdir(tmp_path) == []


def test_max_rows(engine, capsys):
    engine.result = make_result(failing=("b2",))
    assert main(["--no-report", "--max-rows", "2"]) == 1
    out = capsys.readouterr().out
    assert "(7 more weights not shown, all passing)" in out
    assert out.index("\nb2 ") < out.index("not shown")


def test_grad_from_a_file(engine, grads_py, capsys):
    assert main(["--grad", f"{grads_py}:grads", "--no-report"]) == 0
    [(grad, _)] = engine.calls
    assert callable(grad) and grad.__name__ == "grads"


@pytest.mark.parametrize("name", ["moons", "circles"])
def test_generated_data_follows_the_seed(engine, name, capsys):
    for seed in ("0", "0", "1"):
        assert main(["--grad", "closed_form", "--data", name, "--seed", seed, "--no-report"]) == 0
    (x0, y0), (x1, _), (x2, _) = (kw["data"] for _, kw in engine.calls)
    assert x0.shape == (200, 2) and y0.shape == (200, 1)
    np.testing.assert_array_equal(x0, x1)
    assert not np.array_equal(x0, x2)
    assert engine.calls[0][1]["data_name"] == name


def test_csv_data(engine, tmp_path, capsys):
    path = write_csv(tmp_path / "d.csv", "a,b,c,t1,t2\n0,1,2,1,0\n1,1,0,0,1\n")
    argv = ["--grad", "closed_form", "--sizes", "3,4,2", "--data", str(path), "--no-report"]
    assert main(argv) == 0
    x, y = engine.calls[0][1]["data"]
    assert x.shape == (2, 3) and y.shape == (2, 2)
    np.testing.assert_array_equal(y, [[1, 0], [0, 1]])


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxbp-audit")
    assert "MODULE:FUNCTION" in out and "exit status" in out
    for flag in ("--vjp SPEC", "--jvp SPEC", "--backward SPEC", "--inputs SPEC"):
        assert flag in out
    assert "MODULE:FORWARD,BACKWARD" in out and "params first for --backward" in out


# --------------------------------------------------------------------------------------------
# usage and input errors: exit 2, one line on stderr, the engine never runs
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_engine(monkeypatch):
    def fake(grad, **kwargs):
        raise AssertionError("the engine must not run after an input error")

    monkeypatch.setattr(audit, "audit_network", fake)


BAD_ARGS = [
    (["--sizes", "2,x,1"], "argument --sizes: '2,x,1' is not a list of layer widths"),
    (["--sizes", "2"], "expected at least two positive integers"),
    (["--sizes", "2,0,1"], "expected at least two positive integers"),
    (["--sizes", "3,2,1"], "--sizes 3,2,1 but xor has 2 inputs; the first size must be 2"),
    (["--grad", "closed_form", "--sizes", "2,2,2"], "--sizes 2,2,2 but xor has 1 target"),
    (["--points", "0"], "argument --points: 0 is too small; expected at least 1"),
    (["--points", "many"], "argument --points: 'many' is not a whole number"),
    (["--steps", "-1"], "argument --steps: -1 is too small; expected at least 0"),
    (["--lr", "0"], "argument --lr: '0': expected a finite number > 0"),
    (["--rtol", "nan"], "argument --rtol: 'nan': expected a finite number >= 0"),
    (["--activation", "softplus"], "argument --activation: invalid choice: 'softplus'"),
    (["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--memory", "lots"], "argument --memory: memory size 'lots' is not understood"),
    (["--memory", "0"], "argument --memory: memory size '0' is not understood"),
    (["--data", "spiral"], "--data 'spiral' is neither a known data set nor an existing file"),
    (["--grad", "seed", "--sizes", "2,3,1"], "--grad seed is the note's 2-2-1 sigmoid network"),
    (["--activation", "tanh"], "but got --activation tanh; use --grad closed_form"),
    (["--loss", "bce"], "but got --loss bce; use --grad closed_form"),
    (
        ["--grad", "closed_form", "--loss", "bce", "--output-activation", "tanh"],
        "loss='bce' needs output_activation='sigmoid'",
    ),
    (["--grad", "my_grads"], "is not a gradient function spec; expected MODULE:FUNCTION"),
    (["--grad", "no_such_module_xyz:grads"], "cannot import module 'no_such_module_xyz'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_ARGS)
def test_bad_arguments(argv, message, no_engine, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_autodiff_is_refused_with_its_reason(capsys, tmp_path):
    # the engine refuses it before any work: jax.grad audited against itself checks nothing
    assert main(["--grad", "autodiff", "--out", str(tmp_path / "r")]) == 2
    assert "grad='autodiff' is jax.grad itself" in one_error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_grad_file_errors(grads_py, no_engine, capsys):
    assert main(["--grad", f"{grads_py.parent / 'nope.py'}:grads", "--no-report"]) == 2
    assert f"no such file '{grads_py.parent / 'nope.py'}'" in one_error_line(capsys)
    assert main(["--grad", f"{grads_py}:takes_two", "--no-report"]) == 2
    assert "cannot be called as fn(params, x, y)" in one_error_line(capsys)
    assert main(["--grad", f"{grads_py}:nothing", "--no-report"]) == 2
    assert "has no attribute 'nothing'; callables defined there: grads" in one_error_line(capsys)
    grads_py.write_text("def grads(params, x, y)\n    pass\n")
    assert main(["--grad", f"{grads_py}:grads", "--no-report"]) == 2
    assert "syntax error in" in one_error_line(capsys)


def test_csv_errors(tmp_path, no_engine, capsys):
    base = ["--grad", "closed_form", "--no-report", "--data"]
    assert main([*base, str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in one_error_line(capsys)
    text = write_csv(tmp_path / "text.csv", "x1,x2,y\n0,1,1\n1,zero,0\n")
    assert main([*base, str(text)]) == 2
    assert "line 3, column 2: 'zero' is not a number" in one_error_line(capsys)
    wide = write_csv(tmp_path / "wide.csv", "0,1,2,1\n1,1,0,0\n")
    assert main([*base, str(wide)]) == 2
    assert one_error_line(capsys) == (
        f"jaxbp-audit: error: --sizes 2,2,1 does not fit {wide}: it has 4 columns; the last "
        "size, 1, makes column 4 the target, which leaves 3 inputs (columns 1-3), but the first "
        "size is 2; pass --sizes 2,2,2 for 2 inputs and 2 targets or --sizes 3,2,1 for 3 inputs "
        "and 1 target"
    )


CSV_SPLITS = [
    (
        "2,2,2",
        "it has 3 columns; the last size, 2, makes columns 2-3 the targets, which leaves 1 input "
        "(column 1), but the first size is 2; pass --sizes 2,2,1 for 2 inputs and 1 target or "
        "--sizes 1,2,2 for 1 input and 2 targets",
    ),
    (
        "2,5,4,3",
        "it has 3 columns, too few for the 3 targets (the last size) and 2 inputs (the first "
        "size) that --sizes asks for; pass --sizes 2,5,4,1 for 2 inputs and 1 target",
    ),
    (
        "3,1",
        "it has 3 columns; the last size, 1, makes column 3 the target, which leaves 2 inputs "
        "(columns 1-2), but the first size is 3; pass --sizes 2,1 for 2 inputs and 1 target",
    ),
]


@pytest.mark.parametrize(("sizes", "message"), CSV_SPLITS)
def test_csv_columns_that_do_not_fit_the_sizes(sizes, message, tmp_path, no_engine, capsys):
    path = write_csv(tmp_path / "two_in_one_out.csv", "a,b,t\n0,1,1\n1,1,0\n")
    argv = ["--grad", "closed_form", "--sizes", sizes, "--data", str(path), "--no-report"]
    assert main(argv) == 2
    assert (
        one_error_line(capsys)
        == f"jaxbp-audit: error: --sizes {sizes} does not fit {path}: {message}"
    )


def test_out_errors_are_found_before_the_run(tmp_path, no_engine, capsys, monkeypatch):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["--out", str(target)]) == 2
    assert "exists and is not a directory" in one_error_line(capsys)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    assert main(["--out", str(tmp_path / "mine")]) == 2
    assert "refusing to replace" in one_error_line(capsys)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(["--out", str(tmp_path / "r")]) == 2
    assert "is not writable" in one_error_line(capsys)


# --------------------------------------------------------------------------------------------
# the real engine
# --------------------------------------------------------------------------------------------


def test_real_default_audit_passes(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["--out", str(out), "--points", "8", "--steps", "200"]) == 0
    stdout = capsys.readouterr().out
    assert "PASSED: 9/9 weights, 15/15 factors agree with jax.grad" in stdout
    data = json.loads((out / "report.json").read_text())
    assert data["passed"] is True
    assert data["files"] == sorted(os.listdir(out), key=data["files"].index)
    assert data["training"]["steps"] == 200


def test_real_seed_22_passes_its_float32_rounding_flagged(capsys):
    # the note's correct dA2/dz2 loses 4 digits in float32 at this seed: not a wrong formula
    assert main(["--seed", "22", "--no-report"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("dA2/dz2"))
    assert "PASS*" in row and "loses 4 digits in float32 here" in row
    assert out.rstrip().splitlines()[-1] == (
        "PASSED: 9/9 weights, 15/15 factors agree with jax.grad at 71 points; 1 factor "
        "(dA2/dz2) passes as rounding (PASS*)"
    )


def test_real_diverging_reference_is_not_blamed_on_the_handwritten_side(capsys):
    assert main(["--lr", "1e30", "--points", "8", "--steps", "500", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert "JAX's factor was not finite at" in " ".join(out.split())


def test_real_audit_of_swapped_weights_fails(grads_py, capsys):
    argv = ["--grad", f"{grads_py}:swapped", "--points", "4", "--steps", "0", "--no-fd"]
    assert main([*argv, "--no-report"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 4 of 9 weights (w11, w12, w21, w22)" in out


def test_real_engine_rejects_gradients_shaped_unlike_params(grads_py, capsys):
    argv = ["--grad", f"{grads_py}:one_layer", "--points", "2", "--steps", "0", "--no-report"]
    assert main(argv) == 2
    assert "do not match params" in one_error_line(capsys)


def module_env(**extra):
    """The test's environment for a ``python -m audit`` run: no compilation cache, so nothing
    is written into the user's cache folder (the cache tests pass their own folder)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "JAXBP_NO_CACHE": "1",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def run_module(*args, cwd=ROOT, **env):
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, cwd=cwd,
        env=module_env(**env), timeout=120,
    )  # fmt: skip


def start_module(*args, cwd=ROOT):
    return subprocess.Popen(
        [sys.executable, "-m", "audit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=cwd, env=module_env(),
    )  # fmt: skip


def test_python_m_audit_help():
    proc = run_module("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: jaxbp-audit")


def test_python_m_audit_input_error_has_no_traceback():
    proc = run_module("--sizes", "3,2,1", "--no-report")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "jaxbp-audit: error: --sizes 3,2,1 but xor has 2 inputs; the first size must be 2"
    ]


def test_debug_variable_shows_the_traceback(monkeypatch, tmp_path, capsys):
    missing = str(tmp_path / "missing.csv")
    assert main(["--data", missing, "--no-report"]) == 2  # one line, no traceback
    line = one_error_line(capsys)
    monkeypatch.setenv("JAXBP_DEBUG", "1")
    assert main(["--data", missing, "--no-report"]) == 2  # the traceback, and still 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "FileNotFoundError" in err and err.splitlines()[-1] == line


# --------------------------------------------------------------------------------------------
# refusals that would otherwise check nothing
# --------------------------------------------------------------------------------------------

SOFTMAX_ONE_UNIT = (
    "jaxbp-audit: error: --loss softmax_ce with --sizes 2,2,1: softmax over 1 output unit is 1 "
    "whatever its input, so the loss is 0 and every gradient is 0, and a gradient function "
    "returning zeros would pass; give one output unit per class (e.g. --sizes 2,2,2 with "
    "one-hot target columns), or use --loss bce for one yes/no target"
)


def test_softmax_over_one_output_unit_is_refused(no_engine, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default report folder, whatever the checkout holds
    assert main(["--grad", "closed_form", "--loss", "softmax_ce", "--sizes", "2,2,1"]) == 2
    assert one_error_line(capsys) == SOFTMAX_ONE_UNIT


def test_real_engine_refuses_softmax_over_one_unit_too(capsys):
    # what the engine sees when called from Python; the CLI's own check comes first
    with pytest.raises(ValueError, match="loss='softmax_ce' with 1 output unit"):
        audit.audit_network("closed_form", loss="softmax_ce", points=2, steps=0, fd=False)


SEED_RANGE = (
    "jax.random.key takes a whole number from -9223372036854775808 to 9223372036854775807 "
    "(a 64-bit integer), e.g. --seed 0"
)


@pytest.mark.parametrize(
    "seed", ["99999999999999999999999", "9223372036854775808", "-9223372036854775809"]
)
def test_seed_out_of_range(seed, no_engine, capsys):
    assert main(["--seed", seed, "--no-report"]) == 2
    assert one_error_line(capsys) == (
        f"jaxbp-audit: error: argument --seed: {seed} is out of range; {SEED_RANGE} "
        "(see jaxbp-audit --help)"
    )


def test_seed_not_a_number(no_engine, capsys):
    assert main(["--seed", "1e3", "--no-report"]) == 2
    assert "argument --seed: '1e3' is not a whole number" in one_error_line(capsys)


def test_largest_seed_reaches_the_engine(engine, capsys):
    assert main(["--seed", "9223372036854775807", "--no-report", "--data", "moons"]) == 0
    assert engine.calls[0][1]["seed"] == 2**63 - 1


def test_points_that_do_not_fit_in_memory_are_refused_first(
    no_engine, capsys, monkeypatch, tmp_path
):
    import audit.budget

    monkeypatch.chdir(tmp_path)  # the default report folder, whatever the checkout holds

    monkeypatch.setattr(audit.budget, "available_memory", lambda: 8 * 10**9)
    assert main(["--points", "1000000000"]) == 2
    assert one_error_line(capsys) == (
        "jaxbp-audit: error: --points 1000000000 needs about 2.21 TB of memory, but 8 GB is "
        "available: the audit keeps every point, 69 values each (9 gradients and 60 chain "
        "factors or deltas) at about 32 bytes a value; the most that fits is --points 3501245"
    )
    assert main(["--points", "3501245", "--steps", "10000000000"]) == 2
    assert "--steps 10000000000 needs about 1.61 TB of memory" in one_error_line(capsys)


OUT_REFUSED = (
    "jaxbp-audit: error: refusing to write the report to {shown!r}: it is {what}, and the "
    "report directory is replaced as a whole; pass a new folder of its own instead, such as "
    "{instead!r}"
)


def test_out_that_is_the_current_directory_or_above_it(tmp_path, no_engine, capsys, monkeypatch):
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["--out", "."]) == 2
    assert one_error_line(capsys) == OUT_REFUSED.format(
        shown=".", what="the current directory", instead="audit-report"
    )
    assert main(["--out", ".."]) == 2
    assert one_error_line(capsys) == OUT_REFUSED.format(
        shown="..", what=f"a folder above the current directory ({here})",
        instead="../audit-report",
    )  # fmt: skip
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["--out", str(tmp_path)]) == 2
    assert one_error_line(capsys) == OUT_REFUSED.format(
        shown=str(tmp_path), what="the home directory", instead=f"{tmp_path}/audit-report"
    )
    assert main(["--out", "/"]) == 2
    assert one_error_line(capsys) == OUT_REFUSED.format(
        shown="/", what="the filesystem root", instead="/audit-report"
    )
    assert main(["--out", ""]) == 2
    assert one_error_line(capsys) == (
        "jaxbp-audit: error: the report directory is '', an empty path; pass a folder name "
        "such as 'audit-report'"
    )
    assert os.listdir(here) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_out_under_proc_is_refused_before_the_run(no_engine, capsys):
    assert main(["--out", "/proc/audit-report"]) == 2
    assert one_error_line(capsys).startswith(
        "jaxbp-audit: error: cannot write the report to '/proc/audit-report': directory '/proc' "
        "does not accept new folders ("
    )


# --------------------------------------------------------------------------------------------
# exit 1 only ever means "disagree": the user's code failing is 2, with one line
# --------------------------------------------------------------------------------------------

FAILING_PY = """
import sys
import jaxbp

def runtime(params, x, y):
    raise RuntimeError("boom")

def index(params, x, y):
    return params[7]

def key(params, x, y):
    return {}["missing"]

def recursion(params, x, y):
    return recursion(params, x, y)

def value(params, x, y):
    raise ValueError("bad value")

def exits(params, x, y):
    sys.exit(3)

def as_tuple(params, x, y):
    return tuple(jaxbp.seed_grads(params, x, y))

def half(params, x, y):
    import jax
    return jax.tree.map(lambda g: g.astype("float16"), jaxbp.seed_grads(params, x, y))

def good(params, x, y):
    return jaxbp.seed_grads(params, x, y)

def bad_factors(params, x, yt):
    raise IndexError("factor 9 of 3")

good.factors = bad_factors
"""

USER_FAILURES = [
    ("runtime", "raised RuntimeError: boom", 6, "runtime"),
    ("index", "raised IndexError: list index out of range", 9, "index"),
    ("key", "raised KeyError: 'missing'", 12, "key"),
    ("recursion", "raised RecursionError: maximum recursion depth exceeded", 15, "recursion"),
    ("value", "raised ValueError: bad value", 18, "value"),
    ("exits", "called sys.exit(3)", 21, "exits"),
    ("good", None, 34, "bad_factors"),
]


@pytest.fixture
def failing_py(tmp_path):
    path = tmp_path / "failing.py"
    path.write_text(textwrap.dedent(FAILING_PY), encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "raised", "line", "where"), USER_FAILURES)
def test_an_exception_in_the_users_function_exits_2_with_one_line(
    name, raised, line, where, failing_py, capsys
):
    spec = f"{failing_py}:{name}"
    argv = ["--grad", spec, "--points", "2", "--steps", "0", "--no-fd", "--no-report", "--quiet"]
    assert main(argv) == 2
    if name == "good":  # its factors function fails, and is named as such
        spec, raised = f"{spec}.factors", "raised IndexError: factor 9 of 3"
    assert one_error_line(capsys) == (
        f"jaxbp-audit: error: {spec} {raised} (at {failing_py}, line {line}, in {where}); fix "
        "the function, or call it on its own to debug it (JAXBP_DEBUG=1 shows the traceback)"
    )


def test_gradients_in_other_containers_or_dtypes_are_named(failing_py, capsys):
    base = ["--points", "2", "--steps", "0", "--no-fd", "--no-report", "--grad"]
    assert main([*base, f"{failing_py}:as_tuple"]) == 2
    assert one_error_line(capsys).endswith(
        "as_tuple returned gradients that do not match params: they are a tuple of 2 dicts "
        "{'W', 'b'}, params are a list of 2 dicts {'W', 'b'}; return a list like params, e.g. "
        "list(grads)"
    )
    assert main([*base, f"{failing_py}:half"]) == 2
    assert one_error_line(capsys).endswith(
        "half returned gradients that do not match params: [0]['W'], [0]['b'], [1]['W'], "
        "[1]['b'] have dtype float16, expected float32 like params; compute them in float32 "
        "or cast each with .astype(jnp.float32)"
    )


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("raise RuntimeError('at import')", "failed: RuntimeError: at import"),
        ("import sys; sys.exit(3)", "called sys.exit(3)"),
    ],
)
def test_an_exception_when_importing_the_users_file_exits_2(body, said, tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text(f"x = 1\n{body}\n", encoding="utf-8")
    assert main(["--grad", f"{path}:grads", "--no-report"]) == 2
    assert one_error_line(capsys) == (
        f"jaxbp-audit: error: running '{path}' {said} (at {path}, line 2, in <module>); fix "
        "the file so that importing it succeeds"
    )


def test_an_internal_error_exits_2_and_debug_shows_its_traceback(monkeypatch, capsys):
    def broken(grad, **kwargs):
        raise RuntimeError("engine bug")

    monkeypatch.setattr(audit, "audit_network", broken)
    assert main(["--no-report"]) == 2
    assert one_error_line(capsys) == (
        "jaxbp-audit: error: internal error, RuntimeError: engine bug; rerun with "
        "JAXBP_DEBUG=1 for the traceback and report it"
    )
    monkeypatch.setenv("JAXBP_DEBUG", "1")
    assert main(["--no-report"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("engine bug")' in err


def test_out_of_memory_exits_2(monkeypatch, capsys):
    def broken(grad, **kwargs):
        raise MemoryError

    monkeypatch.setattr(audit, "audit_network", broken)
    assert main(["--no-report"]) == 2
    assert one_error_line(capsys) == (
        "jaxbp-audit: error: out of memory (MemoryError: MemoryError); lower --points, --steps "
        "or the network's size"
    )


# --------------------------------------------------------------------------------------------
# Ctrl-C: exit 130 and the previous report whole, wherever it lands
# --------------------------------------------------------------------------------------------


def old_report(path):
    """A report folder whose files say "old": what an interrupted run must leave alone."""
    path.mkdir()
    for name in ("report.json", "report.md", "report.html"):
        (path / name).write_text("old")
    return {name: "old" for name in ("report.json", "report.md", "report.html")}


def contents(path):
    return {n: (path / n).read_text(errors="replace") for n in sorted(os.listdir(path))}


def interrupted(capsys):
    out, err = capsys.readouterr()
    assert err.splitlines()[-1] == "jaxbp-audit: interrupted", err
    assert "Traceback" not in err and "Exception ignored" not in err
    return out


def test_ctrl_c_during_the_audit_exits_130(monkeypatch, tmp_path, capsys):
    def stopped(grad, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit, "audit_network", stopped)
    before = old_report(tmp_path / "r")
    assert main(["--out", str(tmp_path / "r")]) == 130
    interrupted(capsys)
    assert contents(tmp_path / "r") == before


@pytest.mark.parametrize("where", ["engine end", "plot", "json", "swap"])
def test_ctrl_c_at_every_step_keeps_the_previous_report(
    where, engine, tmp_path, capsys, monkeypatch
):
    import gc

    from audit import plots

    # What JAX's _xla_gc_callback did: the KeyboardInterrupt raised inside a gc callback was
    # printed as "Exception ignored" and dropped, and the run went on to replace the report.
    def swallowed():
        def callback(phase, info):
            gc.callbacks.remove(callback)
            signal.raise_signal(signal.SIGINT)
            sum(range(100))

        gc.callbacks.append(callback)
        gc.collect()

    if where == "engine end":
        real = audit.audit_network

        def engine_then_swallowed(grad, **kwargs):
            result = real(grad, **kwargs)
            swallowed()
            return result

        monkeypatch.setattr(audit, "audit_network", engine_then_swallowed)
    elif where == "plot":
        monkeypatch.setattr(plots, "scatter", lambda data: swallowed() or b"png")
    elif where == "json":
        monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    else:
        real_rename = os.rename

        def rename(src, dst):
            signal.raise_signal(signal.SIGINT)  # held: waits for the renames, then undoes them
            real_rename(src, dst)

        monkeypatch.setattr(os, "rename", rename)
    before = old_report(tmp_path / "r")
    assert main(["--out", str(tmp_path / "r")]) == 130
    interrupted(capsys)
    assert contents(tmp_path / "r") == before
    assert [n for n in os.listdir(tmp_path) if n.startswith(".audit-")] == []


def test_sigint_after_the_new_report_is_in_place_is_moot(engine, tmp_path, capsys, monkeypatch):
    from audit import report

    real = report._swap_in

    def swap_then_sigint(*args):
        real(*args)
        signal.raise_signal(signal.SIGINT)  # after the swap: the run is done

    monkeypatch.setattr(report, "_swap_in", swap_then_sigint)
    old_report(tmp_path / "r")
    assert main(["--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["passed"] is True


def test_handlers_are_restored_after_main(engine, tmp_path, capsys):
    before = signal.getsignal(signal.SIGINT), sys.unraisablehook
    main(["--no-report"])
    assert (signal.getsignal(signal.SIGINT), sys.unraisablehook) == before


def test_sigint_at_any_moment_of_a_real_run_is_130_and_a_whole_report(tmp_path):
    """A real ``python -m audit`` interrupted at several moments from its first progress line
    on: exit 130 with the previous report as it was, or (once the new one is in place) 0 with
    the new one whole; never a traceback, never "Exception ignored", never a crash or a
    half-written report. (Before main runs, Python is still importing JAX: a Ctrl-C there is
    Python's own.)"""
    import time

    argv = ["--points", "4", "--steps", "200", "--no-fd", "--out", "r"]

    def started(proc):
        line = proc.stderr.readline()
        assert line.startswith("jaxbp-audit: "), line
        return time.perf_counter()

    proc = start_module(*argv, cwd=tmp_path)
    t0 = started(proc)
    _, err = proc.communicate(timeout=120)
    rest = time.perf_counter() - t0
    assert proc.returncode == 0, err
    new = contents(tmp_path / "r")
    seen = set()
    for fraction in (0.0, 0.5, 0.9):
        shutil.rmtree(tmp_path / "r")
        before = old_report(tmp_path / "r")
        proc = start_module(*argv, cwd=tmp_path)
        started(proc)
        time.sleep(fraction * rest)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert proc.returncode in (0, 130), (fraction, proc.returncode, err)
        got = contents(tmp_path / "r")
        if proc.returncode == 130:
            assert err.splitlines()[-1] == "jaxbp-audit: interrupted", err
            assert got == before
        else:
            assert set(got) == set(new) and json.loads(got["report.json"])["passed"] is True
        assert [n for n in os.listdir(tmp_path) if n.startswith(".audit-")] == []
        seen.add(proc.returncode)
    assert 130 in seen


# --------------------------------------------------------------------------------------------
# the persistent compilation cache (command-line runs only)

SMALL_RUN = ("--points", "4", "--steps", "20", "--no-fd", "--no-report")


def cache_env(cache_home, **extra):
    """A cache folder of the test's own; matplotlib keeps its usual one (no font rebuild)."""
    import matplotlib

    env = dict(
        XDG_CACHE_HOME=str(cache_home), JAXBP_NO_CACHE=None, MPLCONFIGDIR=matplotlib.get_cachedir()
    )
    return {**env, **extra}


def test_cache_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
    from audit import compile_cache

    home = Path(os.path.expanduser("~"))
    assert compile_cache.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "jaxbp" / "jax"
    for unset in ({}, {"XDG_CACHE_HOME": ""}, {"XDG_CACHE_HOME": "relative/dir"}):
        assert compile_cache.cache_dir(unset) == home / ".cache" / "jaxbp" / "jax"
    for value, off in (("1", True), ("yes", True), ("0", False), ("", False)):
        assert compile_cache.disabled_by_env({"JAXBP_NO_CACHE": value}) is off
    assert compile_cache.disabled_by_env({}) is False


def test_second_run_finds_what_the_first_compiled(tmp_path):
    folder = tmp_path / "cache" / "jaxbp" / "jax"
    programs = tmp_path / "cache" / "jaxbp" / "programs"
    first = run_module(*SMALL_RUN, **cache_env(tmp_path / "cache"))
    assert first.returncode == 0, first.stderr
    written, kept = sorted(os.listdir(folder)), sorted(os.listdir(programs))
    assert written, "the first run wrote no cache entry"
    assert kept, "the first run kept no compiled program"
    second = run_module(*SMALL_RUN, **cache_env(tmp_path / "cache"))
    assert second.returncode == 0, second.stderr
    # every program of the second run was found: it added nothing
    assert sorted(os.listdir(folder)) == written
    assert sorted(os.listdir(programs)) == kept

    def untimed(out):
        return [line for line in out.splitlines() if not line.startswith("time: ")]

    assert untimed(second.stdout) == untimed(first.stdout)  # the same audit, loaded
    assert "compilation cache" not in first.stderr + second.stderr


# the CLI with JAX's compilation cache on and no kept programs, as an earlier version ran
WITHOUT_PROGRAMS = """
import runpy, sys
import audit.program_cache
audit.program_cache.enable = lambda path: None
sys.argv = ["audit", *sys.argv[1:]]
runpy.run_module("audit", run_name="__main__")
"""


def test_programs_that_jax_cache_holds_already_are_compiled_to_be_kept(tmp_path):
    """JAX's cache filled before any program was kept: an executable it serves did not
    serialize whole (loaded in the next run, it failed with "Function ... not found"), so
    each program is compiled afresh to be kept, and the run after loads them all."""
    env = cache_env(tmp_path / "cache")
    programs = tmp_path / "cache" / "jaxbp" / "programs"
    fill = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROGRAMS, *SMALL_RUN], capture_output=True, text=True,
        cwd=ROOT, env=module_env(**env), timeout=120,
    )  # fmt: skip
    assert fill.returncode == 0, fill.stderr
    assert os.listdir(tmp_path / "cache" / "jaxbp" / "jax") and not programs.exists()
    runs = [run_module(*SMALL_RUN, **env) for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
        assert "PASSED" in proc.stdout and "error" not in proc.stderr
    assert any(name.endswith(".bin") for name in os.listdir(programs))


@pytest.mark.parametrize("how", ["--no-cache", "JAXBP_NO_CACHE=1"])
def test_no_cache_writes_nothing(how, tmp_path):
    flag, env = ((how,), {}) if how.startswith("--") else ((), {"JAXBP_NO_CACHE": "1"})
    proc = run_module(*SMALL_RUN, *flag, **cache_env(tmp_path / "cache", **env))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "cache" / "jaxbp").exists()


@pytest.mark.parametrize("quiet", [False, True])
def test_unwritable_cache_folder_leaves_the_cache_off_and_the_run_whole(quiet, tmp_path):
    blocker = tmp_path / "not-a-folder"  # a file: no folder can be made under it, even as root
    blocker.write_text("")
    args = (*SMALL_RUN, "--quiet") if quiet else SMALL_RUN
    proc = run_module(*args, **cache_env(blocker))
    assert proc.returncode == 0, proc.stderr
    off = [line for line in proc.stderr.splitlines() if "compilation cache" in line]
    if quiet:
        assert off == []
        assert proc.stdout.startswith("PASSED")
    else:
        assert off == [
            f"jaxbp-audit: compilation cache off: cannot write to {blocker}/jaxbp/jax "
            "(NotADirectoryError: Not a directory)"
        ]
        assert "PASSED" in proc.stdout
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr


def test_main_called_from_python_leaves_the_jax_cache_settings_alone(engine, monkeypatch, tmp_path):
    import jax

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAXBP_NO_CACHE", raising=False)
    names = ("jax_compilation_cache_dir", "jax_enable_compilation_cache",
             "jax_persistent_cache_min_compile_time_secs")  # fmt: skip
    before = {n: getattr(jax.config, n) for n in names}
    assert main(["--no-report", "--quiet"]) == 0
    assert {n: getattr(jax.config, n) for n in names} == before
    assert not (tmp_path / "jaxbp").exists()
    from audit import program_cache

    assert program_cache.folder() is None  # programs are traced, as the caller's are


def test_damaged_cache_entries_cost_a_compilation_not_the_run(tmp_path):
    folder = tmp_path / "cache" / "jaxbp" / "jax"
    programs = tmp_path / "cache" / "jaxbp" / "programs"
    assert run_module(*SMALL_RUN, **cache_env(tmp_path / "cache")).returncode == 0
    damaged = [folder / n for n in os.listdir(folder)]
    damaged += [programs / n for n in os.listdir(programs)]
    assert len(damaged) > len(os.listdir(folder))
    for path in damaged:  # as a run killed while writing would leave them
        path.write_bytes(b"not a program")
    proc = run_module(*SMALL_RUN, **cache_env(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    assert "PASSED" in proc.stdout
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# --------------------------------------------------------------------------------------------
# --vjp, --jvp and --backward: a rule or a backward pass in the user's file
# --------------------------------------------------------------------------------------------

EXAMPLE = ROOT / "examples" / "custom_vjp.py"
QUICK = ["--points", "4", "--no-report"]

RULES_PY = """
import jax
import jax
import jax.numpy as jnp


@jax.custom_jvp
def square(x):
    return x * x


@square.defjvp
def _square_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return x * x, x * t  # a slip: 2 x t


@jax.custom_vjp
def boom(x):
    return jnp.sin(x)


def _boom_fwd(x):
    return jnp.sin(x), x


def _boom_bwd(x, g):
    raise RuntimeError("bwd exploded")


boom.defvjp(_boom_fwd, _boom_bwd)


def plain(x):
    return jnp.sin(x)


def inputs():
    return (jnp.arange(1.0, 4.0),)


def not_a_tuple():
    return jnp.arange(1.0, 4.0)


two_args = (jnp.ones(3), jnp.ones(3))


def forward(tap, w, x):
    h = tap("h", x @ w)
    a = tap("a", jnp.tanh(h))
    s = tap("s", a**2)
    return jnp.mean(s)


def backward(w, x):
    a = jnp.tanh(x @ w)
    ds = jnp.full(a.shape, 1 / a.size)
    da = ds * 2 * a
    return {"s": ds, "a": da, "h": da * (1 - a**2)}


def slipped(w, x):
    a = jnp.tanh(x @ w)
    ds = jnp.full(a.shape, 1 / a.size)
    da = ds * a  # a slip: d(a^2)/da is 2 a; dh, computed from da, inherits it
    return {"s": ds, "a": da, "h": da * (1 - a**2)}


def point():
    w = jax.random.normal(jax.random.key(1), (3, 4))
    x = jax.random.normal(jax.random.key(2), (5, 3))
    return w, x
"""


@pytest.fixture
def rules_py(tmp_path):
    path = tmp_path / "my_rules.py"
    path.write_text(textwrap.dedent(RULES_PY), encoding="utf-8")
    return path


def last_line(capsys):
    return capsys.readouterr().out.rstrip().splitlines()[-1]


def test_vjp_options_reach_check_vjp(monkeypatch, capsys):
    calls = []

    def fake(f, *args, **kwargs):
        calls.append((f, args, kwargs))
        return AuditResult(**make_result())

    monkeypatch.setattr(audit, "check_vjp", fake)
    argv = [
        "--vjp", f"{EXAMPLE}:softplus", "--inputs", f"{EXAMPLE}:softplus_inputs", "--points", "7",
        "--seed", "3", "--rtol", "1e-3", "--atol", "1e-6", "--no-fd", "--memory", "1GiB",
        "--no-report",
    ]  # fmt: skip
    assert main(argv) == 0
    [(f, args, kw)] = calls
    assert isinstance(f, jax.custom_vjp) and f.__name__ == "softplus"
    assert len(args) == 1 and args[0].shape == (32,)
    key = kw.pop("key")
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(jax.random.key(3)))
    assert kw == dict(points=7, rtol=1e-3, atol=1e-6, fd=False, memory=2**30, reference="autodiff")


def test_vjp_of_the_examples_right_softplus_passes_and_writes_the_report(tmp_path, capsys):
    # the rule is the derivative by construction: d/dx log(1 + e^x) = sigmoid(x)
    from examples.custom_vjp import softplus_inputs

    (x,) = softplus_inputs()
    x64 = np.asarray(x, np.float64)
    np.testing.assert_allclose(
        jax.vmap(jax.grad(lambda v: jnp.logaddexp(v, 0.0)))(x64), jax.nn.sigmoid(x64), rtol=1e-12
    )
    out = tmp_path / "r"
    argv = ["--vjp", f"{EXAMPLE}:softplus", "--inputs", f"{EXAMPLE}:softplus_inputs"]
    assert main([*argv, "--points", "4", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith(f"audit: check_vjp function={EXAMPLE}:softplus inputs=")
    assert "PASSED: 32/32 elements agree with autodiff of the primal at 5 points" in stdout
    data = json.loads((out / "report.json").read_text())
    assert data["verdict"] == "passed"
    assert data["config"]["function"] == f"{EXAMPLE}:softplus"
    assert data["config"]["check"] == "check_vjp" and data["config"]["seed"] == 0


def test_vjp_of_the_examples_slipped_layer_norm_fails_naming_x(capsys):
    # independently: the slipped rule's dx differs from jax.vjp of the primal in float64,
    # its dgain and dbias do not
    from examples.custom_vjp import layer_norm, layer_norm_inputs, slipped_layer_norm

    point = tuple(np.asarray(a, np.float64) for a in layer_norm_inputs())
    ct = np.linspace(-1.0, 1.0, 32)
    rule = jax.vjp(slipped_layer_norm, *point)[1](ct)
    true = jax.vjp(lambda *a: layer_norm(*a, eps=1e-5), *point)[1](ct)
    assert not np.allclose(rule[0], true[0], rtol=1e-3)
    np.testing.assert_allclose(rule[1], true[1], rtol=1e-9)
    np.testing.assert_allclose(rule[2], true[2], rtol=1e-9)

    argv = ["--vjp", f"{EXAMPLE}:slipped_layer_norm", "--inputs", f"{EXAMPLE}:layer_norm_inputs"]
    assert main([*argv, *QUICK, "--no-fd"]) == 1
    out = capsys.readouterr().out
    assert (
        out.rstrip()
        .splitlines()[-1]
        .startswith(
            "FAILED: 32 of 96 elements (x[0], x[1], x[2], x[3], x[4], x[5], and 26 more) disagree "
            "with autodiff of the primal at 5 points"
        )
    )
    # one summary line per input, then at most 4 rows of each: every element of x fails,
    # none of gain or bias
    tensors = {line.split()[0]: line.split()[1] for line in out.splitlines()
               if line.split()[:1] in (["x"], ["gain"], ["bias"])}  # fmt: skip
    assert tensors == {"x": "32/32", "gain": "0/32", "bias": "0/32"}
    failing = [line.split()[0] for line in out.splitlines() if " FAIL " in line]
    assert failing[0] == "x" and all(name.startswith("x[") for name in failing[1:])


def test_reference_fd_lets_finite_differences_decide_a_rule_from_the_command_line(capsys):
    # the slipped layer norm's dx is wrong (checked against jax.vjp of the primal above):
    # finite differences of the primal catch it as autodiff does; the right rule passes
    argv = ["--vjp", f"{EXAMPLE}:slipped_layer_norm", "--inputs", f"{EXAMPLE}:layer_norm_inputs"]
    assert main([*argv, *QUICK, "--reference", "fd"]) == 1
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith("FAILED: 32 of 96 elements (x[0]") and "finite differences" in last
    right = ["--vjp", f"{EXAMPLE}:right_layer_norm", "--inputs", f"{EXAMPLE}:layer_norm_inputs"]
    assert main([*right, *QUICK, "--reference", "both"]) == 0


def test_reference_fd_decides_a_network_audit_and_needs_finite_differences(tmp_path, capsys):
    # the seed's formulas are the derivative: finite differences of the loss agree with them
    argv = ["--reference", "fd", "--points", "4", "--steps", "100", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["config"]["reference"] == "fd" and report["config"]["fd_points"] >= 1
    assert any(n.startswith("reference='fd': finite differences decide") for n in report["notes"])
    capsys.readouterr()
    for argv in (
        ["--reference", "fd", "--no-fd", "--no-report"],
        ["--vjp", f"{EXAMPLE}:softplus", "--inputs", f"{EXAMPLE}:softplus_inputs",
         "--reference", "fd", "--no-fd", "--no-report"],
    ):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "reference='fd'" in err[0] and "fd=False" in err[0]


def test_jvp_with_a_slip_fails_at_every_element(rules_py, capsys):
    # d(x^2)/dx = 2x, the rule gives x: every element of x is off by a factor of 2
    assert main(["--jvp", f"{rules_py}:square", "--inputs", f"{rules_py}:inputs", *QUICK]) == 1
    assert last_line(capsys).startswith(
        "FAILED: 3 of 3 elements (x[0], x[1], x[2]) disagree with autodiff of the primal"
    )


def test_backward_pass_right_passes(rules_py, capsys):
    argv = ["--backward", f"{rules_py}:forward,backward", "--inputs", f"{rules_py}:point"]
    assert main([*argv, *QUICK]) == 0
    assert last_line(capsys).startswith(
        "PASSED: 60/60 elements, 3/3 intermediates agree with autodiff at 5 points"
    )


def test_backward_pass_with_a_slip_names_its_first_failing_intermediate(rules_py, capsys):
    # independently, in float64: dE/ds = 1/N is right; dE/da = 2 a/N, the slip gives a/N
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("my_rules_check", rules_py)
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    w, x = (np.asarray(a, np.float64) for a in mod.point())
    a = np.tanh(x @ w)
    slipped = mod.slipped(w, x)
    np.testing.assert_allclose(slipped["s"], jax.grad(jnp.mean)(a**2), rtol=1e-12)
    true_da = jax.grad(lambda v: jnp.mean(v**2))(a)
    assert not np.allclose(slipped["a"], true_da, rtol=1e-3)

    argv = ["--backward", f"{rules_py}:forward,slipped", "--inputs", f"{rules_py}:point"]
    assert main([*argv, *QUICK]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == (
        "FAILED: 40 of 60 elements (a[0,0], a[0,1], a[0,2], a[0,3], a[1,0], a[1,1], and 34 more) "
        "and 2 of 3 intermediates (a, h) disagree with autodiff at 5 points; first failing "
        "intermediate: a"
    )
    assert "first failing factor: a" in out


def error_of(argv, capsys):
    assert main(argv) == 2
    return one_error_line(capsys).removeprefix("jaxbp-audit: error: ")


def test_network_options_with_a_rule_are_a_usage_error(rules_py, capsys):
    base = ["--vjp", f"{rules_py}:boom", "--inputs", f"{rules_py}:inputs"]
    assert error_of([*base, "--sizes", "2,3,1", "--data", "and"], capsys) == (
        f"--sizes and --data are for a network audit (--grad), not for --vjp {rules_py}:boom, "
        "which is audited at the point --inputs gives; drop them (see jaxbp-audit --help)"
    )
    # given explicitly, even at its default value
    assert error_of([*base, "--grad", "seed"], capsys).startswith("--grad is for a network audit")
    assert "--steps is for" in error_of([*base, "--steps", "0"], capsys)


def test_inputs_missing_or_alone_is_a_usage_error(rules_py, capsys):
    assert error_of(["--vjp", f"{rules_py}:boom"], capsys) == (
        f"--vjp {rules_py}:boom needs --inputs MODULE:NAME or path.py:NAME: a function of no "
        "arguments returning its arguments as a tuple, or such a tuple (see jaxbp-audit --help)"
    )
    assert "params first" in error_of(["--backward", f"{rules_py}:forward,backward"], capsys)
    assert error_of(["--inputs", f"{rules_py}:inputs"], capsys).startswith(
        "--inputs gives the point for --vjp, --jvp or --backward, but none of them is given"
    )
    assert "argument --jvp: not allowed with argument --vjp" in error_of(
        ["--vjp", f"{rules_py}:boom", "--jvp", f"{rules_py}:square"], capsys
    )


def test_what_is_not_a_custom_rule_is_named(rules_py, capsys):
    inputs = ["--inputs", f"{rules_py}:inputs", "--no-report"]
    assert error_of(["--vjp", f"{rules_py}:plain", *inputs], capsys) == (
        f"{rules_py}:plain is a plain function, not a jax.custom_vjp function: decorate it with "
        "@jax.custom_vjp and define its rule with defvjp(fwd, bwd); a whole gradient function "
        "grad_fn(params, x, y) is audited with --grad"
    )
    assert error_of(["--vjp", f"{rules_py}:square", *inputs], capsys) == (
        f"{rules_py}:square is a jax.custom_jvp function, not a jax.custom_vjp one; audit it "
        "with --jvp"
    )
    assert error_of(["--jvp", f"{rules_py}:two_args", *inputs], capsys).startswith(
        f"{rules_py}:two_args is a tuple, not a jax.custom_jvp function"
    )


def test_inputs_that_are_not_a_tuple_or_do_not_fit_are_named(rules_py, capsys):
    rule = ["--vjp", f"{EXAMPLE}:softplus", "--no-report", "--inputs"]
    assert error_of([*rule, f"{rules_py}:not_a_tuple"], capsys) == (
        f"{rules_py}:not_a_tuple returned an ArrayImpl, expected a tuple of the arguments, in "
        "order (params first for a backward pass); return (x,) for a single argument"
    )
    assert error_of([*rule, f"{rules_py}:two_args"], capsys) == (
        f"--inputs {rules_py}:two_args gives 2 arguments, but {EXAMPLE}:softplus takes (x) "
        "(too many positional arguments)"
    )
    assert "has no attribute 'nothing'" in error_of([*rule, f"{rules_py}:nothing"], capsys)


def test_an_exception_in_the_users_rule_exits_2_naming_it(rules_py, capsys):
    argv = ["--vjp", f"{rules_py}:boom", "--inputs", f"{rules_py}:inputs", *QUICK]
    assert error_of(argv, capsys) == (
        f"{rules_py}:boom (its bwd rule) raised RuntimeError: bwd exploded (at {rules_py}, line "
        "28, in _boom_bwd); fix the function, or call it on its own to debug it (JAXBP_DEBUG=1 "
        "shows the traceback)"
    )


def test_python_m_audit_rule_exit_codes(rules_py):
    proc = run_module("--vjp", f"{rules_py}:boom", "--inputs", f"{rules_py}:inputs", "--lr", "1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"jaxbp-audit: error: --lr is for a network audit (--grad), not for --vjp "
        f"{rules_py}:boom, which is audited at the point --inputs gives; drop it (see "
        "jaxbp-audit --help)"
    ]
    proc = run_module("--jvp", f"{rules_py}:square", "--inputs", f"{rules_py}:inputs", *QUICK)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1].startswith("FAILED: 3 of 3 elements")
