"""The QR decoding pipeline: one camera frame in, at most one code out.

Measured on phone-screen payment codes at 1280x720, one core (`scripts/bench_qr.py`), zxing-cpp is
the fastest and best single decoder; what it misses falls into groups that cheap image changes win
back. So the pipeline is a ladder, cheapest and most paying first, that stops at the first read and
at a time budget per frame (so a frame with no code in it costs a bounded time at 30 fps):

1. zxing-cpp on the grey frame (it also tries the inverted image, for dark-mode screens, and
   reports where it found a code it could not decode);
2. half-resolution, unsharp-masked (wins back focus blur and low contrast: the half-size image
   averages noise and the mask restores the module edges);
3. half-resolution, morphologically opened (thin scratches and specks across the modules);
4. where step 1 located a code but could not read it: that region alone, warped flat and square
   from the four corners zxing-cpp found (undoes tilt, enlarges small codes) and unsharp-masked;
5. zbar on the half-resolution frame: a different detector and sampling grid that reads codes
   partly hidden by a finger, or washed out by glare, that zxing-cpp does not (about 6 ms);
6. full-resolution unsharp mask (blurred small codes), about 7 ms, when the budget still allows.

Rungs that paid nothing in measurement (a Gaussian-smoothed retry, zbar on the located region,
grey-level inversion for zbar, CLAHE, 1.5x upscaling of the whole frame) were left out.

Each rung after the first starts only if the time spent on the frame plus the rung's running
average cost (measured on this machine as frames go by) fits the frame budget.

Never a partial or ambiguous read: a read is reported only when the decoder validated the code's
Reed-Solomon error correction (both decoders do), the text is valid UTF-8 (or the decoder's own
text for a code with a declared character set), and one frame holds exactly one distinct code. A
frame with two different codes in it reports nothing (`DecodeResult.ambiguous`), so a customer
cannot be charged on a code next to the one they meant.

`Debouncer` makes one presentation one report: the same text is reported again only after it has
been out of sight for a hold time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import zxingcpp

_QR = zxingcpp.BarcodeFormat.QRCode

try:  # zbar is the fallback decoder; the pipeline still runs (without step 5) where libzbar is missing
    from pyzbar import pyzbar as _pyzbar
except ImportError:  # pragma: no cover - libzbar0 is a Debian dependency installed by scripts/bootstrap
    _pyzbar = None


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What one frame gave: `text` when exactly one code was read, else None."""

    text: str | None
    step: str | None = None  # which rung of the ladder read it
    decode_ms: float = 0.0
    ambiguous: bool = False  # several different codes in the frame: nothing is reported
    located: bool = False  # a code was seen but not read (worth telling the customer to hold still)
    steps_tried: tuple[str, ...] = ()


