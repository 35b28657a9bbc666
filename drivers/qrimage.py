"""Codes as images for people to scan: the terminal's merchant code as a PNG (the CLI's --png; the
TUI draws the same matrix with text blocks)."""

from __future__ import annotations

import cv2

from drivers.sim.phone import render_code


def code_png(text: str, *, module_px: int = 8, quiet: int = 4, error_correction: str = "M") -> bytes:
    """PNG bytes of the QR code for `text`: black modules on white, `quiet` modules of margin."""
    ok, data = cv2.imencode(".png", render_code(text, module_px=module_px, quiet=quiet,
                                                error_correction=error_correction))
    if not ok:  # pragma: no cover - OpenCV always encodes a grey uint8 image
        raise ValueError("PNG encoding failed")
    return data.tobytes()
