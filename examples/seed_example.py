"""The seed note's 2-2-1 network with numbers: forward pass, chain factors, gradients, one update.

The network and its names are the note's (see ``/work/shared/seed/README.md``): inputs x1, x2,
hidden neurons 1 and 2, output neuron 3, sigmoid everywhere, ``E = 1/2 (A3 - yt)^2``. The
numbers are the project's shared worked example, ``jaxbp.seed_example()``:

    x1 = 0.05, x2 = 0.10, yt = 0.01
    w11 = 0.15, w12 = 0.20, w21 = 0.25, w22 = 0.30, w31 = 0.40, w32 = 0.45
    b1 = 0.35, b2 = 0.35, b3 = 0.60   (the note writes no biases; these are nonzero so that
                                       the "& bias" of its update has something to move)
    eta = 0.5                         (the learning rate of the update step)

The script prints, in the note's order:

1. the forward pass z1, A1, z2, A2, z3, A3, E (``jaxbp.seed_forward``);
2. every chain factor, numbered (1)-(3) as in the note, beside JAX's derivative of the same
   sub-expression (``jaxbp.seed_factors`` vs ``jaxbp.seed_factors_autodiff``);
3. every dE/dw and dE/db, (5) being the note's dE/dw31, beside ``jax.grad``'s
   (``jaxbp.seed_grads`` vs ``jaxbp.autodiff_grads``);
4. one "updating weights & bias" step ``p <- p - eta dE/dp``, old and new values, and the
   new E, which is lower.

Everything runs in float64. Run it with::

    python examples/seed_example.py

``JAXBP_QUICK=1`` changes nothing here: the script is one example and one step either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jaxbp

ETA = 0.5

# the note's numbering of the chain factors; the others it writes without a number
FACTOR_TAGS = {"dE/dA3": "(1)", "dA3/dz3": "(2)", "dz3/dw31": "(3)"}
GRAD_TAGS = {"dE/dw31": "(5)"}
# the order the note derives the gradients in; the biases, left implicit there, come last
NOTE_ORDER = ("w31", "w32", "w11", "w21", "w12", "w22", "b3", "b1", "b2")


def seed_problem(dtype=jnp.float64) -> tuple[jaxbp.Params, jax.Array, jax.Array]:
    """The note's network and its one example: ``(params, x: (2,), yt: (1,))``."""
    params, x, y = jaxbp.seed_example(dtype=dtype)
    return params, x[0], y[0]


def update(params: jaxbp.Params, grads: jaxbp.Params, eta: float) -> jaxbp.Params:
    """The note's "updating weights & bias": ``p <- p - eta dE/dp`` on every leaf."""
    return jax.tree.map(lambda p, g: p - eta * g, params, grads)


def comparison_lines(
    mine: dict[str, float], theirs: dict[str, float], tags: dict[str, str]
) -> list[str]:
    """One line per name: tag, name, handwritten value, JAX's value, absolute difference."""
    lines = []
    for name, value in mine.items():
        other = theirs[name]
        lines.append(
            f"  {tags.get(name, ''):>3} {name:<9} handwritten {value: .12f}"
            f"   jax {other: .12f}   |diff| {abs(value - other):.1e}"
        )
    return lines


def in_note_order(named: dict[str, float]) -> dict[str, float]:
    """``{"dE/dw31": ..., ...}`` from :func:`jaxbp.to_named`'s dict, in the note's order."""
    return {f"dE/d{name}": named[name] for name in NOTE_ORDER}


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    params, x, yt = seed_problem()
    xb, yb = x[None, :], yt[None, :]  # a batch of one: the batch-mean loss is the note's E

    print("The note's 2-2-1 sigmoid network, one example (float64)")
    print(f"  x1 = {float(x[0]):g}, x2 = {float(x[1]):g}, yt = {float(yt[0]):g}, eta = {ETA:g}")
    print("  " + ", ".join(f"{k} = {v:g}" for k, v in jaxbp.to_named(params).items()))

    print("\nForward pass (jaxbp.seed_forward)")
    for name, value in jaxbp.seed_forward(params, x, yt).items():
        print(f"  {name:<3} = {float(value):.12f}")

    print("\nChain factors (jaxbp.seed_factors vs jaxbp.seed_factors_autodiff)")
    mine = {k: float(v) for k, v in jaxbp.seed_factors(params, x, yt).items()}
    theirs = {k: float(v) for k, v in jaxbp.seed_factors_autodiff(params, x, yt).items()}
    print("\n".join(comparison_lines(mine, theirs, FACTOR_TAGS)))
    chain = mine["dE/dA3"] * mine["dA3/dz3"] * mine["dz3/dw31"]
    print(
        f"  (4) dE/dw31 = dE/dA3 * dA3/dz3 * dz3/dw31 = {mine['dE/dA3']:.6f} * "
        f"{mine['dA3/dz3']:.6f} * {mine['dz3/dw31']:.6f} = {chain:.12f}"
    )

    print("\nGradients (jaxbp.seed_grads vs jax.grad through jaxbp.autodiff_grads)")
    grads = jaxbp.seed_grads(params, xb, yb)
    mine = in_note_order(jaxbp.to_named(grads))
    theirs = in_note_order(jaxbp.to_named(jaxbp.autodiff_grads(params, xb, yb)))
    print("\n".join(comparison_lines(mine, theirs, GRAD_TAGS)))

    print(f"\nUpdating weights & bias: p <- p - {ETA} * dE/dp")
    new_params = update(params, grads, ETA)
    old, new = jaxbp.to_named(params), jaxbp.to_named(new_params)
    for name in NOTE_ORDER:
        print(f"  {name:<3} {old[name]: .12f} -> {new[name]: .12f}")
    E_old = float(jaxbp.seed_forward(params, x, yt)["E"])
    E_new = float(jaxbp.seed_forward(new_params, x, yt)["E"])
    if not E_new < E_old:
        raise SystemExit(f"E did not fall: {E_old:.12f} -> {E_new:.12f}; is eta too large?")
    print(f"\nE fell from {E_old:.12f} to {E_new:.12f}")
