"""Codes as images: the module matrix of a QR code, a clean rendering of it, and PNG bytes (the
CLI's `qr --png`; the TUI draws the same matrix with text blocks; the simulated camera and the
phone scenes of the tests start from the same rendering)."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import qrcode
from qrcode.constants import ERROR_CORRECT_H, ERROR_CORRECT_L, ERROR_CORRECT_M, ERROR_CORRECT_Q

_EC = {"L": ERROR_CORRECT_L, "M": ERROR_CORRECT_M, "Q": ERROR_CORRECT_Q, "H": ERROR_CORRECT_H}


@functools.lru_cache(maxsize=256)
def qr_modules(text: str, error_correction: str = "M") -> np.ndarray:
    """The module matrix of a QR code for `text` (True = dark), without quiet zone (read-only)."""
    code = qrcode.QRCode(error_correction=_EC[error_correction], border=0, box_size=1)
    code.add_data(text.encode("utf-8"))
    code.make(fit=True)
    matrix = np.array(code.get_matrix(), dtype=bool)
    matrix.flags.writeable = False
    return matrix


def render_code(text: str, module_px: int = 8, quiet: int = 4, error_correction: str = "M",
                invert: bool = False) -> np.ndarray:
    """A clean grayscale image of the code (dark modules 0 on 255, or the reverse when `invert`)."""
    modules = np.pad(qr_modules(text, error_correction), quiet, constant_values=False)
    img = np.where(modules, 0, 255).astype(np.uint8)
    if invert:
        img = 255 - img
    return cv2.resize(img, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)


def code_png(text: str, *, module_px: int = 8, quiet: int = 4, error_correction: str = "M") -> bytes:
    """PNG bytes of the QR code for `text`: black modules on white, `quiet` modules of margin."""
    ok, data = cv2.imencode(".png", render_code(text, module_px=module_px, quiet=quiet,
                                                error_correction=error_correction))
    if not ok:  # pragma: no cover - OpenCV always encodes a grey uint8 image
        raise ValueError("PNG encoding failed")
    return data.tobytes()
