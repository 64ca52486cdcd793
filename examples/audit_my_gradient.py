"""Audit your own handwritten gradients against jax.grad, weight by weight.

``examples/my_gradients.py`` holds two handwritten gradient functions for the note's 2-2-1
sigmoid network with MSE: ``correct_grads`` and ``buggy_grads`` (dE/dw12 and dE/dw21 stored
in each other's places, on purpose). This script runs ``audit.audit_network`` on each: at
the seed's worked example, at random draws of parameters, inputs and targets, and along a
gradient-descent run on XOR, every weight is compared with ``jax.grad`` (float64 reference,
finite differences as a third opinion). It prints ``audit.format_table`` of each result, one
verdict line per function naming the weights that disagree, and writes each full report
(``report.json``, ``report.md``, ``report.html``, plots) with ``audit.write_report``.

Run it with::

    python examples/audit_my_gradient.py                 # reports under audit-report/
    python examples/audit_my_gradient.py /tmp/reports    # reports elsewhere
    JAXBP_QUICK=1 python examples/audit_my_gradient.py   # fewer points and steps

The same audit from the command line, one function at a time::

    jaxbp-audit --grad examples/my_gradients.py:buggy_grads
"""

from __future__ import annotations

import os
import pathlib
import sys

import jax
from my_gradients import buggy_grads, correct_grads  # beside this file

import audit
import jaxbp

FULL = dict(points=64, steps=5000)
QUICK = dict(points=8, steps=100)


def audit_one(grad_fn, *, points: int, steps: int) -> audit.AuditResult:
    """The audit of one ``grad_fn(params, x, y) -> grads`` of the 2-2-1 sigmoid/MSE net on XOR."""
    return audit.audit_network(
        grad_fn,
        sizes=(2, 2, 1),
        activation="sigmoid",
        loss="mse",
        data=jaxbp.truth_table("xor"),
        data_name="xor",
        points=points,
        seed=0,
        steps=steps,
        learning_rate=2.0,
    )


def verdict(name: str, result: audit.AuditResult) -> str:
    """One line: the function's name, PASSED or FAILED, and each failing weight's hint."""
    if result.passed:
        return f"{name}: PASSED, every weight agrees with jax.grad"
    failing = [w for w in result.to_dict()["weights"] if not w["passed"]]
    named = "; ".join(f"{w['name']} ({w['hint'] or 'no hint'})" for w in failing)
    return f"{name}: FAILED at {named}"


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)  # float64 references and finite differences
    sizes = QUICK if os.environ.get("JAXBP_QUICK") == "1" else FULL
    out_dir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "audit-report")

    verdicts = []
    for grad_fn in (correct_grads, buggy_grads):
        name = grad_fn.__name__
        result = audit_one(grad_fn, **sizes)
        print(f"===== {name} =====")
        print(audit.format_table(result))
        files = audit.write_report(result, out_dir / name)
        print(f"report: {files[0]}\n")
        verdicts.append(verdict(name, result))
    print("\n".join(verdicts))
