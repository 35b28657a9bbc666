"""The camera: does it open, at what resolution, how many frames a second it really delivers, how
sharp the picture is, and how many of its frames the decoding pipeline reads a code from. Also the
technician's live preview: the picture as half-block characters (two pixels a cell, `▀` with the
top pixel as foreground and the bottom one as background), with the sharpness and decode rate.

Sharpness is the variance of the Laplacian of the grey picture (scaled to 640 pixels wide): a
focused picture of anything with edges scores in the hundreds, a blurred one in the tens. A picture
with almost no contrast (a lens cap, an empty grey scene) has no edges to judge, so its sharpness is
reported and not judged.

In the running terminal the checkout's own camera is borrowed (`CameraScanner.borrowed_source`),
never opened twice; elsewhere (`walletpos doctor` beside a running terminal) the configured source
is opened, and a camera held by another program fails to open, which the check says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drivers.base import ReaderUnavailableError
from terminal.doctor.checks import Check, advice
from terminal.doctor.context import DoctorContext

if TYPE_CHECKING:
    import numpy as np

    from drivers.frames import FrameSource

AREA = "camera"
SHARP_ENOUGH = 100.0  # variance of the Laplacian at 640 px wide
MIN_CONTRAST = 8.0  # grey standard deviation below which there is nothing to judge focus on
FPS_WARN = 10.0
FPS_FAIL = 3.0
MIN_WIDTH, MIN_HEIGHT = 640, 480

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class FrameFacts:
    width: int
    height: int
    sharpness: float
    contrast: float


def frame_facts(image: np.ndarray) -> FrameFacts:
    import cv2

    height, width = image.shape[:2]
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if width > 640:
        gray = cv2.resize(gray, (640, max(1, height * 640 // width)), interpolation=cv2.INTER_AREA)
    return FrameFacts(width, height, float(cv2.Laplacian(gray, cv2.CV_64F).var()), float(gray.std()))


def half_blocks(image: np.ndarray, columns: int, rows: int) -> list[list[tuple[RGB, RGB]]]:
    """The picture in `columns` x `rows` terminal cells, each (top pixel, bottom pixel) as RGB."""
    import cv2

    small = cv2.resize(image, (max(1, columns), max(1, rows * 2)), interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    rgb = small[:, :, ::-1].tolist()
    return [[(tuple(rgb[2 * r][c]), tuple(rgb[2 * r + 1][c])) for c in range(len(rgb[0]))]  # type: ignore[misc]
            for r in range(rows)]


@contextmanager
def camera_source(ctx: DoctorContext) -> Iterator[FrameSource]:
    """The checkout's camera, borrowed, or the configured source opened for the look."""
    if ctx.scanner is not None:
        with ctx.scanner.borrowed_source() as source:
            yield source
        return
    from drivers.camera import open_frame_source

    cam = ctx.config.camera
    source = open_frame_source(cam.source, width=cam.width, height=cam.height, fps=cam.fps)
    source.open()
    try:
        yield source
    finally:
        source.close()


@dataclass
class Sample:
    """What a few seconds of frames showed."""

    frames: int = 0
    seconds: float = 0.0
    width: int = 0
    height: int = 0
    sharpness: float = 0.0
    contrast: float = 0.0
    decoded: int = 0
    located: int = 0
    decode_ms: float = 0.0
    live: bool = True

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def decode_rate(self) -> float:
        return self.decoded / self.frames if self.frames else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "seconds": round(self.seconds, 3), "fps": round(self.fps, 1),
                "width": self.width, "height": self.height, "sharpness": round(self.sharpness, 1),
                "contrast": round(self.contrast, 1), "decoded": self.decoded, "located": self.located,
                "decode_rate": round(self.decode_rate, 3), "decode_ms_mean": round(self.decode_ms / max(1, self.frames),
                                                                                  2), "live": self.live}


def sample(source: FrameSource, seconds: float, *, stop: threading.Event | None = None,
           on_frame: Callable[[np.ndarray, Sample], None] | None = None) -> Sample:
    """Read and decode frames for `seconds` (a finite source: until it ends, at most `seconds`)."""
    from drivers.qrdecode import Pipeline

    pipeline = Pipeline()
    out = Sample(live=source.live)
    sharp = contrast = 0.0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and not (stop is not None and stop.is_set()):
        frame = source.read()
        if frame is None:
            break
        facts = frame_facts(frame.image)
        result = pipeline.decode(frame.image)
        out.frames += 1
        out.width, out.height = facts.width, facts.height
        sharp += facts.sharpness
        contrast += facts.contrast
        out.decode_ms += result.decode_ms
        if result.text is not None:
            out.decoded += 1
        elif result.located:
            out.located += 1
        out.seconds = time.perf_counter() - t0
        out.sharpness, out.contrast = sharp / out.frames, contrast / out.frames
        if on_frame is not None:
            on_frame(frame.image, out)
    out.seconds = time.perf_counter() - t0
    return out


