"""Each example runs in quick mode, in its own process, and prints or saves what it promises."""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import jaxbp

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUMBER = r"[-+]?\d+\.\d+(?:e[-+]?\d+)?"


def run_example(name: str, *args: str, code: str | None = None, timeout: float = 120) -> str:
    """Run ``examples/<name>`` (or ``python -c code``) with JAXBP_QUICK=1; return stdout."""
    env = dict(os.environ, JAXBP_QUICK="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-c", code] if code else [sys.executable, str(EXAMPLES / name)]
    proc = subprocess.run(
        [*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_seed_example_matches_jax_and_lowers_E():
    out = run_example("seed_example.py")

    # the forward pass, recomputed here from the numbers the docstring states
    def sigma(z):
        return 1 / (1 + math.exp(-z))

    x1, x2, yt = 0.05, 0.10, 0.01
    A1 = sigma(x1 * 0.15 + x2 * 0.20 + 0.35)
    A2 = sigma(x1 * 0.25 + x2 * 0.30 + 0.35)
    A3 = sigma(A1 * 0.40 + A2 * 0.45 + 0.60)
    E = 0.5 * (A3 - yt) ** 2
    printed = dict(re.findall(rf"^  (A3|E)\s+= ({NUMBER})$", out, re.M))
    assert float(printed["A3"]) == pytest.approx(A3, abs=1e-12)
    assert float(printed["E"]) == pytest.approx(E, abs=1e-12)

    pairs = re.findall(rf"^ .*?(\S+)\s+handwritten\s+({NUMBER})\s+jax\s+({NUMBER})", out, re.M)
    names = [name for name, _, _ in pairs]
    assert len(pairs) == 15 + 9, out  # every chain factor, then every dE/dw and dE/db
    assert names[:3] == ["dE/dA3", "dA3/dz3", "dz3/dw31"]
    assert set(names[15:]) == {f"dE/d{p}" for p in ("w11 w12 w21 w22 w31 w32 b1 b2 b3".split())}
    for name, mine, theirs in pairs:
        assert float(mine) == pytest.approx(float(theirs), abs=1e-12), name

    fell = re.search(rf"E fell from ({NUMBER}) to ({NUMBER})", out)
    assert fell, out
    before, after = map(float, fell.groups())
    assert before == pytest.approx(E, abs=1e-12)
    assert after < before


def test_xor_jit_learns_xor_and_saves_png(tmp_path):
    png = tmp_path / "xor.png"
    out = run_example("xor_jit.py", str(png))
    assert "seed 4/4, autodiff 4/4" in out, out
    diff = re.search(rf"largest difference between the curves: ({NUMBER})", out)
    assert diff and float(diff.group(1)) < 1e-5, out
    rows = re.findall(rf"^\s+(\d+)\s+({NUMBER})\s+({NUMBER})$", out, re.M)
    assert rows and int(rows[0][0]) == 0
    assert float(rows[-1][1]) < 0.1 * float(rows[0][1])  # the loss fell tenfold at least
    assert png.read_bytes().startswith(PNG_SIGNATURE)


def test_digits_accuracy_and_gradient_audit():
    pytest.importorskip("sklearn")
    out = run_example("digits.py")
    checkpoints = re.findall(r"^\s+\d+\s+\d+\.\d+\s+layer.*\s(pass|FAIL)$", out, re.M)
    assert len(checkpoints) >= 2 and set(checkpoints) == {"pass"}, out
    accuracy = re.search(rf"held-out accuracy: ({NUMBER})", out)
    assert accuracy and float(accuracy.group(1)) > 0.8, out


def test_digits_without_sklearn_says_how_to_install():
    # sys.modules[name] = None makes "import name" raise ImportError, as if not installed
    code = (
        "import runpy, sys; sys.modules['sklearn'] = None; "
        f"runpy.run_path({str(EXAMPLES / 'digits.py')!r}, run_name='__main__')"
    )
    env = dict(os.environ, JAXBP_QUICK="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert 'pip install -e ".[examples]"' in proc.stderr


def test_optax_pipeline_loss_falls():
    out = run_example("optax_pipeline.py")
    assert "same structure: True" in out, out
    fell = re.search(rf"loss fell from ({NUMBER}) to ({NUMBER})", out)
    assert fell, out
    before, after = map(float, fell.groups())
    assert after < 0.5 * before
    accuracy = re.search(rf"test ({NUMBER})", out)
    assert accuracy and float(accuracy.group(1)) > 0.9, out


def load_example_module(name: str):
    """Import ``examples/<name>.py`` as a module without putting examples/ on sys.path."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_my_gradients_correct_one_matches_jax_buggy_one_swaps_w12_w21():
    my_gradients = load_example_module("my_gradients")
    params, _, _ = jaxbp.seed_example(dtype=jnp.float64)
    x = jax.random.uniform(jax.random.key(0), (5, 2), jnp.float64)
    y = jax.random.uniform(jax.random.key(1), (5, 1), jnp.float64)
    ref = jaxbp.to_named(jaxbp.autodiff_grads(params, x, y))
    good = jaxbp.to_named(my_gradients.correct_grads(params, x, y))
    bad = jaxbp.to_named(my_gradients.buggy_grads(params, x, y))
    for name in ref:
        assert good[name] == pytest.approx(ref[name], rel=1e-12, abs=1e-15), name
    wrong = [n for n in ref if bad[n] != pytest.approx(ref[n], rel=1e-9, abs=1e-15)]
    assert wrong == ["w12", "w21"]
    assert (bad["w12"], bad["w21"]) == pytest.approx((ref["w21"], ref["w12"]), rel=1e-12)


def test_audit_my_gradient_names_the_swapped_weights(tmp_path):
    audit = pytest.importorskip("audit")
    api = ("audit_network", "format_table", "write_report")
    missing = [name for name in api if not hasattr(audit, name)]
    if missing:
        pytest.skip(f"audit does not export {missing} yet")
    out = run_example("audit_my_gradient.py", str(tmp_path))
    assert "correct_grads: PASSED" in out, out
    failed = re.search(r"^buggy_grads: FAILED at (.*)$", out, re.M)
    assert failed, out
    named = re.findall(r"(?:^|; )(\w+) \(", failed.group(1))
    assert named == ["w12", "w21"], out
    assert "swapped" in failed.group(1), out
    for name in ("correct_grads", "buggy_grads"):
        assert (tmp_path / name / "report.json").is_file()


def test_custom_vjp_example_passes_the_right_rules_and_names_the_slip():
    out = run_example("custom_vjp.py")
    lines = out.splitlines()
    assert (
        lines[0]
        == "softplus: PASSED: 32/32 elements agree with autodiff of the primal at 32 points"
    )
    assert lines[1].startswith("layer norm: PASSED: 96/96 elements agree")
    assert lines[2].startswith("layer norm, mean term dropped: FAILED: 32 of 96 elements (x[0]")
    # only x's elements: the dropped d(mean)/dx term leaves dgain and dbias right
    assert "x: 32 of 32 elements disagree" in out
    assert "gain:" not in out and "bias:" not in out


def test_backprop_ninja_passes_the_right_pass_and_names_each_slip_where_it_was_put():
    # the audit compiles two programs per dtype for 26 intermediates: a minute on a busy CPU
    out = run_example("backprop_ninja.py", timeout=600)
    verdicts = re.findall(r"^(PASSED|FAILED): .*$", out, re.M)
    assert verdicts == ["PASSED", "PASSED"], out  # float32, then float64
    assert out.count("PASSED: 7509/7509 elements, 26/26 intermediates agree with autodiff") == 2
    rows = re.findall(r"^  d(\w+) +(\S+) +worst element off by", out, re.M)
    assert len(rows) == 2 * 26
    backward_order = [name for name, _ in rows[:26]]
    assert backward_order[:8] == ["logprobs", "probs", "counts_sum_inv", "counts_sum",
                                  "counts", "norm_logits", "logit_maxes", "logits"]  # fmt: skip
    assert backward_order[-3:] == ["embcat", "emb", "C"]
    # only the two gradients that are 0 in exact arithmetic may pass as rounding (PASS*)
    assert {status for _, status in rows} <= {"PASS", "PASS*"}
    assert {name for name, status in rows if status == "PASS*"} <= {"logit_maxes", "b1"}
    named = dict(re.findall(r"^(d\w+): .*\n  first failing intermediate: (.*)$", out, re.M))
    assert named == {
        "dlogprobs": "logprobs",
        "dcounts_sum": "counts_sum",
        "dhpreact": "hpreact",
        "dbnvar": "bnvar",
        "dbndiff2": "bndiff2",
        "dembcat": "embcat",
        "dC": "C",
    }, out
    assert "sign error" in out.split("dcounts_sum:")[1].splitlines()[2], out


def test_backprop_ninja_backward_equals_jax_grad_in_float64():
    ninja = load_example_module("backprop_ninja")
    X, Y, vocab = ninja.make_dataset(ninja.make_words(40, seed=1))
    Xb, Yb = ninja.batch(X, Y, 12, key=jax.random.key(2))
    params = ninja.init_params(len(vocab), jnp.float64, key=jax.random.key(3))
    loss = functools.partial(ninja.forward, lambda name, value: value, Xb=Xb, Yb=Yb)
    ref = jax.grad(loss)(params)
    mine = ninja.backward(params, Xb, Yb)
    for name in ("C", "W1", "b1", "bngain", "bnbias", "W2", "b2"):
        assert mine[name].shape == ref[name].shape, name
        scale = float(jnp.max(jnp.abs(ref[name])))
        err = float(jnp.max(jnp.abs(mine[name] - ref[name])))
        # b1's gradient is 0 in exact arithmetic: batch norm subtracts it back out
        assert err <= (1e-10 * scale if name != "b1" else 1e-15), (name, err, scale)
    assert float(jnp.max(jnp.abs(ref["b1"]))) < 1e-15
    # the flags the audit plants slips with, all 0, leave the right pass as it is
    off = {slip: jnp.float64(0) for slip in ninja.SLIPS}
    same = ninja.backward(params, Xb, Yb, off)
    assert all(bool(jnp.array_equal(same[k], mine[k])) for k in mine)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_backprop_ninja_right_pass_passes_with_its_exact_zeros_at_many_points(dtype):
    # dlogit_maxes and db1 are 0 in exact arithmetic (checked here against jax.grad in
    # float64), so both sides are cancellation residue there; with the default tolerance
    # (atol 0) the audit must still pass the right pass at every element and point
    audit = pytest.importorskip("audit")
    ninja = load_example_module("backprop_ninja")
    X, Y, vocab = ninja.make_dataset(ninja.make_words(300))
    Xb, Yb = ninja.batch(X, Y, 16, key=jax.random.key(2))
    params = ninja.init_params(len(vocab), dtype, key=jax.random.key(3))

    def fwd(tap, p):
        return ninja.forward(tap, p, Xb, Yb)

    def back(p):
        return ninja.backward(p, Xb, Yb)

    with jax.enable_x64(True):
        wide = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        g = jax.grad(lambda p: ninja.forward(lambda name, v: v, p, Xb, Yb))(wide)
        assert float(jnp.max(jnp.abs(g["b1"]))) < 1e-15 < float(jnp.max(jnp.abs(g["W1"])))
    r = audit.check_backward(fwd, back, params, points=255, key=jax.random.key(0), fd=False)
    assert r.passed, [f["name"] for f in r.factors if not f["passed"]]
    assert r.counts["weights"]["fail"] == 0

    # a slip of the same size as the cancellation residue would pass; one of 1e-3 of the
    # upstream gradient in db1 does not
    def slipped(p):
        d = ninja.backward(p, Xb, Yb)
        return {**d, "b1": d["b1"] + 1e-3 * jnp.max(jnp.abs(d["hprebn"]))}

    bad = audit.check_backward(fwd, slipped, params, points=15, key=jax.random.key(0), fd=False)
    assert [f["name"] for f in bad.factors if not f["passed"]] == ["b1"]


def test_multiprocess_example_trains_the_same_on_one_process_and_on_two():
    line = rf"(\d) process\(es\), (\d) devices: bce ({NUMBER}) -> ({NUMBER}) in 50 steps, "
    line += rf"accuracy ({NUMBER})"
    one = re.fullmatch(line, run_example("multiprocess.py").strip())
    assert one and one.groups()[:2] == ("1", "1")
    # --launch starts two processes of two virtual CPU devices each: its session is killed
    # whole, so that neither outlives the test
    env = dict(os.environ, JAXBP_QUICK="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "multiprocess.py"), "--launch", "2"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.communicate()
    assert proc.returncode == 0, err
    # process 0 alone prints; the other lines are gloo's own
    printed = [s for s in out.splitlines() if "process(es)" in s]
    two = re.fullmatch(line, printed[0]) if len(printed) == 1 else None
    assert two and two.groups()[:2] == ("2", "4"), out
    # the same global batch and minibatches, so the same losses up to float32 sums' order
    for a, b in zip(one.groups()[2:], two.groups()[2:], strict=True):
        assert float(b) == pytest.approx(float(a), abs=2e-4)
    assert float(one[4]) < 0.5 * float(one[3])
