"""Models: every registered architecture is tested the day it is registered (timm style)."""
from __future__ import annotations

import pytest
import torch

from facenet.config import TrainConfig
from facenet.errors import ConfigError
from facenet.models import LAYOUTS, MODELS, WIDTHS, build_model, count_params, param_table
from facenet.registry import UnknownName

COURSE_RESNET18 = 11_439_168  # what the course trainer prints for ResNet18 with nOut 512


def small_config(name: str, **values) -> TrainConfig:
    """n_out 16, narrowest plan width where width applies, 32 px."""
    width = {"width": 0.25} if name in WIDTHS else {}
    return TrainConfig(model=name, n_out=16, resolution=32, **width).replace(**values)


@pytest.mark.parametrize("name", MODELS.names())
def test_forward_backward_and_count(name):
    torch.manual_seed(0)
    config = small_config(name)
    model = build_model(config).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 16)
    out.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    assert count_params(config) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("resolution", [40, 224])
@pytest.mark.parametrize("name", MODELS.names())
def test_output_shape_on_meta(name, resolution):
    """Full-size models at the course resolution and an odd one: shapes only, no memory."""
    config = TrainConfig(model=name, n_out=16, resolution=resolution)
    with torch.device("meta"):
        model = build_model(config).eval()
        out = model(torch.empty(2, 3, resolution, resolution))
    assert out.shape == (2, 16)


def test_resnet18_matches_the_course_count():
    assert count_params(TrainConfig(model="resnet18", n_out=512)) == COURSE_RESNET18
    assert count_params(TrainConfig(model="resnet18", n_out=1024)) > 11_500_000


def test_resnet_w_at_full_width_is_torchvision_resnet18():
    """Same count, and the same state-dict keys and shapes, so weights move between the two."""
    ours = TrainConfig(model="resnet_w", width=1.0, depth=18, block="basic", n_out=512)
    assert count_params(ours) == COURSE_RESNET18
    with torch.device("meta"):
        a = build_model(ours).state_dict()
        b = build_model(TrainConfig(model="resnet18", n_out=512)).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


def test_resnet_w_depth_34_and_50_match_torchvision():
    from torchvision.models import resnet34, resnet50

    with torch.device("meta"):
        for depth, block, tv in ((34, "basic", resnet34), (50, "bottleneck", resnet50)):
            config = TrainConfig(model="resnet_w", depth=depth, block=block, n_out=128)
            assert count_params(config) == sum(p.numel() for p in tv(num_classes=128).parameters())


@pytest.mark.parametrize("width,stem", [(0.125, 8), (0.05, 8), (0.3, 16), (0.75, 48)])
def test_resnet_w_rounds_widths_to_multiples_of_8(width, stem):
    with torch.device("meta"):
        model = build_model(TrainConfig(model="resnet_w", width=width))
    assert model.conv1.out_channels == stem
    assert model.fc.in_features == max(8, round(512 * width / 8) * 8)


@pytest.mark.parametrize("values,needle", [
    ({"depth": 20}, "depth must be one of 18, 34, 50"),
    ({"block": "wide"}, "block must be one of basic, bottleneck"),
    ({"depth": 50, "block": "basic"}, "depth 50 needs block=bottleneck"),
    ({"width": 0.0}, "width must be > 0"),
])
def test_resnet_w_rejects_bad_shapes(values, needle):
    with pytest.raises(ConfigError, match=needle):
        count_params(TrainConfig(model="resnet_w").replace(**values))


def test_width_changes_size_only_where_it_applies():
    for name in MODELS.names():
        narrow, full = (count_params(TrainConfig(model=name, width=w)) for w in (0.5, 1.0))
        assert (narrow < full) == (name in WIDTHS), name


def test_unknown_model_lists_known_names():
    with pytest.raises(UnknownName) as err:
        build_model(TrainConfig(model="resnet19"))
    message = str(err.value)
    assert "'resnet19'" in message and "did you mean 'resnet18'" in message
    assert all(name in message for name in MODELS.names())


def test_param_table():
    rows = param_table(n_outs=(256, 1024), cap=11_500_000)
    expected = sum(len(WIDTHS.get(n, (None,))) * len(LAYOUTS.get(n, (None,))) * 2 for n in MODELS.names())
    assert len(rows) == expected
    assert all(list(r) == ["model", "width", "depth", "block", "n_out", "params", "fits"] for r in rows)
    assert all(r["fits"] == (r["params"] <= 11_500_000) for r in rows)
    by_key = {(r["model"], r["width"], r["depth"], r["block"], r["n_out"]): r for r in rows}
    assert by_key["resnet18", None, None, None, 256]["fits"]
    assert not by_key["resnet18", None, None, None, 1024]["fits"]
    assert by_key["resnet_w", 0.5, 34, "basic", 256]["params"] == count_params(
        TrainConfig(model="resnet_w", width=0.5, depth=34, n_out=256))
    assert by_key["mobilenet_v2", 1.4, None, None, 1024]["params"] == count_params(
        TrainConfig(model="mobilenet_v2", width=1.4, n_out=1024))
