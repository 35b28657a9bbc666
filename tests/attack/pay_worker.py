"""A terminal process for the concurrency attacks: waits for a start file, then makes payments.

    python pay_worker.py DATA_DIR CONFIG START_FILE TOKEN_PREFIX ROUNDS PER_ROUND AMOUNT_MINOR

Round r pays PER_ROUND times with card token TOKEN_PREFIX + r; one line per payment on stdout:
`<round> <decision>`. Real SQLite, the real payment path (rules and journal), several processes on
one data directory."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from terminal.bootstrap import bootstrap
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts


def main() -> None:
    data, config, start, prefix, rounds, per_round, amount = sys.argv[1:8]
    service = bootstrap(config_path=config, data_dir=data, env={})
    try:
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while not Path(start).exists():
            if time.monotonic() > deadline:
                raise SystemExit("no start signal")
            time.sleep(0.002)
        for r in range(int(rounds)):
            token = f"{prefix}{r:04d}"
            for _ in range(int(per_round)):
                result = service.pay(PaymentRequest(Money(int(amount), service.currency), Method.CARD,
                                                    card_token=token),
                                     CardFacts(scheme="visa", card_token=token, masked_pan="476173******0010"))
                print(f"{r} {result.outcome}", flush=True)
    finally:
        service.close()


if __name__ == "__main__":
    main()
