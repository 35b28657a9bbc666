"""BER-TLV (terminal.core.tlv): table-driven parse/build cases and every malformed form with its offset.

Each malformed case states the byte offset the error must name; the parser is the terminal's only
defence against a card that answers garbage, so the offsets are part of the contract (they go into the
APDU trace and the support log)."""

from __future__ import annotations

import pytest

from terminal.core import tlv
from terminal.core.tlv import MAX_DEPTH, Tlv
from terminal.errors import CardError, TlvError


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# -- well-formed input -----------------------------------------------------------------------------

# (name, input hex, expected [(tag, value hex, offset)] of the top-level objects)
GOOD = [
    ("one-byte tag", "5A 02 1234", [(0x5A, "1234", 0)]),
    ("two-byte tag", "9F02 06 000000001000", [(0x9F02, "000000001000", 0)]),
    ("two-byte tag 5F", "5F24 03 261231", [(0x5F24, "261231", 0)]),
    ("three-byte tag", "DF8101 01 AA", [(0xDF8101, "AA", 0)]),
    ("three-byte tag, 2nd byte high", "9F8F0F 00", [(0x9F8F0F, "", 0)]),
    ("empty value", "5A 00", [(0x5A, "", 0)]),
    ("length 127 short form", "C1 7F" + "11" * 127, [(0xC1, "11" * 127, 0)]),
    ("length 81 80", "C1 81 80" + "22" * 128, [(0xC1, "22" * 128, 0)]),
    ("length 81 FF", "C1 81 FF" + "33" * 255, [(0xC1, "33" * 255, 0)]),
    ("length 82 0100", "C1 82 0100" + "44" * 256, [(0xC1, "44" * 256, 0)]),
    ("length 83 000101", "C1 83 000101" + "55" * 257, [(0xC1, "55" * 257, 0)]),
    ("non-minimal long length 81 02", "5A 81 02 1234", [(0x5A, "1234", 0)]),
    ("two objects", "5A 01 11 9F36 02 0042", [(0x5A, "11", 0), (0x9F36, "0042", 3)]),
    ("00 padding between", "5A 01 11 00 00 9F36 02 0042", [(0x5A, "11", 0), (0x9F36, "0042", 5)]),
    ("FF padding between", "5A 01 11 FF 9F36 02 0042", [(0x5A, "11", 0), (0x9F36, "0042", 4)]),
    ("leading and trailing padding", "00 FF 5A 01 11 00 FF 00", [(0x5A, "11", 2)]),
    ("only padding", "00 00 FF", []),
    ("nothing", "", []),
]


@pytest.mark.parametrize(("data", "expected"), [(c[1], c[2]) for c in GOOD], ids=[c[0] for c in GOOD])
def test_parse_well_formed(data, expected):
    objects = tlv.parse(h(data))
    assert [(o.tag, o.value.hex().upper(), o.offset) for o in objects] == [
        (tag, value.upper(), offset) for tag, value, offset in expected]
    for obj in objects:
        assert obj.children is None and not obj.constructed  # none of these tags is constructed


def test_parse_accepts_bytearray_and_memoryview():
    raw = h("9F36 02 0042")
    assert tlv.parse(bytearray(raw)) == tlv.parse(memoryview(raw)) == tlv.parse(raw)


def test_constructed_nesting_with_padding_and_offsets():
    # 6F > (84, A5 > (50, 87, BF0C > 61 > (4F, 87))), padding inside A5
    data = h("6F 1D 84 02 3250 A5 17 50 02 4342 00 87 01 01 BF0C 0C 61 0A 4F 05 A000000003 87 01 02")
    (fci,) = tlv.parse(data)
    assert fci.tag == 0x6F and fci.constructed and fci.offset == 0
    assert [c.tag for c in fci.children] == [0x84, 0xA5]
    a5 = fci.children[1]
    assert a5.offset == 6 and [c.tag for c in a5.children] == [0x50, 0x87, 0xBF0C]
    assert a5.children[1].offset == 13  # after the 00 pad byte at 12
    entry = a5.find(0x61)
    assert entry is not None and entry.offset == 19
    assert [(c.tag, c.value.hex().upper(), c.offset) for c in entry.children] == [
        (0x4F, "A000000003", 21), (0x87, "02", 28)]
    assert [n.tag for n in fci.walk()] == [0x6F, 0x84, 0xA5, 0x50, 0x87, 0xBF0C, 0x61, 0x4F, 0x87]


def test_empty_constructed_has_empty_children():
    (obj,) = tlv.parse(h("A5 00"))
    assert obj.constructed and obj.children == () and obj.value == b""


def test_constructed_flag_comes_from_first_tag_byte():
    assert tlv.tag_is_constructed(0x70) and tlv.tag_is_constructed(0xBF0C) and tlv.tag_is_constructed(0xFF8101)
    assert not tlv.tag_is_constructed(0x9F02) and not tlv.tag_is_constructed(0x5A)
    assert not tlv.tag_is_constructed(0xDF8101)


