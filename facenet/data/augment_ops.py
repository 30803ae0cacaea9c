"""The augmentation ops and presets, registered by name (``facenet.data.augment`` builds a config's list)."""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..registry import Registry

Mix = tuple[torch.Tensor, float]
Op = Callable[..., Any]          # image op (x, g, host) -> x, or mixing op (x, g, host) -> (x, Mix)

AUGMENTATIONS: Registry = Registry("augmentation")
MIXING: set[str] = set()
# Ops the loader's threads apply per image on uint8 crops (facenet.data.loader.cut), with their
# probability. A mirror is an exact pixel permutation: a slice there, a full float pass here.
# Running it first changes nothing in distribution: every op here is left-right symmetric.
LOADER_OPS: dict[str, float] = {"flip": 0.5}

# Presets are data: (op name, strengths) pairs, resolved through the registry like any op.
PRESETS: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "none": (),
    "baseline": (),  # the course baseline only random-crops, which the data pipeline already does
    "conservative": (("flip", {}), ("rotate", {"degrees": 5.0})),
    "medium": (("flip", {}), ("rotate", {"degrees": 10.0}), ("color_jitter", {})),
    "aggressive": (("flip", {}), ("rotate", {"degrees": 10.0}), ("color_jitter", {}), ("blur", {}),
                   ("erasing", {})),
}


def register_mixing(name: str):
    MIXING.add(name)
    return AUGMENTATIONS.register(name)


# ---------------------------------------------------------------- random helpers
def _rand(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=g.device)


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * _rand(g, n)


def _chance(g: torch.Generator, n: int, p: float) -> torch.Tensor:
    """(n, 1, 1, 1) bool: which images an op with probability ``p`` applies to."""
    return (_rand(g, n) < p).view(n, 1, 1, 1)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _host_uniform(host: torch.Generator, n: int) -> list[float]:
    """``n`` uniforms in [0, 1) from the CPU generator, as Python floats (no device involved)."""
    return torch.rand(n, generator=host, dtype=torch.float64).tolist()


_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_CONSTANTS = {"luma": _RGB_TO_YIQ[0], "rgb_to_yiq": _RGB_TO_YIQ,
              "yiq_to_rgb": torch.linalg.inv(torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)).tolist()}


