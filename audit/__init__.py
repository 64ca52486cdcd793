"""audit: check handwritten gradients against jax.grad, weight by weight and factor by factor.

``audit_network`` audits a jaxbp MLP (the seed's formulas, the general closed form or your own
``grad_fn``); ``check_gradients`` audits any ``grad_fn`` on any pytree against ``jax.grad`` of
any scalar loss; ``check_vjp``/``check_jvp`` audit a ``jax.custom_vjp``/``jax.custom_jvp``
rule against autodiff of its primal code, ``check_backward`` every intermediate of a
hand-written backward pass; ``assert_gradients``, ``assert_vjp`` and ``assert_backward`` do
it as one line of a test. All take ``reference=`` (one of :data:`REFERENCES`): whether
autodiff, float64 finite differences, or both decide the verdict. All return an
:class:`AuditResult` holding what ``report.json`` holds; ``format_table`` renders it for a
terminal and ``write_report`` writes the report folder.
"""

from audit.asserts import assert_gradients
from audit.backward import assert_backward, check_backward
from audit.cells import verdict_line
from audit.check import check_gradients
from audit.compare import DEFAULT_TOLERANCES, Tolerance, default_tolerance
from audit.engine import audit_network
from audit.fd_verdict import REFERENCES
from audit.report import ReportError, write_report
from audit.result import AuditResult
from audit.rules import assert_vjp, check_jvp, check_vjp
from audit.table import format_table

__all__ = [
    "DEFAULT_TOLERANCES",
    "REFERENCES",
    "AuditResult",
    "ReportError",
    "Tolerance",
    "assert_backward",
    "assert_gradients",
    "assert_vjp",
    "audit_network",
    "check_backward",
    "check_gradients",
    "check_jvp",
    "check_vjp",
    "default_tolerance",
    "format_table",
    "verdict_line",
    "write_report",
]
