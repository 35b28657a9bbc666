"""The simulated camera (`sim:`): a live frame source that shows whatever code it is told to. The
demo and the tests use it like a real camera: `show(text)` puts a code in front of it, `hide()`
takes it away, and `unplug()` / `plug()` make the camera disappear and come back.

How a shown code looks is the `render` function's: by default the code itself, flat and sharp on a
grey background; the demo and the tests pass `drivers.sim.phone.phone_renderer`, which draws it the
way a phone screen looks to the terminal camera. Rendering can take tens of milliseconds, so each
shown code is rendered once in a few poses and those frames are cycled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from drivers.base import ReaderUnavailableError
from drivers.frames import Frame, FrameSource
from drivers.qrimage import render_code

POSES = 3

Render = Callable[[str, object | None, int, tuple[int, int]], np.ndarray]  # (text, scene, pose, (w, h)) -> BGR


def flat_renderer(text: str, scene: object | None, pose: int, size: tuple[int, int]) -> np.ndarray:
    """The code itself, sharp, about a third of the frame's height, on a grey background."""
    width, height = size
    frame = np.full((height, width, 3), 90, np.uint8)
    code = render_code(text, module_px=max(2, int(0.35 * height) // 33))
    h, w = code.shape
    if h > height or w > width:
        code = render_code(text, module_px=1)
        h, w = code.shape
    y, x = (height - h) // 2, (width - w) // 2 + (pose - 1) * 3
    x = min(max(0, x), width - w)
    frame[y:y + h, x:x + w] = code[:, :, None]
    return frame


class SimulatedCamera(FrameSource):
    live = True

    def __init__(self, *, width: int = 1280, height: int = 720, fps: int = 30, realtime: bool = True,
                 clock: Callable[[], float] = time.monotonic, render: Render = flat_renderer) -> None:
        self.name = "sim"
        self.render = render
        self.size = (width, height)
        self.fps = fps
        self.realtime = realtime
        self.clock = clock
        self._lock = threading.Lock()
        self._frames: list[np.ndarray] = []
        self._empty = np.full((height, width, 3), 60, np.uint8)
        self._plugged = True
        self._open = False
        self._index = 0
        self._next_at = 0.0

    # -- what the simulated customer does -------------------------------------------------------

    def show(self, text: str, scene: object | None = None) -> None:
        """Hold `text` in front of the camera (`scene`: how, for the renderer, e.g. a phone `Scene`)."""
        frames = [self.render(text, scene, k, self.size) for k in range(POSES)]
        with self._lock:
            self._frames = frames

    def hide(self) -> None:
        with self._lock:
            self._frames = []

    def unplug(self) -> None:
        self._plugged = False

    def plug(self) -> None:
        self._plugged = True

    # -- FrameSource ------------------------------------------------------------------------------

    def open(self) -> None:
        if not self._plugged:
            raise ReaderUnavailableError("simulated camera is unplugged")
        self._open = True
        self._next_at = self.clock()

    def read(self) -> Frame | None:
        if not self._open:
            raise ReaderUnavailableError("simulated camera is not open")
        if not self._plugged:
            self._open = False
            raise ReaderUnavailableError("simulated camera stopped delivering frames")
        if self.realtime:
            delay = self._next_at - self.clock()
            if delay > 0:
                time.sleep(delay)
            self._next_at = max(self._next_at, self.clock()) + 1 / self.fps
        with self._lock:
            frames = self._frames
        image = frames[self._index % len(frames)] if frames else self._empty
        self._index += 1
        at = self.clock() * 1000 if self.realtime else self._index * 1000 / self.fps
        return Frame(image, self.name, at, self._index - 1)

    def close(self) -> None:
        self._open = False
