"""Synthetic faces in the course layout: the embedded default data set (the course's faces are private).

An identity is a vector of face parameters (shape, skin, eyes, brows, nose, mouth, hair); every image
of it adds nuisance on top (pose, lighting, expression, background, blur, noise, glasses). Faces are
painted as soft-edged shapes in a face frame with whole-image numpy arrays at twice the size, then
box-downsampled. The two training domains differ as the course's do: train1 draws identities from
narrow ranges under mild, studio-like conditions; train2 from wide ranges under harsher ones; val and
test identities come from both. Each identity, image and pair list has its own numpy Generator keyed
by (seed, purpose, split, identity, image), so the bytes depend on the arguments only and any identity
can be rendered alone, in any order or process.
"""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from .errors import DataError
from .registry import Registry

JPEG_QUALITY = 92
MIN_IDENTITIES = 8
_SUPERSAMPLE = 2
_FACE_Y = -0.04          # face centre in image coordinates ([-1, 1], y down) before the pose shift
_FACE_ZOOM = 1.3         # face-frame units per image half-width: a tight crop, as the course's faces are

# (name, share of the identities, domain of its identities; None = drawn from both per identity)
SPLITS: tuple[tuple[str, float, str | None], ...] = (
    ("train1", 0.55, "train1"), ("train2", 0.25, "train2"), ("val", 0.10, None), ("test", 0.10, None))

# skin from light to dark along one tone axis; per-image exposure and colour cast make neighbours overlap
_SKIN_STOPS = np.array([[0.97, 0.82, 0.71], [0.90, 0.70, 0.56], [0.78, 0.56, 0.40],
                        [0.58, 0.39, 0.26], [0.36, 0.23, 0.15]], np.float32)
_HAIR = {"black": (0.07, 0.06, 0.05), "dark": (0.20, 0.13, 0.08), "brown": (0.42, 0.27, 0.14),
         "blond": (0.82, 0.68, 0.42), "red": (0.58, 0.26, 0.11), "grey": (0.62, 0.61, 0.60)}
_IRIS = ((0.25, 0.15, 0.08), (0.10, 0.07, 0.05), (0.30, 0.45, 0.65), (0.35, 0.45, 0.25), (0.45, 0.35, 0.18))


# ---------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Domain:
    """Where a domain's identities and nuisance are drawn from."""

    skin: tuple[float, float]            # range of the tone axis (0 light .. 1 dark)
    spread: float                        # share of each shape feature's full range this domain uses
    hair: dict[str, float]               # hair colour -> weight
    styles: dict[str, float]             # hair style -> weight
    beard: float                         # chance of a beard (half as often a moustache alone)
    shift: float                         # max pose shift, image half-widths
    rotate: float                        # max in-plane rotation, degrees
    scale: tuple[float, float]
    light: tuple[float, float]           # directional light strength
    exposure: tuple[float, float]
    cast: float                          # max colour-cast deviation per channel
    bg_saturation: tuple[float, float]
    bg_value: tuple[float, float]
    texture: float                       # background texture amplitude
    blur: tuple[float, float]            # Gaussian radius at 64 px
    noise: tuple[float, float]           # pixel noise sigma, 0-255 levels
    glasses: float                       # chance per image


DOMAINS: dict[str, Domain] = {
    "train1": Domain(skin=(0.0, 0.45), spread=0.6,
                     hair={"black": 3, "dark": 3, "brown": 2, "blond": 1},
                     styles={"short": 3, "long": 2, "fringe": 1, "side_part": 2, "receding": 1},
                     beard=0.12, shift=0.09, rotate=10, scale=(0.9, 1.1), light=(0.0, 0.45),
                     exposure=(0.82, 1.15), cast=0.06, bg_saturation=(0.0, 0.2), bg_value=(0.6, 0.9),
                     texture=0.04, blur=(0.0, 0.5), noise=(0.0, 3.0), glasses=0.08),
    "train2": Domain(skin=(0.0, 1.0), spread=1.0,
                     hair={name: 1 for name in _HAIR},
                     styles={"short": 2, "long": 2, "fringe": 2, "side_part": 1, "receding": 1, "bald": 1,
                             "volume": 1},
                     beard=0.2, shift=0.12, rotate=18, scale=(0.85, 1.15), light=(0.15, 0.7),
                     exposure=(0.62, 1.25), cast=0.13, bg_saturation=(0.0, 0.8), bg_value=(0.15, 0.95),
                     texture=0.25, blur=(0.0, 1.1), noise=(1.0, 9.0), glasses=0.12),
}


