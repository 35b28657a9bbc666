"""The pure parts of saved traces and of the technician's view of a tap (`terminal.core.traces`,
`terminal.core.atr`): redaction keeps no card number, a replay substitutes a Luhn-valid test PAN with
the same first six and last four digits, the TLV tree masks what the kernel masks, ATRs in words."""

from __future__ import annotations

import pytest

from drivers.sim.cards import contactless_atr
from terminal.core import tlv
from terminal.core.atr import describe_atr
from terminal.core.cardmask import luhn_valid, mask_card_numbers_in_hex
from terminal.core.traces import (
    Exchange,
    check_trace_item,
    command_name,
    redact_response,
    replayable,
    substitute_pan,
    tlv_tree,
    trace_item,
)

PAN = "4761739001010010"
RECORD = tlv.encode(0x70, [tlv.encode(0x5A, bytes.fromhex(PAN)), tlv.encode(0x5F24, bytes.fromhex("251231")),
                           tlv.encode(0x5F20, b"CARDHOLDER/VISA"),
                           tlv.encode(0x57, bytes.fromhex(PAN + "D2512201114380448F")),
                           tlv.encode(0x9F7C, bytes.fromhex("00" + PAN + "00"))]) + b"\x90\x00"


def test_a_response_keeps_no_card_number_and_names_the_masked_one():
    redacted, masked = redact_response(RECORD)
    assert masked == "476173******0010"
    assert PAN not in redacted and b"CARDHOLDER".hex().upper() not in redacted
    assert "476173******0010D2512201" + "*" * 9 in redacted  # expiry and service code kept, the rest masked
    assert "5F2403251231" in redacted  # the expiry stays: an expired card replays as expired
    assert redacted.endswith("9000")
    assert mask_card_numbers_in_hex(redacted) == redacted  # no Luhn-valid number left, under any tag


def test_a_malformed_answer_is_masked_as_hex():
    answer = bytes.fromhex("6F40" + PAN) + b"\x90\x00"  # the length says more than there is
    redacted, masked = redact_response(answer)
    assert masked is None and PAN not in redacted and "*" in redacted and redacted.endswith("9000")


def test_the_substitute_pan_is_luhn_valid_and_shows_the_same_digits():
    for masked in ("476173******0010", "541333******0434", "374245*****1006", "622202*********1234"):
        pan = substitute_pan(masked)
        assert luhn_valid(pan) and len(pan) == len(masked)
        assert pan[:6] == masked[:6] and pan[-4:] == masked[-4:]
    with pytest.raises(ValueError):
        substitute_pan("4761739001010010")


def test_a_saved_trace_replays_with_the_substitute_and_vectors_stay_as_they_are():
    item = trace_item([Exchange(bytes.fromhex("00B2010C00"), RECORD, 0.5), Exchange(bytes.fromhex("00B2020C00"),
                                                                                    None, 1.0)],
                      label="t", source="walletpos:T1", outcome="tap_again", message="gone")
    assert item["expected"] == {"outcome": "tap_again", "masked_pan": "476173******0010", "card_left_field": True}
    assert check_trace_item(item) is item
    replay = replayable(item)
    response = replay["data"][0]["response"]
    assert "*" not in response and substitute_pan("476173******0010") in response
    assert replay["data"][1]["response"] is None
    vector = {"kind": "emv_apdu_sequence", "data": [{"command": "00A4", "response": "9000"}]}
    assert replayable(vector)["data"] == vector["data"]
    with pytest.raises(ValueError, match="not hex"):
        check_trace_item({"kind": "emv_apdu_sequence", "data": [{"command": "XYZ", "response": None}]})


def test_the_tree_masks_what_the_kernel_masks():
    lines = tlv_tree(RECORD[:-2])
    text = "\n".join(lines)
    assert lines[0] == "70 record template"
    assert "  5A PAN: 476173******0010" in lines and "  5F24 expiry date: <3 bytes masked>" in lines
    assert "  5F20 card-holder name: <15 bytes masked>" in lines
    assert PAN not in text and "CARDHOLDER" not in text
    exclusive = next(line for line in lines if line.startswith("  9F7C customer exclusive data: "))
    assert "******" in exclusive and exclusive.endswith("1000")  # a PAN under any tag is masked too
    assert tlv_tree(b"\x6f\x40\x01")[0].startswith("not TLV")


def test_command_names():
    assert command_name(bytes.fromhex("00A404000E325041592E5359532E444446303100")) == "SELECT 2PAY.SYS.DDF01"
    assert command_name(bytes.fromhex("00A4040007A000000003101000")) == "SELECT A0000000031010"
    assert command_name(bytes.fromhex("00B2011400")) == "READ RECORD 1 of SFI 2"
    assert command_name(bytes.fromhex("80AE800000")) == "GENERATE AC (ARQC)"
    assert command_name(bytes.fromhex("80A8000002830000")) == "GET PROCESSING OPTIONS"


def test_atrs_in_words():
    contactless = describe_atr(contactless_atr(bytes.fromhex("0031C173C84000009000")))
    assert contactless.kind == "contactless_iso14443_4" and contactless.can_pay
    assert contactless.historical == "0031C173C84000009000" and contactless.protocols == ("T=0", "T=1")
    mifare = describe_atr(bytes.fromhex("3B8F8001804F0CA000000306030001000000006A"))
    assert mifare.kind == "contactless_storage" and not mifare.can_pay and "MIFARE Classic 1K" in mifare.meaning
    contact = describe_atr(bytes.fromhex("3B6800000073C84000009000"))
    assert contact.kind == "contact" and contact.protocols == ("T=0",)
    broken = bytearray(contactless_atr(b"\x00\x31"))
    broken[-1] ^= 0xFF
    assert describe_atr(bytes(broken)).kind == "invalid" and "TCK" in describe_atr(bytes(broken)).meaning
    assert describe_atr(b"\x00").kind == "invalid"