def _text_of(raw: bytes, fallback: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return fallback


def read_zxing(gray: np.ndarray, **options: object) -> tuple[list[str], list[np.ndarray]]:
    """Texts zxing-cpp read, and the corner points of codes it located but could not read."""
    found = zxingcpp.read_barcodes(gray, formats=_QR, return_errors=True, **options)  # type: ignore[arg-type]
    texts, failed = [], []
    for r in found:
        if r.valid:
            texts.append(_text_of(r.bytes, r.text))
        else:
            p = r.position
            failed.append(np.array([[p.top_left.x, p.top_left.y], [p.top_right.x, p.top_right.y],
                                    [p.bottom_right.x, p.bottom_right.y], [p.bottom_left.x, p.bottom_left.y]],
                                   np.float32))
    return texts, failed


def read_zbar(gray: np.ndarray) -> list[str]:
    if _pyzbar is None:
        return []
    return [_text_of(r.data, r.data.decode("latin-1"))
            for r in _pyzbar.decode(gray, symbols=[_pyzbar.ZBarSymbol.QRCODE])]


def _half(gray: np.ndarray) -> np.ndarray:
    return cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _unsharp(gray: np.ndarray, sigma: float = 3.0, amount: float = 1.0) -> np.ndarray:
    return cv2.addWeighted(gray, 1.0 + amount, cv2.GaussianBlur(gray, (0, 0), sigma), -amount, 0)


def _crop(gray: np.ndarray, corners: np.ndarray, margin: float = 0.15) -> np.ndarray | None:
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    m = margin * max(x1 - x0, y1 - y0)
    h, w = gray.shape[:2]
    x0, y0 = int(max(0, x0 - m)), int(max(0, y0 - m))
    x1, y1 = int(min(w, x1 + m)), int(min(h, y1 + m))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return None
    return gray[y0:y1, x0:x1]


class _Frame:
    """A frame and its derived images, each computed once and only when a rung asks for it."""

    def __init__(self, gray: np.ndarray) -> None:
        self.gray = gray
        self._half: np.ndarray | None = None
        self.located: list[np.ndarray] = []

    @property
    def half(self) -> np.ndarray:
        if self._half is None:
            self._half = _half(self.gray)
        return self._half


Step = Callable[[_Frame], list[str]]


def _primary(f: _Frame) -> list[str]:
    texts, f.located = read_zxing(f.gray)
    return texts


def _half_unsharp(f: _Frame) -> list[str]:
    return read_zxing(_unsharp(f.half))[0]


def _full_unsharp(f: _Frame) -> list[str]:
    return read_zxing(_unsharp(f.gray, 3.0))[0]


def _rectified(gray: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The located code warped flat and square (undoing tilt), 1.6x its size, 240-480 px a side."""
    side = float(max(np.linalg.norm(corners[1] - corners[0]), np.linalg.norm(corners[3] - corners[0])))
    side = min(max(side * 1.6, 240.0), 480.0)
    m = side * 0.15
    target = np.array([[m, m], [m + side, m], [m + side, m + side], [m, m + side]], np.float32)
    hom = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    size = int(side + 2 * m)
    return cv2.warpPerspective(gray, hom, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _region(f: _Frame) -> list[str]:
    for corners in f.located[:2]:
        flat = _rectified(f.gray, corners)
        texts = read_zxing(_unsharp(flat, 2.0), try_downscale=False)[0]
        if texts:
            return texts
    return []


def _half_open(f: _Frame) -> list[str]:
    return read_zxing(cv2.morphologyEx(f.half, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)))[0]


def _zbar_half(f: _Frame) -> list[str]:
    return read_zbar(f.half)


@dataclass
class Pipeline:
    """The decoding ladder. `budget_ms`: a rung after the primary read starts only when the time
    already spent on the frame plus that rung's running average cost stays within it. `steps` may
    be narrowed, e.g. to measure zxing-cpp alone."""

    budget_ms: float = 12.0
    steps: tuple[tuple[str, Step], ...] = (
        ("zxing", _primary),
        ("half_unsharp", _half_unsharp),
        ("half_open", _half_open),
        ("region", _region),
        ("zbar_half", _zbar_half),
        ("full_unsharp", _full_unsharp),
    )
    stats: dict[str, int] = field(default_factory=dict)
    # running average cost of each rung on this machine (ms), so that a rung starts only when it is
    # expected to finish within the budget
    cost_ms: dict[str, float] = field(default_factory=dict)

    def _fits(self, name: str, elapsed_ms: float) -> bool:
        return elapsed_ms + self.cost_ms.get(name, 0.0) <= self.budget_ms

    def decode(self, image: np.ndarray) -> DecodeResult:
        t0 = time.perf_counter()
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        frame = _Frame(np.ascontiguousarray(gray))
        tried: list[str] = []
        for name, step in self.steps:
            started = (time.perf_counter() - t0) * 1000
            if tried and not self._fits(name, started):
                continue  # a cheaper rung further down may still fit
            tried.append(name)
            texts = step(frame)
            spent = (time.perf_counter() - t0) * 1000 - started
            previous = self.cost_ms.get(name)
            self.cost_ms[name] = spent if previous is None else 0.9 * previous + 0.1 * spent
            if not texts:
                continue
            distinct = set(texts)
            ms = (time.perf_counter() - t0) * 1000
            if len(distinct) > 1:
                self.stats["ambiguous"] = self.stats.get("ambiguous", 0) + 1
                return DecodeResult(None, name, ms, ambiguous=True, steps_tried=tuple(tried))
            self.stats[name] = self.stats.get(name, 0) + 1
            return DecodeResult(texts[0], name, ms, located=True, steps_tried=tuple(tried))
        ms = (time.perf_counter() - t0) * 1000
        return DecodeResult(None, None, ms, located=bool(frame.located), steps_tried=tuple(tried))


def zxing_only() -> Pipeline:
    """zxing-cpp alone, as shipped (its own inverted retry included): the baseline of the benchmark."""
    return Pipeline(budget_ms=float("inf"), steps=(("zxing", _primary),))


def zbar_only() -> Pipeline:
    return Pipeline(budget_ms=float("inf"), steps=(("zbar", lambda f: read_zbar(f.gray)),))


class Debouncer:
    """One report per presentation: a text is new when it was not seen in the last `hold_ms`.
    Times are milliseconds on any monotonic scale (camera clock, video timestamps)."""

    def __init__(self, hold_ms: float) -> None:
        self.hold_ms = hold_ms
        self._last_seen: dict[str, float] = {}

    def seen(self, text: str, at_ms: float) -> bool:
        """Record a read; True when it starts a new presentation (report it)."""
        previous = self._last_seen.get(text)
        self._last_seen[text] = at_ms
        stale = [t for t, when in self._last_seen.items() if at_ms - when > self.hold_ms]
        for t in stale:
            del self._last_seen[t]
        return previous is None or at_ms - previous > self.hold_ms

    def reset(self) -> None:
        self._last_seen.clear()
