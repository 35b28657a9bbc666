"""Run inside a private mount namespace (see test_small_findings.py), where DATA is a real tmpfs of
2 MiB: makes a terminal there (keys, journal, three sales), takes every free byte of the file system,
then runs the `walletpos` commands that record, all at once, and prints one JSON object: the exit
code, standard output and standard error of each.

    python full_disk_cli.py DATA CONFIG IMAGE
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from terminal.bootstrap import bootstrap
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts

COMMANDS = {
    "tap": ["tap", "--amount", "1.00", "--sim-card", "visa"],
    "status": ["status"],
    "status --json": ["status", "--json"],
    "sync --once --json": ["sync", "--once", "--json"],
    "qr": ["qr", "--amount", "5.00"],
    "scan --pay": ["scan", "--source", "IMAGE", "--pay", "--amount", "20.00"],
    "backend enrol": ["backend", "enrol", "--token", "x" * 24],
}


def fill(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def main() -> None:
    data, config, image = (Path(a) for a in sys.argv[1:4])
    with bootstrap(config_path=config, data_dir=data, env={}) as svc:
        for n in range(3):
            svc.pay(PaymentRequest(Money(100 + n, svc.currency), Method.CARD, card_token="tokA"),
                    CardFacts(scheme="visa", card_token="tokA", masked_pan="476173******0010"))
    fill(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETPOS_")}
    env.update(WALLETPOS_DATA_DIR=str(data), WALLETPOS_CONFIG=str(config))
    procs = {name: subprocess.Popen([sys.executable, "-m", "terminal.cli",
                                     *(str(image) if a == "IMAGE" else a for a in args)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in COMMANDS.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=90)
        out[name] = {"rc": proc.returncode, "stdout": stdout, "stderr": stderr}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