@dataclass(frozen=True)
class Face:
    """One identity. Lengths are in face-frame units (see ``Canvas``), ratios unitless."""

    rx: float                  # face half-width
    ry: float                  # face half-height
    jaw: float                 # width at the chin relative to the cheeks
    skin: tuple[float, float, float]
    eye_sep: float             # eye centre distance from the mid-line, share of rx
    eye_w: float               # eye half-width, share of rx
    eye_open: float            # eye half-height, share of its half-width
    eye_y: float               # eye height above the face centre, share of ry
    iris: tuple[float, float, float]
    brow_thick: float          # share of ry
    brow_angle: float          # slant in radians, mirrored between the brows
    brow_gap: float            # above the eyes, share of ry
    brow_len: float            # half-length, share of the eye half-width
    brow_arch: float
    nose_len: float            # from the eye line, share of ry
    nose_w: float              # nostril half-span, share of rx
    mouth_w: float             # half-width, share of rx
    mouth_curve: float         # corners up (>0) or down (<0), face-frame units
    mouth_pos: float           # between the nose and the chin, 0..1
    lip: float                 # lip half-thickness, share of ry
    lip_colour: tuple[float, float, float]
    hair: tuple[float, float, float]
    hairline: float            # hairline height above the face centre, share of ry
    hair_style: str
    hair_tilt: float           # parting slant
    hair_phase: float          # where the fringe's waves fall
    beard: str                 # "none", "moustache" or "beard"


@dataclass(frozen=True)
class Nuisance:
    """What changes from one image of an identity to the next."""

    shift: tuple[float, float]
    angle: float               # radians
    scale: float
    light: tuple[float, float]  # direction times strength, image axes
    exposure: float
    cast: tuple[float, float, float]
    smile: float               # added to the mouth curvature
    eye_open: float            # multiplies the eye opening
    mouth_open: float          # share of the lip thickness
    brow_raise: float
    gaze: tuple[float, float]  # iris offset, share of the eye half-width
    background: tuple[float, float, float]
    texture: np.ndarray        # (k, k, 3) low-frequency background variation, upsampled when painted
    shirt: tuple[float, float, float]
    glasses: tuple[float, float, float] | None   # frame colour, or no glasses
    blur: float                # Gaussian radius in output pixels
    noise: float


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _colour(values) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(values, 0.0, 1.0))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def skin_colour(tone: float) -> np.ndarray:
    """The skin ramp at ``tone`` (0 light .. 1 dark)."""
    x = np.linspace(0, 1, len(_SKIN_STOPS))
    return np.array([np.interp(tone, x, _SKIN_STOPS[:, c]) for c in range(3)], np.float32)


def sample_face(rng: np.random.Generator, domain: Domain) -> Face:
    """An identity from ``domain``: each shape feature uses ``domain.spread`` of its full range."""
    def span(lo: float, hi: float) -> float:
        return float((lo + hi) / 2 + (hi - lo) / 2 * domain.spread * rng.uniform(-1, 1))

    rx, ry, jaw = span(0.34, 0.44), span(0.44, 0.54), span(0.55, 0.95)
    skin = skin_colour(rng.uniform(*domain.skin)) + rng.normal(0, 0.02, 3)
    eye = dict(eye_sep=span(0.34, 0.5), eye_w=span(0.13, 0.2), eye_open=span(0.35, 0.6), eye_y=span(0.05, 0.25),
               iris=_IRIS[int(rng.integers(len(_IRIS)))])
    brow = dict(brow_thick=span(0.018, 0.05), brow_angle=span(-0.3, 0.3), brow_gap=span(0.12, 0.22),
                brow_len=span(1.0, 1.5), brow_arch=span(0.0, 0.5))
    nose = dict(nose_len=span(0.28, 0.48), nose_w=span(0.12, 0.22))
    mouth = dict(mouth_w=span(0.25, 0.42), mouth_curve=span(-0.02, 0.05), mouth_pos=span(0.3, 0.5),
                 lip=span(0.02, 0.045))
    lip_colour = _colour(skin + rng.uniform(0.25, 0.55) * (np.array([0.72, 0.28, 0.30]) - skin))
    hair = np.array(_HAIR[_pick(rng, domain.hair)]) + rng.normal(0, 0.03, 3)
    beard_draw = rng.uniform()
    beard = "beard" if beard_draw < domain.beard else "moustache" if beard_draw < 1.5 * domain.beard else "none"
    return Face(rx=rx, ry=ry, jaw=jaw, skin=_colour(skin), **eye, **brow, **nose, **mouth, lip_colour=lip_colour,
                hair=_colour(hair), hairline=span(0.45, 0.75), hair_style=_pick(rng, domain.styles),
                hair_tilt=float(rng.uniform(-0.3, 0.3)), hair_phase=float(rng.uniform(0, 2 * math.pi)), beard=beard)


