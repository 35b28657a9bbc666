"""The journal's record format, pure parts: the hand-built canonical JSON, transaction ids, signatures."""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.journal import SIGNED_FIELDS, canonical_bytes, canonical_txn_parts, new_txn_id, parse_utc, utc_text
from terminal.security import TerminalKeys, verify_signature

text = st.text(max_size=40)  # any Unicode: quotes, backslashes, control characters, non-BMP
maybe = st.none() | text
plain = st.recursive(st.none() | st.booleans() | st.integers() | text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                     max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(amount=st.integers(min_value=-(10**15), max_value=10**15), auth_mode=text, business_date=text,
       card_token=maybe, created_at=text, currency=text, decision=text,
       details=st.dictionaries(text, plain, max_size=4), id=text, kind=text, masked_pan=maybe, method=text,
       operator=maybe, reasons=st.lists(text, max_size=3),
       reference=maybe, scheme=maybe, sealed_card_sha256=maybe, terminal_id=text, prev_hash=text,
       seq=st.integers(min_value=1, max_value=2**62))
def test_hand_built_canonical_json_is_byte_for_byte_the_generic_one(prev_hash, seq, details, reasons, **fields):
    record = dict(fields, details=details, reasons=reasons, prev_hash=prev_hash, seq=seq)
    expected = canonical_bytes(record, SIGNED_FIELDS)
    head, middle, tail = canonical_txn_parts(
        details_json=canonical_bytes({"d": details}, ("d",))[5:-1].decode(),
        reasons_json=canonical_bytes({"r": reasons}, ("r",))[5:-1].decode(), **fields)
    prev_json = canonical_bytes({"p": prev_hash}, ("p",))[5:-1].decode()
    assert f"{head}{prev_json}{middle}{seq}{tail}".encode() == expected


def test_transaction_ids_are_uuid7_unique_and_time_ordered():
    ids = [new_txn_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text_id in ids[:200]:
        parsed = uuid.UUID(text_id)
        assert str(parsed) == text_id
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    stamps = [int(i.replace("-", "")[:12], 16) for i in ids]
    assert stamps == sorted(stamps)  # millisecond prefix never goes backwards within a process


def test_a_forked_child_does_not_repeat_the_parents_ids():
    new_txn_id()  # the parent's list of random id tails is now filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the next ids and leave at once
        os.close(read)
        os.write(write, "\n".join(new_txn_id() for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    child = []
    with os.fdopen(read) as pipe:
        child = pipe.read().split("\n")
    os.waitpid(pid, 0)
    parent = [new_txn_id() for _ in range(20)]
    assert len(child) == 20
    assert {i[15:] for i in child}.isdisjoint({i[15:] for i in parent})  # the random parts differ


def test_libsodium_signatures_are_the_standard_ed25519_ones():
    key = Ed25519PrivateKey.generate()
    keys = TerminalKeys(key, b"k" * 32)
    for message in (b"", b"\x00" * 32, hashlib.sha256(b"row").digest(), os.urandom(300)):
        signature = keys.sign(message)
        assert signature == key.sign(message)  # Ed25519 is deterministic: same key, same bytes
        assert verify_signature(keys.public_key_bytes, signature, message)
        assert not verify_signature(keys.public_key_bytes, signature, message + b"x")


def test_signing_from_many_threads_gives_each_caller_its_own_signature():
    # TerminalKeys signs into one buffer under a lock: callers on other threads (the journal, the
    # seal, the sync worker) must never get each other's bytes.
    key = Ed25519PrivateKey.generate()
    keys = TerminalKeys(key, b"k" * 32)
    messages = [hashlib.sha256(str(i).encode()).digest() for i in range(400)] + [os.urandom(100) for _ in range(40)]

    def sign_all(offset: int) -> list[tuple[bytes, bytes]]:
        ordered = messages[offset:] + messages[:offset]
        return [(message, keys.sign(message)) for message in ordered]

    offsets = [0, 70, 140, 210, 280, 350]
    with ThreadPoolExecutor(max_workers=len(offsets)) as pool:
        results = [pair for batch in pool.map(sign_all, offsets) for pair in batch]
    assert len(results) == len(offsets) * len(messages)
    for message, signature in results:
        assert signature == key.sign(message)


@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)),
                                                      timezone(timedelta(hours=-9, minutes=-30))])))
def test_stored_timestamps_are_the_iso_form_in_utc(moment):
    try:
        in_utc = moment.astimezone(UTC)
    except OverflowError:  # within hours of year 1 or 9999: no UTC time to store
        return
    assert utc_text(moment) == in_utc.isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert parse_utc(utc_text(moment)) == moment


def test_ids_taken_from_many_threads_are_all_different():
    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = list(pool.map(lambda _: [new_txn_id() for _ in range(3000)], range(8)))
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) == 24000
