"""Failed taps as test data: a terminal keeps each card it could not read as a redacted trace in the
shared vectors' format (`terminal.tapstore`), with no card number in clear, and the test suite,
`walletpos tap --replay FILE` and the diagnostics screen read it again through the kernel with the
same outcome. The traces in tests/data/traces/ were kept by a terminal (the simulated reader's cards
taken away too soon, refusing GET PROCESSING OPTIONS, blocked, answering garbage)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from drivers.sim.cards import make_card
from drivers.sim.profiles import PROFILES
from drivers.sim.replay import load_vector_items
from drivers.simreader import SimReader
from terminal.core.cardmask import mask_card_numbers_in_hex
from terminal.core.money import Money
from tests.conftest import WALLETPOS

TRACES = Path(__file__).resolve().parents[1] / "data" / "traces"
FAILING = ("pulled", "gpo_refused", "blocked", "garbage", "no_ppse")


def tap(service, profile: str, *, test_tap: bool):
    reader = SimReader()
    reader.tap(make_card(profile))
    session = reader.wait_for_card(1.0)
    assert session is not None
    with session:
        if test_tap:
            return service.cards.check_tap(session, Money(1250, service.currency), reader="sim")
        return service.pay_card(session, Money(1250, service.currency))


def assert_no_card_number(text: str, pan: str) -> None:
    """The card's number is nowhere, not even its issuer range followed by more digits."""
    assert pan not in text
    assert re.search(pan[:6] + r"[0-9]{4}", text) is None, "unmasked digits after the card's first six"


@pytest.mark.parametrize("profile", FAILING)
@pytest.mark.parametrize("test_tap", [False, True], ids=["payment", "test_tap"])
def test_a_failed_tap_is_kept_redacted_and_replays_the_same(service, profile, test_tap):
    result = tap(service, profile, test_tap=test_tap)
    if profile == "no_ppse":  # reads without a directory (the AID list): not a failure, nothing kept
        assert result.outcome in ("read", "approved") and service.failed_taps() == []
        return
    assert result.outcome in ("tap_again", "try_another_card", "card_blocked")
    kept = service.failed_taps()
    assert len(kept) == 1 and kept[0].outcome == result.outcome
    assert kept[0].origin == ("test tap" if test_tap else "payment")
    path = service.failed_tap_files()[0]
    assert path.stat().st_mode & 0o077 == 0
    assert_no_card_number(path.read_text(), PROFILES[profile].pan)
    replay = service.replay_tap(kept[0].name)
    assert replay.outcome == result.outcome and replay.source == f"replay:{kept[0].name}"
    assert service.failed_taps() == kept  # a replay is never kept again
    assert service.journal.head().counts()["total"] == 0  # nothing journaled (a card not read is no payment)


def test_a_masked_pan_replays_as_a_test_pan_with_the_same_digits_shown(service):
    result = tap(service, "pulled", test_tap=True)
    assert result.outcome == "tap_again"
    kept = service.failed_taps()[0]
    assert kept.masked_pan == "476173******0093"
    item = json.loads(service.failed_tap_files()[0].read_text())[0]
    assert item["expected"]["card_left_field"] is True and item["data"][-1]["response"] is None
    assert any("476173******0093D" in (step["response"] or "") for step in item["data"])  # track 2, masked


def test_only_the_last_failed_taps_are_kept(service):
    service.cards.failed_taps.keep = 3
    for _ in range(5):
        tap(service, "blocked", test_tap=True)
    assert len(service.failed_taps()) == 3


@pytest.mark.parametrize("trace", sorted(p.name for p in TRACES.glob("*.json")))
def test_recorded_traces_replay_through_the_kernel(service, trace):
    item = load_vector_items(TRACES / trace)[0]  # the shared vectors' loader reads them
    assert item["kind"] == "emv_apdu_sequence" and item["format"] == "walletpos-failed-tap-1"
    assert_no_card_number((TRACES / trace).read_text(), "4761739001010093")
    result = service.replay_tap(TRACES / trace)
    assert result.outcome == item["expected"]["outcome"], result.message
    shown = result.shown()
    # the same commands in the same order (the transaction data in GPO differs: date, unpredictable number)
    assert [s.command[:8] for s in shown] == [step["command"][:8] for step in item["data"]]


def test_tap_replay_command(cli_env):
    run = subprocess.run([*WALLETPOS, "tap", "--replay", str(TRACES / "visa-taken-away-too-soon.json")], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 13, run.stderr
    assert run.stdout.startswith("TAP AGAIN")
    assert "> SELECT 2PAY.SYS.DDF01" in run.stdout and "57 track 2 equivalent data: 476173******0093D" in run.stdout
    as_json = subprocess.run([*WALLETPOS, "tap", "--replay", str(TRACES / "gpo-refused.json"), "--json"],
                             env=cli_env, capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 13
    answer = json.loads(as_json.stdout)
    assert answer["outcome"] == "try_another_card" and answer["exchanges"][-1]["sw"] == "6985"
    assert all(e["ms"] >= 0 for e in answer["exchanges"])


def test_a_shared_vector_transcript_replays_through_tap_replay(shared_vectors, cli_env, tmp_path):
    items = [i for i in load_vector_items(shared_vectors) if i.get("kind") == "emv_apdu_sequence"
             and i.get("brand", "").lower().startswith("visa") and "9F26" in json.dumps(i["data"]).upper()]
    assert items
    trace = tmp_path / "vector.json"
    trace.write_text(json.dumps([items[0]]))
    run = subprocess.run([*WALLETPOS, "tap", "--replay", str(trace), "--json"], env=cli_env, capture_output=True,
                         text=True, timeout=60)
    answer = json.loads(run.stdout)
    assert answer["exchanges"] and answer["exchanges"][0]["name"].startswith("SELECT")
    for exchange in answer["exchanges"]:
        for line in exchange["tree"]:
            value = line.split(": ", 1)[-1]
            if not value.startswith(('"', "<")):
                assert mask_card_numbers_in_hex(value) == value, line  # masked as the kernel masks
