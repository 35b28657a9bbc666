"""The contactless kernel (terminal.core.emv) against small SCRIPTED cards.

`ScriptedCard` below is a scripted card, not a virtual card: it answers each command from a table
(command-prefix -> response) so that one test can set exactly the card behaviour it is about. The real
virtual cards (drivers/sim/cards.py) run through pcscd/vpcd in the integration tests; here only the
kernel logic is under test. Masking, tokens and sealing use the real terminal.security functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from drivers.base import CardRemovedError
from terminal import security
from terminal.core import emv, tlv
from terminal.core.emv import Candidate, SupportedAid, TerminalParams, build_dol, candidates_from_ppse
from terminal.errors import CardError, TlvError

TOKEN_KEY = bytes(range(32))
OK = "9000"

# Synthetic card numbers made up for these tests (not from any vector file). The middle digits are
# distinctive so a leak into a trace or a repr is easy to detect.
VISA_PAN = "4929173582640017"
MC_PAN = "5412759364820042"

AID_VISA = "A0000000031010"
AID_MC = "A0000000041010"
VISA_PDOL = "9F6604 9F0206 9F0306 9F1A02 9505 5F2A02 9A03 9C01 9F3704"
MC_CDOL1 = "9F0206 9F0306 9F1A02 9505 5F2A02 9A03 9C01 9F3704 9F3501 9F4502 9F4C08 9F3403"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def enc(tag: int, *parts: bytes | str) -> bytes:
    """One TLV; `parts` are raw bytes or hex strings, concatenated."""
    return tlv.encode(tag, b"".join(h(p) if isinstance(p, str) else p for p in parts))


def hexs(*objects: bytes) -> str:
    return b"".join(objects).hex().upper()


def track2(pan: str, yymm: str) -> str:
    digits = f"{pan}D{yymm}2010000012300000"
    return digits + ("F" if len(digits) % 2 else "")


class ScriptedCard:
    """A scripted card (see the module docstring). `script` maps a command prefix (hex) to a response
    (hex, SW included) or to a list of responses given in turn (the last one repeats). The longest
    matching prefix wins; an unknown command gets 6D00. `sent` keeps every command in hex."""

    def __init__(self, script: dict[str, str | list[str]]) -> None:
        self.script = {k.replace(" ", "").upper(): v for k, v in script.items()}
        self.sent: list[str] = []
        self.turns: dict[str, int] = {}

    def transmit(self, apdu: bytes) -> bytes:
        command = apdu.hex().upper()
        self.sent.append(command)
        keys = [k for k in self.script if command.startswith(k)]
        if not keys:
            return h("6D00")
        key = max(keys, key=len)
        answer = self.script[key]
        if isinstance(answer, list):
            turn = self.turns.get(key, 0)
            self.turns[key] = turn + 1
            answer = answer[min(turn, len(answer) - 1)]
        return h(answer)


def select_cmd(aid_hex: str) -> str:
    return f"00A40400{len(h(aid_hex)):02X}{aid_hex}"


SELECT_PPSE = select_cmd(emv.PPSE.hex().upper())


def ppse(*entries: tuple[str, str, int | None]) -> str:
    """An FCI for SELECT PPSE listing (aid, label, priority or None) entries, with SW 9000."""
    items = []
    for aid, label, prio in entries:
        parts = [enc(0x4F, aid), enc(0x50, label.encode())]
        if prio is not None:
            parts.append(enc(0x87, f"{prio:02X}"))
        items.append(enc(0x61, *parts))
    return hexs(enc(0x6F, enc(0x84, emv.PPSE), enc(0xA5, enc(0xBF0C, *items)))) + OK


def fci(aid: str, label: str, pdol: str | None = None) -> str:
    a5 = [enc(0x50, label.encode()), enc(0x87, "01")]
    if pdol is not None:
        a5.append(enc(0x9F38, pdol))
    return hexs(enc(0x6F, enc(0x84, aid), enc(0xA5, *a5))) + OK


def afl(*entries: tuple[int, int, int]) -> str:
    return "".join(f"{sfi << 3:02X}{first:02X}{last:02X}00" for sfi, first, last in entries)


def read_record_cmd(sfi: int, rec: int) -> str:
    return f"00B2{rec:02X}{(sfi << 3) | 4:02X}"


def visa_card(*, records: int = 1, ctq: str = "2300", gpo: str | None = None, record: str | None = None,
              extra: dict[str, str | list[str]] | None = None) -> ScriptedCard:
    """A Visa-like qVSDC card: PDOL in the FCI, GPO format 2 with the cryptogram, `records` records in
    SFI 1 (the first holds 5A and 5F24)."""
    gpo_answer = gpo if gpo is not None else hexs(enc(
        0x77, enc(0x82, "2000"), enc(0x94, afl((1, 1, records))), enc(0x57, track2(VISA_PAN, "2812")),
        enc(0x5F34, "00"), enc(0x9F10, "06011203A00000"), enc(0x9F26, "AC1D00AC1D00AC1D"), enc(0x9F27, "80"),
        enc(0x9F36, "0042"), enc(0x9F6C, ctq))) + OK
    script: dict[str, str | list[str]] = {
        SELECT_PPSE: ppse((AID_VISA, "VISA", 1)),
        select_cmd(AID_VISA): fci(AID_VISA, "VISA DEBIT", VISA_PDOL),
        "80A8": gpo_answer,
        read_record_cmd(1, 1): record if record is not None else hexs(enc(
            0x70, enc(0x5A, VISA_PAN), enc(0x5F24, "281231"), enc(0x5F20, b"TEST/CARDHOLDER"),
            enc(0x5F28, "0826"))) + OK,
    }
    for rec in range(2, records + 1):
        script[read_record_cmd(1, rec)] = hexs(enc(0x70, enc(0x9F4A, "82"), enc(0x8F, f"{rec:02X}"))) + OK
    script.update(extra or {})
    return ScriptedCard(script)


def mastercard_card(*, records: int = 2, genac: str | None = None,
                    extra: dict[str, str | list[str]] | None = None) -> ScriptedCard:
    """A Mastercard-like M/Chip card: no PDOL, GPO format 1, track 2 in record 1, PAN/expiry/CDOL1 in
    record 2, the cryptogram only from GENERATE AC."""
    script: dict[str, str | list[str]] = {
        SELECT_PPSE: ppse((AID_MC, "MASTERCARD", 1)),
        select_cmd(AID_MC): fci(AID_MC, "Mastercard"),
        "80A8": hexs(enc(0x80, "1980", afl((1, 1, records)))) + OK,
        read_record_cmd(1, 1): hexs(enc(0x70, enc(0x57, track2(MC_PAN, "2711")), enc(0x5F20, b"TEST/MC"))) + OK,
        read_record_cmd(1, 2): hexs(enc(0x70, enc(0x5A, MC_PAN), enc(0x5F24, "271130"), enc(0x5F34, "01"),
                                        enc(0x8C, MC_CDOL1), enc(0x8D, "910A 8A02 9505 9F3704"))) + OK,
        "80AE": genac if genac is not None else hexs(enc(
            0x77, enc(0x9F27, "80"), enc(0x9F36, "0011"), enc(0x9F26, "0A1B2C3D4E5F6A7B"),
            enc(0x9F10, "0110A00000220000000000000000000000FF"))) + OK,
    }
    for rec in range(3, records + 1):
        script[read_record_cmd(1, rec)] = hexs(enc(0x70, enc(0x9F42, "0978"))) + OK
    script.update(extra or {})
    return ScriptedCard(script)


def make_params(amount: int = 1500, **changes) -> TerminalParams:
    base = TerminalParams(amount=amount, currency_numeric=978, country_numeric=250,
                          when=datetime(2026, 11, 23, 14, 5, 9), unpredictable_number=h("1A2B3C4D"),
                          floor_limit=0, cvm_required_limit=5000)
    return replace(base, **changes)


def run(card: ScriptedCard, params: TerminalParams | None = None,
        seal: Callable[[bytes], str] | None = None) -> emv.CardRead:
    return emv.read_card(card, params or make_params(), tokenize=lambda pan: security.card_token(pan, TOKEN_KEY),
                         mask=security.mask_pan, seal=seal)


def fails(card: ScriptedCard, params: TerminalParams | None = None) -> CardError:
    with pytest.raises(CardError) as info:
        run(card, params)
    return info.value


def gpo_data(card: ScriptedCard) -> bytes:
    """The PDOL data (inside tag 83) of the GET PROCESSING OPTIONS the card received."""
    (cmd,) = [h(c) for c in card.sent if c.startswith("80A8")]
    lc = cmd[4]
    return tlv.parse_one(cmd[5:5 + lc], expect=0x83).value


def pdol_values(card: ScriptedCard, pdol: str = VISA_PDOL) -> dict[int, bytes]:
    data, out, i = gpo_data(card), {}, 0
    for tag, length in tlv.parse_dol(h(pdol)):
        out[tag] = data[i:i + length]
        i += length
    assert i == len(data)
    return out


# -- whole transactions ---------------------------------------------------------------------------


def test_visa_like_card_three_plus_n_commands():
    card = visa_card()
    read = run(card)
    assert card.sent == [SELECT_PPSE + "00", select_cmd(AID_VISA) + "00", card.sent[2], read_record_cmd(1, 1) + "00"]
    assert card.sent[2].startswith("80A8000023" + "8321")  # Lc 35: 83 21 + 33 bytes of PDOL data
    assert read.apdu_count == 4 and not read.generate_ac
    assert read.scheme == "visa" and read.aid == AID_VISA and read.label == "VISA DEBIT"
    assert read.masked_pan == "492917******0017" == security.mask_pan(VISA_PAN)
    assert read.card_token == security.card_token(VISA_PAN, TOKEN_KEY)
    assert read.expiry == date(2028, 12, 31)  # 5F24 wins over the track 2 date
    assert read.cryptogram == "AC1D00AC1D00AC1D" and read.cid == "ARQC" and read.atc == 0x42
    assert read.iad == "06011203A00000" and read.aip == "2000" and read.pan_sequence == "00"
    assert read.extra == {"selection": "ppse"}


def test_mastercard_like_card_four_plus_n_commands_with_generate_ac():
    card = mastercard_card()
    read = run(card)
    assert [c[:8] for c in card.sent] == ["00A40400", "00A40400", "80A80000", "00B2010C", "00B2020C", "80AE8000"]
    assert card.sent[2] == "80A8000002830000"  # no PDOL: empty 83
    assert read.apdu_count == 6 and read.generate_ac
    assert read.scheme == "mastercard" and read.label == "Mastercard"
    assert read.masked_pan == security.mask_pan(MC_PAN) and read.expiry == date(2027, 11, 30)
    assert read.cid == "ARQC" and read.cryptogram == "0A1B2C3D4E5F6A7B" and read.atc == 0x11
    assert read.pan_sequence == "01" and read.aip == "1980"


def test_generate_ac_carries_the_cdol1_data():
    card = mastercard_card()
    run(card)
    cmd = h(card.sent[-1])
    assert cmd[:4] == h("80AE8000") and cmd[-1] == 0x00
    lc, data = cmd[4], cmd[5:-1]
    assert lc == len(data) == 43  # sum of the CDOL1 lengths
    values, i = {}, 0
    for tag, length in tlv.parse_dol(h(MC_CDOL1)):
        values[tag], i = data[i:i + length], i + length
    assert values[0x9F02] == h("000000001500") and values[0x9F03] == bytes(6)
    assert values[0x9F1A] == h("0250") and values[0x5F2A] == h("0978") and values[0x9A] == h("261123")
    assert values[0x9F37] == h("1A2B3C4D") and values[0x9F35] == h("22") and values[0x9F34] == h("3F0000")
    assert values[0x9F45] == bytes(2) and values[0x9F4C] == bytes(8)  # unknown to the terminal: zeros


@pytest.mark.parametrize(("changes", "p1"), [
    ({"amount": 1500, "floor_limit": 0}, "80"),  # above the floor: ARQC
    ({"amount": 1500, "floor_limit": 1500}, "40"),  # at the floor: TC
    ({"amount": 1500, "floor_limit": 0, "online_capable": False}, "40"),
])
def test_generate_ac_asks_arqc_only_when_online_is_required(changes, p1):
    card = mastercard_card()
    run(card, make_params(**changes))
    assert card.sent[-1].startswith("80AE" + p1 + "00")


@pytest.mark.parametrize("records", [1, 2, 3, 5])
def test_apdu_count_visa_is_3_plus_n(records):
    card = visa_card(records=records)
    assert run(card).apdu_count == 3 + records == len(card.sent)


@pytest.mark.parametrize("records", [2, 3, 6])
def test_apdu_count_mastercard_is_4_plus_n(records):
    card = mastercard_card(records=records)
    assert run(card).apdu_count == 4 + records == len(card.sent)


def test_no_generate_ac_when_the_card_already_gave_a_cryptogram():
    record = hexs(enc(0x70, enc(0x5A, VISA_PAN), enc(0x5F24, "281231"), enc(0x8C, MC_CDOL1))) + OK
    card = visa_card(record=record)
    read = run(card)
    assert not read.generate_ac and not any(c.startswith("80AE") for c in card.sent)


def test_no_cryptogram_and_no_cdol1_is_refused():
    card = mastercard_card(extra={read_record_cmd(1, 2): hexs(enc(0x70, enc(0x5A, MC_PAN))) + OK})
    err = fails(card)
    assert err.outcome == "try_another_card" and "CDOL1" in err.message


def test_generate_ac_format_1():
    card = mastercard_card(genac=hexs(enc(0x80, "40 0007 1122334455667788 06010A03A00000")) + OK)
    read = run(card)
    assert read.cid == "TC" and read.atc == 7 and read.cryptogram == "1122334455667788"
    assert read.iad == "06010A03A00000"


@pytest.mark.parametrize("answer", [
    hexs(enc(0x80, "40 0007 11223344")) + OK,  # format 1 too short
    hexs(enc(0x90, "00")) + OK,  # neither 80 nor 77
    "77 05 9F27 01" + OK,  # cut off
])
def test_generate_ac_malformed(answer):
    err = fails(mastercard_card(genac=answer.replace(" ", "")))
    assert isinstance(err, TlvError)


@pytest.mark.parametrize("sw", ["6985", "6A81", "6F00"])
def test_generate_ac_status_word(sw):
    err = fails(mastercard_card(genac=sw))
    assert err.outcome == "try_another_card" and "GENERATE AC" in err.message


# -- application selection ------------------------------------------------------------------------


def fci_objects(*entries) -> tuple[tlv.Tlv, ...]:
    return tlv.parse(h(ppse(*entries))[:-2])


def test_ppse_candidates_sorted_by_priority_then_card_order():
    objects = fci_objects(("A0000000041010", "MC", 3), ("A0000000031010", "VISA", 1),
                          ("A0000000032010", "ELECTRON", None), ("A0000000043060", "MAESTRO", 3),
                          ("A00000002501", "AMEX", 2))
    found = candidates_from_ppse(objects, emv.DEFAULT_AIDS)
    assert [(c.label, c.priority) for c in found] == [
        ("VISA", 1), ("AMEX", 2), ("MC", 3), ("MAESTRO", 3), ("ELECTRON", 16)]
    assert found[0] == Candidate(h("A0000000031010"), "visa", "VISA", 1, 1)


def test_ppse_priority_ignores_the_high_nibble():
    """87 b8 means 'cardholder confirmation required'; only b4..b1 are the priority."""
    found = candidates_from_ppse(fci_objects(("A0000000041010", "MC", 0x82), ("A0000000031010", "V", 0x81)),
                                 emv.DEFAULT_AIDS)
    assert [(c.label, c.priority) for c in found] == [("V", 1), ("MC", 2)]


def test_ppse_aid_intersection_exact_and_partial():
    objects = fci_objects(("A000000003101001", "VISA EXT", 1),  # extends A0000000031010 (ASI partial)
                          ("A0000000999999", "UNKNOWN", 1),
                          ("A0000000041010", "MC", 2),
                          ("A000000004", "SHORT", 1))  # a prefix of a supported AID is no match
    found = candidates_from_ppse(objects, emv.DEFAULT_AIDS)
    assert [(c.aid.hex().upper(), c.scheme) for c in found] == [("A000000003101001", "visa"),
                                                                  ("A0000000041010", "mastercard")]
    exact_only = (SupportedAid(h("A0000000031010"), "visa", "Visa", partial=False),
                  SupportedAid(h("A0000000041010"), "mastercard", "MC", partial=False))
    found = candidates_from_ppse(objects, exact_only)
    assert [c.aid.hex().upper() for c in found] == ["A0000000041010"]


def test_ppse_entry_checks():
    objects = fci_objects(("A00000", "TOO SHORT", 1), ("A0000000031010", "", 2))
    found = candidates_from_ppse(objects, emv.DEFAULT_AIDS)
    assert [(c.aid.hex().upper(), c.label) for c in found] == [("A0000000031010", "Visa credit/debit")]
    assert candidates_from_ppse(tlv.parse(h("6F 03 84 01 41")), emv.DEFAULT_AIDS) == []


def test_ppse_candidates_are_capped():
    entries = [(f"A0000000031010{i:02X}", f"V{i}", 1) for i in range(emv.MAX_CANDIDATES + 4)]
    assert len(candidates_from_ppse(fci_objects(*entries), emv.DEFAULT_AIDS)) == emv.MAX_CANDIDATES


def test_kernel_selects_the_best_priority_and_falls_back_to_the_next():
    card = mastercard_card(extra={
        SELECT_PPSE: ppse((AID_MC, "MASTERCARD", 2), (AID_VISA, "VISA", 1)),
        select_cmd(AID_VISA): "6A82",
    })
    read = run(card)
    assert card.sent[1] == select_cmd(AID_VISA) + "00" and card.sent[2] == select_cmd(AID_MC) + "00"
    assert read.scheme == "mastercard" and read.apdu_count == 7


def test_kernel_selects_the_card_aid_from_a_partial_match():
    long_aid = AID_VISA + "01"
    card = visa_card(extra={SELECT_PPSE: ppse((long_aid, "VISA EXT", 1)),
                            select_cmd(long_aid): fci(long_aid, "VISA EXT", VISA_PDOL)})
    read = run(card)
    assert card.sent[1] == select_cmd(long_aid) + "00"
    assert read.aid == long_aid and read.scheme == "visa"


@pytest.mark.parametrize("ppse_sw", ["6A82", "6A81", "6D00", "6700", "6E00"])
def test_no_ppse_falls_back_to_the_terminal_aid_list(ppse_sw):
    card = mastercard_card(extra={SELECT_PPSE: ppse_sw})
    read = run(card)
    aids = [a.aid.hex().upper() for a in emv.DEFAULT_AIDS]
    upto = aids.index(AID_MC) + 1
    assert card.sent[1:1 + upto] == [select_cmd(a) + "00" for a in aids[:upto]]  # in the terminal's order
    assert read.scheme == "mastercard" and read.extra == {"selection": "list"}
    assert read.apdu_count == 1 + upto + 1 + 2 + 1


def test_empty_ppse_directory_falls_back_to_the_list():
    empty = hexs(enc(0x6F, enc(0x84, emv.PPSE), enc(0xA5, enc(0xBF0C, b"")))) + OK
    read = run(visa_card(extra={SELECT_PPSE: empty}))
    assert read.extra == {"selection": "list"} and read.scheme == "visa"


def test_ppse_with_only_unsupported_applications():
    card = visa_card(extra={SELECT_PPSE: ppse(("D27600002545500200", "GeldKarte", 1))})
    err = fails(card)
    assert err.outcome == "app_not_supported" and len(card.sent) == 1


@pytest.mark.parametrize("sw", ["6985", "6984"])
def test_ppse_refused(sw):
    err = fails(visa_card(extra={SELECT_PPSE: sw}))
    assert err.outcome == "try_another_card"


def test_no_application_at_all():
    card = ScriptedCard({SELECT_PPSE: "6A82"})
    err = fails(card)
    assert err.outcome == "app_not_supported"
    assert len(card.sent) == 1 + len(emv.DEFAULT_AIDS)


# -- status words ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sw", "outcome"), [
    ("6A81", "card_blocked"),
    ("6283", "card_blocked"),
    ("6A82", "app_not_supported"),
    ("6D00", "app_not_supported"),
])
def test_select_aid_status_words(sw, outcome):
    card = visa_card(extra={select_cmd(AID_VISA): sw})
    err = fails(card)
    assert err.outcome == outcome
    assert not any(c.startswith("80A8") for c in card.sent)


def test_blocked_application_then_a_good_one():
    card = mastercard_card(extra={SELECT_PPSE: ppse((AID_VISA, "VISA", 1), (AID_MC, "MC", 2)),
                                  select_cmd(AID_VISA): "6283"})
    assert run(card).scheme == "mastercard"


@pytest.mark.parametrize("sw", ["6985", "6984"])
def test_gpo_refusal_moves_to_the_next_candidate(sw):
    card = mastercard_card(extra={
        SELECT_PPSE: ppse((AID_VISA, "VISA", 1), (AID_MC, "MC", 2)),
        select_cmd(AID_VISA): fci(AID_VISA, "VISA", VISA_PDOL),
        "80A800002383": sw,  # the Visa GPO (33 bytes of PDOL data)
    })
    read = run(card)
    assert read.scheme == "mastercard"
    assert [c[:4] for c in card.sent[:5]] == ["00A4", "00A4", "80A8", "00A4", "80A8"]


@pytest.mark.parametrize("sw", ["6985", "6984"])
def test_gpo_refusal_without_another_candidate(sw):
    err = fails(visa_card(extra={"80A8": sw}))
    assert err.outcome == "try_another_card" and sw in err.message


def test_gpo_refused_beats_blocked():
    card = visa_card(extra={SELECT_PPSE: ppse((AID_MC, "MC", 1), (AID_VISA, "VISA", 2)),
                            select_cmd(AID_MC): "6A81", "80A8": "6985"})
    assert fails(card).outcome == "try_another_card"


@pytest.mark.parametrize("sw", ["6D00", "6A81", "6700", "6F00"])
def test_gpo_other_status_words(sw):
    err = fails(visa_card(extra={"80A8": sw}))
    assert err.outcome == "try_another_card" and "GET PROCESSING OPTIONS" in err.message


@pytest.mark.parametrize("sw", ["6A83", "6A82", "6981", "6985"])
def test_read_record_status_words(sw):
    card = visa_card(extra={read_record_cmd(1, 1): sw})
    err = fails(card)
    assert err.outcome == "try_another_card" and "record 1 of file 1" in err.message


def test_sw_text_names_the_status_word():
    for sw in (0x6A82, 0x6A81, 0x6283, 0x6985, 0x6984, 0x6A83, 0x6D00, 0x6E00, 0x9999):
        assert f"{sw:04X}" in emv.sw_text(sw)


# -- transport level: 61xx, 6Cxx, short answers --------------------------------------------------


def test_61xx_get_response():
    full = fci(AID_VISA, "VISA DEBIT", VISA_PDOL)
    body = full[:-4]
    card = visa_card(extra={select_cmd(AID_VISA): f"61{len(h(body)):02X}",
                            f"00C00000{len(h(body)):02X}": full})
    read = run(card)
    assert card.sent[2] == f"00C00000{len(h(body)):02X}"
    assert read.label == "VISA DEBIT" and read.apdu_count == 5  # GET RESPONSE counts as a command


def test_61xx_chained_with_data_in_each_part():
    full = fci(AID_VISA, "VISA DEBIT", VISA_PDOL)
    body = full[:-4]
    first, rest = body[:20], body[20:]
    card = visa_card(extra={select_cmd(AID_VISA): first + "6110", "00C0000010": rest + OK})
    assert run(card).label == "VISA DEBIT"


def test_6cxx_resends_with_the_length_the_card_asks_for():
    rec = hexs(enc(0x70, enc(0x5A, VISA_PAN), enc(0x5F24, "281231"))) + OK
    card = visa_card(extra={read_record_cmd(1, 1) + "00": "6C" + f"{len(h(rec)) - 2:02X}",
                            read_record_cmd(1, 1) + f"{len(h(rec)) - 2:02X}": rec})
    read = run(card)
    assert card.sent[-1] == read_record_cmd(1, 1) + f"{len(h(rec)) - 2:02X}"
    assert read.expiry == date(2028, 12, 31) and read.apdu_count == 5


def test_endless_61xx_is_bounded():
    card = ScriptedCard({"": "6101"})  # every command, including GET RESPONSE, answers 61 01
    err = fails(card)
    assert err.outcome == "app_not_supported"
    assert len(card.sent) == (1 + emv.MAX_RESPONSE_CHAIN) * (1 + len(emv.DEFAULT_AIDS))


@pytest.mark.parametrize("answer", ["", "90"])
def test_response_shorter_than_a_status_word(answer):
    err = fails(visa_card(extra={"80A8": answer}))
    assert err.outcome == "tap_again" and "status word" in err.message  # a broken exchange: tap again


def test_transport_returning_none():
    class NoneCard(ScriptedCard):
        def transmit(self, apdu: bytes):
            super().transmit(apdu)
            return None

    err = fails(NoneCard({}))
    assert isinstance(err, CardError) and not isinstance(err, TlvError)


def test_card_removed_passes_through():
    class LeavingCard(ScriptedCard):
        def transmit(self, apdu: bytes) -> bytes:
            if apdu[1] == 0xB2:
                raise CardRemovedError()
            return super().transmit(apdu)

    with pytest.raises(CardRemovedError):
        run(LeavingCard(visa_card().script))


# -- GET PROCESSING OPTIONS: formats and malformed answers -----------------------------------------


def test_gpo_format_1_and_afl_with_several_files():
    card = mastercard_card(extra={
        "80A8": hexs(enc(0x80, "1980", afl((1, 1, 2), (2, 3, 3), (3, 1, 1)))) + OK,
        read_record_cmd(2, 3): hexs(enc(0x70, enc(0x9F08, "0002"))) + OK,
        read_record_cmd(3, 1): hexs(enc(0x77, enc(0x9F42, "0978"))) + OK,  # a 77 record template is accepted
    })
    read = run(card)
    assert [c for c in card.sent if c.startswith("00B2")] == [
        "00B2010C00", "00B2020C00", "00B2031400", "00B2011C00"]
    assert read.apdu_count == 4 + 4


@pytest.mark.parametrize(("afl_hex", "why"), [
    ("080101", "not a multiple of 4"),
    ("00010100", "SFI 0"),
    ("F8010100", "SFI 31"),
    ("08000100", "first record 0"),
    ("08030200", "last before first"),
    ("0801FF00", "more records than a card has"),
])
def test_invalid_afl(afl_hex, why):
    err = fails(mastercard_card(extra={"80A8": hexs(enc(0x80, "1980", afl_hex)) + OK}))
    assert err.outcome == "try_another_card", why


@pytest.mark.parametrize("answer", [
    hexs(enc(0x80, "1980 080101")) + OK,  # format 1: AFL not a multiple of 4
    hexs(enc(0x80, "19")) + OK,  # format 1: no full AIP
    hexs(enc(0x77, enc(0x94, "08010100"))) + OK,  # format 2 without AIP
    hexs(enc(0x70, enc(0x82, "1980"))) + OK,  # wrong template
    hexs(enc(0x80, "1980"), enc(0x80, "1980")) + OK,  # two objects
    "7710 8202" + OK,  # cut off
])
def test_malformed_gpo_answer(answer):
    err = fails(visa_card(gpo=answer.replace(" ", "")))
    assert isinstance(err, TlvError) and err.outcome == "try_another_card"


@pytest.mark.parametrize("record", [
    hexs(enc(0x5A, VISA_PAN)) + OK,  # not inside a record template
    hexs(enc(0x70, enc(0x5A, VISA_PAN)), enc(0x70, b"")) + OK,  # two templates
    "00000000" + OK,  # 4 bytes of padding, no data object
])
def test_record_that_is_not_a_record_template(record):
    err = fails(visa_card(record=record))
    assert isinstance(err, TlvError)


def test_four_byte_non_tlv_record_answer():
    """A real reader answered READ RECORD with 00000000 and no status word (public vectors, item 21):
    the last two bytes are read as status word 0000, which is an error status."""
    err = fails(visa_card(record="00000000"))
    assert not isinstance(err, TlvError) and err.outcome == "try_another_card" and "0000" in err.message


def test_card_without_a_card_number():
    record = hexs(enc(0x70, enc(0x5F24, "281231"))) + OK
    gpo = hexs(enc(0x77, enc(0x82, "2000"), enc(0x94, afl((1, 1, 1))), enc(0x9F26, "00" * 8))) + OK
    err = fails(visa_card(gpo=gpo, record=record))
    assert err.outcome == "try_another_card" and "card number" in err.message


@pytest.mark.parametrize("pan_hex", ["4929ABCD", "12345F", "49291735826400171234"])
def test_unreadable_card_number(pan_hex):
    record = hexs(enc(0x70, enc(0x5A, pan_hex), enc(0x5F24, "281231"))) + OK
    gpo = hexs(enc(0x77, enc(0x82, "2000"), enc(0x94, afl((1, 1, 1))), enc(0x9F26, "00" * 8))) + OK
    err = fails(visa_card(gpo=gpo, record=record))
    assert err.outcome == "try_another_card" and "unreadable" in err.message


# -- PDOL filling ---------------------------------------------------------------------------------


def test_pdol_is_filled_from_the_terminal_data():
    card = visa_card()
    run(card)
    values = pdol_values(card)
    assert values[0x9F02] == h("000000001500") and values[0x9F03] == bytes(6)
    assert values[0x9F1A] == h("0250") and values[0x5F2A] == h("0978") and values[0x95] == bytes(5)
    assert values[0x9A] == h("261123") and values[0x9C] == h("00") and values[0x9F37] == h("1A2B3C4D")
    assert values[0x9F66] == emv.terminal_ttq(online_required=True, cvm_required=False)


def test_pdol_unknown_and_odd_length_entries():
    pdol = "9F0204 9F6602 DF6901 9F1A03 9F4E05 9A02".replace(" ", "")
    card = visa_card(extra={select_cmd(AID_VISA): fci(AID_VISA, "VISA", pdol)})
    run(card, make_params(merchant_name="ACME"))
    values = pdol_values(card, pdol)
    assert values[0x9F02] == h("00001500")  # numeric: truncated on the left
    assert values[0x9F66] == emv.terminal_ttq(online_required=True, cvm_required=False)[:2]  # binary: right
    assert values[0xDF69] == h("00")  # unknown tag: zeros
    assert values[0x9F1A] == h("000250")  # numeric: padded on the left
    assert values[0x9F4E] == b"ACME\x00"  # text: padded on the right
    assert values[0x9A] == h("1123")  # date YYMMDD truncated on the left


@pytest.mark.parametrize(("dol", "data", "expected"), [
    ([(0x9F02, 6)], {0x9F02: h("000000001500")}, "000000001500"),  # exact
    ([(0x9F02, 4)], {0x9F02: h("000000001500")}, "00001500"),  # numeric, truncate left
    ([(0x9F02, 8)], {0x9F02: h("000000001500")}, "0000000000001500"),  # numeric, pad left
    ([(0x9C, 2)], {0x9C: h("20")}, "0020"),
    ([(0x9F66, 2)], {0x9F66: h("36004000")}, "3600"),  # binary, truncate right
    ([(0x9F66, 6)], {0x9F66: h("36004000")}, "360040000000"),  # binary, pad right
    ([(0x9F4E, 6)], {0x9F4E: b"SHOP"}, b"SHOP\x00\x00".hex()),
    ([(0x9F4E, 2)], {0x9F4E: b"SHOP"}, b"SH".hex()),
    ([(0xDF8101, 3)], {}, "000000"),  # unknown: zeros
    ([(0x70, 2)], {0x70: h("5A00")}, "0000"),  # constructed: zeros even when known
    ([(0x9F37, 0)], {0x9F37: h("11223344")}, ""),  # zero length
    ([(0x9F37, 4), (0x9F02, 2), (0x95, 5)], {0x9F37: h("11223344"), 0x9F02: h("000000012345")},
     "11223344" "2345" "0000000000"),
])
def test_build_dol(dol, data, expected):
    assert build_dol(dol, data) == h(expected)


def test_pdol_too_big_for_one_command():
    pdol = "DF8101 7F DF8102 7F DF8103 05"  # 259 bytes of data
    err = fails(visa_card(extra={select_cmd(AID_VISA): fci(AID_VISA, "VISA", pdol.replace(" ", ""))}))
    assert err.outcome == "try_another_card"


def test_malformed_pdol():
    err = fails(visa_card(extra={select_cmd(AID_VISA): fci(AID_VISA, "VISA", "9F0206 9F")}))
    assert isinstance(err, TlvError)


# -- TTQ and reader limits -------------------------------------------------------------------------


def test_terminal_ttq_bits():
    assert emv.terminal_ttq(online_required=False, cvm_required=False) == h("24004000")
    assert emv.terminal_ttq(online_required=True, cvm_required=False) == h("24804000")
    assert emv.terminal_ttq(online_required=False, cvm_required=True) == h("24404000")
    assert emv.terminal_ttq(online_required=True, cvm_required=True, online_capable=False, online_pin=False,
                            signature=True) == h("2AC04000")


FLOOR, CVM_LIMIT = 2000, 5000


@pytest.mark.parametrize(("amount", "online", "cvm"), [
    (0, False, False),
    (FLOOR - 1, False, False),
    (FLOOR, False, False),  # at the floor limit: still offline
    (FLOOR + 1, True, False),  # above: online cryptogram
    (CVM_LIMIT - 1, True, False),
    (CVM_LIMIT, True, True),  # at the CVM required limit: CVM
    (CVM_LIMIT + 1, True, True),
])
def test_ttq_follows_the_reader_limits(amount, online, cvm):
    params = make_params(amount, floor_limit=FLOOR, cvm_required_limit=CVM_LIMIT)
    assert params.online_required is online and params.cvm_required is cvm
    card = visa_card()
    run(card, params)
    ttq = pdol_values(card)[0x9F66]
    assert bool(ttq[1] & emv.TTQ_ONLINE_CRYPTOGRAM) is online
    assert bool(ttq[1] & emv.TTQ_CVM_REQUIRED) is cvm
    assert ttq[0] & emv.TTQ_QVSDC and ttq[2] & emv.TTQ_CDCVM and not ttq[0] & emv.TTQ_OFFLINE_ONLY
    assert pdol_values(card)[0x9F02] == h(f"{amount:012d}")


def test_offline_only_reader_sets_its_ttq_bit():
    card = visa_card()
    run(card, make_params(online_capable=False))
    assert pdol_values(card)[0x9F66][0] & emv.TTQ_OFFLINE_ONLY


def test_terminal_params_reject_a_bad_unpredictable_number():
    with pytest.raises(ValueError, match="unpredictable"):
        make_params(unpredictable_number=b"\x01\x02").data()


# -- CVM, expiry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ctq", "cvm"), [
    ("0080", "cdcvm"),  # byte 2 b8: consumer device CVM performed
    ("2380", "cdcvm"),
    ("8000", "online_pin"),
    ("4000", "signature"),
    ("2300", "no_cvm"),
    ("00", "no_cvm"),  # too short to read
])
def test_cvm_from_ctq(ctq, cvm):
    read = run(visa_card(ctq=ctq))
    assert read.cvm == cvm and read.cdcvm_performed is (cvm == "cdcvm") and read.ctq == ctq


def test_no_ctq_means_no_cvm():
    assert run(mastercard_card()).cvm == "no_cvm"


@pytest.mark.parametrize(("record_tags", "expected"), [
    ({0x5F24: "281231"}, date(2028, 12, 31)),
    ({0x5F24: "290228"}, date(2029, 2, 28)),
    ({0x5F24: "280200"}, date(2028, 2, 29)),  # day 00: end of that month
    ({0x5F24: "270231"}, date(2027, 2, 28)),  # day past the month's end: end of that month
    ({0x57: track2(VISA_PAN, "3011")}, date(2030, 11, 30)),  # no 5F24: from track 2
    ({0x57: track2(VISA_PAN, "3012")}, date(2030, 12, 31)),
    ({0x57: track2(VISA_PAN, "3013")}, None),  # month 13 in track 2: unknown, not a crash
    ({0x57: VISA_PAN}, None),  # track 2 without separator
    ({0x5A: VISA_PAN}, None),  # nothing at all
])
def test_expiry(record_tags, expected):
    parts = [enc(0x5A, VISA_PAN)] if 0x5A not in record_tags and 0x57 not in record_tags else []
    parts += [enc(tag, value) for tag, value in record_tags.items()]
    gpo = hexs(enc(0x77, enc(0x82, "2000"), enc(0x94, afl((1, 1, 1))), enc(0x9F26, "00" * 8))) + OK
    read = run(visa_card(gpo=gpo, record=hexs(enc(0x70, *parts)) + OK))
    assert read.expiry == expected
    assert read.masked_pan == security.mask_pan(VISA_PAN)


@pytest.mark.parametrize("value", ["2812", "28AB31", "281331", "281200FF"])
def test_unreadable_expiry(value):
    record = hexs(enc(0x70, enc(0x5A, VISA_PAN), enc(0x5F24, value))) + OK
    err = fails(visa_card(record=record))
    assert err.outcome == "try_another_card" and "expiry" in err.message


# -- no clear card data anywhere ------------------------------------------------------------------


def leaks(text: str, pan: str) -> list[str]:
    """The pieces of `pan` (or of its track 2 form) found in `text`."""
    found = [piece for piece in (pan, pan[6:12], pan[4:14]) if piece in text]
    return found


@pytest.mark.parametrize("make_card", [visa_card, mastercard_card], ids=["visa", "mastercard"])
def test_nothing_readable_holds_the_pan(make_card):
    pan = VISA_PAN if make_card is visa_card else MC_PAN
    backend = X25519PrivateKey.generate()
    backend_pub = backend.public_key().public_bytes_raw()
    read = run(make_card(), seal=lambda payload: security.seal_for_backend(backend_pub, payload))
    views = {
        "str": str(read), "repr": repr(read), "to_dict": json.dumps(read.to_dict()),
        "trace": json.dumps([t.to_dict() for t in read.trace]), "trace_repr": repr(read.trace),
        "extra": repr(read.extra),
    }
    for name, text in views.items():
        assert not leaks(text, pan), f"{name} holds card number digits"
        assert "2812" not in text and "271130" not in text, f"{name} holds the expiry/track data"
    assert read.masked_pan in views["to_dict"]
    # the trace keeps structure: tags of masked values, and status words
    trace_text = views["trace"]
    assert "5A=<" in trace_text and "masked>" in trace_text and '"sw": "9000"' in trace_text
    # what the backend needs is in the sealed blob, and only the backend key opens it
    secret = json.loads(security.open_sealed(backend.private_bytes_raw(), read.sealed_card))
    assert secret["pan"] == pan and secret["amount"] == 1500 and secret["currency"] == 978


def test_trace_hides_the_terminal_data_sent_in_gpo():
    read = run(visa_card())
    gpo_entry = read.trace[2]
    assert gpo_entry.command == "80A80000 83<33 bytes terminal data>"
    assert "1A2B3C4D" not in json.dumps([t.to_dict() for t in read.trace])


def test_error_messages_hold_no_card_data():
    record = hexs(enc(0x70, enc(0x5A, VISA_PAN), enc(0x5F24, "28AB31"))) + OK
    err = fails(visa_card(record=record))
    assert not leaks(str(err), VISA_PAN) and not leaks(repr(err), VISA_PAN)
