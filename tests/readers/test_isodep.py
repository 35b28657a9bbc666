"""The card side of ISO-DEP (drivers/sim/nfc_card.IsoDepTarget), frame by frame: the rules of
ISO/IEC 14443-4 that nfcpy's reader side does not always exercise (retransmission, DESELECT, CID)."""

from __future__ import annotations

import pytest

from drivers.sim.nfc_card import Deselected, IsoDepConfig, IsoDepTarget, LeftField
from tests.readers.rigs import SELECT_PPSE
from tests.readers.standin import PPSE_FCI, StandInCard


def _target(card: StandInCard | None = None, fsd: int = 256, **config: object) -> IsoDepTarget:
    def no_exchange(frame: bytes, timeout: float) -> bytes | None:
        raise AssertionError("no S(WTX) expected")

    return IsoDepTarget(card or StandInCard(), IsoDepConfig(**config), fsd, no_exchange)  # type: ignore[arg-type]


def test_ats_announces_frame_size_and_waiting_time() -> None:
    ats = IsoDepConfig(fsci=5, fwi=7).ats()
    assert ats[0] == len(ats)
    assert ats[1] == 0x75 and ats[3] >> 4 == 7  # T0: TA, TB, TC present, FSCI 5; TB: FWI 7
    assert round(IsoDepConfig(fwi=8).fwt, 4) == 0.0773


def test_i_block_gets_the_answer_with_the_same_block_number() -> None:
    target = _target()
    assert target.handle(b"\x02" + SELECT_PPSE) == b"\x02" + PPSE_FCI + b"\x90\x00"
    assert target.handle(b"\x03" + SELECT_PPSE) == b"\x03" + PPSE_FCI + b"\x90\x00"


def test_chained_command_is_acknowledged_and_joined() -> None:
    card = StandInCard()
    target = _target(card)
    assert target.handle(b"\x12" + SELECT_PPSE[:8]) == b"\xa2"  # R(ACK) 0
    assert target.handle(b"\x13" + SELECT_PPSE[8:14]) == b"\xa3"  # R(ACK) 1
    assert target.handle(b"\x02" + SELECT_PPSE[14:]) == b"\x02" + PPSE_FCI + b"\x90\x00"
    assert card.apdu_count == 1


def test_long_answer_is_chained_and_continued_on_ack() -> None:
    target = _target(StandInCard(long_size=100), fsd=48)  # 45 bytes of INF per frame
    first = target.handle(b"\x02" + bytes.fromhex("00CA000300"))
    assert first[0] == 0x12 and len(first) == 46
    second = target.handle(b"\xa3")  # R(ACK) with the reader's next number
    assert second[0] == 0x13 and len(second) == 46
    last = target.handle(b"\xa2")
    assert last[0] == 0x02
    assert first[1:] + second[1:] + last[1:] == bytes(i % 251 for i in range(100)) + b"\x90\x00"


def test_nak_with_the_cards_number_resends_the_last_block() -> None:
    target = _target()
    answer = target.handle(b"\x02" + SELECT_PPSE)
    assert target.handle(b"\xb2") == answer  # rule 11
    assert target.handle(b"\xa2") == answer


def test_nak_with_the_other_number_is_acknowledged() -> None:
    target = _target()
    target.handle(b"\x02" + SELECT_PPSE)
    assert target.handle(b"\xb3") == b"\xa2"  # rule 12 (nfcpy's presence check)


def test_deselect_ends_the_activation_with_the_cid_echoed() -> None:
    target = _target()
    with pytest.raises(Deselected) as caught:
        target.handle(b"\xc2")
    assert caught.value.args[0] == b"\xc2"
    with pytest.raises(Deselected) as caught:
        target.handle(b"\xca\x01")
    assert caught.value.args[0] == b"\xca\x01"


def test_cid_is_echoed_in_i_blocks() -> None:
    target = _target()
    assert target.handle(b"\x0a\x01" + SELECT_PPSE) == b"\x0a\x01" + PPSE_FCI + b"\x90\x00"


def test_invalid_frames_get_no_answer() -> None:
    target = _target()
    assert target.handle(b"") is None
    assert target.handle(b"\x06\x00" + SELECT_PPSE) is None  # NAD, which this card did not announce
    assert target.handle(b"\xb3") is None  # R(NAK) with its own number, but nothing sent yet to resend
    assert target.handle(b"\xb2") == b"\xa3"  # the other number: R(ACK) (rule 12)


def test_card_that_leaves_the_field_answers_nothing() -> None:
    target = _target(StandInCard(remove_after=1))
    target.handle(b"\x02" + SELECT_PPSE)
    with pytest.raises(LeftField):
        target.handle(b"\x03" + SELECT_PPSE)


def test_slow_card_sends_wtx_requests_until_done() -> None:
    sent: list[bytes] = []

    def reader(frame: bytes, timeout: float) -> bytes:
        sent.append(frame)
        return frame  # the reader answers S(WTX) with the same WTXM

    target = IsoDepTarget(StandInCard(), IsoDepConfig(fwi=4, wtx_ms=30), 256, reader)
    assert target.handle(b"\x02" + SELECT_PPSE) == b"\x02" + PPSE_FCI + b"\x90\x00"
    assert sent and all(frame[0] == 0xF2 and 1 <= frame[1] <= 59 for frame in sent)
