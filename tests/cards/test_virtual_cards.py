"""Virtual contactless cards, the in-process reader and the replay of the shared vectors.

The cards are driven with command APDUs built by hand here and their answers parsed with the
terminal's BER-TLV parser (terminal.core.tlv), so the card's encoder and the terminal's parser check
each other. No mocks: every card, reader and recording here is the real object.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import UTC, datetime

import pytest

from drivers.base import CardRemovedError, ReaderUnavailableError
from drivers.sim.cards import (
    PPSE_NAME,
    VirtualCard,
    contactless_atr,
    luhn_valid,
    make_card,
)
from drivers.sim.profiles import (
    AID_MASTERCARD,
    AID_UNIONPAY_DEBIT,
    AID_UNSUPPORTED,
    AID_VISA,
    MASTERCARD_CDOL1,
    PROFILES,
    VISA_PDOL,
)
from drivers.sim.replay import (
    ReplayCard,
    command_key,
    load_vector_cards,
    load_vector_items,
    shared_vectors_path,
)
from drivers.simreader import SimReader
from terminal.core.tlv import Tlv, flatten, parse, parse_dol, parse_one
from terminal.errors import TlvError

VISA = bytes.fromhex(AID_VISA)
MASTERCARD = bytes.fromhex(AID_MASTERCARD)
UNIONPAY = bytes.fromhex(AID_UNIONPAY_DEBIT)

# -- command APDUs, built by hand -------------------------------------------------------------------------


def select(name: bytes, p2: int = 0x00) -> bytes:
    return bytes([0x00, 0xA4, 0x04, p2, len(name)]) + name + b"\x00"


def gpo(pdol_data: bytes) -> bytes:
    body = bytes([0x83, len(pdol_data)]) + pdol_data
    return bytes([0x80, 0xA8, 0x00, 0x00, len(body)]) + body + b"\x00"


def read_record(sfi: int, record: int) -> bytes:
    return bytes([0x00, 0xB2, record, (sfi << 3) | 0x04, 0x00])


def generate_ac(p1: int, data: bytes) -> bytes:
    return bytes([0x80, 0xAE, p1, 0x00, len(data)]) + data + b"\x00"


def get_data(tag: int) -> bytes:
    return bytes([0x80, 0xCA, tag >> 8, tag & 0xFF, 0x00])


def sw(answer: bytes) -> int:
    return int.from_bytes(answer[-2:], "big")


def ok_body(answer: bytes) -> bytes:
    assert sw(answer) == 0x9000, f"SW {answer[-2:].hex()}"
    return answer[:-2]


TERMINAL_DATA = {  # what a terminal puts into a PDOL / CDOL (amount 12.34 in minor units, BCD)
    0x9F66: bytes.fromhex("36A04000"),
    0x9F02: bytes.fromhex("000000001234"),
    0x9F03: bytes(6),
    0x9F1A: bytes.fromhex("0840"),
    0x95: bytes(5),
    0x5F2A: bytes.fromhex("0840"),
    0x9A: bytes.fromhex("261123"),
    0x9C: b"\x00",
    0x9F37: bytes.fromhex("11223344"),
    0x9F35: b"\x22",
}


def fill_dol(dol: tuple[tuple[int, int], ...], unpredictable: bytes = b"\x11\x22\x33\x44") -> bytes:
    out = b""
    for tag, length in dol:
        value = unpredictable if tag == 0x9F37 else TERMINAL_DATA.get(tag, bytes(length))
        out += value[:length].rjust(length, b"\x00")
    return out


def ppse_entries(card: VirtualCard) -> list[Tlv]:
    fci = parse_one(ok_body(card.respond(select(PPSE_NAME))), expect=0x6F)
    directory = fci.find(0xBF0C)
    assert directory is not None and directory.children is not None
    return [entry for entry in directory.children if entry.tag == 0x61]


def qvsdc_flow(card: VirtualCard, aid: bytes, unpredictable: bytes = b"\x11\x22\x33\x44") -> dict[int, bytes]:
    """SELECT PPSE, SELECT AID, GPO with the PDOL filled, READ RECORD per AFL: all the card's data."""
    ppse_entries(card)
    fci = parse(ok_body(card.respond(select(aid))))
    pdol = parse_dol(flatten(fci)[0x9F38])
    gpo_answer = parse_one(ok_body(card.respond(gpo(fill_dol(pdol, unpredictable)))), expect=0x77)
    data = flatten([gpo_answer])
    data.update({f"gpo:{tag:X}": value for tag, value in data.items()})  # type: ignore[misc]
    afl = data[0x94]
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        for record in range(first, last + 1):
            for key, value in flatten([parse_one(ok_body(card.respond(read_record(sfi, record))),
                                                 expect=0x70)]).items():
                data.setdefault(key, value)
    return data


