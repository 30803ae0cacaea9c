"""Synthetic faces: painting one image from its face and nuisance parameters (``facenet.data.synth``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from ..registry import Registry
from .synth_faces import Face, Nuisance

_SUPERSAMPLE = 2
_FACE_Y = -0.04          # face centre in image coordinates ([-1, 1], y down) before the pose shift
_FACE_ZOOM = 1.3         # face-frame units per image half-width: a tight crop, as the course's faces are


# ---------------------------------------------------------------- painting
def _soft(d: np.ndarray, aa: float) -> np.ndarray:
    """Coverage of a shape from a signed distance (negative inside), one pixel of anti-aliasing."""
    return np.clip(0.5 - d / aa, 0.0, 1.0)


class Canvas:
    """An image being painted, each pixel also known by its face-frame position (u right, v down)."""

    def __init__(self, side: int, pose: Nuisance):
        g = ((np.arange(side, dtype=np.float32) + 0.5) / side * 2 - 1)
        self.x, self.y = np.meshgrid(g, g)
        c, s = math.cos(pose.angle), math.sin(pose.angle)
        xs, ys = self.x - pose.shift[0], self.y - (_FACE_Y + pose.shift[1])
        zoom = pose.scale * _FACE_ZOOM
        self.u = (c * xs + s * ys) / zoom
        self.v = (-s * xs + c * ys) / zoom
        self.aa = 2 / side / zoom                # one pixel in face-frame units
        self.rgb = np.empty((side, side, 3), np.float32)

    def ellipse(self, cx: float, cy: float, a: float, b: float, angle: float = 0.0, bend: float = 0.0,
                u: np.ndarray | None = None) -> np.ndarray:
        """Signed distance (approximate) to an ellipse, optionally rotated and bent into an arch."""
        x, y = (self.u if u is None else u) - cx, self.v - cy
        if angle:
            c, s = math.cos(angle), math.sin(angle)
            x, y = c * x + s * y, -s * x + c * y
        if bend:
            y = y + bend * b * (x / a) ** 2
        xa, yb = x / (a * a), y / (b * b)
        return (x * xa + y * yb - 1) / (2 * np.sqrt(xa * xa + yb * yb) + 1e-6)

    def cover(self, d: np.ndarray, soft: float = 1.0) -> np.ndarray:
        return _soft(d, self.aa * soft)

    def paint(self, alpha: np.ndarray, colour) -> None:
        self.rgb += alpha[..., None] * (np.asarray(colour, np.float32) - self.rgb)


# a hair style gives the hair in front of the face and the hair behind it (None: none behind)
HairStyle = Callable[[Canvas, Face], tuple[np.ndarray, np.ndarray | None]]
HAIR_STYLES: Registry[HairStyle] = Registry("hair style")


def _cap(cv: Canvas, f: Face, line: np.ndarray, grow: float = 1.1) -> np.ndarray:
    """Hair over the head above ``line`` (v of the hairline at each pixel)."""
    head = cv.ellipse(0, -0.04 * f.ry, f.rx * grow, f.ry * grow)
    return cv.cover(np.maximum(head, cv.v - line))


def _hairline(cv: Canvas, f: Face, lower: float = 0.0) -> np.ndarray:
    return -f.ry * (f.hairline - lower) + 0.35 * f.ry * (cv.u / f.rx) ** 2


@HAIR_STYLES.register("short")
def _short(cv: Canvas, f: Face):
    return _cap(cv, f, _hairline(cv, f)), None


@HAIR_STYLES.register("long")
def _long(cv: Canvas, f: Face):
    back = np.minimum(cv.ellipse(0, 0.1 * f.ry, f.rx * 1.28, f.ry * 1.25),
                      np.maximum(np.abs(cv.u) - f.rx * 1.28, np.maximum(cv.v - f.ry * 1.6, -cv.v)))
    return _cap(cv, f, _hairline(cv, f)), cv.cover(back)


@HAIR_STYLES.register("fringe")
def _fringe(cv: Canvas, f: Face):
    wave = 0.05 * f.ry * np.sin(cv.u / f.rx * 9 + f.hair_phase)
    above_brows = -(f.eye_y + f.brow_gap + 0.12) * f.ry
    return _cap(cv, f, np.minimum(_hairline(cv, f, lower=0.22) + wave, above_brows)), None


@HAIR_STYLES.register("side_part")
def _side_part(cv: Canvas, f: Face):
    line = _hairline(cv, f) + f.hair_tilt * cv.u
    part = cv.cover(np.maximum(np.abs(cv.u - 0.45 * f.rx * np.sign(f.hair_tilt)) - 0.01, cv.v - line + 0.15 * f.ry))
    return np.minimum(_cap(cv, f, line, grow=1.13), 1 - 0.7 * part), None


@HAIR_STYLES.register("receding")
def _receding(cv: Canvas, f: Face):
    line = _hairline(cv, f) - 0.3 * f.ry * np.exp(-(cv.u / (0.45 * f.rx)) ** 2)
    return 0.9 * _cap(cv, f, line, grow=1.06), None


@HAIR_STYLES.register("bald")
def _bald(cv: Canvas, f: Face):
    sides = np.maximum(f.rx * 0.72 - np.abs(cv.u), cv.v - 0.05 * f.ry)
    return _cap(cv, f, np.full_like(cv.u, 0.2 * f.ry)) * cv.cover(sides, soft=3), None


@HAIR_STYLES.register("volume")
def _volume(cv: Canvas, f: Face):
    return _cap(cv, f, _hairline(cv, f, lower=0.05), grow=1.32), None


def _hair_colour(cv: Canvas, f: Face) -> np.ndarray:
    """Hair colour with strands, so hair is not one flat colour."""
    strands = 1 + 0.08 * np.sin(cv.u * 70 + 6 * np.sin(cv.v * 13 + f.hair_phase))
    return np.asarray(f.hair, np.float32) * strands[..., None]


@dataclass(frozen=True)
class _Layout:
    """Where an identity's features sit in the face frame, with this image's expression applied."""

    ex: float            # eye centre distance from the mid-line
    ey: float            # eye centre height
    ew: float            # eye half-width
    eh: float            # eye half-height
    nose_bottom: float
    mouth_y: float

    @classmethod
    def of(cls, f: Face, n: Nuisance) -> "_Layout":
        ey, ew = -f.eye_y * f.ry, f.eye_w * f.rx
        nose_bottom = ey + f.nose_len * f.ry
        return cls(ex=f.eye_sep * f.rx, ey=ey, ew=ew, eh=max(ew * f.eye_open * n.eye_open, 0.003),
                   nose_bottom=nose_bottom, mouth_y=nose_bottom + f.mouth_pos * (f.ry - nose_bottom))


def _background(cv: Canvas, n: Nuisance) -> None:
    side = cv.rgb.shape[0]
    tex = Image.fromarray(np.clip(128 + 127 * n.texture, 0, 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
    cv.rgb[:] = np.asarray(n.background, np.float32) * (0.5 + np.asarray(tex, np.float32) / 255)


def _head(cv: Canvas, f: Face, n: Nuisance, g: _Layout) -> np.ndarray:
    """Shirt, neck, ears and the face; returns the shaded skin colour for the features to darken."""
    u, v = cv.u, cv.v
    lx, ly = n.light
    uj = u / (1 - (1 - f.jaw) * np.clip(v / f.ry, 0, 1) ** 2)    # cheeks narrow towards the chin
    k2 = (uj / f.rx) ** 2 + (v / f.ry) ** 2
    shade = (1 - 0.3 * np.clip(k2, 0, 1) ** 2) * (1 + 0.35 * (lx * u / f.rx + ly * v / f.ry))
    skin = np.asarray(f.skin, np.float32) * shade[..., None]
    cv.paint(cv.cover(cv.ellipse(0, 2.05 * f.ry, 2.7 * f.rx, 0.95 * f.ry)), n.shirt)
    cv.paint(cv.cover(np.maximum(np.abs(u) - 0.5 * f.rx, -v)), skin * 0.78)
    for side in (-1, 1):
        cv.paint(cv.cover(cv.ellipse(side * 0.97 * f.rx, g.ey + 0.12 * f.ry, 0.14 * f.rx, 0.2 * f.ry)), skin * 0.88)
    cv.paint(cv.cover(cv.ellipse(0, 0, f.rx, f.ry, u=uj)), skin)
    if f.beard != "none":
        lip = f.lip * f.ry
        stache = np.maximum(np.abs(u) - f.mouth_w * f.rx * 1.15, np.abs(v - (g.mouth_y - lip - 0.035)) - 0.03)
        beard = stache if f.beard == "moustache" else np.minimum(
            stache, np.maximum(cv.ellipse(0, 0, f.rx * 1.02, f.ry * 1.02, u=uj), g.nose_bottom + 0.04 * f.ry - v))
        cv.paint(0.85 * cv.cover(beard, soft=2), _hair_colour(cv, f))
    return skin


def _eyes(cv: Canvas, f: Face, n: Nuisance, g: _Layout, skin: np.ndarray) -> None:
    """White, iris and pupil (kept inside the white), and the upper lid."""
    r = g.ew * 0.5
    for side in (-1, 1):
        cx = side * g.ex
        white = cv.ellipse(cx, g.ey, g.ew, g.eh)
        inside = cv.cover(white)
        cv.paint(inside, (0.93, 0.92, 0.9))
        ix, iy = cx + n.gaze[0] * g.ew * 0.4, g.ey + n.gaze[1] * g.eh * 0.3
        cv.paint(np.minimum(cv.cover(cv.ellipse(ix, iy, r, r)), inside), f.iris)
        cv.paint(np.minimum(cv.cover(cv.ellipse(ix, iy, r * 0.45, r * 0.45)), inside), (0.03, 0.03, 0.03))
        cv.paint(0.9 * cv.cover(np.maximum(np.abs(white) - 0.008, cv.v - g.ey + g.eh * 0.3)), skin * 0.35)


def _brows(cv: Canvas, f: Face, n: Nuisance, g: _Layout, skin: np.ndarray) -> None:
    by = g.ey - g.eh - f.brow_gap * f.ry - n.brow_raise
    for side in (-1, 1):
        d = cv.ellipse(side * g.ex, by, g.ew * f.brow_len, f.brow_thick * f.ry, angle=-side * f.brow_angle,
                       bend=f.brow_arch)
        cv.paint(0.9 * cv.cover(d), np.asarray(f.hair) * 0.75)


def _nose(cv: Canvas, f: Face, n: Nuisance, g: _Layout, skin: np.ndarray) -> None:
    """A shadow on the side away from the light, the tip's underside, nostrils."""
    nw = f.nose_w * f.rx
    away = -1.0 if n.light[0] >= 0 else 1.0
    cv.paint(0.25 * cv.cover(cv.ellipse(away * nw * 0.55, (g.ey + g.nose_bottom) / 2 + 0.02, nw * 0.3,
                                        (g.nose_bottom - g.ey) / 2), soft=6), skin * 0.6)
    cv.paint(0.35 * cv.cover(cv.ellipse(0, g.nose_bottom - nw * 0.15, nw * 1.05, nw * 0.45), soft=4), skin * 0.78)
    for side in (-1, 1):
        cv.paint(cv.cover(cv.ellipse(side * nw * 0.5, g.nose_bottom, nw * 0.28, nw * 0.16)), skin * 0.4)