def _judge(s: Sample, name: str) -> list[Check]:
    measured = s.to_dict()
    checks = [Check(AREA, "camera", "pass", f"{name} {s.width}x{s.height}",
                    f"opened; {s.frames} frames in {s.seconds:.1f} s", measured=measured)]
    if s.frames == 0:
        checks[0] = Check(AREA, "camera", "fail", f"{name} no frames", "the camera opened but delivered no picture",
                          measured=measured, **advice("camera_dark"))
        return checks
    if s.width < MIN_WIDTH or s.height < MIN_HEIGHT:
        checks[0] = Check(AREA, "camera", "warn", f"{name} {s.width}x{s.height}",
                          "the picture is smaller than 640x480: small codes will not be read", measured=measured,
                          **advice("camera_resolution"))
    if not s.live:
        checks.append(Check(AREA, "frame_rate", "skip", f"{s.frames} frames from a file",
                            "a file is read as fast as it decodes; the frame rate of a camera is measured live"))
    elif s.fps < FPS_FAIL:
        checks.append(Check(AREA, "frame_rate", "fail", f"{s.fps:.1f} fps",
                            "the camera delivers too few frames to read a code from a moving phone",
                            measured=measured, **advice("camera_fps_low")))
    elif s.fps < FPS_WARN:
        checks.append(Check(AREA, "frame_rate", "warn", f"{s.fps:.1f} fps",
                            "codes will be read late; dim light lengthens the exposure", measured=measured,
                            **advice("camera_fps_warn")))
    else:
        checks.append(Check(AREA, "frame_rate", "pass", f"{s.fps:.1f} fps", "measured over live frames",
                            measured=measured))
    if s.contrast < MIN_CONTRAST:
        checks.append(Check(AREA, "sharpness", "skip", f"{s.sharpness:.0f} (nothing in view)",
                            "the picture has almost no contrast (lens covered, or an empty scene): focus cannot be "
                            "judged; hold a code to the camera"))
    elif s.sharpness < SHARP_ENOUGH:
        checks.append(Check(AREA, "sharpness", "warn", f"{s.sharpness:.0f}",
                            f"the picture is blurred (below {SHARP_ENOUGH:.0f})", measured=measured,
                            **advice("camera_blurred")))
    else:
        checks.append(Check(AREA, "sharpness", "pass", f"{s.sharpness:.0f}", "variance of the Laplacian",
                            measured=measured))
    rate = f"{s.decoded} of {s.frames} frames ({s.decode_rate:.0%}, {s.decoded / max(s.seconds, 1e-9):.1f}/s)"
    if s.decoded:
        checks.append(Check(AREA, "decode", "pass", rate, "frames the pipeline read a code from",
                            measured=measured))
    elif s.located:
        checks.append(Check(AREA, "decode", "warn", f"0 of {s.frames} frames, a code seen {s.located} times",
                            "a code is in view but cannot be read", measured=measured,
                            **advice("camera_unreadable")))
    else:
        checks.append(Check(AREA, "decode", "skip", "no code in view",
                            "hold a payment code to the camera and run walletpos doctor again (the diagnostics "
                            "screen shows the rate live)", measured=measured))
    return checks


def check_camera(ctx: DoctorContext) -> list[Check]:
    t0 = time.perf_counter()
    name = ctx.config.camera.source
    try:
        with camera_source(ctx) as source:
            result = sample(source, ctx.camera_seconds)
    except ReaderUnavailableError as exc:
        watched = f" (the checkout sees it as {ctx.camera_status.state})" if ctx.camera_status else ""
        return [Check(AREA, "camera", "fail", f"{name} cannot be opened", exc.message + watched,
                      measured={"source": name}, ms=(time.perf_counter() - t0) * 1000, **advice("camera_open"))]
    except ImportError as exc:
        return [Check(AREA, "camera", "fail", "OpenCV missing", str(exc), ms=(time.perf_counter() - t0) * 1000,
                      **advice("install_packages", how="pip install opencv-python-headless"))]
    ms = (time.perf_counter() - t0) * 1000
    checks = _judge(result, name)
    from dataclasses import replace

    return [replace(c, ms=ms if i == 0 else 0.0) for i, c in enumerate(checks)]


@dataclass(frozen=True)
class PreviewFrame:
    """One refresh of the live preview."""

    cells: list[list[tuple[RGB, RGB]]]
    sharpness: float
    contrast: float
    fps: float
    decode_rate: float
    decoded: int
    frames: int
    width: int
    height: int


def preview(ctx: DoctorContext, *, stop: threading.Event, show: Callable[[PreviewFrame], None], columns: int = 40,
            rows: int = 12, every_s: float = 0.25, window_s: float = 3.0) -> None:
    """Show the camera until `stop`: every `every_s` a picture and the figures of the last
    `window_s` seconds of frames. Raises ReaderUnavailableError when the camera cannot be opened."""
    last = [0.0]

    def on_frame(image: np.ndarray, so_far: Sample) -> None:
        now = time.perf_counter()
        if now - last[0] >= every_s:
            last[0] = now
            show(PreviewFrame(half_blocks(image, columns, rows), so_far.sharpness, so_far.contrast, so_far.fps,
                              so_far.decode_rate, so_far.decoded, so_far.frames, so_far.width, so_far.height))

    with camera_source(ctx) as source:
        while not stop.is_set():
            window = sample(source, window_s, stop=stop, on_frame=on_frame)
            if window.frames == 0 and not stop.is_set():
                if not source.live:
                    return
                raise ReaderUnavailableError("the camera delivers no frames")


__all__ = ["PreviewFrame", "Sample", "camera_source", "check_camera", "frame_facts", "half_blocks", "preview",
           "sample"]
