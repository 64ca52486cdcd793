"""jaxbp.sharding, fit(mesh=) and the audit's mesh= on 8 virtual CPU devices.

The device count is fixed when jax is imported, and this process imported it with one
device; the checks run in a fresh process (``tests/sharded_checks.py``) whose environment
sets ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before jax starts. Checks that
need one device only stay here.
"""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import jaxbp
from jaxbp.sharding import check_divisible

CHECKS = pathlib.Path(__file__).with_name("sharded_checks.py")


def test_eight_virtual_devices_match_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    run = subprocess.run(
        [sys.executable, str(CHECKS)], env=env, capture_output=True, text=True, timeout=600
    )
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert lines[-1] == "ok", run.stdout[-4000:]
    assert sum(line.startswith("checked: ") for line in lines) > 50


@pytest.mark.parametrize(
    ("n", "devices", "message"),
    [
        (10, 4, "batch 10 does not split over 4 devices; use a batch that is a multiple of 4 "
                "such as 8 or 12, or devices=2"),
        (3, 8, "batch 3 does not split over 8 devices; use a batch that is a multiple of 8 "
               "such as 8, or devices=3"),
        (7, 2, "batch 7 does not split over 2 devices; use a batch that is a multiple of 2 "
               "such as 6 or 8, or devices=1"),
    ],
)  # fmt: skip
def test_check_divisible_names_sizes_that_split(n, devices, message):
    with pytest.raises(ValueError) as e:
        check_divisible(n, devices)
    assert str(e.value) == message
    check_divisible(n * devices, devices)


def test_one_device_mesh_is_the_plain_fit():
    x, y = jaxbp.truth_table("xor", dtype=jnp.float32)
    p0 = jaxbp.init((2, 2, 1), key=jax.random.key(3), scale="normal")
    one = jaxbp.fit(p0, x, y, steps=50, learning_rate=2.0)
    meshed = jaxbp.fit(p0, x, y, steps=50, learning_rate=2.0, mesh=jaxbp.data_mesh(1))
    assert jnp.array_equal(one.losses, meshed.losses)


@pytest.mark.parametrize(
    ("devices", "exc", "message"),
    [
        (0, ValueError, "devices=0, expected an int >= 1"),
        (True, TypeError, "devices is bool, expected None, an int or a sequence of jax.Device"),
        ([], ValueError, "devices is an empty sequence"),
        (["cpu:0"], TypeError, "devices holds str, expected jax.Device entries"),
    ],
)  # fmt: skip
def test_data_mesh_bad_input(devices, exc, message):
    with pytest.raises(exc) as e:
        jaxbp.data_mesh(devices)
    assert message in str(e.value)


def test_data_mesh_more_devices_than_there_are():
    n = jax.device_count()
    with pytest.raises(ValueError) as e:
        jaxbp.data_mesh(n + 1)
    assert str(e.value).startswith(f"devices={n + 1} but JAX sees {n} ")
    assert f"use devices <= {n}, or for virtual CPU devices set XLA_FLAGS=" in str(e.value)


def test_fit_refuses_what_is_not_a_mesh():
    x, y = jaxbp.truth_table("xor", dtype=jnp.float32)
    p0 = jaxbp.init((2, 2, 1), key=jax.random.key(3))
    with pytest.raises(TypeError, match=r"mesh is int, expected a jax\.sharding\.Mesh"):
        jaxbp.fit(p0, x, y, steps=1, mesh=8)
