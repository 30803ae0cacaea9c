"""Optimizers and per-iteration schedules, checked against torch's per-epoch schedulers."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from facenet.config import TrainConfig
from facenet.errors import ConfigError
from facenet.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler
from facenet.registry import UnknownName

STEPS = 3   # iterations per epoch


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5),
                         nn.LayerNorm(5))


class TinyLoss(nn.Module):
    """A loss owning a weight matrix, like a margin classifier."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(7, 5))

    def forward(self, emb, labels):
        return nn.functional.cross_entropy(emb @ self.weight.t(), labels)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_each_optimizer_steps(name):
    torch.manual_seed(0)
    model, loss_fn = tiny_model(), TinyLoss()
    opt = build_optimizer([model, loss_fn], TrainConfig(optimizer=name, lr=0.01, weight_decay=1e-4,
                                                        nesterov=name == "sgd"))
    before = [p.detach().clone() for p in (*model.parameters(), *loss_fn.parameters())]
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 7, (4,))
    losses = []
    for _ in range(5):
        loss = loss_fn(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = [*model.parameters(), *loss_fn.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))   # every parameter, loss weights too
    assert losses[-1] < losses[0]
    assert opt.param_groups[0]["weight_decay"] == 1e-4


def test_sgd_nesterov_without_momentum_is_a_config_error():
    with pytest.raises(ConfigError, match="momentum"):
        build_optimizer([tiny_model()], TrainConfig(optimizer="sgd", nesterov=True, momentum=0.0))


def test_no_decay_norm_bias_groups():
    model, loss_fn = tiny_model(), TinyLoss()
    config = TrainConfig(optimizer="adamw", weight_decay=0.05, no_decay_norm_bias=True)
    decay, exempt = build_optimizer([model, loss_fn], config).param_groups
    ids = lambda group: {id(p) for p in group["params"]}   # noqa: E731
    conv, bn, lin, ln = model[0], model[1], model[4], model[5]
    assert decay["weight_decay"] == 0.05 and exempt["weight_decay"] == 0.0
    assert ids(decay) == {id(conv.weight), id(lin.weight), id(loss_fn.weight)}
    assert ids(exempt) == {id(conv.bias), id(bn.weight), id(bn.bias), id(lin.bias), id(ln.weight), id(ln.bias)}
    plain = build_optimizer([model, loss_fn], config.replace(no_decay_norm_bias=False))
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["weight_decay"] == 0.05
    assert len(plain.param_groups[0]["params"]) == 9


def test_shared_and_frozen_parameters():
    model = tiny_model()
    model[0].weight.requires_grad_(False)
    opt = build_optimizer([model, model[4]], TrainConfig())   # model[4] listed twice: its params once
    assert sum(len(g["params"]) for g in opt.param_groups) == 7   # 8 minus the frozen conv weight


