"""Draw a QR code with Unicode half blocks: one module wide and two modules tall per cell, so modules
come out square in a terminal. Dark modules are drawn as spaces on a light background, with a
quiet zone, so the code reads the same on dark and light terminal themes."""

from __future__ import annotations

import qrcode
from qrcode.constants import ERROR_CORRECT_L, ERROR_CORRECT_M


def qr_matrix(text: str, *, error_correction: str = "M") -> list[list[bool]]:
    level = {"L": ERROR_CORRECT_L, "M": ERROR_CORRECT_M}[error_correction]
    code = qrcode.QRCode(error_correction=level, border=0, box_size=1)
    code.add_data(text.encode("utf-8"))
    code.make(fit=True)
    return [list(row) for row in code.get_matrix()]


def qr_lines(text: str, *, quiet: int = 1, error_correction: str = "M") -> list[str]:
    """Lines of a text QR code; `quiet` modules of light border on every side."""
    matrix = qr_matrix(text, error_correction=error_correction)
    size = len(matrix) + 2 * quiet
    light = [[False] * size for _ in range(size)]
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            light[y + quiet][x + quiet] = dark
    if size % 2:
        light.append([False] * size)
    # each cell: upper module, lower module; light = block drawn, dark = space
    glyph = {(False, False): "█", (False, True): "▀", (True, False): "▄", (True, True): " "}
    return ["".join(glyph[(light[y][x], light[y + 1][x])] for x in range(size)) for y in range(0, len(light), 2)]
