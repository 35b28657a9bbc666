"""A terminal screenshot as an image: Textual's SVG screenshot (`App.export_screenshot()`, what a
terminal shows, cell by cell) drawn into pixels, so a code on screen can be decoded from it the way
a phone camera would read the terminal.

Each cell is drawn CELL_W x CELL_H pixels (a terminal cell is about twice as tall as it is wide):
its background colour from the SVG's background rectangles, and its character in its text colour.
Block characters are drawn as the blocks they are (full, upper half, lower half), which is all a
code drawn with half blocks needs; any other character is drawn as a small box of its colour, like
a glyph seen from afar. No font renderer is needed, so the picture is the same on every machine."""

from __future__ import annotations

import html
import re

import numpy as np

CELL_W, CELL_H = 8, 16
_TEXT = re.compile(r'<text class="([^"]+)" x="([\d.]+)" y="[\d.]+" textLength="[\d.]+" '
                   r'clip-path="url\(#[\w-]+-line-(\d+)\)">(.*?)</text>')
_RECT = re.compile(r'<rect fill="(#[0-9a-fA-F]{6})" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" '
                   r'height="[\d.]+" shape-rendering="crispEdges"/>')
_CLASS = re.compile(r"\.([\w-]+) \{ fill: (#[0-9a-fA-F]{6})")
_SIZE = re.compile(r'<clipPath id="[\w-]+-clip-terminal">\s*<rect x="0" y="0" width="([\d.]+)" height="([\d.]+)"')


def _rgb(colour: str) -> tuple[int, int, int]:
    value = int(colour[1:], 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def svg_cells(svg: str, columns: int, rows: int) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """The characters, text colours and background colours of every cell of an SVG screenshot."""
    char_w = 12.2  # Rich's SVG export: 0.61 em of a 20 px font per cell, 24.4 px per line
    line_h = 24.4
    chars = [[" "] * columns for _ in range(rows)]
    fg = np.zeros((rows, columns, 3), np.uint8)
    bg = np.zeros((rows, columns, 3), np.uint8)
    classes = {name: _rgb(colour) for name, colour in _CLASS.findall(svg)}
    for colour, x, y, width in _RECT.findall(svg):
        row = round((float(y) - 1.5) / line_h)
        col = round(float(x) / char_w)
        span = round(float(width) / char_w)
        if 0 <= row < rows:
            bg[row, col:col + span] = _rgb(colour)
    for css, x, line, text in _TEXT.findall(svg):
        row, col = int(line), round(float(x) / char_w)
        if not 0 <= row < rows:
            continue
        colour = classes.get(css.split()[0], (255, 255, 255))
        for ch in html.unescape(text).replace("\xa0", " "):
            if col >= columns:
                break
            chars[row][col] = ch
            fg[row, col] = colour
            col += 1
    return chars, fg, bg


def svg_to_image(svg: str, columns: int, rows: int) -> np.ndarray:
    """The screenshot as a BGR image (what OpenCV and the decoder take)."""
    chars, fg, bg = svg_cells(svg, columns, rows)
    image = np.zeros((rows * CELL_H, columns * CELL_W, 3), np.uint8)
    half = CELL_H // 2
    for r in range(rows):
        for c in range(columns):
            y, x = r * CELL_H, c * CELL_W
            cell = image[y:y + CELL_H, x:x + CELL_W]
            cell[:] = bg[r, c][::-1]
            ch, colour = chars[r][c], fg[r, c][::-1]
            if ch == "█":
                cell[:] = colour
            elif ch == "▀":
                cell[:half] = colour
            elif ch == "▄":
                cell[half:] = colour
            elif not ch.isspace():
                cell[4:12, 2:6] = colour
    return image
