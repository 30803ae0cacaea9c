"""No host read of device data, and no blocking upload, inside a training step.

On a GPU each read of a device tensor from the host (``.item()``, ``float()``, ``.tolist()``,
``bool()``, ``torch.nonzero``, boolean-mask indexing, ...) makes the host wait until the GPU has
run everything queued so far, so the next step cannot be queued while this one runs; so does a
blocking copy of host data to the device (``torch.tensor(list)``, ``new_tensor``, ``.to(device)``
without ``non_blocking``). Here CPU tensors stand in for the device: every such event during a
step is recorded, except reads of what a GPU run keeps on the host anyway (the optimizer's step
counters, and the augmentation's host generator's draws). The recorder is checked on known
events first, so a regression that brings one back into the step fails these tests.
"""
from __future__ import annotations

import contextlib
import functools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from facenet.train import Trainer

aten = torch.ops.aten
# operators that read device data back to the host (scalars, or a data-dependent output size)
READS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
         aten.equal.default, aten.is_nonzero.default, aten._unique2.default, aten.unique_dim.default,
         aten.unique_consecutive.default, aten.repeat_interleave.Tensor, aten.allclose.default}
PY_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "nonzero", "numpy", "cpu")


class HostReads(TorchDispatchMode):
    """Records host reads of tensors, at the Python level and at the operator level (which also sees
    reads made inside torch, such as an optimizer's or a boolean index's)."""

    def __init__(self, host_ptrs: set[int] = frozenset(), host_seeds: set[int] = frozenset()):
        super().__init__()
        self.reads: list[str] = []
        self.host_ptrs, self.host_seeds = set(host_ptrs), set(host_seeds)

    def _host(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t.data_ptr() in self.host_ptrs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        gen = kwargs.get("generator")
        if gen is not None and gen.device.type == "cpu" and gen.initial_seed() in self.host_seeds:
            self.host_ptrs.add(out.data_ptr())          # drawn on the host by design
        bool_index = func is aten.index.Tensor and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1])
        if (func in READS or bool_index) and not self._host(args[0]):
            self.reads.append(str(func))
        if func is aten.lift_fresh.default:             # a tensor made from host data (list, numpy)
            self.reads.append(f"upload {func}")
        return out

    @contextlib.contextmanager
    def watching(self):
        originals = {name: getattr(torch.Tensor, name) for name in PY_READS}

        def counted(name, method):
            @functools.wraps(method)
            def read(t, *a, **k):
                if not self._host(t):
                    self.reads.append(f"Tensor.{name}")
                return method(t, *a, **k)
            return read

        def moved(name, method):   # a copy to a device that the host waits for
            @functools.wraps(method)
            def move(t, *a, **k):
                places = (torch.device, str, torch.Tensor)
                target = [v for v in (*a, k.get("device")) if isinstance(v, places)]
                if (name == "cuda" or target) and not k.get("non_blocking"):
                    self.reads.append(f"upload Tensor.{name}")
                return method(t, *a, **k)
            return move

        function = torch.nonzero
        moves = {name: getattr(torch.Tensor, name) for name in ("to", "cuda")}
        try:
            for name, method in originals.items():
                setattr(torch.Tensor, name, counted(name, method))
            for name, method in moves.items():
                setattr(torch.Tensor, name, moved(name, method))
            torch.nonzero = counted("torch.nonzero", function)
            with self:
                yield self
        finally:
            for name, method in {**originals, **moves}.items():
                setattr(torch.Tensor, name, method)
            torch.nonzero = function


X = torch.arange(6.0)
KNOWN = {   # what a step must not do, each recorded
    "float": lambda: float(X[0]), "int": lambda: int(X[1]), "item": lambda: X[2].item(),
    "tolist": lambda: X.tolist(),
    "bool": lambda: bool(X[3] > 0), "torch.nonzero": lambda: torch.nonzero(X), "nonzero": lambda: X.nonzero(),
    "mask index": lambda: X[X > 2], "unique": lambda: X.unique(),
    "allclose (inside torch)": lambda: torch.allclose(X, X),
    "new_tensor": lambda: X.new_tensor([0.299, 0.587, 0.114]), "torch.tensor": lambda: torch.tensor([1.0]),
    "to(device)": lambda: X.to("cpu"), "to(tensor)": lambda: X.to(X),
}
HARMLESS = {   # what a step may do
    "arithmetic": lambda: X + 1, "to(dtype)": lambda: X.to(torch.float64),
    "non_blocking copy": lambda: X.to("cpu", non_blocking=True),
    "where with a scalar": lambda: torch.where(X > 1, X, 0.5),
    "random on the device generator": lambda: torch.rand(3, generator=torch.Generator().manual_seed(1)),
}