def test_depth_up_to_max_is_accepted():
    data = b""
    for _ in range(MAX_DEPTH):
        data = tlv.encode(0xE1, data)
    (top,) = tlv.parse(data)
    assert sum(1 for _ in top.walk()) == MAX_DEPTH


# -- malformed input: TlvError with the offset ------------------------------------------------------

# (name, input hex, offset the error names)
BAD = [
    ("length past the end", "5A 08 1234", 0),
    ("length past the end, second object", "9F02 01 00 5A 05 11", 4),
    ("length past the end inside a template (absolute offset)", "70 04 5A 05 1122", 2),
    ("template length past the end", "70 10 5A 01 11", 0),
    ("child overruns its template", "70 03 5A 02 1122", 2),
    ("length 84 (overflow)", "5A 84 00000001 11", 1),
    ("length 85 (overflow)", "5A 85 0000000001 11", 1),
    ("length FF (overflow)", "5A FF", 1),
    ("indefinite length 80", "6F 80 5A 01 11 00 00", 1),
    ("indefinite length 80 nested", "6F 05 A5 80 5A 01 11", 3),
    ("long length cut off 81", "5A 81", 1),
    ("long length cut off 82", "5A 82 01", 1),
    ("long length cut off 83", "9F10 83 0000", 2),
    ("long length past the end 82", "C1 82 0100 11", 0),
    ("length missing", "5A", 1),
    ("length missing after two-byte tag", "9F36", 2),
    ("two-byte tag cut off", "9F", 0),
    ("tag cut off after an object", "5A 01 11 9F", 3),
    ("three-byte tag cut off", "DF81", 0),
    ("four-byte tag", "9F 81 81 01 00", 0),
    ("four-byte tag after an object", "5A 00 DF 81 82 03 00", 2),
    ("four-byte tag inside a template", "70 06 DF 81 82 03 01 AA", 2),
]


@pytest.mark.parametrize(("data", "offset"), [(c[1], c[2]) for c in BAD], ids=[c[0] for c in BAD])
def test_malformed_raises_tlv_error_with_offset(data, offset):
    with pytest.raises(TlvError) as info:
        tlv.parse(h(data))
    assert info.value.offset == offset
    assert f"(at byte {offset})" in str(info.value)
    assert isinstance(info.value, CardError) and info.value.outcome == "try_another_card"


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 20])
def test_nesting_deeper_than_max_depth_is_rejected(levels):
    data = b""
    for _ in range(levels):
        data = tlv.encode(0xE1, data)
    with pytest.raises(TlvError, match="nested deeper") as info:
        tlv.parse(data)
    # every level here has a 2-byte header; the error names where the (MAX_DEPTH+1)-th level's content starts
    assert info.value.offset == 2 * (MAX_DEPTH + 1)


def test_nesting_error_does_not_depend_on_content():
    """An over-deep empty template is rejected too: the limit is about depth, not about data."""
    data = b""
    for _ in range(MAX_DEPTH + 1):
        data = tlv.encode(0x70, data)
    with pytest.raises(TlvError):
        tlv.parse(data)


def test_deep_primitive_padding_is_not_nesting():
    """Primitive tags never recurse, whatever their value looks like."""
    inner = tlv.encode(0x70, b"") * 3
    (obj,) = tlv.parse(tlv.encode(0x5A, inner))
    assert obj.children is None and obj.value == inner


# -- parse_one ------------------------------------------------------------------------------------


def test_parse_one():
    assert tlv.parse_one(h("77 04 9F27 01 80"), expect=0x77).find(0x9F27).value == h("80")
    assert tlv.parse_one(h("80 02 1980 00 00")).value == h("1980")  # trailing padding allowed
    with pytest.raises(TlvError, match="no data object") as info:
        tlv.parse_one(h("00 00"))
    assert info.value.offset == 0
    with pytest.raises(TlvError, match="2 top-level objects") as info:
        tlv.parse_one(h("80 01 11 80 01 22"))
    assert info.value.offset == 3
    with pytest.raises(TlvError, match="expected tag 77, found 80"):
        tlv.parse_one(h("80 01 11"), expect=0x77)


# -- find / flatten -------------------------------------------------------------------------------

RECORD = h("70 14 5A 02 1111 A5 09 5A 02 2222 9F36 02 0001 E1 03 9F36 00 00")  # 5A twice, 9F36 twice


