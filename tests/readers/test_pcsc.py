"""PcscReader on a real pcscd with the vpcd reader; cards served by VpcdCardServer (drivers/sim/vpcd.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from drivers.base import ReaderUnavailableError
from drivers.pcsc import PcscReader, match_reader
from drivers.sim.pcscd import PcscdHandle
from tests.readers.rigs import SELECT_PPSE, STANDIN, VISA_AID, PcscRig

pytestmark = [pytest.mark.pcsc, pytest.mark.timeout(60)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_long_session_answers_every_command_in_full(pcsc_rig: PcscRig) -> None:
    """Many APDUs in one session through pcscd and vpcd: each reaches the card exactly once and is
    answered with the whole FCI and 9000. (Round-trip times are scripts/bench_tap.py's business.)"""
    pcsc_rig.insert("visa")
    with pcsc_rig.reader.wait_for_card(5) as session:
        answers = [session.transmit(SELECT_PPSE) for _ in range(50)]
    assert answers[0][-2:] == b"\x90\x00" and VISA_AID in answers[0]
    assert answers == [answers[0]] * 50
    assert pcsc_rig.card.apdu_count == 50


def test_61xx_is_collected_with_get_response(pcsc_rig: PcscRig) -> None:
    pcsc_rig.insert(factory=STANDIN)
    with pcsc_rig.reader.wait_for_card(5) as session:
        response = session.transmit(bytes.fromhex("00CA000100"))
    assert response == bytes(range(200)) + b"\x90\x00"


def test_6cxx_is_resent_with_the_right_le(pcsc_rig: PcscRig) -> None:
    pcsc_rig.insert(factory=STANDIN)
    with pcsc_rig.reader.wait_for_card(5) as session:
        assert session.transmit(bytes.fromhex("00CA000200")) == bytes(range(0x20)) + b"\x90\x00"
        assert session.transmit(bytes.fromhex("00CA0002")) == bytes(range(0x20)) + b"\x90\x00"  # case 1 → Le added
        assert pcsc_rig.card.apdu_count == 4  # each command once with the wrong Le, once resent


def test_atr_protocol_and_uid(pcsc_rig: PcscRig) -> None:
    pcsc_rig.insert(factory=STANDIN)
    with pcsc_rig.reader.wait_for_card(5) as session:
        assert session.atr == pcsc_rig.card.atr
        assert session.protocol_name in ("T=0", "T=1")
        assert session.uid == pcsc_rig.card.uid  # FF CA 00 00 00, answered by the (contactless) card


def test_status_follows_the_field(pcsc_rig: PcscRig) -> None:
    assert pcsc_rig.reader.status().state == "ready"
    pcsc_rig.insert("visa")
    deadline = time.monotonic() + 3
    while pcsc_rig.reader.status().state != "card_present":
        assert time.monotonic() < deadline, "pcscd never reported the card"
        time.sleep(0.05)
    assert pcsc_rig.reader.status().detail == pcsc_rig.handle.reader


def test_reader_chosen_by_substring_or_regex(pcscd: PcscdHandle) -> None:
    assert match_reader(["ACS ACR122U 00 00", "Virtual PCD 00 00"], "virtual pcd") == "Virtual PCD 00 00"
    assert match_reader(["ACS ACR122U 00 00", "Virtual PCD 00 01"], r"PCD \d+ 01$") == "Virtual PCD 00 01"
    assert match_reader(["ACS ACR122U 00 00", "Virtual PCD 00 00"], "") == "ACS ACR122U 00 00"
    assert match_reader(["Virtual PCD 00 00"], "[unclosed") is None
    with PcscReader(r"virtual\s+pcd") as reader:
        assert reader.wait_for_card(0.05) is None
        assert reader.reader_name is not None and reader.reader_name.startswith("Virtual PCD")


def test_unknown_reader_pattern_is_reader_unavailable(pcscd: PcscdHandle) -> None:
    with PcscReader("No Such Reader") as reader:
        with pytest.raises(ReaderUnavailableError, match="no PC/SC reader matching 'No Such Reader'") as caught:
            reader.wait_for_card(0.2)
        assert "Virtual PCD" in caught.value.message  # the message lists the readers there are
        assert reader.status().state == "absent"


def test_no_pcscd_is_reader_unavailable() -> None:
    """A client whose pcscd socket does not exist: a real 'no service' from libpcsclite (in a
    subprocess, because the library reads PCSCLITE_CSOCK_NAME once)."""
    code = (
        "from drivers.pcsc import PcscReader\n"
        "from drivers.base import ReaderUnavailableError\n"
        "r = PcscReader()\n"
        "try:\n"
        "    r.wait_for_card(0.5)\n"
        "except ReaderUnavailableError as exc:\n"
        "    print('UNAVAILABLE', exc.message)\n"
        "print('STATUS', r.status().state)\n")
    env = dict(os.environ, PCSCLITE_CSOCK_NAME="/nonexistent/walletpos-test/pcscd.comm", PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=30)
    assert "UNAVAILABLE PC/SC service not available" in done.stdout, done.stderr
    assert "is pcscd running?" in done.stdout
    assert "STATUS absent" in done.stdout


def test_cancel_wakes_a_waiting_thread(pcscd: PcscdHandle) -> None:
    """No card in the reader: the thread's wait can only end early by `cancel`. SCardCancel wakes a
    blocked SCardGetStatusChange and does nothing when none is blocked yet, so cancel until it ends."""
    with PcscReader(pcscd.reader) as reader:
        reader.wait_for_card(0)  # context established
        result: list[object] = []
        waiter = threading.Thread(target=lambda: result.append(reader.wait_for_card(30)), daemon=True)
        waiter.start()
        deadline = time.monotonic() + 5  # far less than its 30 s wait
        while waiter.is_alive() and time.monotonic() < deadline:
            reader.cancel()
            waiter.join(0.05)
        assert not waiter.is_alive() and result == [None]


def test_card_that_leaves_is_disconnected_from_vpcd(pcsc_rig: PcscRig) -> None:
    pcsc_rig.insert("pulled")
    assert pcsc_rig.server.connected
    with pcsc_rig.reader.wait_for_card(5) as session:
        for _ in range(3):
            session.transmit(SELECT_PPSE)
        with pytest.raises(Exception, match="tap again"):
            session.transmit(SELECT_PPSE)
    deadline = time.monotonic() + 2
    while pcsc_rig.server.connected:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_pcscd_restart_while_the_reader_lives(pcsc_rig: PcscRig) -> None:
    if not pcsc_rig.handle.owned:
        pytest.skip("pcscd was already running (not started by these tests): not restarting someone else's daemon")
    reader = pcsc_rig.reader
    pcsc_rig.insert("visa")
    with reader.wait_for_card(5) as session:
        assert session.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"
    contexts = reader.context_count

    pcsc_rig.handle.stop()
    with pytest.raises(ReaderUnavailableError, match="pcscd"):
        reader.wait_for_card(0.5)
    assert reader.status().state == "absent"

    pcsc_rig.handle.start()
    assert pcsc_rig.server.wait_connected(5), "the card did not reconnect to the new vpcd"
    session = reader.wait_for_card(5)
    assert session is not None, "no card after the pcscd restart"
    with session:
        response = session.transmit(SELECT_PPSE)
    assert response[-2:] == b"\x90\x00" and VISA_AID in response
    assert reader.context_count > contexts


def test_vpcd_module_serves_a_card_from_its_own_process(pcscd: PcscdHandle) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "drivers.sim.vpcd", "--profile", "visa", "--port",
                             str(pcscd.vpcd_port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "card visa in vpcd" in proc.stdout.readline()
        with PcscReader(pcscd.reader) as reader:
            session = reader.wait_for_card(5)
            assert session is not None
            with session:
                assert VISA_AID in session.transmit(SELECT_PPSE)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
