"""The trainer end to end on tiny synthetic faces: history, checkpoints, resume, fine-tune
loading, reproducibility, NaN detection, clear config errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from facenet import fit
from facenet.checkpoint import CheckpointError, load, load_strict
from facenet.errors import ConfigError, NonFiniteLoss
from facenet.models import build_model, count_params


class Stop(Exception):
    pass


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load(Path(run_dir) / "last.pt")["model"]


def test_fit_records_history_and_checkpoints(tiny_config):
    seen = []
    r = fit(tiny_config, on_epoch=seen.append, log=lambda m: None)
    assert [e.epoch for e in seen] == [1, 2] and len(r.history) == 2
    assert all(0 <= e.val_eer <= 100 and math.isfinite(e.loss) and e.images_per_s > 0 for e in seen)
    assert r.best_val_eer == min(e.val_eer for e in seen)
    run = Path(r.run_dir)
    assert json.loads((run / "config.json").read_text())["model"] == "resnet_w"
    best = load(run / "best.pt")
    assert best["epoch"] == r.best_epoch and best["val_eer"] == r.best_val_eer
    assert r.params == count_params(tiny_config)


def test_same_seed_same_result(tiny_config, tmp_path):
    a = fit(tiny_config.replace(run_dir=str(tmp_path / "a")), log=lambda m: None)
    b = fit(tiny_config.replace(run_dir=str(tmp_path / "b")), log=lambda m: None)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert all(torch.equal(x, y) for x, y in zip(weights(a.run_dir).values(), weights(b.run_dir).values()))


@pytest.mark.parametrize("loss,augment", [("softmax", "none"), ("triplet_hard", "aggressive+mixup")])
def test_interrupted_run_resumes_to_the_same_weights(tiny_config, tmp_path, loss, augment):
    config = tiny_config.replace(epochs=3, loss=loss, augment=augment, scheduler="cosine", warmup_epochs=0.5)
    straight = fit(config.replace(run_dir=str(tmp_path / "straight")), log=lambda m: None)

    def interrupt(result):
        if result.epoch == 2:
            raise Stop()

    broken = config.replace(run_dir=str(tmp_path / "broken"))
    with pytest.raises(Stop):
        fit(broken, on_epoch=interrupt, log=lambda m: None)
    logs = []
    resumed = fit(broken, log=logs.append)
    assert any("resumed" in m and "after epoch 2" in m for m in logs)
    assert resumed.resumed_from == 2
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert all(torch.equal(x, y) for x, y in zip(weights(straight.run_dir).values(), weights(resumed.run_dir).values()))


def test_initial_model_loads_matching_keys_and_skips_the_rest(tiny_config, tmp_path):
    first = fit(tiny_config.replace(epochs=1, run_dir=str(tmp_path / "pre")), log=lambda m: None)
    # fine-tune with another embedding size: the backbone loads, the embedding layer is skipped
    logs = []
    tuned = tiny_config.replace(epochs=1, n_out=16, run_dir=str(tmp_path / "ft"),
                                train_path=tiny_config.train_path.replace("train1", "train2"),
                                initial_model=str(Path(first.run_dir) / "best.pt"))
    trainer_model = build_model(tuned)
    fit(tuned, log=logs.append)
    line = next(m for m in logs if m.startswith("initial weights"))
    assert "skipped" in line and "fc" in line
    n_loaded = int(line.split(":")[1].split("tensors")[0])
    assert n_loaded == len(trainer_model.state_dict()) - 2   # all but fc.weight and fc.bias


def test_checkpoint_of_another_architecture_names_the_keys(tiny_config, tmp_path):
    r = fit(tiny_config.replace(epochs=1), log=lambda m: None)
    other = build_model(tiny_config.replace(model="mobilenet_v2", width=0.25))
    with pytest.raises(CheckpointError, match=r"weights do not match this model \(missing: "):
        load_strict(other, load(Path(r.run_dir) / "best.pt")["model"], "best.pt")


def test_nan_loss_stops_with_a_reason(tiny_config):
    with pytest.raises(NonFiniteLoss, match="training loss became nan in epoch 1"):
        fit(tiny_config.replace(lr=1e30, optimizer="sgd", momentum=0.0), log=lambda m: None)


def test_triplet_needs_two_images_per_identity(tiny_config):
    with pytest.raises(ConfigError, match="needs n_per_class >= 2"):
        fit(tiny_config.replace(loss="triplet", n_per_class=1), log=lambda m: None)


def test_early_stopping(tiny_config):
    # lr 0: only BatchNorm statistics move, so val EER soon stops improving
    r = fit(tiny_config.replace(epochs=10, patience=1, lr=0.0, optimizer="sgd", momentum=0.0), log=lambda m: None)
    eers = [h["val_eer"] for h in r.history]
    first_without_gain = next(i for i in range(1, len(eers)) if eers[i] >= min(eers[:i]))
    assert r.stopped_early and len(eers) == first_without_gain + 1 < 10


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB filesystem (tmpfs) that a test can fill up."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_at_checkpoint_time_keeps_the_previous_checkpoint(tiny_config, small_disk):
    run = small_disk / "run"

    def fill_disk(result):
        if result.epoch == 1:
            with open(small_disk / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass

    with pytest.raises(CheckpointError, match="cannot write checkpoint .*No space left on device"):
        fit(tiny_config.replace(epochs=2, run_dir=str(run)), on_epoch=fill_disk, log=lambda m: None)
    state = load(run / "last.pt")   # still the complete epoch-1 checkpoint
    assert state["epoch"] == 1
    assert not list(run.glob(".*.tmp*")), "a partial temporary file was left behind"


from facenet.losses import LOSSES  # noqa: E402
from facenet.optim import OPTIMIZERS, SCHEDULERS  # noqa: E402


@pytest.mark.parametrize("loss", LOSSES.names())
def test_short_run_with_each_loss(tiny_config, loss):
    r = fit(tiny_config.replace(epochs=1, loss=loss), log=lambda m: None)
    assert math.isfinite(r.history[0]["loss"]) and 0 <= r.best_val_eer <= 100


@pytest.mark.parametrize("scheduler", SCHEDULERS.names())
@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
def test_short_run_with_each_optimizer_and_scheduler(tiny_config, optimizer, scheduler):
    r = fit(tiny_config.replace(epochs=2, optimizer=optimizer, scheduler=scheduler, weight_decay=1e-4,
                                no_decay_norm_bias=True, warmup_epochs=0.5, t_0=1), log=lambda m: None)
    lrs = [h["lr"] for h in r.history]
    assert all(math.isfinite(h["loss"]) for h in r.history) and lrs[0] > 0
