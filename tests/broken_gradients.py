"""Handwritten 2-2-1 gradients built from the note's chain factors, one deliberate mistake at a
time: the audit must name exactly the broken weights, with the right hint."""

import jax
import jax.numpy as jnp

from jaxbp.seed import seed_factors

SEED_NAMES = ["w11", "w12", "w21", "w22", "b1", "b2", "w31", "w32", "b3"]


def assemble(c):
    """Every dE/dw from the chain factors, as the note multiplies them."""
    out = c["dE/dA3"] * c["dA3/dz3"]
    h1 = out * c["dz3/dA1"] * c["dA1/dz1"]
    h2 = out * c["dz3/dA2"] * c["dA2/dz2"]
    return dict(
        w11=h1 * c["dz1/dw11"], w12=h1 * c["dz1/dw12"], b1=h1,
        w21=h2 * c["dz2/dw21"], w22=h2 * c["dz2/dw22"], b2=h2,
        w31=out * c["dz3/dw31"], w32=out * c["dz3/dw32"], b3=out,
    )  # fmt: skip


def as_tree(g):
    return [
        {
            "W": jnp.stack([jnp.stack([g["w11"], g["w12"]]), jnp.stack([g["w21"], g["w22"]])]),
            "b": jnp.stack([g["b1"], g["b2"]]),
        },
        {"W": jnp.stack([g["w31"], g["w32"]])[None], "b": jnp.stack([g["b3"]])},
    ]


def batched(mistake, name):
    def one(params, x, yt):
        c = dict(seed_factors(params, x, yt))
        return as_tree(mistake(c, x))

    def grad_fn(params, x, y):
        per = jax.vmap(one, in_axes=(None, 0, 0))(params, x, y)
        return jax.tree.map(lambda g: jnp.mean(g, axis=0), per)

    grad_fn.__name__ = name
    return grad_fn


def factor_mistake(key, value):
    def mistake(c, x):
        c[key] = value(c)
        return assemble(c)

    return mistake


def weight_mistake(edit):
    def mistake(c, x):
        g = assemble(c)
        edit(g, x)
        return g

    return mistake


def swap(g, x):
    g["w12"], g["w21"] = g["w21"], g["w12"]


def negate_w31(g, x):
    g["w31"] = -g["w31"]


def drop_w22(g, x):
    g["w22"] = 0 * g["w22"]


def nan_b2(g, x):
    g["b2"] = g["b2"] + jnp.where(x[0] > 0.5, jnp.nan, 0.0)


BROKEN = {
    # name: (mistake, broken weights, words the hint must contain)
    "dropped_half": (factor_mistake("dE/dA3", lambda c: 2 * c["dE/dA3"]), SEED_NAMES, "x2"),
    "sign_w31": (weight_mistake(negate_w31), ["w31"], "sign error"),
    "swapped_w12_w21": (weight_mistake(swap), ["w12", "w21"], "swapped indices"),
    "missing_dA1dz1": (
        factor_mistake("dA1/dz1", lambda c: jnp.ones_like(c["dA1/dz1"])),
        ["w11", "w12", "b1"],
        "missing the activation derivative dA1/dz1",
    ),
    "missing_dA3dz3": (
        factor_mistake("dA3/dz3", lambda c: jnp.ones_like(c["dA3/dz3"])),
        SEED_NAMES,
        "missing the activation derivative dA3/dz3",
    ),
    "missing_term_w22": (weight_mistake(drop_w22), ["w22"], "a missing term"),
    "nan_b2": (weight_mistake(nan_b2), ["b2"], "NaN/Inf in the handwritten gradient"),
}
