"""audit: check handwritten gradients against jax.grad, weight by weight and factor by factor.

``audit_network`` audits a jaxbp MLP (the seed's formulas, the general closed form or your own
``grad_fn``); ``check_gradients`` audits any ``grad_fn`` on any pytree against ``jax.grad`` of
any scalar loss. Both return an :class:`AuditResult` holding what ``report.json`` holds.
"""

from audit.compare import DEFAULT_TOLERANCES, Tolerance, default_tolerance
from audit.engine import audit_network, check_gradients
from audit.result import AuditResult

__all__ = [
    "DEFAULT_TOLERANCES",
    "AuditResult",
    "Tolerance",
    "audit_network",
    "check_gradients",
    "default_tolerance",
]
