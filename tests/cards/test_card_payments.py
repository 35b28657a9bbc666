"""Card payments end to end on the in-process simulated reader: every virtual card profile through the
EMV kernel, the rules and the real SQLite journal; and `walletpos tap` as a subprocess, whose output,
journal file and log are searched for the cards' clear numbers.

The same profiles run over real pcscd + vpcd and nfcpy's udp driver in test_tap_transports.py; this
file covers the outcomes in depth where the transport does not matter."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from drivers.sim.cards import make_card
from drivers.sim.profiles import PROFILES
from drivers.simreader import SimReader
from terminal.core.money import Money, currency
from tests.conftest import WALLETPOS

CNY = currency("CNY")

# profile -> (outcome, reason, apdu count or None when the card is not read to the end)
EXPECTED = {
    "visa": ("approved", "below_floor_limit", 4),  # 3 + 1 record
    "mastercard": ("approved", "below_floor_limit", 6),  # 4 + 2 records (GENERATE AC)
    "unionpay": ("approved", "below_floor_limit", 4),
    "multi_aid": ("approved", "below_floor_limit", 4),
    "no_ppse": ("approved", "below_floor_limit", 4),  # PPSE 6A82, then the AID list
    "expired": ("declined", "card_expired", 4),
    "denied": ("declined", "deny_listed", 4),
    "blocked": ("card_blocked", "card_blocked", None),
    "gpo_refused": ("try_another_card", "try_another_card", None),
    "garbage": ("try_another_card", "try_another_card", None),
    "pulled": ("tap_again", "card_removed", None),
}


def test_every_profile_has_an_expectation() -> None:
    assert set(EXPECTED) == set(PROFILES)


def _tap(service, profile: str, amount: int = 1234):
    reader = SimReader()
    reader.tap(make_card(profile))
    session = reader.wait_for_card(1.0)
    assert session is not None
    with session:
        return service.pay_card(session, Money(amount, CNY))


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_profile_outcome(service, profile: str) -> None:
    if profile == "denied":
        service.require_journal().deny_locally(service.keys.card_token(PROFILES["denied"].pan), "lost_or_stolen",
                                               now=service.clock())
    outcome, reason, apdus = EXPECTED[profile]
    result = _tap(service, profile)
    assert result.outcome == outcome, result.message
    assert reason in result.reasons
    rows = list(service.export_journal(None))
    if apdus is None:
        assert result.read is None and rows == [], "a card that was not read leaves no journal row"
        return
    assert result.read.apdu_count == apdus
    assert result.read.generate_ac is (profile == "mastercard")
    assert len(rows) == 1 and rows[0]["decision"] == ("approved" if outcome == "approved" else "declined")
    assert rows[0]["masked_pan"] == result.read.masked_pan
    assert rows[0]["masked_pan"].endswith(PROFILES[profile].pan[-4:])
    assert "*" in rows[0]["masked_pan"]
    assert rows[0]["card_token"] == service.keys.card_token(PROFILES[profile].pan)


def test_multi_aid_card_pays_with_the_highest_priority_application(service) -> None:
    result = _tap(service, "multi_aid")
    assert result.read.aid == "A0000000031010" and result.read.scheme == "visa"


def test_card_without_ppse_is_selected_from_the_terminal_list(service) -> None:
    result = _tap(service, "no_ppse")
    assert result.outcome == "approved"
    assert result.read.extra["selection"] == "list"
    assert result.read.trace[0].sw == "6A82"


def test_same_card_taps_count_towards_its_daily_limits(service) -> None:
    daily_count = service.config.offline.card_daily_count
    for _ in range(daily_count):
        assert _tap(service, "visa").outcome == "approved"
    over = _tap(service, "visa")
    assert "card_daily_count_exceeded" in over.reasons
    assert over.outcome == "declined"  # no backend in this test: offline only


def test_above_the_cvm_limit_the_card_needs_verification(service) -> None:
    cvm_limit = service.config.limits.cvm_required_limit.minor
    result = _tap(service, "visa", amount=cvm_limit)
    assert result.outcome == "need_cvm"
    assert result.payment.row is None  # nothing decided yet: the PIN comes first


def test_phone_with_device_verification_passes_the_cvm_limit(service) -> None:
    """A phone that verified its holder (CDCVM, CTQ byte 2 bit 8) needs no PIN at the terminal."""
    cvm_limit = service.config.limits.cvm_required_limit.minor
    reader = SimReader()
    reader.tap(make_card("visa", ctq="0080"))
    with reader.wait_for_card(1.0) as session:
        result = service.pay_card(session, Money(cvm_limit, CNY))
    assert result.read.cvm == "cdcvm"
    assert result.outcome != "need_cvm"


def test_card_that_declines_itself_is_declined(service) -> None:
    reader = SimReader()
    reader.tap(make_card("mastercard", cid=0x00))  # GENERATE AC answers an AAC
    with reader.wait_for_card(1.0) as session:
        result = service.pay_card(session, Money(500, CNY))
    assert result.read.cid == "AAC"
    assert result.outcome == "declined" and "card_declined" in result.reasons


def test_unplugged_reader_mid_tap_is_a_clear_outcome(service) -> None:
    reader = SimReader()
    reader.tap(make_card("visa"))
    session = reader.wait_for_card(1.0)
    reader.unplug()
    result = service.pay_card(session, Money(500, CNY))
    assert result.outcome == "reader_unavailable"
    assert list(service.export_journal(None)) == []


# -- the command line, and no clear card number anywhere ------------------------------------------


def _tap_cli(cli_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WALLETPOS, "tap", *args], env=cli_env, capture_output=True, text=True, timeout=60)


def test_tap_command_json_and_exit_codes(cli_env: dict[str, str]) -> None:
    ok = _tap_cli(cli_env, "--amount", "12.34", "--sim-card", "visa", "--json", "--timeout", "5")
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["decision"] == "approved" and out["scheme"] == "visa" and out["apdu_count"] == 4
    assert out["masked_pan"] == "476173******0010"
    assert set(out["timings_ms"]) >= {"card", "rules", "journal", "total"}
    declined = _tap_cli(cli_env, "--amount", "12.34", "--sim-card", "expired", "--json", "--timeout", "5")
    assert declined.returncode == 10 and json.loads(declined.stdout)["reasons"] == ["card_expired"]
    unread = _tap_cli(cli_env, "--amount", "12.34", "--sim-card", "garbage", "--json", "--timeout", "5")
    assert unread.returncode == 13 and json.loads(unread.stdout)["outcome"] == "try_another_card"
    cvm = _tap_cli(cli_env, "--amount", "2000.00", "--sim-card", "visa", "--json", "--timeout", "5")
    assert cvm.returncode == 12
    nothing = _tap_cli(cli_env, "--amount", "1.00", "--timeout", "0.3")
    assert nothing.returncode == 14 and "no card" in nothing.stderr
    bad = _tap_cli(cli_env, "--amount", "1.00", "--sim-card", "nosuchcard")
    assert bad.returncode == 2
    no_reader = _tap_cli(cli_env, "--amount", "1.00", "--reader", "no reader has this name", "--timeout", "1")
    assert no_reader.returncode == 15, no_reader.stderr
    assert "Traceback" not in no_reader.stderr


def test_go_online_failure_has_its_own_exit_code(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Above the offline cap the rules need the backend; with the backend down that is exit 11."""
    config = tmp_path / "terminal.toml"
    config.write_text('[offline]\nmax_payment = "50.00"\n[backend]\nurl = "http://127.0.0.1:9"\n')
    run = _tap_cli(cli_env, "--config", str(config), "--amount", "120.00", "--sim-card", "visa", "--json",
                   "--timeout", "5")
    assert run.returncode == 11, run.stdout + run.stderr
    assert "backend_unreachable" in json.loads(run.stdout)["reasons"]


def test_no_clear_card_number_in_journal_logs_or_output(cli_env: dict[str, str], data_dir: Path) -> None:
    outputs = []
    for profile in ("visa", "mastercard", "unionpay", "multi_aid", "expired", "garbage", "pulled"):
        run = _tap_cli(cli_env, "--amount", "8.88", "--sim-card", profile, "--json", "--trace", "--timeout", "5")
        outputs.append(run.stdout + run.stderr)
        human = _tap_cli(cli_env, "--amount", "8.88", "--sim-card", profile, "--trace", "--timeout", "5")
        outputs.append(human.stdout + human.stderr)
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("journal") for p in files)
    assert any(p.suffix == ".log" or ".log" in p.name for p in files), [p.name for p in files]
    pans = [PROFILES[name].pan for name in PROFILES] + ["6212345678901240"]
    for pan in pans:
        for text in outputs:
            assert pan not in text, f"clear card number ending {pan[-4:]} in the command output"
        for path in files:
            blob = path.read_bytes()
            assert pan.encode() not in blob, f"clear card number ending {pan[-4:]} in {path.name}"
            assert bytes.fromhex(pan) not in blob, f"card number ending {pan[-4:]} as BCD in {path.name}"
