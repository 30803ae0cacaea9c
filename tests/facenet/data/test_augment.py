"""Batch augmentations: every op and preset keeps shape, dtype, device and range, is reproducible
from its seed and changes the batch; mixing returns a valid permutation and weight."""
from __future__ import annotations

import math

import pytest
import torch

from facenet.config import TrainConfig
from facenet.data.augment import Augment, augment_names, build_augment, check_augment
from facenet.data.augment_ops import AUGMENTATIONS, LOADER_OPS, MIXING, PRESETS, _warp
from facenet.errors import ConfigError
from facenet.registry import UnknownName

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
NAMES = [*PRESETS, *AUGMENTATIONS.names()]
NO_OPS = {"none", "baseline"}


def batch(device: str = "cpu", n: int = 16, size: int = 40, seed: int = 0) -> torch.Tensor:
    """Like the trainer's: a channels-last view of an NHWC batch, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, size, size, 3, generator=g).to(device).permute(0, 3, 1, 2)


def augment(name: str, x: torch.Tensor, seed: int = 0):
    return build_augment(TrainConfig(augment=name, seed=seed))(x, torch.arange(len(x), device=x.device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_op_and_preset_contract(name, device):
    x = batch(device)
    original = x.clone()
    y, mix = augment(name, x)
    assert y.shape == x.shape and y.dtype == torch.float32 and y.device == x.device
    assert torch.equal(x, original)                       # the input is not modified in place
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    y2, mix2 = augment(name, x)
    assert torch.equal(y, y2)                              # same seed, same batch
    if name in NO_OPS:
        assert y is x and mix is None
        return
    assert not torch.equal(y, x)
    assert not torch.equal(y, augment(name, x, seed=1)[0])
    assert (mix is not None) == (name in MIXING)
    if mix is not None:
        assert torch.equal(mix[0], mix2[0]) and mix[1] == mix2[1]


@pytest.mark.parametrize("name", sorted(set(AUGMENTATIONS.names()) - MIXING))
def test_randomness_is_per_image(name):
    x = batch(n=16)[:1].expand(16, -1, -1, -1)            # 16 copies of one image
    y, _ = augment(name, x)
    assert len(torch.unique(y.flatten(1), dim=0)) > 1


@pytest.mark.parametrize("device", DEVICES)
def test_mixup_is_a_convex_combination(device):
    x = batch(device)
    y, (perm, lam) = augment("mixup", x)
    assert perm.dtype == torch.long and perm.device == x.device
    assert sorted(perm.tolist()) == list(range(len(x)))
    assert 0 <= lam <= 1
    torch.testing.assert_close(y, lam * x + (1 - lam) * x[perm])


@pytest.mark.parametrize("device", DEVICES)
def test_cutmix_lam_is_the_pasted_area(device):
    x = batch(device, n=8, size=32)
    boxes = 0
    for seed in range(12):
        y, (perm, lam) = augment("cutmix", x, seed=seed)
        assert sorted(perm.tolist()) == list(range(len(x))) and 0 <= lam <= 1
        pasted = (y != x).any(0).any(0)                    # (H, W): pixels taken from another image
        assert pasted.float().mean().item() == pytest.approx(1 - lam)
        assert torch.equal(y[:, :, pasted], x[perm][:, :, pasted])
        assert torch.equal(y[:, :, ~pasted], x[:, :, ~pasted])
        rows, cols = pasted.any(1).nonzero(), pasted.any(0).nonzero()
        if len(rows):                                      # one rectangle
            boxes += 1
            area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert int(area) == int(pasted.sum())
    assert boxes >= 6


def test_both_mixing_ops_alternate():
    a = build_augment(TrainConfig(augment="mixup+cutmix"))
    x = batch(n=8, size=32)
    kinds = set()
    for _ in range(12):
        y, (perm, lam) = a(x, None)
        kinds.add("mixup" if torch.allclose(y, lam * x + (1 - lam) * x[perm]) else "cutmix")
    assert kinds == {"mixup", "cutmix"}


def test_flip_goes_to_the_loader():
    # mirroring runs per image in the loader's workers (tests/facenet/data/test_data.py), not as a batch op
    a = build_augment(TrainConfig(augment="flip"))
    assert a.flip == 0.5 and not a.ops and not a.mixers and not a
    assert build_augment(TrainConfig(augment="rotate")).flip == 0.0
    assert build_augment(TrainConfig(augment="conservative")).flip == 0.5
    assert "flip" in augment_names()


def test_warp_quarter_turn_is_rot90():
    x = batch(n=2, size=12)
    y = _warp(x, torch.full((2,), math.pi / 2))
    assert any(torch.allclose(y, torch.rot90(x, k, (2, 3)), atol=1e-5) for k in (1, 3))
    # rigid on non-square images: a half turn is a point reflection whatever the aspect ratio
    wide = batch(n=2, size=12)[:, :, :6]
    torch.testing.assert_close(_warp(wide, torch.full((2,), math.pi)), wide.flip(-1, -2), atol=1e-5, rtol=0)


def test_presets_bind_strengths():
    assert dict(PRESETS["conservative"]) == {"flip": {}, "rotate": {"degrees": 5.0}}
    assert [n for n, _ in PRESETS["aggressive"]] == [n for n, _ in PRESETS["medium"]] + ["blur", "erasing"]
    a = build_augment(TrainConfig(augment="conservative+occlusion"))
    assert len(a.ops) == 2 and not a.mixers and a.flip == 0.5   # rotate, occlusion; the loader flips


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownName) as e:
        build_augment(TrainConfig(augment="flip+agressive"))
    message = str(e.value)
    assert "'agressive'" in message and "did you mean 'aggressive'" in message
    assert all(name in message for name in NAMES)
    with pytest.raises(UnknownName):
        check_augment("flip++rotate")
    check_augment("medium+lighting")
    assert set(augment_names()) == set(NAMES) | set(LOADER_OPS)


def test_mixing_needs_positive_alpha():
    with pytest.raises(ConfigError, match="mixup_alpha"):
        build_augment(TrainConfig(augment="mixup", mixup_alpha=0.0))


def test_autoaugment_leaves_global_rng_alone():
    state = torch.get_rng_state()
    augment("autoaugment", batch())
    assert torch.equal(state, torch.get_rng_state())


def test_state_dict_resumes_the_random_stream():
    x = batch(n=8, size=32)
    config = TrainConfig(augment="aggressive+mixup", seed=3)
    a = build_augment(config)
    first, _ = a(x, None)
    state = a.state_dict()
    expected, (perm, lam) = a(x, None)
    assert not torch.equal(first, expected)                # the stream advances between batches
    b = build_augment(config)
    b.load_state_dict(state)                               # before the first batch, as the trainer resumes
    y, (perm2, lam2) = b(x, None)
    assert torch.equal(y, expected) and torch.equal(perm, perm2) and lam == lam2
    assert build_augment(TrainConfig(augment="none")).state_dict() == {}
    assert isinstance(a, Augment) and "aggressive" in repr(a)


def test_host_draws_are_seeded_and_resume_even_on_another_device_type():
    """Mixing weights, boxes and the choice of mixer come from the CPU generator in the state:
    same seed, same draws; a resumed run continues them, also where the device stream restarts."""
    config, x = TrainConfig(augment="mixup+cutmix", seed=5), batch(n=8, size=32)

    def lams(a, n=6):
        return [a(x, None)[1][1] for _ in range(n)]

    a = build_augment(config)
    assert lams(a) == lams(build_augment(config)) != lams(build_augment(config.replace(seed=6)))
    state = a.state_dict()
    assert set(state) == {"device", "state", "host"}
    expected = lams(a)
    b = build_augment(config)
    b.load_state_dict(state)
    assert lams(b) == expected
    c = build_augment(config)
    c.load_state_dict({**state, "device": "cuda"})   # saved on a GPU, resumed on CPU
    assert lams(c) == expected