def pan_of(data: dict[int, bytes]) -> str:
    return data[0x5A].hex().upper().rstrip("F")


def today_yymmdd() -> str:
    return datetime.now(UTC).strftime("%y%m%d")


# -- every profile ------------------------------------------------------------------------------------------


def test_every_listed_profile_exists_with_luhn_valid_pans_and_plausible_atr_and_uid():
    expected = {"visa", "mastercard", "unionpay", "multi_aid", "no_ppse", "expired", "denied", "blocked",
                "gpo_refused", "garbage", "pulled"}
    assert expected <= set(PROFILES)
    pans = set()
    for name in PROFILES:
        card = make_card(name)
        assert card.name == name
        assert luhn_valid(card.pan), name
        for app in card.profile.apps:
            assert app.pan is None or luhn_valid(app.pan)
        pans.add(card.pan)
        # contactless ATR per PC/SC part 3: 3B 8n 80 01 <n historical bytes> TCK, XOR of T0..TCK == 0
        atr = card.atr
        assert atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01"
        assert len(atr) == 4 + (atr[1] & 0x0F) + 1
        check = 0
        for byte in atr[1:]:
            check ^= byte
        assert check == 0
        assert len(card.uid) in (4, 7)
        assert make_card(name).uid == card.uid  # stable per profile
    assert len(pans) == len(PROFILES)  # denied, expired ... each has its own card token
    assert not luhn_valid("4761739001010011")
    assert contactless_atr(b"") == bytes.fromhex("3B80800101")  # TCK = 80 ^ 80 ^ 01


def test_visa_answers_the_qvsdc_flow_in_three_plus_one_commands():
    card = make_card("visa")
    entries = ppse_entries(card)
    assert [flatten([e])[0x4F] for e in entries] == [VISA]
    fci = flatten(parse(ok_body(card.respond(select(VISA)))))
    assert fci[0x84] == VISA
    assert parse_dol(fci[0x9F38]) == VISA_PDOL == (
        (0x9F66, 4), (0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3), (0x9C, 1),
        (0x9F37, 4))
    answer = parse_one(ok_body(card.respond(gpo(fill_dol(VISA_PDOL)))), expect=0x77)  # format 2
    gpo_data = flatten([answer])
    assert {0x82, 0x94, 0x57, 0x9F10, 0x9F26, 0x9F27, 0x9F36, 0x9F6C, 0x5F34} <= set(gpo_data)
    assert gpo_data[0x94] == bytes([0x08, 1, 1, 0])  # ONE record: SFI 1, record 1
    assert gpo_data[0x9F27][0] in (0x40, 0x80)
    assert len(gpo_data[0x9F26]) == 8
    record = flatten([parse_one(ok_body(card.respond(read_record(1, 1))), expect=0x70)])
    assert pan_of(record) == card.pan == "4761739001010010"
    assert record[0x5F24].hex() > today_yymmdd()  # expiry in the future
    assert record[0x5F28] == bytes.fromhex("0840")
    assert record[0x5F20] == b"TEST/CARDHOLDER"
    track2 = gpo_data[0x57].hex().upper()
    assert track2.startswith(card.pan + "D" + record[0x5F24].hex()[:4])
    assert card.apdu_count == 4
    assert sw(card.respond(generate_ac(0x80, bytes(43)))) == 0x6985  # a qVSDC card needs no GENERATE AC


def test_atc_increments_per_transaction_and_survives_reset_and_the_cryptogram_follows_the_data():
    card = make_card("visa")
    first = qvsdc_flow(card, VISA, b"\x01\x02\x03\x04")
    card.reset()
    second = qvsdc_flow(card, VISA, b"\x01\x02\x03\x04")
    card.reset()
    third = qvsdc_flow(card, VISA, b"\x0a\x0b\x0c\x0d")
    atcs = [int.from_bytes(d[0x9F36], "big") for d in (first, second, third)]
    assert atcs == [1, 2, 3]
    assert ok_body(card.respond(get_data(0x9F36))) == bytes.fromhex("9F36020003")
    assert ok_body(card.respond(get_data(0x9F17))) == bytes.fromhex("9F170103")
    assert sw(card.respond(get_data(0x9F13))) == 0x6A88
    assert len({first[0x9F26], second[0x9F26], third[0x9F26]}) == 3
    assert card.apdu_count == 4 + 3  # reset zeroes the command count, not the ATC


