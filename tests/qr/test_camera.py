"""Frame sources: a video file written with cv2.VideoWriter read through VideoCapture, image folders,
single images, and cameras that disappear (status events and reopening, never an exception)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from drivers.base import ReaderUnavailableError
from drivers.camera import CameraScanner, CaptureSource, ImageSource, open_frame_source, open_scanner
from drivers.sim.phone import Scene, phone_renderer, render_scene
from drivers.simcamera import SimulatedCamera

A = "https://pay.example/a"  # any text: the scanner reports codes, the payment flow judges them
B = "000201-not-a-real-merchant-code"
FPS = 10


def write_video(path, segments):
    """segments: (text or None, frame count); None is an empty counter."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (1280, 720))
    assert writer.isOpened()
    empty = np.full((720, 1280, 3), 80, np.uint8)
    for text, count in segments:
        frame = render_scene(text, Scene(code_px=300, seed=len(text))) if text else empty
        for _ in range(count):
            writer.write(frame)
    writer.release()


@pytest.mark.timeout(60)
def test_video_file_goes_through_videocapture_and_is_debounced_on_its_own_clock(tmp_path):
    video = tmp_path / "counter.avi"
    # A for 1 s, gone for 0.5 s (shorter than the hold), A again, gone 2 s, A, then B
    write_video(video, [(None, 3), (A, 10), (None, 5), (A, 5), (None, 20), (A, 5), (B, 5)])
    source = open_frame_source(str(video))
    assert isinstance(source, CaptureSource) and not source.live
    scanner = CameraScanner(source, debounce_ms=1500)
    codes = list(scanner.codes())
    assert [c.text for c in codes] == [A, A, B]
    assert [c.extra["frame"] for c in codes] == [3, 43, 48]
    assert all(c.source == "counter.avi" and c.symbology == "qr" and c.decode_ms > 0 for c in codes)
    assert scanner.frames_read == 53 and scanner.status().state == "absent"  # the file ended


def test_max_frames_stops_reading(tmp_path):
    video = tmp_path / "v.avi"
    write_video(video, [(A, 30)])
    scanner = open_scanner(str(video))
    assert [c.text for c in scanner.codes(max_frames=4)] == [A]
    assert scanner.frames_read == 4


def test_image_folder_in_name_order_each_image_its_own_presentation(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, text in (("02-b.png", B), ("01-a.jpg", A), ("03-a-again.png", A)):
        cv2.imwrite(str(folder / name), render_scene(text, Scene(code_px=280, seed=1)))
    cv2.imwrite(str(folder / "00-empty.png"), np.zeros((720, 1280, 3), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    codes = list(open_scanner(str(folder)).codes())
    assert [(c.source, c.text) for c in codes] == [("01-a.jpg", A), ("02-b.png", B), ("03-a-again.png", A)]


def test_missing_and_unreadable_sources_are_clear_errors(tmp_path):
    with pytest.raises(ReaderUnavailableError, match="no such file"):
        open_frame_source(str(tmp_path / "nothing.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReaderUnavailableError, match="no images"):
        list(open_scanner(str(tmp_path / "empty")).codes())
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(ReaderUnavailableError, match="not an image"):
        list(CameraScanner(ImageSource(broken)).codes())
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 1000)
    scanner = open_scanner(str(garbage))
    with pytest.raises(ReaderUnavailableError, match="cannot be opened"):
        list(scanner.codes())
    assert scanner.status().state == "error"


@pytest.mark.timeout(60)
def test_a_stream_that_disappears_is_an_event_and_is_reopened_with_backoff(tmp_path):
    """A live VideoCapture source (as an RTSP stream is) whose video vanishes: the scanner reports
    'absent', waits longer each time, and reads again once the video is back."""
    video = tmp_path / "stream.avi"
    write_video(video, [(A, 4)])
    scanner = CameraScanner(CaptureSource(str(video), live=True), debounce_ms=60_000, backoff_max_ms=400)
    first = list(scanner.codes(max_frames=4))
    assert [c.text for c in first] == [A]
    video.unlink()  # the stream ends (read fails) and cannot be reopened
    started = time.monotonic()
    assert list(scanner.codes(timeout=1.5)) == []
    assert time.monotonic() - started < 3
    status = scanner.status()
    assert status.state == "absent" and "retrying" in status.detail and scanner.lost_count == 1
    write_video(video, [(B, 4)])  # it comes back
    back = list(scanner.codes(timeout=3, max_frames=2))
    assert [c.text for c in back] == [B] and scanner.status().state == "ready"


def test_simulated_camera_shows_what_it_is_told_and_can_be_unplugged():
    cam = SimulatedCamera(realtime=False, render=phone_renderer)
    scanner = CameraScanner(cam, debounce_ms=300, backoff_max_ms=200)
    assert list(scanner.codes(max_frames=3)) == []
    cam.show(A, Scene(code_px=260, tilt_x=20, seed=3))
    assert [c.text for c in scanner.codes(max_frames=30)] == [A]  # one presentation, one report
    cam.hide()
    list(scanner.codes(max_frames=15))  # 0.5 s of simulated time without the code
    cam.show(A)
    assert [c.text for c in scanner.codes(max_frames=5)] == [A]
    cam.unplug()
    assert list(scanner.codes(timeout=0.5)) == [] and scanner.status().state == "absent"
    cam.plug()
    cam.show(B)
    assert [c.text for c in scanner.codes(timeout=2, max_frames=3)] == [B]
    scanner.close()
    assert list(scanner.codes(max_frames=3)) == []  # closed: nothing more, no error


def test_the_sim_camera_of_the_default_config_shows_codes_flat():
    """`[camera] source = "sim:"` (the embedded defaults) is the simulated camera with its own flat
    rendering: what it is shown is decoded, without the test rigs' phone scenes."""
    cam = SimulatedCamera(realtime=False)
    scanner = CameraScanner(cam, debounce_ms=300, backoff_max_ms=200)
    cam.show(B)
    assert [c.text for c in scanner.codes(max_frames=5)] == [B]
    scanner.close()
