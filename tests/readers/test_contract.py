"""The reader contract, run against every driver: sim (in-process), pcsc (pcscd + vpcd) and nfc
(nfcpy's UDP link with the card in another process). Nothing here is mocked: the cards are the
virtual cards of drivers/sim/cards.py, reached through the real driver stacks."""

from __future__ import annotations

import time

import pytest

from drivers.base import CardReader, CardRemovedError, CardSession
from tests.readers.rigs import SELECT_PPSE, VISA_AID, Rig

pytestmark = pytest.mark.timeout(60)


def _tlv_items(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, value) of one BER-TLV level (enough for these tests; the real parser is terminal/core)."""
    items, i = [], 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while data[i] & 0x80:
                tag = tag << 8 | data[i]
                i += 1
            tag = tag << 8 | data[i]
            i += 1
        length = data[i]
        i += 1
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[i:i + n], "big")
            i += n
        items.append((tag, data[i:i + length]))
        i += length
    return items


def _find(data: bytes, wanted: int) -> bytes | None:
    for tag, value in _tlv_items(data):
        if tag == wanted:
            return value
        if tag & (0x20 << (8 * ((tag.bit_length() - 1) // 8))):  # constructed: look inside
            found = _find(value, wanted)
            if found is not None:
                return found
    return None


def _dol_length(dol: bytes) -> int:
    total, i = 0, 0
    while i < len(dol):
        if dol[i] & 0x1F == 0x1F:
            i += 1
            while dol[i] & 0x80:
                i += 1
        i += 1
        total += dol[i]
        i += 1
    return total


def _wait(reader: CardReader, timeout: float = 5.0) -> CardSession:
    session = reader.wait_for_card(timeout)
    assert session is not None, f"{reader.name}: no card within {timeout} s"
    return session


def test_select_ppse_is_answered(rig: Rig) -> None:
    rig.insert("visa")
    with _wait(rig.reader) as session:
        response = session.transmit(SELECT_PPSE)
        assert response[-2:] == b"\x90\x00"
        assert response[0] == 0x6F and VISA_AID in response
        if rig.kind == "sim":
            assert session.uid == rig.card.uid
        elif rig.kind == "nfc":  # the UID from anticollision; the card object lives in the card process
            from drivers.sim.cards import make_card

            assert session.uid == make_card("visa").uid
        # pcsc: vpcd is a contact reader, there is no anticollision UID (see test_pcsc for FF CA)


def test_emv_read_flow_runs_through_the_transport(rig: Rig) -> None:
    """SELECT PPSE → SELECT AID → GPO (PDOL filled) → READ RECORD per AFL, all 9000."""
    rig.insert("visa")
    with _wait(rig.reader) as session:
        assert session.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"
        fci = session.transmit(bytes([0x00, 0xA4, 0x04, 0x00, len(VISA_AID)]) + VISA_AID + b"\x00")
        assert fci[-2:] == b"\x90\x00"
        pdol = _find(fci[:-2], 0x9F38) or b""
        data = b"\x83" + bytes([_dol_length(pdol)]) + bytes(_dol_length(pdol))
        gpo = session.transmit(bytes([0x80, 0xA8, 0x00, 0x00, len(data)]) + data + b"\x00")
        assert gpo[-2:] == b"\x90\x00"
        afl = _find(gpo[:-2], 0x94) if gpo[0] == 0x77 else gpo[4:-2]
        assert afl and len(afl) % 4 == 0
        records = 0
        for i in range(0, len(afl), 4):
            sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
            for number in range(first, last + 1):
                record = session.transmit(bytes([0x00, 0xB2, number, sfi << 3 | 4, 0x00]))
                assert record[-2:] == b"\x90\x00" and record[0] == 0x70
                records += 1
        assert records >= 1


def test_card_removed_mid_session_raises_card_removed(rig: Rig) -> None:
    rig.insert("visa")
    session = _wait(rig.reader)
    assert session.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"
    rig.remove()
    deadline = time.monotonic() + 5
    with pytest.raises(CardRemovedError) as caught:  # the removal takes effect asynchronously
        while time.monotonic() < deadline:
            session.transmit(SELECT_PPSE)
            time.sleep(0.01)
    assert caught.value.outcome == "tap_again"
    session.close()


def test_card_that_leaves_after_gpo_raises_card_removed(rig: Rig) -> None:
    """The `pulled` profile answers three commands and then is gone (no answer at all)."""
    rig.insert("pulled")
    with _wait(rig.reader) as session:
        for _ in range(3):
            assert len(session.transmit(SELECT_PPSE)) >= 2
        with pytest.raises(CardRemovedError):
            session.transmit(SELECT_PPSE)


def test_no_card_returns_none_within_the_timeout(rig: Rig) -> None:
    started = time.monotonic()
    assert rig.reader.wait_for_card(0.4) is None
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.5, f"{rig.kind}: waited {elapsed:.2f} s for a 0.4 s timeout"


def test_card_left_on_the_reader_is_found_again_until_taken_away(rig: Rig) -> None:
    """The caller waits for the field to empty by calling wait_for_card until it returns None."""
    rig.insert("visa")
    first = _wait(rig.reader)
    first.close()
    again = _wait(rig.reader, 3.0)
    assert again.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"
    again.close()
    rig.remove()
    deadline = time.monotonic() + 5
    while True:
        session = rig.reader.wait_for_card(0.3)
        if session is None:
            break
        session.close()
        assert time.monotonic() < deadline, f"{rig.kind}: the field never emptied"
