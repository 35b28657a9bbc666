"""Public EMV vectors (shared/vectors/public_vectors.json): every card response parses with
terminal.core.tlv (or fails with TlvError where it is not TLV), every field the source states is
found in the data, and the whole contactless transactions run through `emv.read_card` on a replay.

The vectors hold card numbers that must be treated as real: nothing here prints one. Assertion
messages name tags and masked values only (`_masked`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pytest

from terminal import security
from terminal.core import emv, tlv
from terminal.core.countries import country_numeric
from terminal.core.money import currency
from terminal.errors import CardError, TlvError
from tests.vectors import needs_vectors, vector_items, vector_params

pytestmark = needs_vectors  # every test here reads the vectors: skipped without them, failed under the switch

ALL_ITEMS: list[dict[str, Any]] = [item for _, item in vector_items()]
EMV_ITEMS = [(i, item) for i, item in enumerate(ALL_ITEMS) if item["kind"] in ("emv_apdu_sequence", "emv_response")]


def _item_id(index: int, item: dict[str, Any]) -> str:
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9]+", "_", item["label"])[:40].strip("_")


EMV_PARAMS = [pytest.param(i, item, id=_item_id(i, item)) for i, item in EMV_ITEMS]

# README: these sources store responses without a status word; 9000 is appended when replaying.
BARE_SOURCES = ("MichaelsPlayground/", "lumag/", "sasc999/")
# Single responses (emv_response) that carry a status word: only item 14 ("with SW 9000"); the others
# are bare FCIs, records or terminal-side ICC data (labels and notes say "no SW" / "no status word").
RESPONSE_WITH_SW = {"Same PPSE FCI with SW 9000 and different inner lengths"}


def _masked(digits: str) -> str:
    return security.mask_pan(digits) if digits.isdigit() and 8 <= len(digits) <= 19 else f"<{len(digits)} digits>"


# -- the pure extraction helper --------------------------------------------------------------------


@dataclass
class Step:
    index: int
    command: bytes | None  # None: the source gives no command (or a blank line)
    body: bytes | None  # None: no response line in the source
    sw: int | None  # None: bare response, or no response
    objects: tuple[tlv.Tlv, ...] | None = None  # parsed body (None: not TLV, or no body)
    tlv_error: TlvError | None = None
    log_entry: bool = False


@dataclass
class Facts:
    """What the data of one item says, tag by tag (every occurrence, in order)."""

    steps: list[Step]
    values: dict[int, list[bytes]] = field(default_factory=dict)
    log_format: tuple[tuple[int, int], ...] = ()

    def all(self, tag: int) -> list[bytes]:
        return self.values.get(tag, [])

    def first(self, tag: int) -> bytes | None:
        found = self.all(tag)
        return found[0] if found else None

    def nodes(self, tag: int) -> list[tlv.Tlv]:
        return [n for s in self.steps if s.objects for top in s.objects for n in top.walk() if n.tag == tag]

    def answers(self, ins: int) -> list[Step]:
        return [s for s in self.steps if s.command is not None and len(s.command) > 1 and s.command[1] == ins]


def split_response(raw: bytes, *, bare: bool) -> tuple[bytes, int | None]:
    if bare or len(raw) < 2:
        return raw, None
    return raw[:-2], int.from_bytes(raw[-2:], "big")


def extract(item: dict[str, Any]) -> Facts:
    """Parse every response of an item. Log records (answers to READ RECORD whose length is the
    length of the card's log format 9F4F) are not TLV: they are decoded by that format instead."""
    bare = item["source"].startswith(BARE_SOURCES)
    if item["kind"] == "emv_response":
        raw = bytes.fromhex(item["data"])
        body, sw = split_response(raw, bare=item["label"] not in RESPONSE_WITH_SW)
        steps = [Step(0, None, body, sw)]
    else:
        steps = []
        for i, entry in enumerate(item["data"]):
            command = bytes.fromhex(entry["command"]) if entry["command"] else None
            if entry["response"] is None:
                steps.append(Step(i, command, None, None))
                continue
            body, sw = split_response(bytes.fromhex(entry["response"]), bare=bare)
            steps.append(Step(i, command, body, 0x9000 if bare else sw))
    facts = Facts(steps)
    for step in steps:
        if not step.body:
            continue
        try:
            step.objects = tlv.parse(step.body)
        except TlvError as exc:
            step.tlv_error = exc
            continue
        for node in (n for top in step.objects for n in top.walk()):
            facts.values.setdefault(node.tag, []).append(node.value)
    log_format = facts.first(0x9F4F)
    if log_format is not None:
        facts.log_format = tlv.parse_dol(log_format)
        size = sum(length for _, length in facts.log_format)
        for step in steps:
            is_read = step.command is None or step.command[1] == 0xB2
            step.log_entry = bool(is_read and step.sw == 0x9000 and step.body and len(step.body) == size
                                  and step.tlv_error is not None)
    return facts


def log_entries(facts: Facts) -> list[dict[int, bytes]]:
    out = []
    for step in facts.steps:
        if step.log_entry:
            entry, i = {}, 0
            for tag, length in facts.log_format:
                entry[tag], i = step.body[i:i + length], i + length
            out.append(entry)
    return out


def pan_digits(facts: Facts) -> set[str]:
    found = {v.hex().upper().rstrip("F") for v in facts.all(0x5A)}
    found |= {v.hex().upper().split("D", 1)[0] for tag in (0x57, 0x9F6B) for v in facts.all(tag)}
    for track1 in facts.all(0x56):
        text = track1.decode("latin-1")
        if "^" in text:
            found.add(text.split("^", 1)[0].lstrip("B%"))
    return found


def expiry_forms(facts: Facts) -> set[str]:
    """Every way the data states an expiry: YYMMDD (5F24), YYMM (tracks 2 and 1) and MM/YYYY of both."""
    out: set[str] = set()
    yymm: set[str] = set()
    for value in facts.all(0x5F24):
        out.add(value.hex())
        yymm.add(value.hex()[:4])
    for tag in (0x57, 0x9F6B):
        for value in facts.all(tag):
            text = value.hex().upper()
            if "D" in text:
                yymm.add(text.split("D", 1)[1][:4])
    for track1 in facts.all(0x56):
        parts = track1.decode("latin-1").split("^")
        if len(parts) >= 3:
            yymm.add(parts[2][:4])
    for ym in yymm:
        out.add(ym)
        if ym.isdigit():
            out.add(f"{ym[2:4]}/20{ym[:2]}")
    return out


def texts(facts: Facts, *tags: int) -> set[str]:
    return {v.decode("latin-1") for tag in tags for v in facts.all(tag)}


def hexes(facts: Facts, tag: int) -> set[str]:
    return {v.hex().upper() for v in facts.all(tag)}


def gpo_fields(facts: Facts) -> tuple[set[str], set[str]]:
    """AIP and AFL values from 82/94 and from format-1 (80) GPO answers."""
    aips, afls = hexes(facts, 0x82), hexes(facts, 0x94)
    for step in facts.steps:
        if step.objects and len(step.objects) == 1 and step.objects[0].tag == 0x80:
            value = step.objects[0].value
            if (step.command is not None and step.command[1] == 0xA8) or (
                    step.command is None and (len(value) - 2) % 4 == 0):
                aips.add(value[:2].hex().upper())
                afls.add(value[2:].hex().upper())
    return aips, afls


def genac_answers(facts: Facts) -> list[dict[str, Any]]:
    out = []
    for step in facts.answers(0xAE):
        if not step.objects:
            continue
        top = step.objects[0]
        if top.tag == 0x80:
            v = top.value
            out.append({"cid": v[0], "atc": int.from_bytes(v[1:3], "big"), "ac": v[3:11].hex().upper()})
        else:
            flat = tlv.flatten(step.objects)
            out.append({"cid": flat[0x9F27][0], "atc": int.from_bytes(flat[0x9F36], "big"),
                        "ac": flat[0x9F26].hex().upper()})
    return out


def get_data(facts: Facts, tag: int) -> Step | None:
    for step in facts.answers(0xCA):
        if step.command[2:4] == tag.to_bytes(2, "big"):
            return step
    return None


def directory_entries(facts: Facts) -> list[dict[str, Any]]:
    """Application entries (61) of PPSE FCIs and PSE records, in card order. A kernel identifier (9F2A)
    is taken from inside the entry or, where a card's 61 length stops short of it, from the object
    right after the entry (item 14 has that layout)."""
    out = []
    parents = [n for s in facts.steps if s.objects for top in s.objects for n in top.walk() if n.children]
    for parent in parents:
        for k, node in enumerate(parent.children):
            if node.tag != 0x61:
                continue
            flat = tlv.flatten([node])
            after = parent.children[k + 1] if k + 1 < len(parent.children) else None
            if 0x9F2A not in flat and after is not None and after.tag == 0x9F2A:
                flat[0x9F2A] = after.value
            out.append(_entry(flat))
    return out


def _entry(flat: dict[int, bytes]) -> dict[str, Any]:
    aid = flat.get(0x4F)
    return {
        "aid": aid.hex().upper() if aid is not None else None,
        "label": flat[0x50].decode("latin-1") if 0x50 in flat else None,
        "priority": flat[0x87][0] if 0x87 in flat else None,
        "extended_aid": (aid + flat[0x9F2A]).hex().upper() if aid is not None and 0x9F2A in flat else None,
    }


ISO_ALPHA3 = {56: "BEL", 36: "AUS", 702: "SGP", 156: "CHN"}  # ISO 3166 numeric -> alpha-3, as the sources print
CID_NAMES = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}
CARDHOLDER_ID_TYPES = {0x00: "ID card"}  # PBOC 9F62

