"""Finding 10, the smaller ones:

(a) any text, lone UTF-16 surrogates included, given to `qrpay.classify` is a payment code or a clear
    `QrPayloadError`, never a `UnicodeEncodeError` (hypothesis);
(b) a data directory or journal that others may write to, and (c) a key file others may read, are
    refused by the real CLI with exit 4 and a message that says what to run, not accepted silently and
    not exit 70;
(d) on a full disk (a real 2 MiB tmpfs in a private mount namespace), every command that records
    exits 4 and says the disk is full, in one line: no traceback, no logging error on stderr.
(e), verify on a read-only copy, is in test_tamper.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.qrimage import code_png
from terminal.bootstrap import bootstrap
from terminal.core import qrpay
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.errors import QrPayloadError
from terminal.payment import CardFacts
from tests.attack.test_cpm_codes import cpm
from tests.conftest import ROOT, WALLETPOS

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).resolve().parent

# -- (a) lone surrogates ------------------------------------------------------------------------------

CHARACTERS = st.one_of(st.characters(), st.characters(), st.characters(), st.characters(categories=["Cs"]),
                       st.sampled_from("0123456789"))
TEXT = st.lists(CHARACTERS, max_size=40).map("".join)  # st.text never draws a surrogate
PREFIXES = st.sampled_from(["", "000201", "000202", "hQVDUFYw", "WP1:", "62258", "0002010102"])


@pytest.mark.parametrize("text", ["000201\ud800", "hQVDUFYw\udc00", "WP1:\udbff", "\ud800", "0002010102\udfff12",
                                  "6225881234567890123\ud800"])
def test_a_lone_surrogate_is_a_clear_refusal(text):
    with pytest.raises(QrPayloadError) as refusal:
        qrpay.classify(text, ["62258"])
    print(f"\n{text!r}: {refusal.value.reason}: {refusal.value.message}")
    assert refusal.value.reason == "invalid_character" and "surrogate" in refusal.value.message


def test_fuzz_any_text_with_surrogates_is_a_code_or_a_clear_refusal():
    counts = {"examples": 0, "with a surrogate": 0, "codes": 0, "refused": 0}

    @settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(PREFIXES, TEXT)
    def attempt(prefix: str, tail: str) -> None:
        text = prefix + tail
        counts["examples"] += 1
        counts["with a surrogate"] += any("\ud800" <= ch <= "\udfff" for ch in text)
        try:
            code = qrpay.classify(text, ["62258"])
        except QrPayloadError as exc:  # anything else fails the test
            counts["refused"] += 1
            assert exc.reason and exc.message
            return
        counts["codes"] += 1
        assert not any("\ud800" <= ch <= "\udfff" for ch in text)
        qrpay.display_text(code, text).encode("utf-8")  # what is shown of it is printable text

    attempt()
    print(f"\nclassify on arbitrary text: {counts}")
    assert counts["examples"] >= 500 and counts["with a surrogate"] >= 150


# -- (b), (c) files others may write or read ----------------------------------------------------------


def cli(data: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETPOS_")}
    env.update(WALLETPOS_DATA_DIR=str(data), PYTHONPATH=str(ROOT))
    return subprocess.Popen([*WALLETPOS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


UNSAFE = {  # what is made unsafe: (the path under the data dir, its mode), what the message must say, the commands
    "data directory 0777": ("", 0o777, "may be written by other users (mode 777)", ("status", "tap")),
    "data directory 0775": ("", 0o775, "may be written by other users (mode 775)", ("status --json",)),
    "journal file 0666": ("journal.sqlite3", 0o666, "may be written by other users (mode 666)",
                          ("status --json", "tap")),
    "signing key 0644": ("terminal_signing.key", 0o644, "is readable by others (mode 644)", ("status", "tap")),
    "card token key 0640": ("card_token.key", 0o640, "is readable by others (mode 640)", ("status --json",)),
}
COMMANDS = {"status": ["status"], "status --json": ["status", "--json"],
            "tap": ["tap", "--amount", "1.00", "--sim-card", "visa"]}


def test_files_others_may_write_or_read_are_refused_with_exit_4(tmp_path, clock):
    runs = {}
    for name, (relative, mode, _, commands) in UNSAFE.items():
        data = tmp_path / name.replace(" ", "_")
        with bootstrap(data_dir=data, clock=clock, env={}) as svc:
            svc.pay(PaymentRequest(Money(100, svc.currency), Method.CARD, card_token="tokA"),
                    CardFacts(scheme="visa", card_token="tokA", masked_pan="476173******0010"))
        (data / relative).chmod(mode)
        runs[name] = (data, {command: cli(data, *COMMANDS[command]) for command in commands})
    for name, (data, procs) in runs.items():
        relative, _, says, _ = UNSAFE[name]
        answers = {command: (p.wait(60), *p.communicate()) for command, p in procs.items()}
        print(f"\n{name}: " + ", ".join(f"{command} exit {rc}" for command, (rc, _, _) in answers.items())
              + f": {says}")
        for rc, out, err in answers.values():
            assert rc == 4 and "Traceback" not in err
            assert says in out + err and "chmod" in out + err and str(data / relative).rstrip("/") in out + err
        (data / relative).chmod(0o700 if not relative else 0o600)
        with bootstrap(data_dir=data, clock=clock, env={}) as svc:
            assert svc.require_journal().head().txn_seq == 1  # nothing was recorded meanwhile


# -- (d) a full disk ----------------------------------------------------------------------------------


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m to mount a real tmpfs")
def test_a_full_disk_gives_exit_4_and_says_so_on_every_command_that_records(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = tmp_path / "terminal.toml"
    config.write_text('[backend]\nurl = "http://127.0.0.1:9"\n', encoding="utf-8")  # never reached: no journal
    image = tmp_path / "code.png"
    image.write_bytes(code_png(cpm()))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["unshare", "-m", "sh", "-ec", f"mount -t tmpfs -o size=2m,mode=0700 tmpfs {data}; "
                           f"{sys.executable} {HERE / 'full_disk_cli.py'} {data} {config} {image}"],
                          capture_output=True, text=True, env=env, timeout=150)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\nfull disk: " + ", ".join(f"{name} exit {run['rc']}" for name, run in runs.items()))
    for name, run in runs.items():
        said = run["stdout"] + run["stderr"]
        first = next(line for line in said.splitlines() if "disk is full" in line) if "disk is full" in said else said
        print(f"  {name}: {first.strip()[:160]}")
        assert run["rc"] == 4, (name, run)
        assert "disk is full" in said, (name, said)
        assert "Traceback" not in run["stderr"] and "Logging error" not in run["stderr"], (name, run["stderr"])