def run_lrs(config: TrainConfig, iterations: int) -> list[float]:
    """lr in effect for each of ``iterations`` optimizer steps (one scheduler step after each)."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    sched = build_scheduler(opt, config, STEPS)
    lrs = []
    for _ in range(iterations):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def torch_epoch_lrs(make, lr: float, epochs: int) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


TORCH_EQUIVALENTS = {
    "step": (dict(lr_decay=0.5, step_size=2), lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5)),
    "cosine": (dict(t_max=0, eta_min=1e-3), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 12, 1e-3)),
    "cosine_short": (dict(t_max=5, eta_min=1e-3),
                     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 5, 1e-3)),
    "sgdr": (dict(t_0=2, t_mult=2, eta_min=1e-3),
             lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 2, 2, 1e-3)),
    "sgdr_flat": (dict(t_0=3, t_mult=1, eta_min=0.0),
                  lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 3, 1, 0.0)),
    "constant": (dict(), lambda o: torch.optim.lr_scheduler.ConstantLR(o, 1.0, 0)),
}


@pytest.mark.parametrize("case", TORCH_EQUIVALENTS)
def test_schedule_matches_torch_at_epoch_boundaries(case):
    epochs, fields, make = 12, *TORCH_EQUIVALENTS[case]
    config = TrainConfig(lr=0.1, epochs=epochs, scheduler=case.split("_")[0], **fields)
    ours = run_lrs(config, epochs * STEPS)[::STEPS]
    assert ours == pytest.approx(torch_epoch_lrs(make, 0.1, epochs), rel=1e-9, abs=1e-12)


def test_every_scheduler_has_a_torch_comparison():
    assert set(SCHEDULERS.names()) == {case.split("_")[0] for case in TORCH_EQUIVALENTS}


def test_step_decays_exactly_at_epoch_multiples():
    lrs = run_lrs(TrainConfig(lr=1.0, scheduler="step", lr_decay=0.5, step_size=2), 5 * STEPS)
    assert lrs == [1.0] * 6 + [0.5] * 6 + [0.25] * 3


def test_cosine_moves_within_an_epoch():
    lrs = run_lrs(TrainConfig(lr=1.0, scheduler="cosine", epochs=2), 2 * STEPS)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("scheduler", ["constant", "step", "cosine"])
def test_warmup_ramps_linearly(scheduler):
    config = TrainConfig(lr=0.1, epochs=10, scheduler=scheduler, warmup_epochs=2, step_size=5)
    warm = 2 * STEPS
    lrs = run_lrs(config, 4 * STEPS)
    plain = run_lrs(config.replace(warmup_epochs=0), 4 * STEPS)
    assert lrs[0] == pytest.approx(0.1 / warm)
    ramp = [lr / p for lr, p in zip(lrs[:warm], plain[:warm])]
    assert ramp == pytest.approx([(i + 1) / warm for i in range(warm)])
    assert lrs[warm - 1:] == pytest.approx(plain[warm - 1:])


def test_fractional_warmup():
    lrs = run_lrs(TrainConfig(lr=1.0, scheduler="constant", warmup_epochs=0.5), 2 * STEPS)   # 1.5 -> 2 iterations
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])


@pytest.mark.parametrize("scheduler", SCHEDULERS.names())
def test_state_dict_round_trip_resumes_the_same_lrs(scheduler, tmp_path):
    config = TrainConfig(lr=0.1, epochs=6, scheduler=scheduler, warmup_epochs=1, lr_decay=0.5, t_0=1)
    total, cut = 6 * STEPS, 7
    expected = run_lrs(config, total)

    model = nn.Linear(2, 2)
    opt = build_optimizer([model], config)
    sched = build_scheduler(opt, config, STEPS)
    for _ in range(cut):
        opt.step()
        sched.step()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "s.pt")

    state = torch.load(tmp_path / "s.pt", weights_only=True)
    opt2 = build_optimizer([nn.Linear(2, 2)], config)
    sched2 = build_scheduler(opt2, config, STEPS)
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    resumed = []
    for _ in range(total - cut):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert resumed == pytest.approx(expected[cut:], rel=1e-12)


def test_unknown_names_list_known_ones():
    with pytest.raises(UnknownName, match="adamw"):
        build_optimizer([tiny_model()], TrainConfig(optimizer="adamx"))
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(UnknownName, match="cosine"):
        build_scheduler(opt, TrainConfig(scheduler="cosin"), STEPS)


@pytest.mark.parametrize("fields", [dict(scheduler="step", step_size=0), dict(scheduler="sgdr", t_0=0),
                                    dict(scheduler="sgdr", t_mult=0), dict(warmup_epochs=-1.0)])
def test_bad_schedule_values_are_config_errors(fields):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError):
        build_scheduler(opt, TrainConfig(**fields), STEPS)


def test_cosine_reaches_eta_min_at_t_max():
    lrs = run_lrs(TrainConfig(lr=0.1, scheduler="cosine", epochs=4, eta_min=0.01), 4 * STEPS + 1)
    assert lrs[-1] == pytest.approx(0.01) and lrs[0] == pytest.approx(0.1)
    assert min(lrs) >= 0.01 - 1e-12 and not math.isnan(sum(lrs))
