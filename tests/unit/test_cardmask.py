"""One masking function for every output path: card numbers (Luhn-checked, alone, grouped, or as
track 2 data) are masked; hashes, signatures, ids, dates and amounts stay readable."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.core.cardmask import luhn_valid, mask_card_numbers, mask_card_numbers_in_hex

PAN = "4761739001010010"


@pytest.mark.parametrize(("text", "shown"), [
    (PAN, "476173******0010"),
    ("card 4761 7390 0101 0010 ok", "card 476173******0010 ok"),
    ("4761-7390-0101-0010", "476173******0010"),
    (f"{PAN}=25122010000000000F", "476173******0010=******************"),
    (f"{PAN}D2512201", "476173******0010D*******"),
    (f"pan={PAN};", "pan=476173******0010;"),
    ("6212345678901232", "621234******1232"),  # UnionPay
])
def test_card_numbers_are_masked_wherever_they_stand(text, shown):
    assert mask_card_numbers(text) == shown


@pytest.mark.parametrize("text", [
    "row_hash 0106847617390010100109abcdef", "signature 01068a8684ffe1", "2026-12-03T10:00:00Z",
    "amount 1234567", "phone 13800138000", "4761739001010011",  # not Luhn-valid
    "01a23afc-f079-7001-852a-5c3055685b6e",
])
def test_what_is_not_a_card_number_is_left_alone(text):
    assert mask_card_numbers(text) == text


def test_hashes_made_of_digits_inside_hex_are_left_alone():
    for i in range(200):
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        assert mask_card_numbers(f"hash {digest} end") == f"hash {digest} end"


@given(st.text(alphabet="0123456789", min_size=12, max_size=19))
def test_no_luhn_valid_number_survives(digits):
    out = mask_card_numbers(f"x {digits} y")
    if luhn_valid(digits):
        assert digits not in out and out.startswith(f"x {digits[:6 if len(digits) >= 13 else 4]}")
    else:
        assert out == f"x {digits} y"


def test_a_pan_inside_hex_card_data_is_masked_under_any_tag():
    assert PAN not in mask_card_numbers_in_hex(f"5E08{PAN}")
    assert mask_card_numbers_in_hex("9F02000000001000") == "9F02000000001000"
