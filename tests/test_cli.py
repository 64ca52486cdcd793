"""Tests for the jaxbp-audit command line: arguments, exit codes and one-line errors.

Most tests run ``main`` in-process with a stand-in engine that returns a fixed result; the
last few run the real audit, in-process and as ``python -m audit``.
"""

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest
from test_report import make_result

import audit
from audit.cli import main
from audit.result import AuditResult

ROOT = Path(__file__).resolve().parent.parent

GRADS_PY = """
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
        ["report.json", "report.md", "report.html", "loss_curves.png", "weight_errors.png",
         "scatter.png"]
    )  # fmt: skip
    [(grad, kw)] = engine.calls
    assert grad == "seed"
    x, y = kw.pop("data")
    assert x.shape == (4, 2) and y.shape == (4, 1) and x.dtype == jnp.float32
    kw.pop("progress")
    assert kw == dict(
        sizes=(2, 2, 1), activation="sigmoid", loss="mse", output_activation=None,
        data_name="xor", points=64, seed=0, dtype="float32", steps=5000, learning_rate=2.0,
        rtol=None, atol=None, fd=True,
    )  # fmt: skip


def test_options_reach_the_engine(engine, capsys):
    argv = [
        "--grad", "closed_form", "--sizes", "2,5,3,1", "--activation", "tanh", "--loss", "bce",
        "--points", "7", "--seed", "3", "--dtype", "float64", "--steps", "0", "--lr", "0.5",
        "--rtol", "1e-3", "--atol", "1e-6", "--no-fd", "--no-report", "--data", "and",
    ]  # fmt: skip
    assert main(argv) == 0
    [(grad, kw)] = engine.calls
    assert grad == "closed_form"
    assert kw["data"][0].dtype == jnp.float64
    assert (kw["sizes"], kw["activation"], kw["loss"]) == ((2, 5, 3, 1), "tanh", "bce")
    assert (kw["points"], kw["seed"], kw["dtype"], kw["steps"]) == (7, 3, "float64", 0)
    assert (kw["learning_rate"], kw["rtol"], kw["atol"], kw["fd"]) == (0.5, 1e-3, 1e-6, False)
    assert "report:" not in capsys.readouterr().out


def test_failing_result_exits_1(engine, capsys):
    engine.result = make_result(failing=("w12", "w21"))
    assert main(["--no-report"]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("FAILED: 2 of 9 weights (w12, w21)")
    assert "FAIL" in out


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
    assert "--sizes 2,2,1 but " in (line := one_error_line(capsys)) and "has 3 inputs" in line


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


def test_real_audit_of_swapped_weights_fails(grads_py, capsys):
    argv = ["--grad", f"{grads_py}:swapped", "--points", "4", "--steps", "0", "--no-fd"]
    assert main([*argv, "--no-report"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 4 of 9 weights (w11, w12, w21, w22)" in out


def test_real_engine_rejects_gradients_shaped_unlike_params(grads_py, capsys):
    argv = ["--grad", f"{grads_py}:one_layer", "--points", "2", "--steps", "0", "--no-report"]
    assert main(argv) == 2
    assert "do not match params" in one_error_line(capsys)


def run_module(*args):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, cwd=ROOT,
        env=env, timeout=120,
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


def test_debug_variable_shows_the_traceback(monkeypatch, tmp_path):
    missing = str(tmp_path / "missing.csv")
    assert main(["--data", missing, "--no-report"]) == 2  # one line, no traceback
    monkeypatch.setenv("JAXBP_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["--data", missing, "--no-report"])
