"""``jaxbp-audit --vjp``, ``--jvp`` and ``--backward``: a custom derivative rule or a
hand-written backward pass in the user's own file, audited from the command line.

``--vjp`` and ``--jvp`` name a ``jax.custom_vjp`` / ``jax.custom_jvp`` function, audited with
:func:`audit.check_vjp` / :func:`audit.check_jvp`; ``--backward`` names a forward and a
backward pass, audited with :func:`audit.check_backward`; ``--inputs`` names the point. The
network options of ``--grad`` do not apply, and giving one with these is a usage error.

Example:
    $ jaxbp-audit --vjp examples/custom_vjp.py:softplus \\
          --inputs examples/custom_vjp.py:softplus_inputs --no-report
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from audit.fd_verdict import REFERENCES

__all__ = ["NETWORK_OPTIONS", "add_options", "audit_function", "settle", "unset_namespace"]

# dest -> flag of every option that only a network audit (--grad) reads
NETWORK_OPTIONS = {
    "sizes": "--sizes",
    "activation": "--activation",
    "loss": "--loss",
    "output_activation": "--output-activation",
    "grad": "--grad",
    "dtype": "--dtype",
    "steps": "--steps",
    "lr": "--lr",
    "data": "--data",
    "devices": "--devices",
}

EPILOG = """\
--vjp and --jvp take MODULE:FUNCTION or path/to/file.py:FUNCTION naming a function decorated
with @jax.custom_vjp or @jax.custom_jvp: its rule is compared with autodiff of its own code
(and finite differences), element by element of every argument. --backward takes
MODULE:FORWARD,BACKWARD or path/to/file.py:FORWARD,BACKWARD: forward(tap, params, *inputs)
returns the loss and marks each intermediate with tap(name, value); backward(params, *inputs)
returns {name: d<name>} by hand; the first intermediate in backward order that disagrees is
named. --inputs MODULE:NAME or path/to/file.py:NAME gives the point: NAME is a function of no
arguments that returns the arguments as a tuple (params first for --backward), or such a
tuple; --points random points around it are audited as well. The network options (--sizes,
--activation, --loss, --output-activation, --grad, --dtype, --steps, --lr, --data, --devices)
do not apply to them.
"""


class _Unset:
    """Stands for a network option that the command line did not give."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


def add_options(parser: argparse.ArgumentParser) -> None:
    """Adds the ``--vjp``, ``--jvp``, ``--backward`` and ``--inputs`` options to ``parser``."""
    group = parser.add_argument_group("custom rules and backward passes (instead of --grad)")
    which = group.add_mutually_exclusive_group()
    which.add_argument(
        "--vjp", metavar="SPEC",
        help="audit the rule of a jax.custom_vjp function, MODULE:FUNCTION or path.py:FUNCTION, "
        "against autodiff of its own code",
    )  # fmt: skip
    which.add_argument(
        "--jvp", metavar="SPEC",
        help="the same for a jax.custom_jvp function",
    )  # fmt: skip
    which.add_argument(
        "--backward", metavar="SPEC",
        help="audit a hand-written backward pass, MODULE:FORWARD,BACKWARD or "
        "path.py:FORWARD,BACKWARD, intermediate by intermediate",
    )  # fmt: skip
    group.add_argument(
        "--reference", choices=REFERENCES, default="autodiff",
        help="which opinion decides, here and for a network audit: autodiff (jax.grad, or "
        "autodiff of the primal or forward code; default), fd (float64 central differences "
        "of the loss, with their own error estimate) or both",
    )  # fmt: skip
    group.add_argument(
        "--inputs", metavar="SPEC",
        help="the point to audit at: MODULE:NAME or path.py:NAME, a function of no arguments "
        "returning the arguments as a tuple (params first for --backward), or such a tuple",
    )  # fmt: skip


def unset_namespace() -> argparse.Namespace:
    """A namespace to parse into in which every network option is unset: argparse fills in
    a default only for an attribute the namespace lacks, so :func:`settle` can tell a given
    option from a default one."""
    return argparse.Namespace(**dict.fromkeys(NETWORK_OPTIONS, _UNSET))