def sample_nuisance(rng: np.random.Generator, domain: Domain, size: int) -> Nuisance:
    """One image's conditions under ``domain``; blur is scaled to ``size`` (given at 64 px)."""
    light_dir, light = rng.uniform(0, 2 * math.pi), rng.uniform(*domain.light)
    smile = rng.normal(0, 0.02) + (0.05 if rng.uniform() < 0.25 else 0.0)
    eye_open = 0.15 if rng.uniform() < 0.04 else rng.uniform(0.7, 1.15)
    mouth_open = rng.uniform(0.3, 1.2) if rng.uniform() < 0.2 else 0.0
    background = _hsv(rng.uniform(), rng.uniform(*domain.bg_saturation), rng.uniform(*domain.bg_value))
    k = int(rng.integers(3, 7))
    texture = rng.normal(0, domain.texture * rng.uniform(0.3, 1.0), (k, k, 3)).astype(np.float32)
    texture += rng.normal(0, domain.texture * 0.5, (k, k, 1)).astype(np.float32)   # brightness more than hue
    shirt = _hsv(rng.uniform(), rng.uniform(0, 0.8), rng.uniform(0.1, 0.9))
    glasses = _colour(_hsv(rng.uniform(), rng.uniform(0, 0.6), rng.uniform(0.05, 0.5))) \
        if rng.uniform() < domain.glasses else None
    return Nuisance(
        shift=tuple(float(s) for s in rng.uniform(-domain.shift, domain.shift, 2)),
        angle=math.radians(rng.uniform(-domain.rotate, domain.rotate)), scale=float(rng.uniform(*domain.scale)),
        light=(light * math.cos(light_dir), light * math.sin(light_dir)), exposure=float(rng.uniform(*domain.exposure)),
        cast=_colour(1 + rng.uniform(-domain.cast, domain.cast, 3)), smile=float(smile), eye_open=float(eye_open),
        mouth_open=float(mouth_open), brow_raise=float(rng.normal(0, 0.015)),
        gaze=tuple(float(g) for g in rng.normal(0, 0.15, 2)), background=_colour(background), texture=texture,
        shirt=_colour(shirt), glasses=glasses, blur=float(rng.uniform(*domain.blur) * size / 64),
        noise=float(rng.uniform(*domain.noise)))


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


# ---------------------------------------------------------------- the data set
def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


_IDENTITY, _IMAGE, _PAIRS = 0, 1, 2          # purposes in the generator keys
_MIXED = ("train1", "train2")                # what val and test draw from


def identity_images(seed: int, split: int, identity: int, count: int, size: int) -> list[np.ndarray]:
    """The ``count`` images of one identity of split number ``split`` (index into SPLITS).

    In the mixed splits the identity comes from one domain and each image's conditions from either,
    so the conditions say nothing about who is in the picture."""
    rng = _rng(seed, _IDENTITY, split, identity)
    fixed = SPLITS[split][2]
    face = sample_face(rng, DOMAINS[fixed or _MIXED[int(rng.integers(2))]])
    images = []
    for i in range(count):
        r = _rng(seed, _IMAGE, split, identity, i)
        domain = DOMAINS[fixed or _MIXED[int(r.integers(2))]]
        images.append(render_face(face, sample_nuisance(r, domain, size), size, r))
    return images


def split_counts(identities: int) -> dict[str, int]:
    """Identities per split: about 55/25/10/10 %, at least 2 each."""
    if identities < MIN_IDENTITIES:
        raise DataError(f"identities={identities} is too few: the 4 splits (train1, train2, val, test) need at least "
                        f"2 identities each; use --identities {MIN_IDENTITIES} or more")
    counts = {name: max(2, round(identities * share)) for name, share, _ in SPLITS[1:]}
    return {SPLITS[0][0]: identities - sum(counts.values()), **counts}