def _mouth(cv: Canvas, f: Face, n: Nuisance, g: _Layout, skin: np.ndarray) -> None:
    """Lips along a curve whose corners rise with a smile, a dark line or opening between them."""
    mw, lip = f.mouth_w * f.rx, f.lip * f.ry
    s = np.clip(cv.u / mw, -1, 1)
    taper = np.sqrt(1 - s * s)
    centre = g.mouth_y - (f.mouth_curve + n.smile) * s * s
    opening = lip * n.mouth_open * taper
    outside = np.abs(cv.u) - mw
    cv.paint(cv.cover(np.maximum(np.abs(cv.v - centre) - (lip * taper + opening), outside)), f.lip_colour)
    cv.paint(cv.cover(np.maximum(np.abs(cv.v - centre) - np.maximum(opening, 0.006), outside)), (0.2, 0.06, 0.06))


def _glasses(cv: Canvas, f: Face, n: Nuisance, g: _Layout) -> None:
    r, t = g.ew * 1.45, 0.016
    frame = np.minimum(*(np.abs(cv.ellipse(side * g.ex, g.ey, r, r * 0.8)) - t for side in (-1, 1)))
    bridge = np.maximum(np.abs(cv.v - g.ey + 0.2 * r) - t * 0.8, np.abs(cv.u) - (g.ex - r))
    arms = np.maximum(np.abs(cv.v - g.ey) - t * 0.8, np.maximum(g.ex + r - np.abs(cv.u), np.abs(cv.u) - f.rx))
    cv.paint(cv.cover(np.minimum(frame, np.minimum(bridge, arms))), n.glasses)