def _which(args: argparse.Namespace) -> str | None:
    return next((f"--{k}" for k in ("vjp", "jvp", "backward") if getattr(args, k)), None)


def settle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    """Gives every unset network option its default; returns a usage problem in one line
    (a network option with ``--vjp``/``--jvp``/``--backward``, ``--inputs`` missing or alone),
    or None."""
    given = [flag for dest, flag in NETWORK_OPTIONS.items() if getattr(args, dest) is not _UNSET]
    for dest in NETWORK_OPTIONS:
        if getattr(args, dest) is _UNSET:
            setattr(args, dest, parser.get_default(dest))
    which = _which(args)
    if which is None:
        if args.inputs is not None:
            return (
                "--inputs gives the point for --vjp, --jvp or --backward, but none of them is given"
            )
        return None
    spec = getattr(args, which[2:])
    if given:
        them = "it" if len(given) == 1 else "them"
        verb = "is" if len(given) == 1 else "are"
        return (
            f"{' and '.join(given)} {verb} for a network audit (--grad), not for {which} {spec}, "
            f"which is audited at the point --inputs gives; drop {them}"
        )
    if args.inputs is None:
        what = "(params, *inputs), params first" if which == "--backward" else "its arguments"
        return (
            f"{which} {spec} needs --inputs MODULE:NAME or path.py:NAME: a function of no "
            f"arguments returning {what} as a tuple, or such a tuple"
        )
    return None


def _check_arity(
    fn: Callable[..., Any], args: Sequence[Any], inputs: Sequence[Any], what: str, spec: str
) -> None:
    """``fn(*args)`` binds, else a one-line error saying how many arguments ``--inputs``
    gave (``args`` is ``inputs`` with a leading ``tap`` for a forward pass)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # no signature to check: the audit's own call says what is wrong
    try:
        sig.bind(*args)
    except TypeError as e:
        n = len(inputs)
        raise ValueError(
            f"--inputs {spec} gives {n} argument{'' if n == 1 else 's'}, but {what} takes "
            f"{sig} ({e})"
        ) from None


def audit_function(args: argparse.Namespace) -> Any:
    """Loads what ``--vjp``/``--jvp``/``--backward`` and ``--inputs`` name and audits it
    with the shared options (``--points``, ``--seed``, ``--rtol``, ``--atol``, ``--no-fd``,
    ``--memory``).

    Returns:
      The :class:`audit.AuditResult`, its ``config`` naming the function, the inputs and
      the seed.

    Raises:
      LoadError, ValueError, TypeError: what is named cannot be loaded or audited, told in
        one line.
      UserCodeError: the user's code raised.
    """
    import jax

    import audit
    from audit.loader import load_backward, load_inputs, load_rule

    which = _which(args)
    spec = getattr(args, which[2:])
    modules: dict[str, Any] = {}  # a file named twice runs once
    # the options every check_* takes, in one place
    options = dict(
        points=args.points, key=jax.random.key(args.seed), rtol=args.rtol, atol=args.atol,
        fd=args.fd, memory=args.memory, reference=args.reference,
    )  # fmt: skip
    if which == "--backward":
        forward, backward = load_backward(spec, modules=modules)
        inputs = load_inputs(args.inputs, modules=modules)
        if not inputs:
            raise ValueError(
                f"--inputs {args.inputs} gives no arguments; --backward needs (params, *inputs), "
                "params first"
            )
        for fn, call in ((forward, (None, *inputs)), (backward, inputs)):
            _check_arity(fn, call, inputs, fn.__name__, args.inputs)
        result = audit.check_backward(forward, backward, *inputs, **options)
    else:
        f = load_rule(spec, which[2:], modules=modules)
        inputs = load_inputs(args.inputs, modules=modules)
        _check_arity(f.fun, inputs, inputs, spec, args.inputs)
        check = audit.check_vjp if which == "--vjp" else audit.check_jvp
        result = check(f, *inputs, **options)
    result.config.update(function=spec, inputs=args.inputs, seed=args.seed)
    return result