@pytest.mark.parametrize("name", [*KNOWN, *HARMLESS])
def test_the_recorder_sees_each_kind_of_read(name):
    with HostReads().watching() as rec:
        (KNOWN | HARMLESS)[name]()
    assert bool(rec.reads) == (name in KNOWN), rec.reads


def test_host_generator_draws_are_host_data():
    g = torch.Generator().manual_seed(1234)
    with HostReads(host_seeds={1234}).watching() as rec:
        torch.rand(3, generator=g, dtype=torch.float64).tolist()
    assert rec.reads == []


def step_reads(trainer: Trainer, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    trainer.step(x, y)   # first step: optimizer state and cached constants are created
    steps = {s["step"].data_ptr() for s in trainer.optimizer.state.values()
             if isinstance(s.get("step"), torch.Tensor) and s["step"].device.type == "cpu"}
    with HostReads(steps, {trainer.augment.host.initial_seed()}).watching() as rec:
        trainer.step(x, y)
        trainer.step(x, y)
    return rec.reads


CONFIGS = {   # every augmentation op and both mixers, every miner, margin and combined losses
    "softmax, aggressive+mixup": dict(loss="softmax", augment="aggressive+mixup"),
    "arcface, mixup+cutmix": dict(loss="arcface", augment="mixup+cutmix"),
    "cosface, geometry and occlusion": dict(loss="cosface", augment="affine+occlusion+lighting+grayscale"),
    "triplet_hard, color_jitter": dict(loss="triplet_hard", augment="color_jitter"),
    "triplet_semihard": dict(loss="triplet_semihard", augment="rotate+erasing"),
    "triplet (random negatives)": dict(loss="triplet", augment="blur"),
    "triplet_batchhard, sgd": dict(loss="triplet_batchhard", optimizer="sgd"),
    "subcenter_arcface, adamw": dict(loss="subcenter_arcface", optimizer="adamw", weight_decay=0.01),
    "softmax_triplet": dict(loss="softmax_triplet", augment="cutmix"),
}


@pytest.mark.parametrize("changes", CONFIGS.values(), ids=CONFIGS.keys())
def test_a_training_step_reads_nothing_back(tiny_config, changes):
    trainer = Trainer(tiny_config.replace(**changes), log=lambda m: None)
    x, y = next(iter(trainer.loader))
    x, y = x.clone(), y.clone()
    assert step_reads(trainer, x, y) == []
    trainer.loader.close()


def test_an_epoch_reads_its_loss_back_once(tiny_config):
    """The epoch loop's one read is the mean loss at its end, whatever the number of steps. (The
    loader's threads turn host arrays into host tensors, which is no upload; the operator-level
    recorder, like torch's dispatch modes, watches the training thread only.)"""
    config = tiny_config.replace(loss="triplet_hard", augment="medium+mixup", workers=1)
    trainer = Trainer(config, log=lambda m: None)
    trainer.epoch = 1
    x, y = next(iter(trainer.loader))
    trainer.step(x.clone(), y.clone())
    steps = {s["step"].data_ptr() for s in trainer.optimizer.state.values()}
    with HostReads(steps, {trainer.augment.host.initial_seed()}).watching() as rec:
        trainer.train_epoch()
    assert trainer.steps > 2 and rec.reads == ["Tensor.__float__", str(aten._local_scalar_dense.default)]
    trainer.loader.close()


def test_the_old_draws_would_be_caught(tiny_config):
    """A mixing weight read back from the device generator, as augment.py once did, is a read."""
    trainer = Trainer(tiny_config.replace(augment="mixup"), log=lambda m: None)
    mixup = trainer.augment.mixers[0]
    g = trainer.augment.generator(torch.device("cpu"))

    def old_mixup(x, g, host):
        x, (perm, _) = mixup(x, g, host)
        return x, (perm, float(torch.rand(1, generator=g)))

    trainer.augment.mixers[0] = old_mixup
    x, y = next(iter(trainer.loader))
    assert "Tensor.__float__" in step_reads(trainer, x.clone(), y.clone())
    assert g is trainer.augment.generator(torch.device("cpu"))
    trainer.loader.close()