# Keys the data cannot prove, with the reason. A key in neither this table nor `check` fails the test.
NOT_CHECKED = {
    "asserted_by": "provenance of the expectation, not card data",
    "scheme": "the source library's classification (by AID and PAN), not a card field",
    "card_type": "the source library's classification, not a card field",
    "note_in_source": "a comment in the source",
    "issuer_cert_pan_prefix": "needs RSA recovery of the issuer certificate with a CA key not in the data",
    "icc_cert_pan": "needs RSA recovery of the ICC certificate with keys not in the data",
    "application_transaction_counter": "the source read it by GET DATA before GPO; that answer is not stored "
                                       "(the GPO answer holds the next value)",
    "last_online_atc": "the source's GET DATA 9F13 answer is not stored with this sequence",
    "left_pin_try_counter": "the source's GET DATA 9F17 answer is not stored with this sequence",
    "log_format": "the source's GET DATA 9F4F answer is not stored with this sequence",
    "cvc3_track1": "computed by the card's CCC from the unpredictable number; only the answer bytes are stored",
    "cvc3_track2": "computed by the card's CCC from the unpredictable number; only the answer bytes are stored",
    "pcvc3_track1": "a bitmap the source decodes into positions; stored as 9F62 and checked there by value",
}
# Keys whose stored value is a parser verdict rather than data, per item.
NOT_CHECKED_PER_ITEM = {
    (2, "track1"): "the source reports null because its track-1 parser fails on the NUL bytes in 56",
    (8, "app_label"): "no 50/9F12 in the data; the source falls back to its scheme name",
}


