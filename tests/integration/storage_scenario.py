"""Run inside a private mount namespace (see test_storage_failures.py): the data directory is a
real, tiny tmpfs (full disk) or a read-only bind mount. Prints one JSON object with what happened."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from terminal.bootstrap import bootstrap
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts


def pay(svc, n: int) -> dict:
    request = PaymentRequest(Money(100 + n, svc.currency), Method.CARD, card_token=f"tok{n % 3}")
    result = svc.pay(request, CardFacts(scheme="visa", masked_pan="476173******0119"))
    return {"outcome": result.outcome, "reasons": list(result.reasons), "message": result.message,
            "journaled": result.row is not None}


def full_disk(data: Path) -> dict:
    svc = bootstrap(config_path=None, data_dir=data, env={})
    before = [pay(svc, i) for i in range(3)]
    filler = data / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)  # take every free byte of the tmpfs
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    during = [pay(svc, 100 + i) for i in range(40)]
    rows_during = svc.journal.head().counts()["total"]
    filler.unlink()
    after = [pay(svc, 200)]
    report = svc.verify_journal()
    counts = svc.journal.head().counts()
    svc.close()
    return {"before": before, "during": during, "after": after, "verify_ok": report.ok,
            "rows_during": rows_during, "total_rows": counts["total"]}


def read_only(data: Path, phase: str) -> dict:
    if phase == "prepare":
        svc = bootstrap(config_path=None, data_dir=data, env={})
        results = [pay(svc, i) for i in range(2)]
        svc.close()
        return {"prepared": results}
    svc = bootstrap(config_path=None, data_dir=data, env={})
    status = svc.status()
    results = [pay(svc, i) for i in range(3)]
    svc.close()
    return {"status_storage": status["storage"], "approvals": status.get("approvals"), "results": results}


if __name__ == "__main__":
    scenario, data = sys.argv[1], Path(sys.argv[2])
    os.environ.pop("WALLETPOS_CONFIG", None)
    if scenario == "full_disk":
        out = full_disk(data)
    else:
        out = read_only(data, sys.argv[3])
    print(json.dumps(out))
