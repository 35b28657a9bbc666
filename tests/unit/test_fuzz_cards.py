"""Fuzzing the card-facing code with hypothesis: the TLV parser on arbitrary bytes and on generated
trees, and the contactless kernel on mutated answers of good cards.

Whatever a card sends, the terminal must end with a result or a typed `CardError` (TlvError is one)
within a bounded time: never an IndexError, a KeyError, a recursion error or a hang. The per-example
deadline is what proves "no hang". The runs are derandomized with no example database, so CI sees the
same examples every time. The cards are the scripted cards of test_emv_kernel (no pcscd needed).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal import security
from terminal.core import emv, tlv
from terminal.core.tlv import MAX_DEPTH, Tlv
from terminal.errors import CardError, TlvError
from tests.unit.test_emv_kernel import TOKEN_KEY, ScriptedCard, make_params, mastercard_card, run, visa_card

FUZZ = settings(max_examples=400, deadline=timedelta(milliseconds=200), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


# -- (a) the TLV parser ---------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=600))
def test_parse_arbitrary_bytes_returns_or_raises_tlv_error(data):
    try:
        objects = tlv.parse(data)
    except TlvError as exc:
        assert 0 <= exc.offset <= len(data)
        return
    for top in objects:
        for node in top.walk():
            assert 0 <= node.offset < len(data)


@FUZZ
@given(st.binary(max_size=600))
def test_parse_dol_arbitrary_bytes(data):
    try:
        entries = tlv.parse_dol(data)
    except TlvError as exc:
        assert 0 <= exc.offset <= len(data)
        return
    assert all(0 <= length < 0x80 for _, length in entries)


PRIMITIVE_TAGS = st.sampled_from([0x4F, 0x50, 0x57, 0x5A, 0x82, 0x84, 0x87, 0x94, 0x9F02, 0x9F10, 0x9F26, 0x9F36,
                                  0x5F24, 0x5F2A, 0xDF8101, 0x9F8102, 0xC1, 0x01, 0x1F21])
CONSTRUCTED_TAGS = st.sampled_from([0x61, 0x6F, 0x70, 0x77, 0xA5, 0xBF0C, 0xE1, 0xBF8101, 0x3F21])


def primitive() -> st.SearchStrategy[Tlv]:
    return st.builds(lambda tag, value: Tlv(tag, value), PRIMITIVE_TAGS,
                     st.one_of(st.binary(max_size=20), st.binary(min_size=120, max_size=300)))


def tree(depth: int) -> st.SearchStrategy[Tlv]:
    if depth == 0:
        return primitive()
    constructed = st.builds(lambda tag, children: Tlv(tag, b"", tuple(children)), CONSTRUCTED_TAGS,
                            st.lists(tree(depth - 1), max_size=4))
    return st.one_of(primitive(), constructed)


def shape(node: Tlv):
    """A tree without offsets and without the (derived) value of templates."""
    if node.children is None:
        return (node.tag, node.value)
    return (node.tag, tuple(shape(c) for c in node.children))


@FUZZ
@given(st.lists(tree(MAX_DEPTH - 4), min_size=1, max_size=4), st.sampled_from([b"", b"\x00", b"\xff\x00"]))
def test_round_trip_of_generated_trees(objects, padding):
    data = padding.join(tlv.encode_tlv(o) for o in objects)
    parsed = tlv.parse(data)
    assert [shape(p) for p in parsed] == [shape(o) for o in objects]
    again = padding.join(tlv.encode_tlv(p) for p in parsed)
    assert again == data
    for p, o in zip(parsed, objects, strict=True):
        assert tlv.flatten([p]) == tlv.flatten([o])


@FUZZ
@given(st.integers(min_value=0, max_value=0xFFFFFF))
def test_length_round_trip(length):
    encoded = tlv.encode_length(length)
    (obj,) = tlv.parse(b"\xc1" + encoded + bytes(length)) if length < 5000 else (Tlv(0xC1, bytes(length)),)
    assert len(obj.value) == length


# -- (b) the kernel on mutated card answers --------------------------------------------------------


def recorded_script(make_card) -> dict[str, str | list[str]]:
    """The script of a good card: every answer it gives in a successful read."""
    card = make_card()
    run(card)  # it really is a good card
    return dict(card.script)


GOOD = {"visa": recorded_script(visa_card), "mastercard": recorded_script(lambda: mastercard_card(records=3))}


@st.composite
def mutated_script(draw) -> tuple[str, dict[str, str | list[str]]]:
    name = draw(st.sampled_from(sorted(GOOD)))
    script = dict(GOOD[name])
    keys = sorted(script)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from(keys))
        answer = bytearray(bytes.fromhex(script[key]))
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "sw", "random", "delete", "length"]))
        if kind == "flip" and answer:
            pos = draw(st.integers(0, len(answer) - 1))
            answer[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            answer = answer[:draw(st.integers(0, len(answer)))]
        elif kind == "insert":
            pos = draw(st.integers(0, len(answer)))
            answer[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "sw":
            sw = draw(st.one_of(st.sampled_from([b"\x6a\x82", b"\x6a\x81", b"\x62\x83", b"\x69\x85", b"\x69\x84",
                                                 b"\x6a\x83", b"\x6d\x00", b"\x61\x00", b"\x61\x10", b"\x6c\x00",
                                                 b"\x6c\x05", b"\x90\x00", b"\x00\x00"]),
                                st.binary(min_size=2, max_size=2)))
            answer = answer[:-2] + bytearray(sw)
        elif kind == "random":
            answer = bytearray(draw(st.binary(max_size=300)))
        elif kind == "delete" and answer:
            pos = draw(st.integers(0, len(answer) - 1))
            del answer[pos:pos + draw(st.integers(1, 6))]
        elif kind == "length" and len(answer) > 2:
            # the most likely place to break a parser: a length byte
            pos = draw(st.integers(0, len(answer) - 3))
            answer[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0xFF]))
        script[key] = bytes(answer).hex().upper()
    return name, script


def read_or_card_error(card: ScriptedCard, params=None, tokenize=None) -> emv.CardRead | CardError:
    try:
        if tokenize is None:
            return run(card, params)
        return emv.read_card(card, params or make_params(), tokenize=tokenize, mask=security.mask_pan)
    except CardError as exc:  # TlvError included
        assert exc.outcome in ("tap_again", "try_another_card", "card_blocked", "app_not_supported",
                               "card_error"), exc.outcome
        assert exc.message
        return exc


# a card-number tag (PAN 5A, track 2 57, track 2 in 9F6B) in a trace whose value is not "<n bytes masked>"
CLEAR_CARD_DATA = re.compile(r"(?<![0-9A-F])(5A|57|9F6B)=(?!<)")


@FUZZ
@given(mutated_script())
def test_kernel_on_mutated_answers_ends_with_a_result_or_a_card_error(case):
    _name, script = case
    card = ScriptedCard(script)
    pans: list[str] = []

    def tokenize(pan: str) -> str:  # the kernel hands the clear card number it read to `tokenize` only
        pans.append(pan)
        return security.card_token(pan, TOKEN_KEY)

    result = read_or_card_error(card, tokenize=tokenize)
    if isinstance(result, emv.CardRead):
        assert result.apdu_count == len(card.sent)
        (pan,) = pans
        assert result.masked_pan == security.mask_pan(pan) and result.masked_pan.count("*") >= 3
        assert result.card_token == security.card_token(pan, TOKEN_KEY)
        assert pan not in json.dumps(result.to_dict()), "the clear card number is in the card read"
        trace = json.dumps([t.to_dict() for t in result.trace])
        assert not CLEAR_CARD_DATA.search(trace), "the trace shows a card number tag unmasked"
    # bounded: at most every candidate with GET RESPONSE rounds, the AFL records and GENERATE AC
    limit = (1 + emv.MAX_RESPONSE_CHAIN) * (1 + len(emv.DEFAULT_AIDS) * 2 + emv.MAX_RECORDS + 1)
    assert len(card.sent) <= limit


@FUZZ
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=40),
       st.sampled_from([0, 1000, 10_000_000]))
def test_kernel_on_a_card_answering_random_bytes(answers, amount):
    """Each command gets the next random answer (then the last one again)."""

    class RandomCard(ScriptedCard):
        def transmit(self, apdu: bytes) -> bytes:
            self.sent.append(apdu.hex().upper())
            return answers[min(len(self.sent) - 1, len(answers) - 1)]

    card = RandomCard({})
    read_or_card_error(card, make_params(amount))


@FUZZ
@given(st.binary(min_size=0, max_size=40), st.binary(min_size=0, max_size=40))
def test_build_dol_never_fails_on_card_dols(dol_bytes, value):
    """A PDOL/CDOL is card data: whatever parses as a DOL, build_dol fills exactly its lengths."""
    try:
        dol = tlv.parse_dol(dol_bytes)
    except TlvError:
        return
    data = {tag: value for tag, _ in dol}
    assert len(emv.build_dol(dol, data)) == sum(length for _, length in dol)