def test_state_machine_and_error_status_words():
    card = make_card("visa")
    pdol_data = fill_dol(VISA_PDOL)
    assert card.respond(gpo(pdol_data)) == bytes.fromhex("6985")  # GPO before SELECT
    assert card.respond(read_record(1, 1)) == bytes.fromhex("6985")  # READ RECORD before GPO
    assert card.respond(select(bytes.fromhex("A0000000999999"))) == bytes.fromhex("6A82")  # unknown file
    assert card.respond(select(b"1PAY.SYS.DDF01")) == bytes.fromhex("6A82")  # no contact PSE
    assert card.respond(bytes.fromhex("00A4000002 3F00 00".replace(" ", ""))) == bytes.fromhex("6A86")
    assert card.respond(bytes.fromhex("0084000008")) == bytes.fromhex("6D00")  # GET CHALLENGE: unknown
    assert card.respond(bytes.fromhex("80A4040007A000000003101000")) == bytes.fromhex("6E00")  # wrong CLA
    assert card.respond(b"\x00\xa4") == bytes.fromhex("6700")
    assert card.respond(bytes.fromhex("00A4040007A0000000")) == bytes.fromhex("6700")  # Lc past the end
    ok_body(card.respond(select(VISA)))
    assert card.respond(gpo(pdol_data[:-1])) == bytes.fromhex("6700")  # PDOL data one byte short
    assert card.respond(bytes.fromhex("80A8000000")) == bytes.fromhex("6700")
    assert card.respond(bytes.fromhex("80A8010002830000")) == bytes.fromhex("6A86")
    ok_body(card.respond(gpo(pdol_data)))
    assert card.respond(read_record(1, 2)) == bytes.fromhex("6A83")  # not in the AFL
    assert card.respond(read_record(2, 1)) == bytes.fromhex("6A83")
    assert card.respond(bytes.fromhex("00B2010000")) == bytes.fromhex("6A86")  # P2 without 100 in b3..b1
    assert card.respond(bytes.fromhex("00B2000C00")) == bytes.fromhex("6A86")  # record 0
    ok_body(card.respond(read_record(1, 1)))
    # a new SELECT starts over: the record is out of reach until the next GPO
    ok_body(card.respond(select(VISA)))
    assert card.respond(read_record(1, 1)) == bytes.fromhex("6985")
    # partial name selection, and "next occurrence" finds no second Visa application
    assert flatten(parse(ok_body(card.respond(select(bytes.fromhex("A000000003"))))))[0x84] == VISA
    assert card.respond(select(bytes.fromhex("A000000003"), p2=0x02)) == bytes.fromhex("6A82")


def test_mastercard_answers_format_1_and_generate_ac_in_four_plus_two_commands():
    card = make_card("mastercard")
    entries = ppse_entries(card)
    assert [flatten([e])[0x4F] for e in entries] == [MASTERCARD]
    fci = flatten(parse(ok_body(card.respond(select(MASTERCARD)))))
    assert 0x9F38 not in fci  # no PDOL: GPO data is 83 00
    answer = parse_one(ok_body(card.respond(bytes.fromhex("80A8000002830000"))), expect=0x80)
    aip, afl = answer.value[:2], answer.value[2:]
    assert aip == bytes.fromhex("1980")
    records = [(afl[i] >> 3, r) for i in range(0, len(afl), 4) for r in range(afl[i + 1], afl[i + 2] + 1)]
    assert len(records) == 2
    data: dict[int, bytes] = {}
    for sfi, number in records:
        data.update(flatten([parse_one(ok_body(card.respond(read_record(sfi, number))), expect=0x70)]))
    assert {0x5A, 0x5F24, 0x57, 0x8C, 0x8D} <= set(data)
    assert pan_of(data) == card.pan == "5413330089010434"
    cdol1 = parse_dol(data[0x8C])
    assert cdol1 == MASTERCARD_CDOL1
    assert data[0x8C].hex().upper() == "9F02069F03069F1A0295055F2A029A039C019F37049F35019F45029F4C089F3403"
    cdol1_data = fill_dol(cdol1)
    assert len(cdol1_data) == 43
    answer = flatten([parse_one(ok_body(card.respond(generate_ac(0x80, cdol1_data))), expect=0x77)])
    assert answer[0x9F27] == b"\x80"  # ARQC asked, ARQC given
    assert answer[0x9F36] == b"\x00\x01"
    assert len(answer[0x9F26]) == 8 and 0x9F10 in answer
    assert card.apdu_count == 4 + 2
    card.reset()
    ok_body(card.respond(select(MASTERCARD)))
    ok_body(card.respond(bytes.fromhex("80A8000002830000")))
    assert card.respond(generate_ac(0x80, cdol1_data[:-1])) == bytes.fromhex("6700")  # Lc != CDOL1 length
    assert card.respond(generate_ac(0x80, cdol1_data + b"\x00")) == bytes.fromhex("6700")
    ok_body(card.respond(generate_ac(0x80, cdol1_data)))
    # second GENERATE AC with CDOL2 data (after the online answer): TC
    cdol2_data = fill_dol(parse_dol(data[0x8D]))
    assert card.respond(generate_ac(0x40, cdol1_data)) == bytes.fromhex("6700")
    second = flatten([parse_one(ok_body(card.respond(generate_ac(0x40, cdol2_data))), expect=0x77)])
    assert second[0x9F27] == b"\x40"
    assert card.respond(generate_ac(0x40, cdol2_data)) == bytes.fromhex("6985")  # no third one