def _draw_pairs(rng: np.random.Generator, per_identity: int, identities: int, want: int,
                same: bool) -> list[tuple[int, int, int, int]]:
    """Distinct unordered image pairs (identity, image, identity, image) of one person or of two."""
    k, n = per_identity, identities
    pool = n * k * (k - 1) // 2 if same else n * (n - 1) // 2 * k * k
    want = min(want, pool)
    found: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    while len(found) < want:
        batch = max(64, 2 * want)
        g1 = rng.integers(n, size=batch)
        g2 = g1 if same else (g1 + rng.integers(1, n, size=batch)) % n
        i1 = rng.integers(k, size=batch)
        i2 = rng.integers(k - 1, size=batch) if same else rng.integers(k, size=batch)
        if same:
            i2 = i2 + (i2 >= i1)
        for p in zip(g1.tolist(), i1.tolist(), g2.tolist(), i2.tolist()):
            a, b = p[0] * k + p[1], p[2] * k + p[3]
            found.setdefault((min(a, b), max(a, b)), p)
            if len(found) == want:
                break
    return list(found.values())


def image_name(i: int) -> str:
    return f"{i:05d}.jpg"


def make_pairs(rng: np.random.Generator, folders: list[str], per_identity: int,
               count: int) -> list[tuple[int, str, str]]:
    """About ``count`` (label, path1, path2) pairs, half same-person, none repeated, none of an image
    with itself; fewer where the split holds fewer distinct pairs."""
    pos = _draw_pairs(rng, per_identity, len(folders), (count + 1) // 2, same=True)
    neg = _draw_pairs(rng, per_identity, len(folders), count // 2, same=False)
    rows = [(1, *p) for p in pos] + [(0, *p) for p in neg]
    return [(label, f"{folders[g1]}/{image_name(i1)}", f"{folders[g2]}/{image_name(i2)}")
            for label, g1, i1, g2, i2 in (rows[j] for j in rng.permutation(len(rows)))]


def _write_identity(folder: Path, seed: int, split: int, identity: int, count: int, size: int) -> None:
    folder.mkdir(parents=True)
    for i, img in enumerate(identity_images(seed, split, identity, count, size)):
        Image.fromarray(img).save(folder / image_name(i), quality=JPEG_QUALITY)


def synthesize(out: str | Path, identities: int = 200, images_per_identity: int = 20, size: int = 64, seed: int = 0,
               val_pairs: int = 600, test_pairs: int = 600, progress: bool = False) -> dict:
    """Write synthetic faces in the course layout under ``out``: train1/, train2/, val/ + val_pairs.csv,
    test/ + test_pairs.csv (real labels). Nothing is left half-written: the splits are built in a
    hidden temporary folder inside ``out`` and moved into place at the end. Returns identities per
    split, images, pairs per list and seconds."""
    start = time.perf_counter()
    out = Path(out)
    counts = split_counts(identities)
    if images_per_identity < 2:
        raise DataError(f"images_per_identity={images_per_identity}: same-person pairs need at least 2 images")
    if size < 16:
        raise DataError(f"size={size} px is too small to draw a face; use 16 or more")
    if seed < 0:
        raise DataError(f"seed={seed}: use a seed >= 0")
    if min(val_pairs, test_pairs) < 2:
        raise DataError(f"val_pairs={val_pairs}, test_pairs={test_pairs}: each list needs at least 2 pairs "
                        f"(one of each label)")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file; choose a folder to write the data set into")
    taken = [name for name, *_ in SPLITS if (out / name).exists()]
    if taken:
        raise DataError(f"{out}: already holds {', '.join(taken)}; remove them or choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(identities - 1)))
    tmp = Path(tempfile.mkdtemp(prefix=".synth-partial-", dir=out))
    try:
        jobs, folders, first = [], {}, 0
        for split, (name, _, _) in enumerate(SPLITS):
            folders[name] = [f"id{first + i:0{width}d}" for i in range(counts[name])]
            jobs += [(tmp / name / folder, seed, split, first + i, images_per_identity, size)
                     for i, folder in enumerate(folders[name])]
            first += counts[name]
        if progress:
            from rich.progress import track

            jobs = track(jobs, description="synthesising faces", transient=True)
        for job in jobs:
            _write_identity(*job)
        summary: dict = {f"{name}_identities": counts[name] for name, *_ in SPLITS}
        summary["images"] = identities * images_per_identity
        for name, want in (("val", val_pairs), ("test", test_pairs)):
            split = [n for n, *_ in SPLITS].index(name)
            rows = make_pairs(_rng(seed, _PAIRS, split), folders[name], images_per_identity, want)
            (tmp / name / f"{name}_pairs.csv").write_text("".join(f"{lab},{a},{b}\n" for lab, a, b in rows))
            summary[f"{name}_pairs"] = len(rows)
        for name, *_ in SPLITS:
            (tmp / name).rename(out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary
