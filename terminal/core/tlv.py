"""BER-TLV as EMV uses it (EMV Book 3, Annex B): parse and build.

Tags are one to three bytes (a first byte with b5..b1 = 11111 continues; each next byte with b8 set
continues). Lengths are short (one byte, 0..127) or long (81 xx, 82 xxxx, 83 xxxxxx). Constructed
tags (b6 of the first tag byte) hold more TLV objects. Bytes 00 and FF between objects are padding
and skipped.

Every malformed input raises `TlvError` with the byte offset where it went wrong: a tag or length
cut off, a length past the end of the data, an indefinite or oversized length form, nesting deeper
than `MAX_DEPTH`. Nesting is bounded, so no card can make the parser recurse without end; input is
bounded by what a card can send, so parsing is linear in its length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from terminal.errors import TlvError

MAX_DEPTH = 8  # EMV templates nest 3-4 deep (6F > A5 > BF0C > 61); 8 leaves room and no more
MAX_TAG_BYTES = 3
MAX_LENGTH_BYTES = 3  # 83 xx xx xx; nothing a card sends comes near 16 MB


@dataclass(frozen=True, slots=True)
class Tlv:
    """One data object. `children` is set (possibly empty) for constructed tags, None otherwise.
    `offset` is where the tag starts in the parsed input."""

    tag: int
    value: bytes
    children: tuple[Tlv, ...] | None = None
    offset: int = 0

    @property
    def constructed(self) -> bool:
        return self.children is not None

    def walk(self) -> Iterator[Tlv]:
        """This object and everything inside it, depth first, in card order."""
        stack: list[Tlv] = [self]
        while stack:
            node = stack.pop()
            yield node
            if node.children:
                stack.extend(reversed(node.children))

    def find(self, tag: int) -> Tlv | None:
        """The first object with `tag` here or below, or None."""
        return find(self.children or (), tag) if self.tag != tag else self


def tag_is_constructed(tag: int) -> bool:
    first = tag
    while first > 0xFF:
        first >>= 8
    return bool(first & 0x20)


def _read_tag(data: bytes, i: int, end: int) -> tuple[int, int]:
    start = i
    first = data[i]
    tag = first
    i += 1
    if first & 0x1F == 0x1F:
        while True:
            if i >= end:
                raise TlvError(f"tag {tag:X} is cut off", offset=start)
            byte = data[i]
            tag = (tag << 8) | byte
            i += 1
            if i - start > MAX_TAG_BYTES:
                raise TlvError(f"tag longer than {MAX_TAG_BYTES} bytes", offset=start)
            if not byte & 0x80:
                break
    return tag, i


def _read_length(data: bytes, i: int, end: int, tag: int) -> tuple[int, int]:
    if i >= end:
        raise TlvError(f"length of tag {tag:X} is missing", offset=i)
    first = data[i]
    if first < 0x80:
        return first, i + 1
    count = first & 0x7F
    if count == 0:
        raise TlvError(f"indefinite length (80) of tag {tag:X} is not allowed in EMV", offset=i)
    if count > MAX_LENGTH_BYTES:
        raise TlvError(f"length of tag {tag:X} uses {count} bytes (overflow; at most {MAX_LENGTH_BYTES})",
                       offset=i)
    if i + 1 + count > end:
        raise TlvError(f"length of tag {tag:X} is cut off", offset=i)
    return int.from_bytes(data[i + 1:i + 1 + count], "big"), i + 1 + count


def _parse_range(data: bytes, start: int, end: int, depth: int) -> tuple[Tlv, ...]:
    if depth > MAX_DEPTH:
        raise TlvError(f"templates nested deeper than {MAX_DEPTH} levels", offset=start)
    out: list[Tlv] = []
    i = start
    while i < end:
        if data[i] in (0x00, 0xFF):  # padding between objects
            i += 1
            continue
        tag_at = i
        tag, i = _read_tag(data, i, end)
        length, i = _read_length(data, i, end, tag)
        if length > end - i:
            raise TlvError(f"tag {tag:X} says {length} bytes but only {end - i} remain", offset=tag_at)
        value = data[i:i + length]
        children = _parse_range(data, i, i + length, depth + 1) if data[tag_at] & 0x20 else None
        out.append(Tlv(tag, value, children, tag_at))
        i += length
    return tuple(out)


def parse(data: bytes | bytearray | memoryview) -> tuple[Tlv, ...]:
    """All top-level objects in `data` (constructed ones parsed down to their leaves)."""
    raw = bytes(data)
    return _parse_range(raw, 0, len(raw), 0)


def parse_one(data: bytes | bytearray | memoryview, *, expect: int | None = None) -> Tlv:
    """Exactly one top-level object (optionally with tag `expect`); trailing padding is allowed."""
    objects = parse(data)
    if not objects:
        raise TlvError("no data object", offset=0)
    if len(objects) > 1:
        raise TlvError(f"{len(objects)} top-level objects where one was expected", offset=objects[1].offset)
    if expect is not None and objects[0].tag != expect:
        raise TlvError(f"expected tag {expect:X}, found {objects[0].tag:X}", offset=0)
    return objects[0]


def find(objects: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first object with `tag` at any depth (depth first, in card order), or None."""
    for top in objects:
        for node in top.walk():
            if node.tag == tag:
                return node
    return None


def flatten(objects: Iterable[Tlv]) -> dict[int, bytes]:
    """Primitive objects by tag, at any depth; the first occurrence of a tag wins."""
    out: dict[int, bytes] = {}
    for top in objects:
        for node in top.walk():
            if node.children is None and node.tag not in out:
                out[node.tag] = node.value
    return out


# -- building ------------------------------------------------------------------------------------


def tag_bytes(tag: int) -> bytes:
    if tag < 0:
        raise ValueError("a tag is a positive number")
    size = max(1, (tag.bit_length() + 7) // 8)
    if size > MAX_TAG_BYTES:
        raise ValueError(f"tag {tag:X} is longer than {MAX_TAG_BYTES} bytes")
    return tag.to_bytes(size, "big")


def encode_length(length: int) -> bytes:
    if length < 0:
        raise ValueError("a length is not negative")
    if length < 0x80:
        return bytes([length])
    size = (length.bit_length() + 7) // 8
    if size > MAX_LENGTH_BYTES:
        raise ValueError(f"length {length} does not fit {MAX_LENGTH_BYTES} bytes")
    return bytes([0x80 | size]) + length.to_bytes(size, "big")


def encode(tag: int, value: bytes | Iterable[bytes] = b"") -> bytes:
    """One object. `value` is the raw value, or encoded children to concatenate."""
    body = value if isinstance(value, bytes | bytearray) else b"".join(value)
    return tag_bytes(tag) + encode_length(len(body)) + bytes(body)


def encode_tlv(node: Tlv) -> bytes:
    if node.children is None:
        return encode(node.tag, node.value)
    return encode(node.tag, [encode_tlv(child) for child in node.children])


# -- data object lists (PDOL, CDOL: tag + length, no values) --------------------------------------


def parse_dol(data: bytes) -> tuple[tuple[int, int], ...]:
    """A data object list: (tag, length) pairs in order."""
    out: list[tuple[int, int]] = []
    i, end = 0, len(data)
    while i < end:
        tag, i = _read_tag(data, i, end)
        if i >= end:
            raise TlvError(f"length of DOL entry {tag:X} is missing", offset=i)
        length = data[i]
        if length & 0x80:
            raise TlvError(f"DOL entry {tag:X} has a long length form", offset=i)
        i += 1
        out.append((tag, length))
    return tuple(out)
