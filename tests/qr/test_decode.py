"""The decoding pipeline on real rendered images: codes drawn with `qrcode`, put on a phone screen
and degraded with OpenCV transforms (drivers.sim.phone), decoded by the real zxing-cpp and zbar."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from drivers.qrdecode import Debouncer, Pipeline, read_zbar, zbar_only, zxing_only
from drivers.qrimage import render_code
from drivers.sim.phone import Scene, render_scene
from terminal.core import qrpay
from terminal.core.money import Money
from tests.qr.conftest import CNY, cpm_text

MPM = qrpay.dynamic_mpm(merchant_account=("26", [("00", "com.walletpos.pay"), ("01", "MID000000000001")]),
                        mcc="5411", amount=Money(1234, CNY), country="CN", merchant_name="Walletpos Demo Shop",
                        merchant_city="Shanghai", reference="03HAE5DDGPO055WPF8YDS4R90")
CHINESE = qrpay.build_mpm([("00", "01"), ("01", "11"), ("26", [("00", "com.walletpos.pay")]), ("52", "5411"),
                           ("53", "156"), ("58", "CN"), ("59", "最佳运输"), ("60", "北京")])


@pytest.mark.parametrize("name,scene", [
    ("nominal", Scene(code_px=260, seed=1)),
    ("tilted", Scene(code_px=260, tilt_x=40, tilt_y=-25, seed=2)),
    ("rotated", Scene(code_px=240, rotation=137, seed=3)),
    ("dark mode", Scene(code_px=240, dark_mode=True, gaussian_blur=1.2, seed=4)),
    ("glare", Scene(code_px=260, glare=0.9, seed=5)),
    ("jpeg", Scene(code_px=200, jpeg_quality=6, seed=6)),
    ("blurred", Scene(code_px=260, gaussian_blur=2.6, seed=7)),
])
def test_pipeline_reads_phone_screen_codes_exactly(name, scene):
    image = render_scene(MPM, scene)
    assert image.shape == (720, 1280, 3)
    result = Pipeline().decode(image)
    assert result.text == MPM, (name, result)
    assert not result.ambiguous and result.decode_ms > 0


def test_utf8_text_comes_out_as_written():
    result = Pipeline().decode(render_scene(CHINESE, Scene(code_px=260, seed=11)))
    assert result.text == CHINESE and qrpay.parse_mpm(result.text).merchant_name == "最佳运输"


def test_dark_mode_needs_an_inverted_read_which_zbar_alone_lacks():
    image = render_scene(MPM, Scene(code_px=260, dark_mode=True, seed=12))
    assert zbar_only().decode(image).text is None
    assert Pipeline().decode(image).text == MPM


def test_retries_win_back_what_zxing_alone_misses():
    """Low contrast and heavy blur frames that zxing-cpp alone cannot read: a later rung reads them."""
    wins = []
    for seed in range(8):
        for scene in (Scene(code_px=230, screen_white=120, screen_black=95, seed=seed),
                      Scene(code_px=250, gaussian_blur=3.6, seed=seed)):
            image = render_scene(MPM, scene)
            if zxing_only().decode(image).text is None:
                result = Pipeline(budget_ms=1000).decode(image)
                assert result.text in (None, MPM)
                wins.append(result.step if result.text else None)
    assert any(step not in (None, "zxing") for step in wins), wins


def test_two_different_codes_in_one_frame_are_not_reported():
    left = render_code(MPM, module_px=4, quiet=4)
    right = render_code(cpm_text(), module_px=4, quiet=4)
    frame = np.full((720, 1280), 255, np.uint8)
    frame[40:40 + left.shape[0], 40:40 + left.shape[1]] = left
    frame[40:40 + right.shape[0], 700:700 + right.shape[1]] = right
    result = Pipeline().decode(frame)
    assert result.text is None and result.ambiguous
    same = frame.copy()
    same[40:40 + left.shape[0], 700:700 + left.shape[1]] = left  # the same code twice is one code
    same[40 + left.shape[0]:, 700:] = 255
    assert Pipeline().decode(same).text == MPM


def test_a_partly_visible_code_is_never_reported():
    clean = render_code(MPM, module_px=6, quiet=4)
    frame = np.full((720, 1280), 255, np.uint8)
    half = clean[:, : clean.shape[1] // 2]
    frame[50:50 + half.shape[0], 50:50 + half.shape[1]] = half
    assert Pipeline(budget_ms=1000).decode(frame).text is None
    covered = np.full((720, 1280), 255, np.uint8)
    covered[50:50 + clean.shape[0], 50:50 + clean.shape[1]] = clean
    covered[50 + clean.shape[0] // 3: 50 + 2 * clean.shape[0] // 3, 50:50 + clean.shape[1]] = 0  # a third gone
    assert Pipeline(budget_ms=1000).decode(covered).text is None


def test_a_frame_without_a_code_stays_within_the_budget_and_reports_nothing():
    frame = render_scene(MPM, Scene(code_px=260, seed=3))
    cv2.rectangle(frame, (0, 0), (1280, 720), (90, 90, 90), -1)
    pipeline = Pipeline()
    results = [pipeline.decode(frame) for _ in range(5)]
    assert all(r.text is None for r in results)
    assert set(results[-1].steps_tried) <= {name for name, _ in pipeline.steps}


def test_zbar_reads_a_clean_code():
    assert read_zbar(render_code(MPM, module_px=4)) == [MPM]


def test_debouncer_reports_once_per_presentation():
    d = Debouncer(hold_ms=500)
    seen = [d.seen("A", t) for t in (0, 33, 66, 400, 800)]
    assert seen == [True, False, False, False, False]  # never out of sight for 500 ms
    assert d.seen("B", 820) is True and d.seen("A", 1400) is True  # A gone for 600 ms: a new presentation
    d.reset()
    assert d.seen("A", 1401) is True
