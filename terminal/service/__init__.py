"""The one way in: the operations the TUI, the CLI, the gate loop, the benchmarks and the tests use.

A `Service` is built by `terminal.bootstrap.bootstrap` from config plus injectable parts; it holds
the parts (payments, the back office, the checkout, the sync worker) and offers what the user
interfaces need. Screens and commands hold a `Service` and go through it: never to a journal, a
checkout or a backend client directly. Payments themselves follow one path (`terminal.payments`).

The operations are grouped by who uses them, one module each: `selling` (the cashier's checkout),
`records` (back office, status, the journal's checks), `technician` (over the records) and
`transit`, over `base` (the
parts, the basics, operators and the backend link).
"""

from __future__ import annotations

from terminal.service.base import QueueSummary, ServiceBase
from terminal.service.selling import SellingOps
from terminal.service.technician import TechnicianOps
from terminal.service.transit import TransitOps

__all__ = ["QueueSummary", "Service", "ServiceBase"]


class Service(SellingOps, TechnicianOps, TransitOps):
    """The terminal's operations over its parts (see `terminal.bootstrap` for how they are built)."""