@functools.cache
def _constant(name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A constant of ``_CONSTANTS`` on ``device``: copied there once, not per batch."""
    return torch.tensor(_CONSTANTS[name], dtype=torch.float64).to(device=device, dtype=dtype)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luminance."""
    return (x * _constant("luma", x.device, x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _between(lo: torch.Tensor, hi: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """(B, n) bool: pixel centres (as fractions of the side) within [lo, hi) per image."""
    pos = (torch.arange(n, device=device) + 0.5) / n
    return (pos >= lo[:, None]) & (pos < hi[:, None])


def _box(top, bottom, left, right, h: int, w: int, device) -> torch.Tensor:
    """(B, 1, H, W) bool mask of one rectangle per image, bounds as fractions of the side."""
    return (_between(top, bottom, h, device)[:, :, None] & _between(left, right, w, device)[:, None, :])[:, None]


# ---------------------------------------------------------------- geometry
def _warp(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor | None = None,
          shear: torch.Tensor | None = None, tx: torch.Tensor | None = None,
          ty: torch.Tensor | None = None) -> torch.Tensor:
    """Resample every image with its own affine map, in one grid_sample (zeros outside, like torchvision).

    The angles, shears and shifts are drawn symmetrically around 0, so the sampling matrix is
    built from them directly (its inverse has the same distribution); ``scale`` is the zoom of
    the content, hence sampling at 1/scale. The matrix is formed in pixel units and converted to
    affine_grid's [-1, 1] units so that rotations stay rigid on non-square images.
    """
    h, w = x.shape[2:]
    zero = torch.zeros_like(angle)
    scale = torch.ones_like(angle) if scale is None else scale
    tan = zero if shear is None else shear.tan()
    cos, sin = angle.cos(), angle.sin()
    # R(angle) @ [[1, tan], [0, 1]] / scale, pixel units
    a00, a01, a10, a11 = cos / scale, (cos * tan - sin) / scale, sin / scale, (sin * tan + cos) / scale
    theta = torch.stack([
        torch.stack([a00, a01 * h / w, 2 * (zero if tx is None else tx)], 1),
        torch.stack([a10 * w / h, a11, 2 * (zero if ty is None else ty)], 1),
    ], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0, 1)   # bilinear weights sum to 1 only up to rounding


@AUGMENTATIONS.register("rotate")
def rotate(config, degrees: float = 10.0) -> Op:
    def op(x, g, host):
        return _warp(x, torch.deg2rad(_uniform(g, len(x), -degrees, degrees)))
    return op


@AUGMENTATIONS.register("affine")
def affine(config, translate: float = 0.08, scale: tuple[float, float] = (0.9, 1.1), shear: float = 8.0,
           degrees: float = 0.0) -> Op:
    """``translate``: max shift as a fraction of the side; ``shear`` and ``degrees`` in degrees."""
    def op(x, g, host):
        n = len(x)
        return _warp(x, torch.deg2rad(_uniform(g, n, -degrees, degrees)), _uniform(g, n, *scale),
                     torch.deg2rad(_uniform(g, n, -shear, shear)), _uniform(g, n, -translate, translate),
                     _uniform(g, n, -translate, translate))
    return op


# ---------------------------------------------------------------- photometric


def _hue_rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """'Hue-lite': rotate the chroma plane of YIQ by ``turns`` of a full circle, one 3x3 matrix per image."""
    a = turns.double() * 2 * math.pi
    one, zero, cos, sin = torch.ones_like(a), torch.zeros_like(a), a.cos(), a.sin()
    rot = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], 1).view(-1, 3, 3)
    m = _constant("yiq_to_rgb", x.device, rot.dtype) @ rot @ _constant("rgb_to_yiq", x.device, rot.dtype)
    m = m.to(x.dtype)
    return torch.einsum("bij,bjhw->bihw", m, x)


@AUGMENTATIONS.register("color_jitter")
def color_jitter(config, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
                 hue: float = 0.05) -> Op:
    """Per-image factors in [1 - s, 1 + s]; ``hue`` is a fraction of a turn, as in torchvision."""
    def op(x, g, host):
        n = len(x)
        x = (x * _per_image(_uniform(g, n, 1 - brightness, 1 + brightness))).clamp_(0, 1)
        mean = _gray(x).mean((2, 3), keepdim=True)
        x = torch.lerp(mean, x, _per_image(_uniform(g, n, 1 - contrast, 1 + contrast))).clamp_(0, 1)
        x = torch.lerp(_gray(x), x, _per_image(_uniform(g, n, 1 - saturation, 1 + saturation))).clamp_(0, 1)
        return _hue_rotate(x, _uniform(g, n, -hue, hue)).clamp_(0, 1)
    return op


@AUGMENTATIONS.register("grayscale")
def grayscale(config, p: float = 0.2) -> Op:
    def op(x, g, host):
        return torch.where(_chance(g, len(x), p), _gray(x).expand_as(x), x)
    return op


@AUGMENTATIONS.register("blur")
def blur(config, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5) -> Op:
    """Gaussian blur with a random sigma per image, as one separable grouped convolution."""
    radius = math.ceil(3 * sigma[1])

    def op(x, g, host):
        b, c, h, w = x.shape
        s = torch.where(_rand(g, b) < p, _uniform(g, b, *sigma), 1e-4)  # a tiny sigma is an exact identity kernel
        t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (t / s[:, None]) ** 2)
        k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)          # (B*C, K)
        y = F.pad(x.reshape(1, b * c, h, w), (radius,) * 4, mode="replicate")
        y = F.conv2d(y, k[:, None, None, :], groups=b * c)
        y = F.conv2d(y, k[:, None, :, None], groups=b * c)
        return y.view(b, c, h, w).clamp_(0, 1)
    return op


@AUGMENTATIONS.register("erasing")
def erasing(config, p: float = 0.5, area: tuple[float, float] = (0.02, 0.25),
            ratio: tuple[float, float] = (0.3, 3.3)) -> Op:
    """Random erasing: one rectangle per image (area fraction, aspect ratio h/w), filled with noise."""
    def op(x, g, host):
        n = len(x)
        a = _uniform(g, n, *area)
        r = torch.exp(_uniform(g, n, math.log(ratio[0]), math.log(ratio[1])))
        eh, ew = (a * r).sqrt().clamp(max=1), (a / r).sqrt().clamp(max=1)
        top, left = (1 - eh) * _rand(g, n), (1 - ew) * _rand(g, n)
        erase = _box(top, top + eh, left, left + ew, x.shape[2], x.shape[3], x.device) & _chance(g, n, p)
        return torch.where(erase, _rand(g, *x.shape), x)
    return op


