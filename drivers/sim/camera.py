"""The simulated camera: a live frame source that shows whatever code it is told to, rendered the
way a phone screen looks to the terminal camera (`drivers.sim.phone`). The demo and the tests use
it like a real camera: `show(text)` puts a phone in front of it, `hide()` takes it away, and
`unplug()` / `plug()` make the camera disappear and come back.

Rendering a scene takes tens of milliseconds, so each shown code is rendered once in a few
slightly different poses (a hand is never still) and those frames are cycled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from drivers.base import ReaderUnavailableError
from drivers.camera import Frame, FrameSource
from drivers.sim.phone import Scene, render_scene

POSES = 3


class SimulatedCamera(FrameSource):
    live = True

    def __init__(self, *, width: int = 1280, height: int = 720, fps: int = 30, realtime: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = "sim"
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

    def show(self, text: str, scene: Scene | None = None) -> None:
        """Hold a phone showing `text` in front of the camera (in `scene`'s pose and conditions)."""
        base = scene or Scene(code_px=0.35 * self.size[1], center=(self.size[0] / 2, self.size[1] / 2))
        frames = []
        for k in range(POSES):
            pose = replace(base, seed=base.seed * POSES + k, rotation=base.rotation + (k - 1) * 1.5,
                           center=(base.center[0] + (k - 1) * 4, base.center[1] + (k - 1) * 3))
            frames.append(render_scene(text, pose, self.size))
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
