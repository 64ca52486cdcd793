"""Audit custom derivative rules: a stable softplus and a layer norm, one with a slip.

JAX differentiates a ``jax.custom_vjp`` function through its rule, never its code, so
``jax.grad`` of a loss that calls it cannot tell a wrong rule from a right one.
``audit.check_vjp`` compares the rule with autodiff of the primal code instead, element by
element of every input, at many points around the given one.

Run: ``python examples/custom_vjp.py``. It prints each audit's verdict and, for the layer
norm whose rule drops the mean's term, which input's elements disagree. It exits 0 when the
two right rules pass and the slip is caught, 1 otherwise. The same audit from the shell:
``jaxbp-audit --vjp examples/custom_vjp.py:slipped_layer_norm --inputs
examples/custom_vjp.py:layer_norm_inputs``.
"""

import functools
import os
import sys

import jax
import jax.numpy as jnp

import audit


@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)  # log(1 + e^x), stable for any x


def _softplus_fwd(x):
    return softplus(x), x


def _softplus_bwd(x, g):
    return (g * jax.nn.sigmoid(x),)  # d/dx log(1 + e^x) = e^x / (1 + e^x)


softplus.defvjp(_softplus_fwd, _softplus_bwd)


def layer_norm(x, gain, bias, eps=1e-5):
    """``x: (n,)``; returns ``gain * (x - mean) / sqrt(var + eps) + bias``, ``(n,)``."""
    xc = x - jnp.mean(x)
    return gain * xc / jnp.sqrt(jnp.mean(xc * xc) + eps) + bias


def _layer_norm_bwd(res, dy, *, drop_mean_term: bool):
    """dx = (g dy - mean(g dy) - xhat mean(g dy xhat)) / s, dgain = dy xhat, dbias = dy."""
    x, gain = res
    xc = x - jnp.mean(x)
    s = jnp.sqrt(jnp.mean(xc * xc) + 1e-5)
    xhat = xc / s
    gdy = gain * dy
    mean_term = 0.0 if drop_mean_term else jnp.mean(gdy)  # the slip: d(mean)/dx forgotten
    return (gdy - mean_term - xhat * jnp.mean(gdy * xhat)) / s, dy * xhat, dy


def layer_norm_op(*, drop_mean_term: bool = False):
    """``layer_norm`` with its hand-derived VJP as a ``jax.custom_vjp`` rule."""
    op = jax.custom_vjp(functools.partial(layer_norm, eps=1e-5))
    op.defvjp(
        lambda x, gain, bias: (op(x, gain, bias), (x, gain)),
        functools.partial(_layer_norm_bwd, drop_mean_term=drop_mean_term),
    )
    return op


# the two layer norm rules as module-level names, for the command line:
#   jaxbp-audit --vjp examples/custom_vjp.py:slipped_layer_norm \
#       --inputs examples/custom_vjp.py:layer_norm_inputs
right_layer_norm = layer_norm_op()
slipped_layer_norm = layer_norm_op(drop_mean_term=True)


def layer_norm_inputs(n: int = 32) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The point the layer norms are audited at: ``(x, gain, bias)``, each ``(n,)``."""
    kx, kg, kb = jax.random.split(jax.random.key(1), 3)
    x = 3 * jax.random.normal(kx, (n,))
    gain, bias = 1 + 0.1 * jax.random.normal(kg, (n,)), 0.1 * jax.random.normal(kb, (n,))
    return x, gain, bias


def softplus_inputs(n: int = 32) -> tuple[jax.Array]:
    """The point softplus is audited at: ``(x,)``, ``x: (n,)``, the layer norm's ``x``."""
    return layer_norm_inputs(n)[:1]


def audits(n: int, points: int, key: jax.Array) -> dict[str, audit.AuditResult]:
    """Each rule audited at ``points`` random points around one ``(n,)`` input."""
    x, gain, bias = layer_norm_inputs(n)
    kw = dict(points=points, key=key)
    return {
        "softplus": audit.check_vjp(softplus, x, **kw),
        "layer norm": audit.check_vjp(right_layer_norm, x, gain, bias, **kw),
        "layer norm, mean term dropped": audit.check_vjp(slipped_layer_norm, x, gain, bias, **kw),
    }


if __name__ == "__main__":
    quick = os.environ.get("JAXBP_QUICK") == "1"
    results = audits(32, 31 if quick else 1023, jax.random.key(0))
    for name, result in results.items():
        print(f"{name}: {audit.verdict_line(result)}")
    for name, result in results.items():
        if not result.passed:
            print(f"\n{name}:\n{audit.rules.failure_message(result)}")
    right, slipped = list(results.values())[:2], results["layer norm, mean term dropped"]
    sys.exit(0 if all(r.passed for r in right) and not slipped.passed else 1)
