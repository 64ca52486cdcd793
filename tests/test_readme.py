"""The README's outputs for custom rules and backward passes, from Python and from the command
line, are what the code prints."""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import audit

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


def _block_after(marker: str, lang: str = "") -> str:
    start = README.index(marker)
    match = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, start)
    return match.group(1)


def test_the_backward_pass_example_raises_what_the_readme_shows():
    code = _block_after("A hand-written backward pass: mark", "python")
    shown = _block_after("raises\n\n```", "").strip()
    with jax.enable_x64(False), pytest.raises(AssertionError) as info:  # as a user runs it
        exec(code, {"jax": jax, "jnp": jnp, "audit": audit})
    assert f"AssertionError: {info.value}" == shown


def test_the_custom_rule_message_is_what_the_readme_shows():
    from examples.custom_vjp import layer_norm_op

    shown = _block_after("on the example's 32-element inputs raises:").strip()
    with jax.enable_x64(False):  # as a user runs it
        _raise_the_readme_example(layer_norm_op, shown)


def _raise_the_readme_example(layer_norm_op, shown):
    kx, kg, kb = jax.random.split(jax.random.key(1), 3)
    x = 3 * jax.random.normal(kx, (32,))
    gain, bias = 1 + 0.1 * jax.random.normal(kg, (32,)), 0.1 * jax.random.normal(kb, (32,))
    with pytest.raises(AssertionError) as info:
        audit.assert_vjp(layer_norm_op(drop_mean_term=True), x, gain, bias, key=jax.random.key(0))
    assert f"AssertionError: {info.value}" == shown


def test_the_command_line_rule_audit_prints_what_the_readme_shows():
    shown = _block_after("whose rule drops the mean's term from `dx` (`time` varies").rstrip()
    command, *expected = shown.splitlines()
    prog, *args = shlex.split(command.removeprefix("$ "))
    assert prog == "jaxbp-audit"
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, JAXBP_NO_CACHE="1")  # nothing written to the user's cache folder
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "audit", *args], cwd=root, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    printed = proc.stdout.rstrip().splitlines()

    def timeless(lines):  # the one line that varies from run to run
        return [re.sub(r"^time: \d+\.\d+ s$", "time: <varies>", line) for line in lines]

    assert timeless(printed) == timeless(expected)


def test_the_reference_example_prints_what_the_readme_shows(capsys):
    from examples.custom_vjp import layer_norm_op

    code = _block_after("Which opinion decides is `reference=`", "python")
    shown = _block_after("prints, on the same 32-element inputs,").strip()
    with jax.enable_x64(False):  # as a user runs it, on the inputs of the example above
        kx, kg, kb = jax.random.split(jax.random.key(1), 3)
        x = 3 * jax.random.normal(kx, (32,))
        gain = 1 + 0.1 * jax.random.normal(kg, (32,))
        bias = 0.1 * jax.random.normal(kb, (32,))
        names = dict(jax=jax, jnp=jnp, audit=audit, layer_norm_op=layer_norm_op)
        exec(code, {**names, "x": x, "gain": gain, "bias": bias})
    assert capsys.readouterr().out.strip() == shown


def test_the_assert_gradients_message_is_what_the_readme_shows():
    shown = _block_after("its docstring):").strip()

    def loss_fn(p, x, y):
        return jnp.mean((x @ p["w"] - y) ** 2)

    def grad_fn(p, x, y):  # the docstring's slip: the factor 2 left out
        return {"w": x.T @ (x @ p["w"] - y) / y.size}

    with jax.enable_x64(False), pytest.raises(AssertionError) as info:  # as a user runs it
        kw, kx, ky = jax.random.split(jax.random.key(0), 3)
        w = jax.random.normal(kw, (3, 2))
        x, y = jax.random.normal(kx, (8, 3)), jax.random.normal(ky, (8, 2))
        audit.assert_gradients(grad_fn, loss_fn, {"w": w}, x, y, points=15, key=kw)
    assert f"AssertionError: {info.value}" == shown


def test_the_check_grads_message_in_the_side_by_side_table_is_what_it_prints():
    # jax's own checker on the slipped layer norm: one projected scalar, as the table quotes
    from jax.test_util import check_grads

    from examples.custom_vjp import layer_norm_inputs, layer_norm_op

    table = README[README.index("### Three kinds of handwritten derivative") :]
    row = next(ln for ln in table.splitlines() if ln.startswith("| what a failure says |"))
    quoted = re.findall(r"`(ACTUAL|DESIRED): array\((-?[0-9.]+)\)`", row)
    assert [q[0] for q in quoted] == ["ACTUAL", "DESIRED"]
    with jax.enable_x64(False), pytest.raises(AssertionError) as info:
        check_grads(layer_norm_op(drop_mean_term=True), layer_norm_inputs(), 1, modes=["rev"])
    said = str(info.value)
    assert "VJP cotangent projection" in said and "VJP cotangent projection" in row
    for which, value in quoted:
        assert f"{which}: array({value}, dtype=float32)" in said
    refused = re.search(r"\(`(TypeError: can't apply forward-mode[^`]*)`\)", README).group(1)
    with jax.enable_x64(False), pytest.raises(TypeError) as info:
        check_grads(layer_norm_op(), layer_norm_inputs(), 1)
    assert f"TypeError: {info.value}" == refused