def test_mastercard_generate_ac_before_gpo_and_card_choice_for_tc():
    card = make_card("mastercard")
    ok_body(card.respond(select(MASTERCARD)))
    cdol1_data = fill_dol(MASTERCARD_CDOL1)
    assert card.respond(generate_ac(0x80, cdol1_data)) == bytes.fromhex("6985")  # before GPO
    ok_body(card.respond(bytes.fromhex("80A8000002830000")))
    assert card.respond(generate_ac(0xC0, cdol1_data)) == bytes.fromhex("6A86")  # RFU cryptogram type
    # asked for TC, the default card wants to go online (ARQC)
    answer = flatten(parse(ok_body(card.respond(generate_ac(0x40, cdol1_data)))))
    assert answer[0x9F27] == b"\x80"
    offline = make_card("mastercard", cid=0x40)
    ok_body(offline.respond(select(MASTERCARD)))
    ok_body(offline.respond(bytes.fromhex("80A8000002830000")))
    assert flatten(parse(ok_body(offline.respond(generate_ac(0x40, cdol1_data)))))[0x9F27] == b"\x40"
    assert offline.respond(generate_ac(0x40, cdol1_data)) == bytes.fromhex("6985")  # TC ends it
    declining = make_card("mastercard", cid=0x00)  # the card declines whatever is asked
    ok_body(declining.respond(select(MASTERCARD)))
    ok_body(declining.respond(bytes.fromhex("80A8000002830000")))
    assert flatten(parse(ok_body(declining.respond(generate_ac(0x80, cdol1_data)))))[0x9F27] == b"\x00"
    assert declining.respond(generate_ac(0x40, bytes(29))) == bytes.fromhex("6985")  # no second one after AAC


def test_unionpay_is_qvsdc_like_with_its_own_pdol_and_no_name():
    card = make_card("unionpay")
    data = qvsdc_flow(card, UNIONPAY)
    assert pan_of(data) == card.pan == "6212345678901232"
    fci = flatten(parse(ok_body(card.respond(select(UNIONPAY)))))
    pdol_tags = {tag for tag, _ in parse_dol(fci[0x9F38])}
    assert {0x9F66, 0x9F02, 0x9F37, 0x5F2A, 0x9F1A, 0x9A, 0x9C, 0x95} <= pdol_tags
    assert 0x5F20 not in data and 0x9F0B not in data  # the name is optional
    assert card.apdu_count == 4 + 1  # the flow plus the extra SELECT


def test_multi_aid_lists_three_applications_with_priorities_and_answers_each():
    card = make_card("multi_aid")
    entries = [flatten([e]) for e in ppse_entries(card)]
    assert [e[0x4F] for e in entries] == [bytes.fromhex(AID_UNSUPPORTED), UNIONPAY, VISA]
    assert [e.get(0x87) for e in entries] == [None, b"\x02", b"\x01"]
    by_priority = sorted((e for e in entries if 0x87 in e), key=lambda e: e[0x87])
    assert by_priority[0][0x4F] == VISA
    for entry in entries:
        assert flatten(parse(ok_body(card.respond(select(entry[0x4F])))))[0x84] == entry[0x4F]
    card.reset()
    assert pan_of(qvsdc_flow(card, VISA)) == card.pan
    card.reset()
    unionpay_pan = pan_of(qvsdc_flow(card, UNIONPAY))
    assert unionpay_pan.startswith("62") and luhn_valid(unionpay_pan)


