"""Render a payment code the way a phone screen looks to the terminal camera.

A code is drawn on a phone screen (light or dark mode, a small quiet zone as wallet apps use), the
phone is placed on a cluttered counter scene with perspective, rotation and distance, and the camera
adds what cameras add: blur (focus, motion), a dim or washed-out screen, glare from shop lights,
moiré between screen pixels and sensor, sensor noise, JPEG compression, and scratches or a finger
over part of the code. Everything is drawn with OpenCV and numpy from a seeded generator, so a
scene is reproducible from its `Scene` values.

Used by the demo's camera (`phone_renderer` for `drivers.simcamera.SimulatedCamera`), the tests and
`scripts/bench_qr.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from drivers.qrimage import qr_modules

FRAME_SIZE = (1280, 720)


@dataclass(frozen=True)
class Scene:
    """How one frame shows a code. Sizes in pixels of the 1280x720 frame; angles in degrees."""

    code_px: float = 300.0  # side of the code (without quiet zone) in the frame
    center: tuple[float, float] = (640.0, 360.0)
    rotation: float = 0.0  # in the screen plane
    tilt_x: float = 0.0  # phone turned about its horizontal axis
    tilt_y: float = 0.0  # ... about its vertical axis
    dark_mode: bool = False  # light modules on a dark screen
    screen_white: int = 235  # brightness of the screen's light colour as the camera sees it
    screen_black: int = 25  # ... of its dark colour (raised by a dim screen or stray light)
    gaussian_blur: float = 0.0  # sigma, pixels (focus)
    motion_blur: float = 0.0  # length, pixels
    motion_angle: float = 0.0
    glare: float = 0.0  # 0..1 strength of a specular highlight over the code
    moire: float = 0.0  # 0..1 amplitude of screen/sensor interference fringes
    noise: float = 0.0  # sigma of sensor noise, grey levels
    jpeg_quality: int = 0  # 0 = no JPEG round trip
    damage: float = 0.0  # share of the code's area hidden by scratches and a fingertip
    quiet: int = 2  # quiet zone of the wallet app, modules
    error_correction: str = "M"
    seed: int = 0


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A counter: a smooth uneven light, some boxes and lines (edges that look a bit like finder patterns)."""
    coarse = rng.uniform(50, 170, (4, 6, 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(6, 14))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        bw, bh = int(rng.integers(20, 200)), int(rng.integers(20, 200))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (x, y), (x + bw, y + bh), colour, int(rng.choice([-1, 2, 4])))
    for _ in range(int(rng.integers(3, 8))):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p1, p2, tuple(int(c) for c in rng.integers(0, 255, 3)), int(rng.integers(1, 5)))
    return img


