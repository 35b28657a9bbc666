"""Frames and where they come from: the interface every camera, video file, image folder and the
simulated camera implement (`drivers.camera` decodes codes from any of them)."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray
    name: str  # the file name for images, else the source's name
    at_ms: float  # on the source's clock: video timestamp, or capture time
    index: int


class FrameSource(abc.ABC):
    """Where frames come from. `live`: reopen when lost; else the source ends.
    `separate_frames`: every frame is its own presentation (images from a folder)."""

    name: str = "camera"
    live: bool = False
    separate_frames: bool = False

    @abc.abstractmethod
    def open(self) -> None:
        """Raises ReaderUnavailableError when the source cannot be opened."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """The next frame; None when a finite source has ended. A live source that stopped
        delivering raises ReaderUnavailableError."""

    @abc.abstractmethod
    def close(self) -> None: ...
