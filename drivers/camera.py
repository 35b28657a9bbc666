"""Cameras and other frame sources, and the code scanner behind them.

A frame source is named by one string (config `[camera] source`, `walletpos scan --source`):

| source | what it is | when it fails |
|---|---|---|
| `0`, `/dev/video0` | a camera through OpenCV `VideoCapture` (V4L2) | reopened with backoff |
| `rtsp://...`, `http://...` | a network stream through `VideoCapture` | reopened with backoff |
| `clip.mp4` | a video file through `VideoCapture` (same API as a camera) | ends |
| `code.png` | one image | ends |
| `frames/` | a folder of images, in name order | ends |
| `sim:` | the simulated camera (`drivers.simcamera`) | reopened with backoff |

Live sources (cameras, streams, the simulator) come and go: a camera that stops delivering frames
is a `ReaderStatus("absent")` and is reopened with exponential backoff, never a crash. Finite
sources (files) end; a file that cannot be read is a `ReaderUnavailableError` for the operator.

`CameraScanner` is the `CodeScanner`: frames go through the decoding pipeline
(`drivers.qrdecode.Pipeline`) and the debouncer, so one presentation gives one `ScannedCode`.
Video files are debounced on their own timestamps, so a file gives the same reads at any speed;
images from a folder are separate presentations (each file is reported on its own).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from drivers.base import CodeScanner, ReaderStatus, ReaderUnavailableError, ScannedCode
from drivers.frames import Frame, FrameSource
from drivers.qrdecode import Debouncer, Pipeline

log = logging.getLogger("walletpos.camera")

# OpenCV's own warnings (a camera index that cannot be opened gives two lines per attempt on stderr)
# say nothing our status and log lines do not say better
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
_LOST_AFTER_FAILED_READS = 5  # consecutive failed grabs before a live camera counts as gone


class CaptureSource(FrameSource):
    """OpenCV VideoCapture: a camera (index or device path), a network stream, or a video file."""

    def __init__(self, spec: str | int, *, live: bool, width: int = 1280, height: int = 720, fps: int = 30,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.live = live
        self.name = str(spec) if live else Path(str(spec)).name
        self.width, self.height, self.fps = width, height, fps
        self.clock = clock
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._failed = 0

    def open(self) -> None:
        self.close()
        cap = cv2.VideoCapture(self.spec, cv2.CAP_V4L2) if isinstance(self.spec, int) else cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            raise ReaderUnavailableError(f"camera {self.spec}: cannot be opened (not connected, busy, or not "
                                         "a video OpenCV can read)")
        if self.live:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones
        self._cap, self._failed = cap, 0

    def read(self) -> Frame | None:
        if self._cap is None:
            raise ReaderUnavailableError(f"camera {self.spec} is not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            if not self.live:
                return None
            self._failed += 1
            if self._failed >= _LOST_AFTER_FAILED_READS:
                raise ReaderUnavailableError(f"camera {self.spec} stopped delivering frames")
            return self.read()
        self._failed = 0
        at = self.clock() * 1000 if self.live else float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        self._index += 1
        return Frame(image, self.name, at, self._index - 1)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _imread(path: Path) -> np.ndarray:
    data = np.fromfile(path, np.uint8) if path.is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise ReaderUnavailableError(f"{path}: not an image OpenCV can read")
    return image


class ImageSource(FrameSource):
    """One image file, or every image in a folder (sorted by name)."""

    separate_frames = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self._files: list[Path] = []
        self._next = 0

    def open(self) -> None:
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self._files:
                kinds = ", ".join(sorted(IMAGE_SUFFIXES))
                raise ReaderUnavailableError(f"{self.path}: the folder has no images ({kinds})")
        elif self.path.is_file():
            self._files = [self.path]
        else:
            raise ReaderUnavailableError(f"{self.path}: no such file or folder")
        self._next = 0

    def read(self) -> Frame | None:
        if self._next >= len(self._files):
            return None
        path = self._files[self._next]
        self._next += 1
        return Frame(_imread(path), path.name, float(self._next - 1), self._next - 1)

    def close(self) -> None:
        self._files = []


def open_frame_source(spec: str, *, width: int = 1280, height: int = 720, fps: int = 30) -> FrameSource:
    """The frame source a `[camera] source` / `--source` string names (not opened yet)."""
    spec = spec.strip()
    if spec.startswith("sim:"):
        from drivers.simcamera import SimulatedCamera

        return SimulatedCamera(width=width, height=height, fps=fps)
    if spec.isdigit():
        return CaptureSource(int(spec), live=True, width=width, height=height, fps=fps)
    if spec.startswith(("rtsp://", "rtsps://", "http://", "https://")) or spec.startswith("/dev/video"):
        return CaptureSource(spec, live=True, width=width, height=height, fps=fps)
    path = Path(spec).expanduser()
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    if not path.exists():
        raise ReaderUnavailableError(f"{spec}: no such file, folder or camera")
    return CaptureSource(os.fspath(path), live=False, width=width, height=height, fps=fps)


class CameraScanner(CodeScanner):
    """A frame source with the decoding pipeline and the debouncer behind it."""

    def __init__(self, source: FrameSource, *, pipeline: Pipeline | None = None, debounce_ms: float = 1500,
                 backoff_max_ms: float = 5000, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.name = f"camera {source.name}"
        self.pipeline = pipeline or Pipeline()
        self.debouncer = Debouncer(debounce_ms)
        self.backoff_max = backoff_max_ms / 1000
        self.clock = clock
        self.frames_read = 0
        self.lost_count = 0
        self._backoff = 0.1
        self._opened = False
        self._status = ReaderStatus("starting", self.name)
        self._closed = threading.Event()

    def status(self) -> ReaderStatus:
        return self._status

    def prepare(self) -> None:
        """Try to open the source once, at once (no waiting): the status is then ready or absent
        instead of starting, before anything is scanned."""
        if not self._opened and not self._closed.is_set():
            with contextlib.suppress(ReaderUnavailableError):  # a file that cannot be read: the status says so
                self._try_open(self.clock())

    def close(self) -> None:
        self._closed.set()
        if self._opened:
            self.source.close()
            self._opened = False

    @contextlib.contextmanager
    def borrowed_source(self) -> Iterator[FrameSource]:
        """The frame source itself, for a technician's look (preview, frame rate, focus) while no code
        is being read from this scanner: opened for the time of the borrow when the scanner has not
        opened it yet (and closed again after), used as it is when it has. Raises
        ReaderUnavailableError when the source cannot be opened."""
        opened_here = not self._opened
        if opened_here:
            self.source.open()
        try:
            yield self.source
        finally:
            if opened_here:
                self.source.close()

    def _wait(self, seconds: float, deadline: float | None) -> None:
        if deadline is not None:
            seconds = max(0.0, min(seconds, deadline - self.clock()))
        self._closed.wait(seconds)

    def _try_open(self, deadline: float | None) -> bool:
        try:
            self.source.open()
        except ReaderUnavailableError as exc:
            if not self.source.live:
                self._status = ReaderStatus("error", self.name, exc.message)
                raise
            self._status = ReaderStatus("absent", self.name, f"{exc.message}; retrying in {self._backoff:.1f} s")
            log.warning("camera %s unavailable, retrying in %.1f s: %s", self.source.name, self._backoff, exc.message)
            self._wait(self._backoff, deadline)
            self._backoff = min(self.backoff_max, self._backoff * 2)
            return False
        self._opened = True
        self._status = ReaderStatus("ready", self.name)
        return True

    def _lost(self, exc: ReaderUnavailableError) -> None:
        log.warning("camera %s lost: %s", self.source.name, exc.message)
        self.source.close()
        self._opened = False
        self.lost_count += 1
        self._status = ReaderStatus("absent", self.name, exc.message)

    def codes(self, *, max_frames: int | None = None, timeout: float | None = None) -> Iterator[ScannedCode]:
        deadline = None if timeout is None else self.clock() + timeout
        seen_frames = 0
        while not self._closed.is_set():
            if max_frames is not None and seen_frames >= max_frames:
                return
            if deadline is not None and self.clock() >= deadline:
                return
            if not self._opened and not self._try_open(deadline):
                continue
            try:
                frame = self.source.read()
            except ReaderUnavailableError as exc:
                if not self.source.live:
                    self._status = ReaderStatus("error", self.name, exc.message)
                    raise
                self._lost(exc)
                continue
            if frame is None:
                self._status = ReaderStatus("absent", self.name, "end of the source")
                return
            self._backoff = 0.1
            seen_frames += 1
            self.frames_read += 1
            if self.source.separate_frames:
                self.debouncer.reset()
            result = self.pipeline.decode(frame.image)
            if result.text is None or not self.debouncer.seen(result.text, frame.at_ms):
                continue
            yield ScannedCode(result.text, "qr", time.time(), source=frame.name, decode_ms=result.decode_ms,
                              extra={"step": result.step or "", "frame": frame.index})


def open_scanner(spec: str, *, width: int = 1280, height: int = 720, fps: int = 30, debounce_ms: float = 1500,
                 backoff_max_ms: float = 5000) -> CameraScanner:
    """A scanner on the source `spec` (see the table above)."""
    source = open_frame_source(spec, width=width, height=height, fps=fps)
    return CameraScanner(source, debounce_ms=debounce_ms, backoff_max_ms=backoff_max_ms)


def scanner_from_config(cfg: object, source: str | None = None) -> CameraScanner:
    """A scanner on `[camera]` of a `terminal.config.Config` (or `source` instead of its source)."""
    cam = cfg.camera  # type: ignore[attr-defined]
    return open_scanner(source or cam.source, width=cam.width, height=cam.height, fps=cam.fps,
                        debounce_ms=cam.debounce_ms, backoff_max_ms=cam.reopen_backoff_max_ms)
