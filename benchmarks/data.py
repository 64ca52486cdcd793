"""Random parameters and data drawn with NumPy.

Drawing with ``jax.random`` compiles a program for every new shape (about a second each on
two busy cores), which would be timed along with what the benchmarks measure, or slow the
quick mode down; NumPy draws cost no compilation.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from audit.points import PointGroup
from jaxbp.params import Params

__all__ = ["mlp_data", "normal", "perturbed", "points"]


def normal(shape: tuple[int, ...], *, seed: int, scale: float = 1.0) -> jnp.ndarray:
    """A float32 array of standard normal draws times ``scale``."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)


def _params(rng: np.random.Generator, sizes, lead: tuple[int, ...], scale: bool) -> Params:
    out = []
    for n_in, n_out in itertools.pairwise(sizes):
        w = rng.standard_normal((*lead, n_out, n_in)) / (np.sqrt(n_in) if scale else 1.0)
        b = np.zeros((*lead, n_out)) if scale else rng.standard_normal((*lead, n_out))
        out.append({"W": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)})
    return out


def mlp_data(
    sizes, batch: int, *, seed: int = 0, scale: bool = True
) -> tuple[Params, jnp.ndarray, jnp.ndarray]:
    """float32 ``(params, x: (batch, n_0) normal, y: (batch, n_L) uniform)``.

    Weights are normal with variance ``1 / n_in`` and biases zero; with ``scale=False`` both
    are standard normal, as ``jaxbp.init(..., scale="normal")`` draws them.
    """
    rng = np.random.default_rng(seed)
    params = _params(rng, sizes, (), scale=scale)
    x = jnp.asarray(rng.standard_normal((batch, sizes[0])), jnp.float32)
    y = jnp.asarray(rng.uniform(size=(batch, sizes[-1])), jnp.float32)
    return params, x, y


def points(sizes, n: int, *, batch: int = 3, seed: int = 0) -> PointGroup:
    """``n`` float32 audit points drawn as :func:`audit.points.random_points` draws them:
    standard normal parameters and inputs, uniform targets, ``batch`` examples each."""
    rng = np.random.default_rng(seed)
    params = _params(rng, sizes, (n,), scale=False)
    x = jnp.asarray(rng.standard_normal((n, batch, sizes[0])), jnp.float32)
    y = jnp.asarray(rng.uniform(size=(n, batch, sizes[-1])), jnp.float32)
    labels = tuple(f"random draw {i}" for i in range(n))
    return PointGroup(("random",) * n, params, x, y, labels)


def perturbed(params: Params, n: int, *, seed: int, spread: float = 0.5) -> Params:
    """``params`` and ``n - 1`` perturbations of it, stacked on a leading ``(n,)`` axis.

    The perturbations are drawn as :func:`audit.check_gradients` draws its extra points: each
    leaf plus ``spread`` times its RMS (1 for an all-zero leaf) times standard normal noise.
    Point 0 is ``params`` itself. Leaves are float32 NumPy arrays, on the host, so that a loop
    over the points can slice them without a device call each.
    """
    rng = np.random.default_rng(seed)

    def stack(a) -> np.ndarray:
        a = np.asarray(a, np.float32)
        rms = np.sqrt(np.mean(a * a)) if np.any(a) else np.float32(1.0)
        noise = rng.standard_normal((n - 1, *a.shape), dtype=np.float32)
        return np.concatenate([a[None], a + np.float32(spread) * rms * noise])

    return jax.tree.map(stack, params)