_FEATURES = (_eyes, _brows, _nose, _mouth)    # painted in this order, over the face and under the front hair


def _camera(rgb: np.ndarray, cv: Canvas, n: Nuisance, size: int, rng: np.random.Generator) -> np.ndarray:
    """Scene lighting and colour cast, downsampling, lens blur, sensor noise."""
    light = n.exposure * (1 + 0.5 * (n.light[0] * cv.x + n.light[1] * cv.y))
    rgb = rgb * light[..., None] * np.asarray(n.cast, np.float32)
    rgb = rgb.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    img = Image.fromarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8))
    if n.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(n.blur))
    out = np.asarray(img, np.float32) + rng.normal(0, n.noise, (size, size, 3)).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render_face(face: Face, nuisance: Nuisance, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image (size, size, 3) uint8: painted at twice ``size``, box-downsampled, blurred, noised."""
    cv = Canvas(size * _SUPERSAMPLE, nuisance)
    layout = _Layout.of(face, nuisance)
    _background(cv, nuisance)
    front, back = HAIR_STYLES.get(face.hair_style)(cv, face)
    if back is not None:
        cv.paint(back, _hair_colour(cv, face) * 0.8)
    skin = _head(cv, face, nuisance, layout)
    for paint in _FEATURES:
        paint(cv, face, nuisance, layout, skin)
    cv.paint(front, _hair_colour(cv, face))
    if nuisance.glasses is not None:
        _glasses(cv, face, nuisance, layout)
    return _camera(cv.rgb, cv, nuisance, size, rng)