def _screen(text: str, scene: Scene, rng: np.random.Generator, module_px: int) -> tuple[np.ndarray, int, int]:
    """The phone (body and screen with the code on it) at `module_px` per module. Returns the image
    and the pixel offset of the code's top-left corner and its side."""
    modules = qr_modules(text, scene.error_correction)
    n = modules.shape[0]
    code_side = n * module_px
    margin = scene.quiet * module_px
    screen_w = code_side + 2 * margin + int(module_px * rng.uniform(2, 6))
    screen_h = int(screen_w * rng.uniform(1.7, 2.1))
    bezel = max(4, int(screen_w * 0.05))
    light, dark = scene.screen_white, scene.screen_black
    bg, fg = (dark, light) if scene.dark_mode else (light, dark)
    phone = np.full((screen_h + 2 * bezel, screen_w + 2 * bezel), 12, np.uint8)
    phone[bezel:bezel + screen_h, bezel:bezel + screen_w] = bg
    # app chrome: a header bar and text lines above and below the code
    cv2.rectangle(phone, (bezel, bezel), (bezel + screen_w, bezel + screen_h // 10),
                  int(bg * 0.7 + fg * 0.3), -1)
    ox = bezel + (screen_w - code_side) // 2
    oy = bezel + int(screen_h * rng.uniform(0.3, 0.4))
    for k in range(3):
        y = oy - margin - (k + 1) * module_px * 3
        if y > bezel + screen_h // 10:
            cv2.line(phone, (ox, y), (ox + int(code_side * rng.uniform(0.3, 1.0)), y), fg, max(1, module_px))
    tile = np.where(modules, fg, bg).astype(np.uint8)
    phone[oy:oy + code_side, ox:ox + code_side] = cv2.resize(
        tile, (code_side, code_side), interpolation=cv2.INTER_NEAREST)
    yb = oy + code_side + margin + module_px * 2
    for k in range(4):
        y = yb + k * module_px * 3
        if y < bezel + screen_h - module_px:
            cv2.line(phone, (bezel + module_px * 2, y),
                     (bezel + int(screen_w * rng.uniform(0.3, 0.9)), y), fg, max(1, module_px))
    return phone, ox, oy


def _rotation_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    ax, ay, az = (math.radians(a) for a in (rx, ry, rz))
    mx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    my = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    mz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    rotation: np.ndarray = mz @ my @ mx
    return rotation


def _homography(src_w: int, src_h: int, anchor: tuple[float, float], code_side_src: float, scene: Scene) -> np.ndarray:
    """Map the phone image into the frame: the code centre lands on `scene.center`, the code's side
    is `scene.code_px` before perspective, with rotation and tilt seen by a pinhole camera."""
    scale = scene.code_px / code_side_src
    focal = 1100.0  # pixels, a typical 720p webcam
    rot = _rotation_matrix(scene.tilt_x, scene.tilt_y, scene.rotation)
    corners = np.array([[0, 0], [src_w, 0], [src_w, src_h], [0, src_h]], np.float64)
    centred = (corners - np.array(anchor)) * scale
    pts3 = np.column_stack([centred, np.zeros(4)]) @ rot.T
    depth = focal  # the code centre is at distance `focal`, so scale is kept at the centre
    z = pts3[:, 2] + depth
    proj = pts3[:, :2] * (focal / z)[:, None] + np.array(scene.center)
    return cv2.getPerspectiveTransform(corners.astype(np.float32), proj.astype(np.float32))


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    size = max(3, math.ceil(length) | 1)
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    for t in np.linspace(-length / 2, length / 2, max(2, int(length * 2))):
        kernel[round(c + t * dy), round(c + t * dx)] = 1
    normalised: np.ndarray = kernel / kernel.sum()
    return normalised


def render_scene(text: str, scene: Scene, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """One BGR camera frame showing `text` as a phone-screen QR code."""
    rng = np.random.default_rng(scene.seed)
    w, h = size
    frame = _background(rng, w, h)
    n = qr_modules(text, scene.error_correction).shape[0]
    module_px = max(2, math.ceil(scene.code_px / n * 2))  # supersample, then the warp scales down
    phone, ox, oy = _screen(text, scene, rng, module_px)
    code_side = n * module_px
    if scene.damage > 0:
        _damage(phone, ox, oy, code_side, scene, rng)
    anchor = (ox + code_side / 2, oy + code_side / 2)
    hom = _homography(phone.shape[1], phone.shape[0], anchor, code_side, scene)
    warped = cv2.warpPerspective(phone, hom, (w, h), flags=cv2.INTER_AREA, borderValue=0)
    mask = cv2.warpPerspective(np.full(phone.shape, 255, np.uint8), hom, (w, h), flags=cv2.INTER_LINEAR)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    tint = np.array([rng.uniform(0.9, 1.05), rng.uniform(0.95, 1.05), rng.uniform(0.9, 1.1)], np.float32)
    screen = warped.astype(np.float32)[..., None] * tint
    img = frame.astype(np.float32) * (1 - alpha) + screen * alpha
    if scene.glare > 0:
        cx = scene.center[0] + rng.uniform(-0.3, 0.3) * scene.code_px
        cy = scene.center[1] + rng.uniform(-0.3, 0.3) * scene.code_px
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ax, ay = scene.code_px * rng.uniform(0.15, 0.35), scene.code_px * rng.uniform(0.08, 0.2)
        ang = rng.uniform(0, math.pi)
        u = ((xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)) / ax
        v = (-(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)) / ay
        spot = np.exp(-(u * u + v * v))[..., None] * scene.glare
        img = img * (1 - spot) + 255 * spot
    if scene.moire > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        f1, f2 = rng.uniform(0.35, 0.6), rng.uniform(0.35, 0.6)
        ang = rng.uniform(0, math.pi)
        ca, sa = math.cos(ang), math.sin(ang)
        fringe = np.sin(f1 * (xx * ca + yy * sa)) * np.sin(f2 * (yy * ca - xx * sa))
        img = img * (1 + scene.moire * 0.5 * fringe[..., None] * alpha)
    if scene.gaussian_blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), scene.gaussian_blur)
    if scene.motion_blur > 0:
        img = cv2.filter2D(img, -1, _motion_kernel(scene.motion_blur, scene.motion_angle))
    if scene.noise > 0:
        img = img + rng.normal(0, scene.noise, img.shape).astype(np.float32)
    out = img.clip(0, 255).astype(np.uint8)
    if scene.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, scene.jpeg_quality])
        assert ok
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        assert decoded is not None
        out = np.asarray(decoded, dtype=np.uint8)
    return out


def _damage(phone: np.ndarray, ox: int, oy: int, side: int, scene: Scene, rng: np.random.Generator) -> None:
    """Scratches across the code and a fingertip over one edge (not over a finder pattern)."""
    light = int(phone[oy - 1, ox - 1])
    budget = scene.damage * side * side
    used = 0.0
    # a fingertip over the middle of the bottom or right edge
    r = int(math.sqrt(budget * 0.6 / math.pi))
    if r > 0:
        if rng.random() < 0.5:
            c = (ox + side // 2 + int(rng.integers(-side // 8, side // 8 + 1)), oy + side + r // 3)
        else:
            c = (ox + side + r // 3, oy + side // 2 + int(rng.integers(-side // 8, side // 8 + 1)))
        cv2.circle(phone, c, r, int(rng.integers(120, 180)), -1)
        used += math.pi * r * r * 0.5
    while used < budget:
        x1, y1 = ox + int(rng.integers(0, side)), oy + int(rng.integers(0, side))
        ang = rng.uniform(0, math.pi)
        length = side * rng.uniform(0.3, 0.8)
        x2, y2 = int(x1 + length * math.cos(ang)), int(y1 + length * math.sin(ang))
        thick = max(1, side // 80)
        cv2.line(phone, (x1, y1), (x2, y2), light if rng.random() < 0.6 else int(rng.integers(0, 60)), thick)
        used += length * thick


def vary(scene: Scene, **changes: object) -> Scene:
    return replace(scene, **changes)  # type: ignore[arg-type]


def phone_renderer(text: str, scene: object | None, pose: int, size: tuple[int, int]) -> np.ndarray:
    """Frames for `drivers.simcamera.SimulatedCamera(render=phone_renderer)`: `text` on a phone held
    in front of the camera in `scene` (a `Scene`, or a centred phone), in slightly different poses
    (a hand is never still)."""
    base = scene if isinstance(scene, Scene) else Scene(code_px=0.35 * size[1], center=(size[0] / 2, size[1] / 2))
    k = pose - 1
    shifted = replace(base, seed=base.seed * 3 + pose, rotation=base.rotation + k * 1.5,
                      center=(base.center[0] + k * 4, base.center[1] + k * 3))
    return render_scene(text, shifted, size)
