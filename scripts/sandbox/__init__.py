"""The sandbox wallet backend: a real HTTP server on 127.0.0.1 (Flask, SQLite behind it) that
implements docs/openapi.yaml exactly, plus an admin API for tests and demos (deny a card token,
mark a wallet out of funds, mint signed wallet codes, mark a merchant-QR payment paid, inject
faults).

    from scripts.sandbox import start_sandbox       # tests (the repository root on sys.path)
    with start_sandbox() as sandbox:                 # own process, free port, temporary SQLite file
        sandbox.url                                  # http://127.0.0.1:PORT
        sandbox.admin.deny("tok123")                 # admin handle
        sandbox.admin.faults(rate=0.3)               # 30% of terminal requests go wrong
"""

from .faults import KINDS as FAULT_KINDS
from .faults import FaultPlan
from .server import AdminClient, Sandbox, SandboxServer, start_sandbox

__all__ = ["FAULT_KINDS", "AdminClient", "FaultPlan", "Sandbox", "SandboxServer", "start_sandbox"]