@AUGMENTATIONS.register("occlusion")
def occlusion(config, glasses: float = 0.25, mask: float = 0.25) -> Op:
    """Synthetic sunglasses (a dark band across the eyes) and a face mask (a coloured band over the
    lower face), each with its own probability per image; positions assume roughly centred face crops."""
    def op(x, g, host):
        n, _, h, w = x.shape
        eyes = _uniform(g, n, 0.32, 0.45)
        half = _uniform(g, n, 0.05, 0.09)
        band = _box(eyes - half, eyes + half, _uniform(g, n, 0.08, 0.2), _uniform(g, n, 0.8, 0.92), h, w, x.device)
        shade = _per_image(_uniform(g, n, 0.0, 0.15)).expand(n, 3, 1, 1)
        x = torch.where(band & _chance(g, n, glasses), shade, x)
        cover = _box(_uniform(g, n, 0.58, 0.7), _uniform(g, n, 0.92, 1.01), _uniform(g, n, 0.0, 0.12),
                     _uniform(g, n, 0.88, 1.01), h, w, x.device)
        colour = _rand(g, n, 3, 1, 1)
        return torch.where(cover & _chance(g, n, mask), colour, x)
    return op


@AUGMENTATIONS.register("lighting")
def lighting(config, strength: float = 0.5, gamma: float = 1.5) -> Op:
    """A linear brightness ramp in a random direction (gain 1 +- strength at the corners) after a
    random gamma in [1/gamma, gamma] (log-uniform)."""
    def op(x, g, host):
        n, _, h, w = x.shape
        phi = _uniform(g, n, 0, 2 * math.pi)
        ys = torch.linspace(-1, 1, h, device=x.device)[None, :, None]
        xs = torch.linspace(-1, 1, w, device=x.device)[None, None, :]
        ramp = (phi.cos()[:, None, None] * xs + phi.sin()[:, None, None] * ys) / math.sqrt(2)   # in [-1, 1]
        gain = 1 + _uniform(g, n, 0, strength)[:, None, None] * ramp
        gam = torch.exp(_uniform(g, n, -math.log(gamma), math.log(gamma)))
        return (x.pow(_per_image(gam)) * gain[:, None]).clamp_(0, 1)
    return op


@AUGMENTATIONS.register("autoaugment")
def autoaugment(config, groups: int = 8) -> Op:
    """torchvision's ImageNet AutoAugment policy on uint8. One policy draw per group of images
    (a few calls per batch, not one per image); its global-RNG draws are seeded from our host generator."""
    from torchvision.transforms import v2

    policy = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)

    def op(x, g, host):
        seeds = torch.randint(2 ** 62, (groups,), generator=host).tolist()
        u8 = x.mul(255).round_().to(torch.uint8)
        parts = []
        for seed, chunk in zip(seeds, u8.chunk(groups)):
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                parts.append(policy(chunk))
        return torch.cat(parts).to(x.dtype).div_(255)
    return op


# ---------------------------------------------------------------- mixing
def _beta(alpha: float, u: float) -> float:
    """A Beta(alpha, alpha) draw from a numpy generator seeded by ``u`` (uniform from our host
    generator); torch's Beta sampler takes no generator."""
    return float(np.random.default_rng(int(u * 2 ** 53)).beta(alpha, alpha))


def _check_alpha(name: str, alpha: float) -> None:
    if alpha <= 0:
        raise ConfigError(f"{name} must be > 0 for mixing (got {alpha})")


@register_mixing("mixup")
def mixup(config) -> Op:
    alpha = config.mixup_alpha
    _check_alpha("mixup_alpha", alpha)

    def op(x, g, host):
        perm = torch.randperm(len(x), generator=g, device=g.device)
        lam = _beta(alpha, *_host_uniform(host, 1))
        return torch.lerp(x[perm], x, lam).clamp_(0, 1), (perm, lam)
    return op


@register_mixing("cutmix")
def cutmix(config) -> Op:
    """Pastes one box of the permuted batch into every image; lam is 1 - the box's exact area fraction."""
    alpha = config.cutmix_alpha
    _check_alpha("cutmix_alpha", alpha)

    def op(x, g, host):
        _, _, h, w = x.shape
        perm = torch.randperm(len(x), generator=g, device=g.device)
        u, cy, cx = _host_uniform(host, 3)
        cut = math.sqrt(1 - _beta(alpha, u))
        ch, cw = round(h * cut), round(w * cut)
        cy, cx = int(cy * h), int(cx * w)
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch - ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw - cw // 2, w)
        out = x.clone()
        out[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        return out, (perm, 1 - (y1 - y0) * (x1 - x0) / (h * w))
    return op
