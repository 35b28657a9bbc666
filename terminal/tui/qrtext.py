"""Draw a QR code with Unicode half blocks: one module wide and two modules tall per cell, so modules
come out square in a terminal. Dark modules are drawn as spaces on a light background, with a
quiet zone, so the code reads the same on dark and light terminal themes.

The payload is cut into numeric, alphanumeric and byte segments by an exact search for the fewest
bits (`segments`), not a greedy guess: an EMVCo merchant code (mostly digits and capitals, with a
lower-case account id and a merchant name) then fits a symbol one or two versions smaller, which is
what lets it stand whole, with its quiet zone, on an 80x24 terminal."""

from __future__ import annotations

import qrcode
from qrcode.constants import ERROR_CORRECT_L, ERROR_CORRECT_M
from qrcode.util import MODE_8BIT_BYTE, MODE_ALPHA_NUM, MODE_NUMBER, QRData

_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
_MODES = (MODE_NUMBER, MODE_ALPHA_NUM, MODE_8BIT_BYTE)


def _bits(mode: int, chars: int, nbytes: int) -> int:
    """Bits of one segment in a version 1-9 symbol: mode indicator, character count, data."""
    if mode == MODE_NUMBER:
        return 4 + 10 + chars // 3 * 10 + (0, 4, 7)[chars % 3]
    if mode == MODE_ALPHA_NUM:
        return 4 + 9 + chars // 2 * 11 + chars % 2 * 6
    return 4 + 8 + nbytes * 8


def _fits(mode: int, ch: str) -> bool:
    if mode == MODE_NUMBER:
        return "0" <= ch <= "9"
    if mode == MODE_ALPHA_NUM:
        return ch in _ALPHANUMERIC
    return True


def segments(text: str) -> list[tuple[int, str]]:
    """(mode, text) segments of `text` that take the fewest bits (dynamic programming over every
    cut; a payload is a few hundred characters, so this is instant)."""
    n = len(text)
    best: list[tuple[int, int, int]] = [(0, -1, -1)] + [(1 << 30, -1, -1)] * n  # (bits, start, mode)
    for i in range(n):
        if best[i][0] >= 1 << 30:
            continue
        for mode in _MODES:
            nbytes = 0
            j = i
            while j < n and _fits(mode, text[j]):
                nbytes += len(text[j].encode("utf-8"))
                j += 1
                cost = best[i][0] + _bits(mode, j - i, nbytes)
                if cost < best[j][0]:
                    best[j] = (cost, i, mode)
    out: list[tuple[int, str]] = []
    end = n
    while end > 0:
        _, start, mode = best[end]
        out.append((mode, text[start:end]))
        end = start
    out.reverse()
    merged: list[tuple[int, str]] = []
    for mode, part in out:  # neighbours in the same mode are one segment
        if merged and merged[-1][0] == mode:
            merged[-1] = (mode, merged[-1][1] + part)
        else:
            merged.append((mode, part))
    return merged


def qr_matrix(text: str, *, error_correction: str = "M") -> list[list[bool]]:
    level = {"L": ERROR_CORRECT_L, "M": ERROR_CORRECT_M}[error_correction]
    code = qrcode.QRCode(error_correction=level, border=0, box_size=1)
    for mode, part in segments(text):
        code.add_data(QRData(part.encode("utf-8"), mode=mode, check_data=False), optimize=0)
    code.make(fit=True)
    return [list(row) for row in code.get_matrix()]


def qr_lines(text: str, *, quiet: int = 1, error_correction: str = "M", quiet_x: int | None = None) -> list[str]:
    """Lines of a text QR code; `quiet` modules of light border above and below, `quiet_x` (default
    `quiet`) left and right (columns are cheap on a terminal, rows are not)."""
    matrix = qr_matrix(text, error_correction=error_correction)
    qx = quiet if quiet_x is None else quiet_x
    width, height = len(matrix) + 2 * qx, len(matrix) + 2 * quiet
    light = [[False] * width for _ in range(height)]
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            light[y + quiet][x + qx] = dark
    if height % 2:
        light.append([False] * width)
    # each cell: upper module, lower module; light = block drawn, dark = space
    glyph = {(False, False): "█", (False, True): "▀", (True, False): "▄", (True, True): " "}
    return ["".join(glyph[(light[y][x], light[y + 1][x])] for x in range(width)) for y in range(0, len(light), 2)]
