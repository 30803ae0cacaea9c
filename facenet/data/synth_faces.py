"""Synthetic faces: the parameters of an identity and of each image's nuisance, and how they are drawn
(``facenet.data.synth`` writes the data set)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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