def test_no_ppse_expired_denied_blocked_gpo_refused():
    no_ppse = make_card("no_ppse")
    assert no_ppse.respond(select(PPSE_NAME)) == bytes.fromhex("6A82")
    ok_body(no_ppse.respond(select(VISA)))
    assert pan_of(qvsdc_flow(make_card("visa", ppse=True, pan=no_ppse.pan), VISA)) == no_ppse.pan

    expired = qvsdc_flow(make_card("expired"), VISA)
    assert expired[0x5F24].hex() == "231231" < today_yymmdd()
    assert expired[0x57].hex().upper().split("D")[1].startswith("2312")

    denied = make_card("denied")
    assert pan_of(qvsdc_flow(denied, VISA)) == denied.pan != make_card("visa").pan

    blocked = make_card("blocked")
    assert len(ppse_entries(blocked)) == 1
    assert blocked.respond(select(VISA)) == bytes.fromhex("6A81")
    assert blocked.respond(gpo(fill_dol(VISA_PDOL))) == bytes.fromhex("6985")

    refused = make_card("gpo_refused")
    ok_body(refused.respond(select(VISA)))
    assert refused.respond(gpo(fill_dol(VISA_PDOL))) == bytes.fromhex("6985")
    assert refused.respond(get_data(0x9F36)) == bytes.fromhex("9F3602000090 00".replace(" ", ""))


def test_garbage_answers_malformed_tlv_and_non_tlv_bytes():
    card = make_card("garbage")
    answer = card.respond(select(PPSE_NAME))
    assert sw(answer) == 0x9000
    with pytest.raises(TlvError, match="says 64 bytes"):
        parse(answer[:-2])
    answer = card.respond(select(VISA))
    assert answer == bytes.fromhex("DEADBEEF9000")
    with pytest.raises(TlvError):
        parse(answer[:-2])


def test_pulled_card_leaves_the_field_after_the_gpo():
    card = make_card("pulled")
    ok_body(card.respond(select(PPSE_NAME)))
    ok_body(card.respond(select(VISA)))
    assert not card.removed
    ok_body(card.respond(gpo(fill_dol(VISA_PDOL))))  # the GPO is still answered...
    assert card.removed  # ...then the card is gone
    assert card.respond(read_record(1, 1)) == b""
    assert card.apdu_count == 3
    card.reset()  # tapped again
    assert not card.removed and card.apdu_count == 0
    ok_body(card.respond(select(PPSE_NAME)))


def test_make_card_overrides_and_errors():
    card = make_card("visa", pan="4111111111111111", expiry="301130", cardholder_name="DOE/JANE",
                     cid=0x40, remove_after=None)
    data = qvsdc_flow(card, VISA)
    assert pan_of(data) == card.pan == "4111111111111111"
    assert data[0x5F24] == bytes.fromhex("301130") and data[0x5F20] == b"DOE/JANE"
    assert data[0x9F27] == b"\x40"
    assert qvsdc_flow(make_card("visa", ctq="0080"), VISA)[0x9F6C] == b"\x00\x80"  # a phone: CDCVM done
    assert make_card(PROFILES["mastercard"]).pan == "5413330089010434"
    with pytest.raises(ValueError, match="no card profile 'amex'"):
        make_card("amex")
    with pytest.raises(TypeError, match="colour"):
        make_card("visa", colour="gold")
    with pytest.raises(ValueError, match="PAN"):
        make_card("visa", pan="12AB")
    assert "4761739001010010" not in repr(make_card("visa"))


def test_respond_never_raises_on_odd_input():
    card = make_card("mastercard")
    for apdu in (b"", b"\x00", bytes(4), bytes(5), bytes(300), b"\xff" * 9, bytes.fromhex("00A4040000"),
                 bytes.fromhex("00A40400000005A000000004"), bytearray(select(MASTERCARD))):
        answer = card.respond(apdu)
        assert len(answer) >= 2
    assert card.apdu_count == 9


def test_respond_is_fast():
    """The benchmark calls respond in its hot path: a full flow stays well under 50 µs per command."""
    visa, mastercard = make_card("visa"), make_card("mastercard")
    visa_flow = [select(PPSE_NAME), select(VISA), gpo(fill_dol(VISA_PDOL)), read_record(1, 1)]
    mc_flow = [select(PPSE_NAME), select(MASTERCARD), bytes.fromhex("80A8000002830000"), read_record(1, 1),
               read_record(1, 2), generate_ac(0x80, fill_dol(MASTERCARD_CDOL1))]
    rounds = 500
    started = time.perf_counter()
    for _ in range(rounds):
        visa.reset()
        for apdu in visa_flow:
            visa.respond(apdu)
        mastercard.reset()
        for apdu in mc_flow:
            mastercard.respond(apdu)
    per_apdu = (time.perf_counter() - started) / (rounds * (len(visa_flow) + len(mc_flow)))
    assert per_apdu < 50e-6, f"{per_apdu * 1e6:.1f} µs per APDU"
    assert visa.atc == rounds and sw(mastercard.respond(get_data(0x9F36))) == 0x9000


# -- the in-process reader -----------------------------------------------------------------------------------


def test_tap_gives_exactly_one_session_then_none_once_then_the_next_tap():
    reader = SimReader()
    assert reader.status().state == "ready"
    assert reader.wait_for_card(0) is None
    first, second = make_card("visa"), make_card("mastercard")
    assert reader.tap(first) and reader.tap(second)
    assert reader.status().state == "card_present"
    with reader.wait_for_card(1) as session:
        assert session.uid == first.uid and session.atr == first.atr
        assert sw(session.transmit(select(PPSE_NAME))) == 0x9000
        assert reader.wait_for_card(0.01) is None  # the tapped card gives no second session
    assert reader.wait_for_card(1) is None  # the field is empty: None once, at once
    session = reader.wait_for_card(1)
    assert session is not None and session.uid == second.uid
    session.close()
    session.close()  # idempotent
    assert reader.wait_for_card(0) is None
    assert reader.wait_for_card(0) is None
    assert reader.status().state == "ready"
    with pytest.raises(CardRemovedError):
        session.transmit(select(PPSE_NAME))


def test_tapped_card_is_powered_on_fresh():
    reader = SimReader()
    card = make_card("visa")
    ok_body(card.respond(select(VISA)))
    reader.tap(card)
    session = reader.wait_for_card(1)
    assert card.apdu_count == 0
    assert session.transmit(gpo(fill_dol(VISA_PDOL))) == bytes.fromhex("6985")  # nothing selected yet


def test_wait_for_card_times_out_without_busy_waiting():
    reader = SimReader()
    started_wall, started_cpu = time.monotonic(), time.process_time()
    assert reader.wait_for_card(0.3) is None
    wall, cpu = time.monotonic() - started_wall, time.process_time() - started_cpu
    assert 0.28 <= wall < 1.0
    assert cpu < 0.1  # a waiting thread sleeps on the condition


def wait_until_sleeping_in_wait_for_card(thread: threading.Thread, timeout: float = 5.0) -> None:
    """Return once `thread` is inside the reader's `Condition.wait` in `wait_for_card`, as its stack shows
    (sys._current_frames, CPython's documented view of other threads' frames). From then on a tap or
    an unplug has to wake it: the reader's lock is only released to a tap once the waiter is queued."""
    deadline = time.monotonic() + timeout
    while True:
        frame, calls = sys._current_frames().get(thread.ident), []
        while frame is not None:
            calls.append((frame.f_code.co_name, frame.f_code.co_filename))
            frame = frame.f_back
        names = [name for name, _ in calls]  # innermost first
        at = names.index("wait_for_card") if "wait_for_card" in names else 0
        if at and calls[at - 1] == ("wait", threading.__file__):  # wait_for_card -> Condition.wait
            return
        assert thread.is_alive() and time.monotonic() < deadline, "the thread never waited for a card"
        time.sleep(0.001)


def test_a_tap_from_another_thread_wakes_the_waiting_watcher():
    reader = SimReader()
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(reader.wait_for_card(30)), daemon=True)
    thread.start()
    wait_until_sleeping_in_wait_for_card(thread)
    reader.tap(make_card("unionpay"))
    thread.join(5)  # far less than its 30 s: only the tap can have woken it
    assert not thread.is_alive()
    assert got and got[0] is not None and got[0].card.name == "unionpay"


def test_many_taps_from_one_thread_are_all_served_in_order_by_a_watcher_thread():
    reader = SimReader()
    served: list[str] = []
    names = ["visa", "mastercard", "unionpay", "denied", "expired"] * 4

    def watcher() -> None:
        while len(served) < len(names):
            session = reader.wait_for_card(2)
            if session is None:
                continue
            with session:
                assert sw(session.transmit(select(PPSE_NAME))) == 0x9000
                served.append(session.card.name)

    thread = threading.Thread(target=watcher)
    thread.start()
    for name in names:
        reader.tap(make_card(name))
    thread.join(10)
    assert not thread.is_alive()
    assert served == names


def test_place_and_remove():
    reader = SimReader()
    card = make_card("visa")
    reader.place(card)
    first = reader.wait_for_card(1)
    ok_body(first.transmit(select(VISA)))
    first.close()
    second = reader.wait_for_card(1)  # a placed card stays: a new session, powered on again
    assert second is not None and card.apdu_count == 0
    third = reader.wait_for_card(1)  # a new session ends the previous one
    with pytest.raises(CardRemovedError):
        second.transmit(select(PPSE_NAME))
    reader.remove()
    with pytest.raises(CardRemovedError):
        third.transmit(select(PPSE_NAME))
    assert reader.wait_for_card(1) is None
    started = time.monotonic()
    assert reader.wait_for_card(0.1) is None
    assert time.monotonic() - started >= 0.09
    assert reader.status().state == "ready"


def test_pulled_card_through_the_reader_raises_card_removed():
    reader = SimReader()
    reader.tap(make_card("pulled"))
    session = reader.wait_for_card(1)
    session.transmit(select(PPSE_NAME))
    session.transmit(select(VISA))
    assert sw(session.transmit(gpo(fill_dol(VISA_PDOL)))) == 0x9000
    with pytest.raises(CardRemovedError) as caught:
        session.transmit(read_record(1, 1))
    assert caught.value.outcome == "tap_again"
    session.close()
    assert reader.wait_for_card(0) is None


def test_unplug_and_plug():
    reader = SimReader()
    reader.place(make_card("visa"))
    session = reader.wait_for_card(1)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            reader.wait_for_card(30)
        except ReaderUnavailableError as exc:
            errors.append(exc)

    reader.remove()
    assert reader.wait_for_card(0) is None
    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    wait_until_sleeping_in_wait_for_card(thread)
    reader.unplug()  # wakes the waiting thread, which raises
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1
    assert reader.status().state == "absent"
    with pytest.raises(ReaderUnavailableError, match="unplugged"):
        reader.wait_for_card(0.1)
    with pytest.raises(ReaderUnavailableError):
        session.transmit(select(PPSE_NAME))
    assert reader.tap(make_card("visa")) is False  # an unplugged reader does not see the tap
    reader.plug()
    assert reader.status().state == "ready"
    assert reader.wait_for_card(0) is None  # the tap made while unplugged is lost
    reader.tap(make_card("visa"))
    assert reader.wait_for_card(1) is not None
    reader.close()
    reader.close()
    assert reader.status().state == "absent"
    with pytest.raises(ReaderUnavailableError):
        reader.wait_for_card(0)


def test_unplug_during_a_session():
    reader = SimReader()
    reader.tap(make_card("mastercard"))
    session = reader.wait_for_card(1)
    ok_body(session.transmit(select(PPSE_NAME)))
    reader.unplug()
    with pytest.raises(ReaderUnavailableError):
        session.transmit(select(MASTERCARD))
    reader.plug()
    assert reader.wait_for_card(0.05) is None  # the card was lost with the reader


def test_reader_logs_carry_no_pan(caplog):
    caplog.set_level(logging.DEBUG)
    reader = SimReader()
    card = make_card("pulled")
    reader.tap(card)
    session = reader.wait_for_card(1)
    for apdu in (select(PPSE_NAME), select(VISA), gpo(fill_dol(VISA_PDOL)), read_record(1, 1)):
        try:
            session.transmit(apdu)
        except CardRemovedError:
            break
    reader.unplug()
    assert caplog.records
    assert card.pan not in caplog.text


# -- replay of the shared vectors ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vectors_path(shared_vectors):
    return shared_vectors  # skipped without the vectors, failed under WALLETPOS_REQUIRE_VECTORS=1


def test_every_vector_sequence_replays_each_command(vectors_path):
    cards = load_vector_cards(vectors_path)
    items = [i for i in load_vector_items(vectors_path) if i["kind"] == "emv_apdu_sequence"]
    assert len(cards) == len(items) == 25
    unknown_command = bytes.fromhex("80A8000002830000")
    for (label, card), item in zip(cards, items, strict=True):
        assert label == item["label"] == card.name
        for step, raw in zip(card.steps, item["data"], strict=True):
            answer = card.respond(step.command if step.command is not None else unknown_command)
            assert len(answer) >= 2, label
            if raw["response"] is None:
                continue  # the trace has no answer: the card answers some recorded step instead
            expected = bytes.fromhex(raw["response"])
            if card.bare_responses:
                expected += b"\x90\x00"
            assert answer == expected, f"{label}: {raw['command']}"
        assert card.apdu_count == len(item["data"])


def test_replay_matching_ignores_le_and_transaction_data(vectors_path):
    cards = dict(load_vector_cards(vectors_path))
    lloyds = next(card for label, card in cards.items() if label.startswith("Real UK Visa Debit"))
    assert lloyds.bare_responses
    assert sw(lloyds.respond(select(PPSE_NAME))) == 0x9000
    fci = flatten(parse(ok_body(lloyds.respond(select(VISA)[:-1]))))  # no Le
    pdol = parse_dol(fci[0x9F38])
    answer = ok_body(lloyds.respond(gpo(fill_dol(pdol, b"\x99\x88\x77\x66"))))  # our own UN and amount
    gpo_data = flatten(parse(answer))
    assert {0x82, 0x57, 0x9F26} <= set(gpo_data)
    assert lloyds.pan and gpo_data[0x57].hex().upper().startswith(lloyds.pan)
    # an unknown AID and an unknown instruction get the status words a card would give
    assert lloyds.respond(select(bytes.fromhex("A0000000041010"))) == bytes.fromhex("6A82")
    assert lloyds.respond(bytes.fromhex("0084000008")) == bytes.fromhex("6D00")
    assert command_key(bytes.fromhex("00B2010C00")) == command_key(bytes.fromhex("00B2010C4F"))
    assert command_key(gpo(b"\x01\x02")) == command_key(bytes.fromhex("80A8000002830000"))


def test_replay_retries_and_repeats_find_their_answers(vectors_path):
    cards = dict(load_vector_cards(vectors_path))
    card = next(c for label, c in cards.items() if "6C4F then re-sent" in label)
    assert card.respond(select(PPSE_NAME)) == bytes.fromhex("6700")
    ok_body(card.respond(bytes.fromhex("00A4040005A00000000300")))
    ok_body(card.respond(bytes.fromhex("80A8000002830000")))  # blank in the trace: answered in order
    assert card.respond(bytes.fromhex("00B2010C00")) == bytes.fromhex("6C4F")
    record = flatten(parse(ok_body(card.respond(bytes.fromhex("00B2010C4F")))))
    assert 0x57 in record
    # a terminal that selects again gets the recorded FCI again
    ok_body(card.respond(bytes.fromhex("00A4040005A00000000300")))
    card.reset()
    assert card.apdu_count == 0 and card.respond(select(PPSE_NAME)) == bytes.fromhex("6700")

    mchip = next(c for label, c in cards.items() if label.startswith("Mastercard M/Chip contact"))
    ok_body(mchip.respond(select(MASTERCARD)))
    answer = ok_body(mchip.respond(bytes.fromhex("80A8000002830000")))  # first GPO has no recorded answer
    assert parse_one(answer).tag == 0x77


def test_replay_cards_work_through_the_sim_reader(vectors_path):
    reader = SimReader()
    for _, card in load_vector_cards(vectors_path):
        reader.tap(card)
        session = reader.wait_for_card(1)
        assert session is not None
        with session:
            assert len(session.transmit(select(PPSE_NAME))) >= 2
        assert reader.wait_for_card(0) is None


def test_shared_vectors_path_honours_the_environment(monkeypatch, tmp_path, vectors_path):
    monkeypatch.setenv("WALLETPOS_VECTORS", str(tmp_path))
    assert shared_vectors_path() is None
    monkeypatch.setenv("WALLETPOS_VECTORS", str(vectors_path / "public_vectors.json"))
    assert shared_vectors_path() == vectors_path
    with pytest.raises(ValueError, match="emv_apdu_sequence"):
        ReplayCard({"kind": "mpm_qr", "data": "000201"})