def test_find_is_depth_first_in_card_order():
    objects = tlv.parse(RECORD)
    assert tlv.find(objects, 0x5A).value == h("1111")
    assert tlv.find(objects, 0x9F36).value == h("0001")
    assert tlv.find(objects, 0xA5).constructed
    assert tlv.find(objects, 0x70) is objects[0]
    assert tlv.find(objects, 0x57) is None
    assert objects[0].find(0x70) is objects[0]
    a5 = tlv.find(objects, 0xA5)
    assert a5.find(0x5A).value == h("2222")  # a node's own find looks below itself only
    assert tlv.find([], 0x5A) is None


def test_flatten_first_primitive_wins_and_skips_templates():
    flat = tlv.flatten(tlv.parse(RECORD))
    assert flat == {0x5A: h("1111"), 0x9F36: h("0001")}
    assert 0x70 not in flat and 0xA5 not in flat and 0xE1 not in flat


def test_flatten_over_several_top_level_objects():
    flat = tlv.flatten(tlv.parse(h("5A 01 11 70 03 5A 01 22 9F27 01 80")))
    assert flat == {0x5A: h("11"), 0x9F27: h("80")}


# -- building -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("length", "encoded"), [
    (0, "00"), (1, "01"), (127, "7F"), (128, "8180"), (255, "81FF"), (256, "820100"), (65535, "82FFFF"),
    (65536, "83010000"), (0xFFFFFF, "83FFFFFF"),
])
def test_encode_length(length, encoded):
    assert tlv.encode_length(length) == h(encoded)


@pytest.mark.parametrize("length", [-1, 0x1000000])
def test_encode_length_out_of_range(length):
    with pytest.raises(ValueError):
        tlv.encode_length(length)


@pytest.mark.parametrize(("tag", "encoded"), [(0x5A, "5A"), (0x9F02, "9F02"), (0xDF8101, "DF8101"), (0, "00")])
def test_tag_bytes(tag, encoded):
    assert tlv.tag_bytes(tag) == h(encoded)


@pytest.mark.parametrize("tag", [-1, 0x9F818101])
def test_tag_bytes_out_of_range(tag):
    with pytest.raises(ValueError):
        tlv.tag_bytes(tag)


def test_encode_primitive_and_children():
    assert tlv.encode(0x9F36, h("0042")) == h("9F36 02 0042")
    assert tlv.encode(0x5A) == h("5A 00")
    assert tlv.encode(0x70, [tlv.encode(0x5A, b"\x11"), tlv.encode(0x57, b"")]) == h("70 05 5A 01 11 57 00")
    assert tlv.encode(0xC1, bytes(200))[:3] == h("C1 81 C8")


@pytest.mark.parametrize("data", [
    "6F 1C 84 02 3250 A5 16 50 02 4342 87 01 01 BF0C 0C 61 0A 4F 05 A000000003 87 01 02",
    "77 0E 82 02 1980 94 08 08010100 10010300",
    "70 81 83 9F6C 02 0001 56 7C" + "41" * 124,
    "C1 82 0100" + "00" * 256,
    "5A 00 9F36 02 0042 DF8101 00 E1 00",
])
def test_encode_round_trip(data):
    raw = h(data)
    objects = tlv.parse(raw)
    assert b"".join(tlv.encode_tlv(o) for o in objects) == raw
    assert tlv.parse(b"".join(tlv.encode_tlv(o) for o in objects)) == objects


def test_round_trip_drops_padding_only():
    raw = h("6F 0A 84 02 3250 00 A5 03 50 01 41 FF")
    (fci,) = tlv.parse(raw)
    rebuilt = tlv.encode_tlv(fci)
    assert rebuilt == h("6F 09 84 02 3250 A5 03 50 01 41")
    assert tlv.flatten(tlv.parse(rebuilt)) == tlv.flatten([fci])


# -- data object lists ----------------------------------------------------------------------------

def test_parse_dol():
    pdol = h("9F66 04 9F02 06 9F03 06 9F1A 02 95 05 5F2A 02 9A 03 9C 01 9F37 04 DF8101 01")
    assert tlv.parse_dol(pdol) == (
        (0x9F66, 4), (0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3), (0x9C, 1),
        (0x9F37, 4), (0xDF8101, 1))
    assert tlv.parse_dol(b"") == ()
    assert tlv.parse_dol(h("9F35 00")) == ((0x9F35, 0),)


@pytest.mark.parametrize(("data", "offset"), [
    ("9F02", 2),  # length missing
    ("9F02 06 9F", 3),  # tag cut off
    ("9F02 81 06", 2),  # long length form in a DOL
    ("9F 81 81 01 02", 0),  # four-byte tag
])
def test_parse_dol_malformed(data, offset):
    with pytest.raises(TlvError) as info:
        tlv.parse_dol(h(data))
    assert info.value.offset == offset


def test_encode_tlv_builds_from_children_not_from_value():
    node = Tlv(0x70, b"ignored for constructed", (Tlv(0x5A, h("11")), Tlv(0xA5, b"", ())))
    assert tlv.encode_tlv(node) == h("70 05 5A 01 11 A5 00")
