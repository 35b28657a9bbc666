"""NfcReader on nfcpy's UDP driver, the card being a separate process (drivers/sim/nfc_card.py).
Both sides are nfcpy's real code paths: sense/activate/ISO-DEP on the reader, listen_tta on the card."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from drivers.base import ReaderUnavailableError
from drivers.nfc import NfcReader
from drivers.sim.nfc_card import ROOT, free_udp_port
from tests.readers.rigs import SELECT_PPSE, STANDIN, VISA_AID, NfcRig

pytestmark = [pytest.mark.nfc, pytest.mark.timeout(60)]


def test_a_long_session_answers_every_command_in_full(nfc_rig: NfcRig) -> None:
    """Many APDUs in one ISO-DEP session (block numbers toggling each time): every one is answered with
    the whole FCI and 9000. (Round-trip times are scripts/bench_tap.py's business, not a test's.)"""
    nfc_rig.insert("visa")
    with nfc_rig.reader.wait_for_card(5) as session:
        answers = [session.transmit(SELECT_PPSE) for _ in range(50)]
    assert answers[0][-2:] == b"\x90\x00" and VISA_AID in answers[0]
    assert answers == [answers[0]] * 50


def test_long_response_is_chained_by_the_card(nfc_rig: NfcRig) -> None:
    nfc_rig.insert(factory=STANDIN)  # 600-byte answer > FSD 256: three chained I-blocks
    with nfc_rig.reader.wait_for_card(5) as session:
        response = session.transmit(bytes.fromhex("00CA000300"))
    assert response == bytes(i % 251 for i in range(600)) + b"\x90\x00"


def test_small_card_frames_chain_both_ways(nfc_rig: NfcRig) -> None:
    # FSCI 2 (32-byte frames to the card) and the card sending at most 24-byte frames.
    nfc_rig.insert(factory=STANDIN, extra_args=("--fsci", "2", "--max-frame", "24"))
    payload = bytes(range(200))
    with nfc_rig.reader.wait_for_card(5) as session:
        echoed = session.transmit(bytes([0x80, 0xEE, 0x00, 0x00, len(payload)]) + payload + b"\x00")
        assert echoed == payload + b"\x90\x00"
        assert VISA_AID in session.transmit(SELECT_PPSE)


def test_slow_card_asks_for_waiting_time_extensions(nfc_rig: NfcRig) -> None:
    # 400 ms per APDU against a 77 ms frame waiting time: only S(WTX) keeps the exchange alive.
    nfc_rig.insert(factory=STANDIN, extra_args=("--wtx-ms", "400"))
    with nfc_rig.reader.wait_for_card(5) as session:
        started = time.monotonic()
        assert VISA_AID in session.transmit(SELECT_PPSE)
        assert time.monotonic() - started >= 0.35


def test_61xx_and_6cxx_over_iso_dep(nfc_rig: NfcRig) -> None:
    nfc_rig.insert(factory=STANDIN)
    with nfc_rig.reader.wait_for_card(5) as session:
        assert session.transmit(bytes.fromhex("00CA000100")) == bytes(range(200)) + b"\x90\x00"
        assert session.transmit(bytes.fromhex("00CA000200")) == bytes(range(0x20)) + b"\x90\x00"
        assert session.uid == bytes.fromhex("08A1B2C3")


def test_card_presented_again_after_leaving(nfc_rig: NfcRig) -> None:
    nfc_rig.insert("visa")
    session = nfc_rig.reader.wait_for_card(5)
    assert session is not None
    session.close()
    nfc_rig.remove()  # a signal to the card process: it leaves the field when it has handled it
    deadline = time.monotonic() + 5
    while (again := nfc_rig.reader.wait_for_card(0.3)) is not None:
        again.close()
        assert time.monotonic() < deadline, "the card never left the field"
    nfc_rig.process.present()
    with nfc_rig.reader.wait_for_card(5) as again:
        assert VISA_AID in again.transmit(SELECT_PPSE)


def test_wait_is_bounded_by_the_timeout_not_by_nfcpy() -> None:
    with NfcReader(f"udp:localhost:{free_udp_port()}") as reader:
        started = time.monotonic()
        assert reader.wait_for_card(0.15) is None
        assert time.monotonic() - started < 0.6  # nfcpy's UDP sense alone waits a full second


@pytest.mark.parametrize(("path", "message"), [
    ("udp:no-such-host.invalid:54321", "cannot be opened"),
    ("usb:ffff:ffff", "no NFC reader at usb:ffff:ffff"),
    ("bogus:device", "not one nfcpy knows"),
])
def test_bad_device_path_is_reader_unavailable(path: str, message: str) -> None:
    with NfcReader(path) as reader:
        with pytest.raises(ReaderUnavailableError, match=message):
            reader.wait_for_card(0.2)
        assert reader.status().state in ("absent", "error")


def test_card_process_ends_after_its_taps(nfc_rig: NfcRig) -> None:
    from drivers.sim.nfc_card import start_nfc_card

    with start_nfc_card("visa", nfc_rig.port, taps=1) as card:
        with nfc_rig.reader.wait_for_card(5) as session:
            assert VISA_AID in session.transmit(SELECT_PPSE)
        assert card.wait(5) == 0


def test_card_process_reports_a_bad_device() -> None:
    done = subprocess.run([sys.executable, "-m", "drivers.sim.nfc_card", "--device", "usb:ffff:ffff"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "cannot open usb:ffff:ffff" in done.stderr
