"""One way to keep card numbers out of text: every output path (scan lines, logs, support bundles,
CLI answers) passes what it prints through `mask_card_numbers`.

A card number is a run of 12-19 digits, written together or in groups separated by single spaces
or dashes, that passes the Luhn check and stands on its own (no letter or digit right before or
after it, so hashes, signatures and ids stay as they are). Track 2 equivalent data (a PAN, "=" or
"D", then expiry, service code and discretionary data) is masked whether or not the PAN passes Luhn,
and its data after the separator is masked too. A masked number keeps its first six and last four
digits, as receipts show them.
"""

from __future__ import annotations

import re

# 12-19 digits, possibly in groups of 2+ separated by one space or dash, standing alone
_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])(?:\d[ -]?){11,18}\d(?![0-9A-Za-z])")
# track 2: PAN, separator, YYMM + service code + discretionary data (hex digits and F padding)
_TRACK2 = re.compile(r"(?<![0-9A-Za-z])(\d{12,19})([=D])(\d{4})(\d{3})([0-9A-Fa-f]*)(?![0-9A-Za-z])")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mask_digits(digits: str) -> str:
    """First six and last four digits kept, the rest as '*' (fewer shown for short numbers)."""
    keep_head = 6 if len(digits) >= 13 else 4
    return digits[:keep_head] + "*" * (len(digits) - keep_head - 4) + digits[-4:]


def _mask_track2(match: re.Match[str]) -> str:
    pan, sep, expiry, service, rest = match.groups()
    return f"{mask_digits(pan)}{sep}{'*' * (len(expiry) + len(service) + len(rest))}"


def _mask_candidate(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = text.replace(" ", "").replace("-", "")
    if not 12 <= len(digits) <= 19 or not luhn_valid(digits):
        return text
    return mask_digits(digits)


def mask_card_numbers(text: str) -> str:
    """`text` with every card number (and track 2 data) in it masked; everything else unchanged."""
    if not any(ch.isdigit() for ch in text):
        return text
    return _CANDIDATE.sub(_mask_candidate, _TRACK2.sub(_mask_track2, text))


_DIGIT_RUN = re.compile(r"\d{13,}")


def mask_card_numbers_in_hex(hex_text: str) -> str:
    """Card numbers inside hex-encoded card data (BCD: a PAN's digits are the hex digits themselves),
    whatever tag carries them: every Luhn-valid window of 13-19 digits inside a run of digits keeps
    its first six and last four. For APDU traces, where a PAN can sit under a tag the kernel does not
    know as card data."""
    chars = list(hex_text)
    for run in _DIGIT_RUN.finditer(hex_text):
        digits = run.group(0)
        # Luhn of any window in O(1): the window's last digit is not doubled, and every second one
        # to its left is. Running sums for both ways of alternating (digits at even positions as
        # they are and odd ones doubled, and the other way round) give each window's total as a
        # difference; a window whose last digit sits at an even position uses the first. Every
        # tap's trace passes through here (kernel.masked_summary), so it is on the payment path.
        as_even, as_odd = [0], [0]
        for position, ch in enumerate(digits):
            plain = ord(ch) - 48
            doubled = plain * 2 - 9 if plain > 4 else plain * 2
            as_even.append(as_even[-1] + (plain if position % 2 == 0 else doubled))
            as_odd.append(as_odd[-1] + (doubled if position % 2 == 0 else plain))
        for length in range(min(19, len(digits)), 12, -1):
            for i in range(len(digits) - length + 1):
                sums = as_even if (i + length - 1) % 2 == 0 else as_odd
                if (sums[i + length] - sums[i]) % 10 == 0:
                    for j in range(run.start() + i + 6, run.start() + i + length - 4):
                        chars[j] = "*"
    return "".join(chars)


__all__ = ["luhn_valid", "mask_card_numbers", "mask_card_numbers_in_hex", "mask_digits"]
