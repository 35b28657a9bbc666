"""The sandbox wallet backend: a real HTTP server on 127.0.0.1 (Flask, SQLite behind it) that
implements docs/openapi.yaml exactly, plus an admin API for tests and demos (deny a card token,
mark a wallet out of funds, mint signed wallet codes, pay a merchant code as the wallet app would,
inject faults).

    from sandbox import start_sandbox
    with start_sandbox() as sandbox:                 # own process, free port, temporary SQLite file
        sandbox.url                                  # http://127.0.0.1:PORT
        sandbox.admin.deny("tok123")                 # admin handle
        sandbox.admin.faults(rate=0.3)               # 30% of terminal requests go wrong

It ships in the walletpos distribution (needs the `sandbox` extra: Flask, PyYAML, jsonschema-rs) so
that `walletpos demo` works from an installed wheel; `walletpos-sandbox` is its command. It plays
the other side of the terminal's contract, so it may use the terminal's pure modules that define
that contract (the signed-request scheme `terminal.wire`, the journal's canonical record
`terminal.journal`, card-data sealing `terminal.security`, `terminal.errors`); nothing in
`terminal` imports it except the demo, lazily.
"""

from .faults import KINDS as FAULT_KINDS
from .faults import FaultPlan
from .server import AdminClient, Sandbox, SandboxServer, start_sandbox

__all__ = ["FAULT_KINDS", "AdminClient", "FaultPlan", "Sandbox", "SandboxServer", "start_sandbox"]
