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


def masked_in_hex_by_every_window(hex_text: str) -> str:
    """The rule of `mask_card_numbers_in_hex` written out the slow way: the Luhn check of every window
    of 13-19 digits inside each run of 13 or more digits."""
    import re

    chars = list(hex_text)
    for run in re.finditer(r"\d{13,}", hex_text):
        digits = run.group(0)
        for length in range(min(19, len(digits)), 12, -1):
            for i in range(len(digits) - length + 1):
                if luhn_valid(digits[i:i + length]):
                    chars[run.start() + i + 6:run.start() + i + length - 4] = "*" * (length - 10)
    return "".join(chars)


@given(st.text(alphabet="0123456789ABCDEF", max_size=120))
def test_masking_in_hex_is_the_luhn_check_of_every_window(hex_text):
    assert mask_card_numbers_in_hex(hex_text) == masked_in_hex_by_every_window(hex_text)


@given(st.text(alphabet="0123456789", min_size=13, max_size=60))
def test_masking_in_hex_is_the_luhn_check_of_every_window_of_a_run_of_digits(digits):
    assert mask_card_numbers_in_hex(f"9F{digits}E0") == masked_in_hex_by_every_window(f"9F{digits}E0")