def check(key: str, expected: Any, facts: Facts) -> None:
    """Assert that `expected` (the source's statement for `key`) is what the data holds. Card data is
    compared into a plain bool first, so a failure never prints a card number."""
    aips, afls = gpo_fields(facts)
    if key in ("card_number", "pan", "pan_found"):
        digits = expected.upper().rstrip("F")
        found = digits in pan_digits(facts)
        assert found, f"PAN {_masked(digits)} not in the data"
    elif key in ("expire_date", "expiry", "expiration_date_found"):
        assert expected in expiry_forms(facts), f"expiry {expected} not in the data"
    elif key in ("aid", "app0_aid", "app1_aid", "select_aid"):
        assert expected.upper() in hexes(facts, 0x84) | hexes(facts, 0x4F)
    elif key in ("app_label", "app0_label", "app1_label", "label"):
        if expected is None:
            assert not texts(facts, 0x50, 0x9F12), "a label is in the data"
        else:
            assert expected in texts(facts, 0x50, 0x9F12)
    elif key == "app0_priority":
        assert directory_entries(facts)[0]["priority"] == expected
    elif key == "applications_count":
        assert len(directory_entries(facts)) == expected
    elif key == "applications":
        found = [{"label": e["label"], "aid": e["aid"], "extended_aid": e["extended_aid"]}
                 for e in directory_entries(facts) if e["aid"] is not None]
        assert found == expected
    elif key == "apps":
        found = [{"aid": e["aid"], "label": e["label"], "priority": f"{e['priority']:02X}"}
                 for e in directory_entries(facts)]
        assert found == expected
    elif key == "application_templates":
        assert len(directory_entries(facts)) == expected
    elif key == "aip":
        assert expected in aips
    elif key == "afl":
        assert expected.upper() in afls if expected else not afls
    elif key == "number_of_files":
        (afl,) = afls or {""}
        assert sum(b[2] - b[1] + 1 for b in (bytes.fromhex(afl)[i:i + 4] for i in range(0, len(afl) // 2, 4))) \
            == expected
    elif key == "track2":
        found = expected.upper() in hexes(facts, 0x57)
        assert found, "track 2 not in the data"
    elif key == "track2_9F6B":
        found = expected.upper() in hexes(facts, 0x9F6B)
        assert found, "track 2 (9F6B) not in the data"
    elif key == "track1":
        if expected is None:
            assert not facts.all(0x56)
        else:
            found = expected in texts(facts, 0x56)
            assert found, "track 1 not in the data"
    elif key == "track1_present":
        assert bool(facts.all(0x56)) is expected
    elif key == "cardholder_name":
        assert expected in texts(facts, 0x5F20)
    elif key == "effective":
        assert expected in {v.hex() for v in facts.all(0x5F25)}
    elif key == "issuer_country":
        assert expected in {ISO_ALPHA3.get(int(v.hex())) for v in facts.all(0x5F28)}
    elif key == "app_currency":
        assert expected in {currency(int(v.hex())).alpha for v in facts.all(0x9F42)}
    elif key == "pan_sequence":
        assert expected in {v.hex() for v in facts.all(0x5F34)}
    elif key in ("cdol1", "cdol2", "cvm_list", "ca_key_index", "pdol", "service_code"):
        tag = {"cdol1": 0x8C, "cdol2": 0x8D, "cvm_list": 0x8E, "ca_key_index": 0x8F, "pdol": 0x9F38,
               "service_code": 0x5F30}[key]
        found = expected.upper() in hexes(facts, tag)
        assert found, f"{key} ({tag:X}) not in the data"
    elif key == "cid":
        assert expected.split()[0] in hexes(facts, 0x9F27)
    elif key == "atc":
        assert expected in {int.from_bytes(v, "big") for v in facts.all(0x9F36)}
    elif key == "iad":
        assert expected.upper() in hexes(facts, 0x9F10)
    elif key in ("genac1", "genac2"):
        answer = genac_answers(facts)[int(key[-1]) - 1]
        cid_text = expected["cid"]
        assert cid_text.split()[-1].strip("()") == CID_NAMES[answer["cid"] & 0xC0]
        assert answer["ac"] == expected["ac"]
        if "atc" in expected:
            assert answer["atc"] == expected["atc"]
    elif key in ("left_pin_try", "pin_try_counter"):
        step = get_data(facts, 0x9F17)
        value = tlv.flatten(step.objects)[0x9F17]
        # devnied prints the count as a number; binaryfoo prints the byte in hex ("10" for 0x10)
        assert (value[0] == expected) if key == "left_pin_try" else (value.hex() == str(expected))
    elif key == "transaction_counter":
        step = get_data(facts, 0x9F36)
        if expected == "UNKNOWN":
            assert step.sw != 0x9000
        else:
            assert int.from_bytes(tlv.flatten(step.objects)[0x9F36], "big") == expected
    elif key in ("transactions", "app0_transactions"):
        assert len(log_entries(facts)) == expected
    elif key == "first_txn":
        entry = log_entries(facts)[0]
        checks = {
            "amount": lambda: int(entry[0x9F02].hex()),
            "cryptogram_data": lambda: entry[0x9F27].hex(),
            "currency": lambda: currency(int(entry[0x5F2A].hex())).alpha,
            "date": lambda: datetime.strptime(entry[0x9A].hex(), "%y%m%d").strftime("%d/%m/%Y"),
            "type": lambda: {0x00: "PURCHASE"}[entry[0x9C][0]],
            "terminal_country": lambda: next(a for a in ("FR", "TR", "DE") if country_numeric(a) ==
                                             int(entry[0x9F1A].hex())),
        }
        for sub, value in expected.items():
            assert checks[sub]() == value, f"first_txn.{sub}"
    elif key == "state":
        # ACTIVE: some application answered SELECT with its FCI; LOCKED: none did (PPSE aside)
        selected = any(s.sw == 0x9000 and s.objects and tlv.find(s.objects, 0x84).value != emv.PPSE
                       for s in facts.answers(0xA4))
        assert selected is (expected == "ACTIVE")
    elif key in ("bic", "iban"):
        assert expected in texts(facts, 0x5F54 if key == "bic" else 0x5F53)
    elif key == "contains_tag_50_in_A5":
        assert (tlv.find(facts.nodes(0xA5), 0x50) is not None) is expected
    elif key == "9F26":
        assert expected in hexes(facts, 0x9F26)
    elif key == "template":
        assert f"{facts.steps[0].objects[0].tag:X}" == expected.split()[0]
    elif key == "record_contains_CDOL1":
        assert (facts.steps[0].objects[0].tag == 0x70 and facts.first(0x8C) is not None) is expected
    elif key == "final_response_type":
        first, last = facts.steps[0], facts.steps[-1]
        assert first.sw >> 8 == 0x61 and last.sw == 0x9000 and len(last.body) == first.sw & 0xFF
        assert expected == "SuccessResponse"
    elif key == "language":
        assert expected in texts(facts, 0x5F2D)
    elif key == "cardholder_id":
        assert expected in texts(facts, 0x9F61)
    elif key == "cardholder_id_type":
        assert expected in {CARDHOLDER_ID_TYPES.get(v[0]) for v in facts.all(0x9F62)}
    elif key == "first_read_record":
        first = facts.answers(0xB2)[0]
        assert first.sw != 0x9000 and tlv.parse(first.body) == () and "fails to decode" in expected
    elif key == "first_gpo_response":
        assert facts.answers(0xA8)[0].body is None and expected == "absent"
    else:
        raise AssertionError(f"key {key!r} is neither checked nor listed in NOT_CHECKED")


# -- every response parses -------------------------------------------------------------------------

# Responses that are not BER-TLV, per item: (step, why). Everything else must parse.
def _not_tlv(facts: Facts) -> dict[int, str]:
    return {s.index: "log record in the card's 9F4F format" for s in facts.steps if s.log_entry}


@pytest.mark.parametrize(("index", "item"), vector_params(EMV_PARAMS, 2))
def test_every_response_parses(index, item):
    facts = extract(item)
    not_tlv = _not_tlv(facts)
    for step in facts.steps:
        if step.body is None or not step.body:
            continue
        if step.index in not_tlv:
            assert step.tlv_error is not None, f"step {step.index}: a log record parsed as TLV"
            assert isinstance(step.tlv_error, CardError) and step.tlv_error.offset < len(step.body)
        else:
            assert step.tlv_error is None, f"step {step.index}: {step.tlv_error}"
            # only an error answer may hold no data object (item 21's 00000000: SW 0000, data 0000)
            assert step.objects or step.sw != 0x9000, f"step {step.index}: no data object"
            # the parse is exact: re-encoding gives the same bytes up to padding
            rebuilt = b"".join(tlv.encode_tlv(o) for o in step.objects)
            assert tlv.flatten(tlv.parse(rebuilt)) == tlv.flatten(step.objects)


def test_non_tlv_cases_are_the_ones_the_sources_describe():
    """Log records fail with TlvError; the 4-byte '00000000' of item 21 is a status word 0000 with no
    data (the source: "fails to decode"); no other response of any item fails."""
    failing = {}
    for index, item in EMV_ITEMS:
        facts = extract(item)
        failing[index] = sorted(s.index for s in facts.steps if s.tlv_error is not None)
        assert failing[index] == sorted(_not_tlv(facts)), f"item {index}"
    assert {i for i, steps in failing.items() if steps} == {1, 2, 3, 4, 6, 7, 8, 11}
    visa_contact = extract(ALL_ITEMS[21])
    four = visa_contact.steps[2]
    assert four.body == b"\x00\x00" and four.sw == 0x0000 and four.objects == ()
    assert tlv.parse(bytes.fromhex(ALL_ITEMS[21]["data"][2]["response"])) == ()  # as data: only padding


def test_iad_ending_in_9000_is_not_taken_for_a_status_word():
    item = next(it for _, it in EMV_ITEMS if "IAD (9F10) ends in bytes 90 00" in it["label"])
    facts = extract(item)
    assert facts.first(0x9F10) == bytes.fromhex("060B0A03A49000")
    with pytest.raises(TlvError):  # stripping a "status word" would break the template
        tlv.parse(bytes.fromhex(item["data"])[:-2])


def test_ppse_with_tag_41_lists_no_application():
    item = next(it for _, it in EMV_ITEMS if "AID tag is 41" in it["label"])
    objects = tlv.parse(bytes.fromhex(item["data"]))
    assert emv.candidates_from_ppse(objects, emv.DEFAULT_AIDS) == []


# -- stated fields are found -----------------------------------------------------------------------


@pytest.mark.parametrize(("index", "item"), vector_params(EMV_PARAMS, 2))
def test_expected_fields_are_in_the_data(index, item):
    facts = extract(item)
    checked, skipped = [], []
    for key, value in item["expected"].items():
        reason = NOT_CHECKED_PER_ITEM.get((index, key)) or NOT_CHECKED.get(key)
        if reason:
            skipped.append(key)
            continue
        check(key, value, facts)
        checked.append(key)
    assert len(checked) + len(skipped) == len(item["expected"])
    if item["expected"] and not set(item["expected"]) <= set(NOT_CHECKED) | {"asserted_by"}:
        assert checked, "nothing of what the source states was checked"


# -- the kernel on replayed transactions -----------------------------------------------------------


def _infer_ins(response: bytes) -> int | None:
    """For a response whose command the source left blank: which command it answers, by its template
    (6F SELECT, 70 READ RECORD, 77 with AIP or 80 of 2+4n bytes GPO, 77 with a cryptogram GENERATE AC)."""
    try:
        objects = tlv.parse(response[:-2])
    except TlvError:
        return None
    if len(objects) != 1:
        return None
    top = objects[0]
    flat = tlv.flatten(objects)
    if top.tag == 0x6F:
        return 0xA4
    if top.tag == 0x70 or (top.tag == 0x77 and 0x82 not in flat and 0x9F26 not in flat):
        return 0xB2
    if top.tag == 0x77:
        return 0xA8 if 0x82 in flat else 0xAE
    if top.tag == 0x80:
        return 0xA8 if (len(top.value) - 2) % 4 == 0 else 0xAE
    return None


class Replay:
    """Answers the kernel from a recorded sequence: an unused step with the same command; else, for
    GPO and GENERATE AC (whose data the terminal fills differently), an unused step of that command;
    else a SELECT of the AID the recorded FCI names (the source selected by partial name); else an
    unused blank step whose response fits the command. Anything else is "not recorded": 6A82 to
    SELECT, 6A83 to READ RECORD, 6D00 otherwise. A step with no response line answers no bytes."""

    def __init__(self, item: dict[str, Any]) -> None:
        bare = item["source"].startswith(BARE_SOURCES)
        self.steps: list[dict[str, Any]] = []
        for entry in item["data"]:
            command = bytes.fromhex(entry["command"]) if entry["command"] else None
            response = None if entry["response"] is None else (
                bytes.fromhex(entry["response"]) + (b"\x90\x00" if bare else b""))
            ins = command[1] if command else (_infer_ins(response) if response and len(response) > 2 else None)
            df_name = None
            if ins == 0xA4 and response and response[-2:] == b"\x90\x00":
                node = tlv.find(tlv.parse(response[:-2]), 0x84)
                df_name = node.value if node is not None else None
            self.steps.append({"command": command, "response": response, "ins": ins, "df": df_name, "used": False})
        self.unrecorded: list[int] = []  # INS of commands the recording does not answer

    def _take(self, match) -> dict[str, Any] | None:
        for step in self.steps:
            if not step["used"] and match(step):
                step["used"] = True
                return step
        return None

    def transmit(self, apdu: bytes) -> bytes:
        ins = apdu[1]
        step = self._take(lambda s: s["command"] == apdu)
        if step is None and ins in (0xA8, 0xAE):
            step = self._take(lambda s: s["command"] is not None and s["ins"] == ins)
        if step is None and ins == 0xA4:
            step = self._take(lambda s: s["df"] is not None and s["df"] == apdu[5:5 + apdu[4]])
        if step is None:
            step = self._take(lambda s: s["command"] is None and s["ins"] == ins)
        if step is None:
            self.unrecorded.append(ins)
            return {0xA4: b"\x6a\x82", 0xB2: b"\x6a\x83"}.get(ins, b"\x6d\x00")
        return step["response"] if step["response"] is not None else b""


CB = emv.SupportedAid(bytes.fromhex("A0000000421010"), "cb", "CB")  # French domestic scheme (co-badged cards)
TOKEN_KEY = bytes(32)


def _read(replay: Replay) -> emv.CardRead:
    params = emv.TerminalParams(amount=1000, currency_numeric=978, country_numeric=250,
                                when=datetime(2026, 1, 2, 3, 4, 5), unpredictable_number=bytes(4),
                                aids=(*emv.DEFAULT_AIDS, CB))
    return emv.read_card(replay, params, tokenize=lambda pan: security.card_token(pan, TOKEN_KEY),
                         mask=security.mask_pan)


# Whole transactions: (taps before success, why the earlier taps fail). Item 5 states 06/2018 from its
# track 2 while its 5F24 says 2017-06-30; the kernel takes 5F24 (the application expiration date).
WHOLE = {3: 0, 5: 0, 9: 0, 21: 1, 22: 1, 23: 0, 24: 0, 25: 0}
KERNEL_EXPIRY_FROM_5F24 = {5}
# Sequences that are no whole contactless transaction, and what the kernel makes of them.
PARTIAL = {
    0: ("try_another_card", "the source stops reading after the record with track 2; AFL names more"),
    1: ("try_another_card", "the source stops reading after the record with track 2; AFL names more"),
    2: ("try_another_card", "Mastercard mag-stripe mode (AIP 0000, no cryptogram, no CDOL1): not supported"),
    4: ("try_another_card", "the source stops reading after the first record"),
    6: ("try_another_card", "contact card via PSE; the source reads only one AFL record"),
    7: ("try_another_card", "the source reads only the record with track 2"),
    8: ("try_another_card", "the source reads only the record with track 2 (after 6C4F)"),
    10: ("app_not_supported", "SELECT AID answered 6285 (file in termination state), the only candidate"),
    11: ("app_not_supported", "GeldKarte is no application this terminal accepts"),
    12: ("try_another_card", "every SELECT AID answers 6985 (the source calls the card LOCKED)"),
    # 19, 20: recorded with CDA requested (P1 90/50), so the card put the AC inside the signed data 9F4B;
    # the replay gives that answer to the kernel's plain GENERATE AC (a real card would answer with 9F26)
    # and an answer without a cryptogram is refused: there is nothing to authorise online with.
    19: ("try_another_card", "GENERATE AC answered as for CDA: the cryptogram is inside 9F4B, no 9F26"),
    20: ("try_another_card", "GENERATE AC answered as for CDA: the cryptogram is inside 9F4B, no 9F26"),
    17: ("try_another_card", "the trace lacks SFI 1 record 1 and SFI 3 record 2 the AFL names"),
    18: ("try_another_card", "Mastercard mag-stripe mode (AIP 0000, CCC instead of GENERATE AC): not supported"),
    26: ("try_another_card", "an emulator dump without GENERATE AC answers"),
    27: ("app_not_supported", "a dummy card with a made-up AID"),
    32: ("app_not_supported", "a single SELECT of a CAP application, no transaction"),
}
SEQUENCES = [p for p in EMV_PARAMS if p.values[1]["kind"] == "emv_apdu_sequence"]


def test_every_sequence_is_classified():
    assert {i for i, item in EMV_ITEMS if item["kind"] == "emv_apdu_sequence"} == set(WHOLE) | set(PARTIAL)


@pytest.mark.parametrize(("index", "item"), vector_params(SEQUENCES, 2))
def test_kernel_on_replayed_sequence(index, item):
    replay = Replay(item)
    if index in PARTIAL:
        outcome, why = PARTIAL[index]
        with pytest.raises(CardError) as info:
            _read(replay)
        assert info.value.outcome == outcome, why
        return
    for _ in range(WHOLE[index]):  # the source's own failed first tap
        with pytest.raises(CardError) as info:
            _read(replay)
        assert info.value.outcome in ("try_another_card", "tap_again")
    read = _read(replay)
    facts = extract(item)
    expected = item["expected"]
    pan = expected.get("card_number") or expected.get("pan") or expected.get("pan_found")
    if pan is None:  # the source states no PAN: compare with the data's own 5A
        (pan,) = {v.hex().upper().rstrip("F") for v in facts.all(0x5A)}
    pan = pan.upper().rstrip("F")
    assert read.masked_pan == _masked(pan)
    assert read.masked_pan[-4:] == pan[-4:]
    assert read.card_token == security.card_token(pan, TOKEN_KEY)
    stated = expected.get("expire_date") or expected.get("expiry") or expected.get("expiration_date_found")
    if stated is None or index in KERNEL_EXPIRY_FROM_5F24:
        (raw,) = {v.hex() for v in facts.all(0x5F24)}
        stated_date = date(2000 + int(raw[:2]), int(raw[2:4]), int(raw[4:6]))
        assert read.expiry == stated_date
    elif "/" in stated:  # MM/YYYY
        assert (read.expiry.month, read.expiry.year) == (int(stated[:2]), int(stated[3:]))
    elif len(stated) == 4:  # YYMM from track 2
        assert (read.expiry.year % 100, read.expiry.month) == (int(stated[:2]), int(stated[2:]))
    else:  # YYMMDD
        assert read.expiry == date(2000 + int(stated[:2]), int(stated[2:4]), int(stated[4:6]))
    assert read.cryptogram is not None
    assert read.cid in ("ARQC", "TC", "AAC")
    leaked = pan in repr(read) or pan in json.dumps([t.to_dict() for t in read.trace])
    assert not leaked, "the card number is in the CardRead or its trace"
    assert not replay.unrecorded or set(replay.unrecorded) <= {0xA4}  # only SELECTs of absent AIDs/PPSE
