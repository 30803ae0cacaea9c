"""Device handling that can be checked without a GPU: GPU indices mapped through a scheduler's
mask, the random state of the run's own device, bf16 only where native, autocast honouring
``amp``, cuDNN autotuning, and torch.compile's cache reset per run. The last tests need a GPU
and run only where one is visible."""
from __future__ import annotations

import warnings

import pytest
import torch

from facenet import checkpoint
from facenet.devices import (MASK, ORDER, amp_dtype, autocast_for, configure_backends, native_bf16,
                             reset_compiler, resolve_device, use_device, visible_gpus, worker_gpu_env)
from facenet.errors import ConfigError
from facenet.train import Trainer

CUDA = torch.cuda.is_available()


# ---------------------------------------------------------------- GPU masks
@pytest.mark.parametrize("mask,visible", [
    (None, None), ("2,3", ["2", "3"]), (" 1 , 0", ["1", "0"]), ("", []), ("0,-1,2", ["0"]),
    ("GPU-8f2a,MIG-GPU-8f2a/1/0", ["GPU-8f2a", "MIG-GPU-8f2a/1/0"]),
])
def test_visible_gpus_reads_the_mask_as_cuda_does(mask, visible):
    assert visible_gpus({} if mask is None else {MASK: mask}) == visible


def test_a_worker_runs_on_the_parents_gpu_through_its_mask():
    # a scheduler gave this job physical GPUs 2 and 3: --gpus 0,1 means those two, not 0 and 1
    parent = {MASK: "2,3"}
    assert [worker_gpu_env(i, parent)[MASK] for i in (0, 1)] == ["2", "3"]
    assert worker_gpu_env(1, parent)[ORDER] == "PCI_BUS_ID"     # nvidia-smi's and schedulers' numbering
    assert worker_gpu_env(0, {MASK: "GPU-aa,GPU-bb"})[MASK] == "GPU-aa"  # UUID masks map alike
    assert worker_gpu_env(3, {}) == {MASK: "3", ORDER: "PCI_BUS_ID"}    # no mask: the index itself
    # an order the parent chose is the one its mask was written in: kept
    assert worker_gpu_env(0, {MASK: "5", ORDER: "FASTEST_FIRST"})[ORDER] == "FASTEST_FIRST"


@pytest.mark.parametrize("index,env", [(2, {MASK: "2,3"}), (0, {MASK: ""}), (-1, {})])
def test_an_index_outside_the_mask_is_a_user_error(index, env):
    with pytest.raises(ConfigError, match=f"GPU index {index}") as e:
        worker_gpu_env(index, env)
    assert "\n" not in str(e.value) and (MASK not in env or MASK in str(e.value))


def test_worker_env_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv(MASK, "4,6")
    monkeypatch.delenv(ORDER, raising=False)
    assert worker_gpu_env(1) == {MASK: "6", ORDER: "PCI_BUS_ID"}


# ---------------------------------------------------------------- device and precision
def test_cpu_and_unusable_devices():
    cpu = torch.device("cpu")
    assert resolve_device("cpu") == cpu and use_device(cpu) == cpu
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    with pytest.raises(ConfigError, match="'gpu:0'"):
        resolve_device("gpu:0")
    n = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=f"cuda:{n}"):
        resolve_device(f"cuda:{n}")


@pytest.mark.parametrize("capability,native", [
    ((6, 1), False), ((7, 0), False), ((7, 5), False),           # Pascal, Volta (V100), Turing (T4)
    ((8, 0), True), ((8, 9), True), ((9, 0), True), ((10, 0), True),   # Ampere, Ada, Hopper, Blackwell
])
def test_bf16_only_where_tensor_cores_run_it(capability, native, monkeypatch):
    monkeypatch.setattr(torch.version, "hip", None)
    assert native_bf16(capability) is native


def test_amp_dtype_follows_the_gpu(monkeypatch):
    assert amp_dtype(torch.device("cpu")) is None
    for capability, dtype in (((7, 0), torch.float16), ((8, 0), torch.bfloat16)):   # V100, A100
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        monkeypatch.setattr(torch.version, "hip", None)
        assert amp_dtype(torch.device("cuda", 1)) == dtype


def test_autocast_is_off_when_amp_is(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with warnings.catch_warnings():   # without a GPU torch warns that CUDA autocast will do nothing
        warnings.simplefilter("ignore", UserWarning)
        on = autocast_for(torch.device("cuda", 0), True)
    off = autocast_for(torch.device("cuda", 0), False)
    assert on.device == "cuda" and on.fast_dtype == torch.bfloat16
    assert off.device == "cpu" and not off._enabled and not autocast_for(torch.device("cpu"), True)._enabled


def test_evaluation_honours_amp(tiny_config, monkeypatch):
    """The run's ``amp`` reaches evaluation's autocast (it was always on)."""
    import facenet.eval.evaluate as evaluate

    seen = []
    monkeypatch.setattr(evaluate, "autocast_for", lambda device, enabled=True: seen.append(enabled) or
                        autocast_for(device, enabled))
    trainer = Trainer(tiny_config.replace(amp=False, epochs=1), log=lambda m: None)
    trainer.run()
    trainer.loader.close()
    assert seen and not any(seen)


def test_cudnn_autotuning_on_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_backends(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    configure_backends(torch.device("cuda", 1))
    assert torch.backends.cudnn.benchmark is True


# ---------------------------------------------------------------- random state by device
@pytest.fixture
def two_gpus(monkeypatch) -> dict[int, torch.Generator]:
    """CPU generators standing in for the default generators of two GPUs."""
    generators = {0: torch.Generator().manual_seed(100), 1: torch.Generator().manual_seed(101)}
    monkeypatch.setattr(checkpoint, "device_generator",
                        lambda device: None if device.type == "cpu" else generators[device.index])
    return generators


def test_rng_state_is_the_run_devices_and_restores_there(two_gpus):
    g0, g1 = two_gpus[0], two_gpus[1]
    saved = checkpoint.rng_state(torch.device("cuda", 1))           # a run on cuda:1
    assert saved["device"]["type"] == "cuda"
    cpu_next, dev_next = torch.rand(3), torch.rand(3, generator=g1)
    g0_before = g0.get_state()
    # resumed where that GPU is cuda:0 (another visible set): the state goes to the run's own generator
    checkpoint.restore_rng(saved, torch.device("cuda", 0))
    assert torch.equal(torch.rand(3), cpu_next) and torch.equal(torch.rand(3, generator=g0), dev_next)
    assert not torch.equal(g0_before, g0.get_state())


def test_rng_state_of_another_device_type_or_old_format(two_gpus):
    saved = checkpoint.rng_state(torch.device("cuda", 0))
    cpu_next = torch.rand(3)
    checkpoint.restore_rng(saved, torch.device("cpu"))               # resumed on CPU: no GPU state to set
    assert torch.equal(torch.rand(3), cpu_next)
    assert checkpoint.rng_state(torch.device("cpu"))["device"] == {}
    # the earlier format: the CPU state and a list of every visible GPU's state
    state, g1 = torch.get_rng_state(), two_gpus[1]
    single = torch.Generator().manual_seed(7).get_state()
    checkpoint.restore_rng(state, torch.device("cuda", 1), [single])  # one GPU seen: it was the run's
    assert torch.equal(g1.get_state(), single)
    before = g1.get_state()
    checkpoint.restore_rng(state, torch.device("cuda", 1), [single, single])   # which one was the run's?
    assert torch.equal(g1.get_state(), before)


# ---------------------------------------------------------------- compile
def test_each_compiled_run_starts_from_a_clean_dynamo_cache(tiny_config):
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    fn = torch.compile(lambda x: x * 2 + 1, backend=backend)
    x = torch.ones(3)
    fn(x), fn(x)
    assert len(graphs) == 1                       # cached
    reset_compiler()
    fn(x)
    assert len(graphs) == 2                       # compiled again
    trainer = Trainer(tiny_config.replace(compile=True), log=lambda m: None)   # a trial in a worker
    fn(x)
    assert len(graphs) == 3                       # the earlier runs' graphs are gone
    trainer.loader.close()


# ---------------------------------------------------------------- on a GPU
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


@gpu
def test_training_on_the_last_gpu_makes_it_current(tiny_config):
    last = torch.cuda.device_count() - 1
    trainer = Trainer(tiny_config.replace(device=f"cuda:{last}", epochs=1), log=lambda m: None)
    assert trainer.device == torch.device("cuda", last) and torch.cuda.current_device() == last
    result = trainer.run()
    trainer.loader.close()
    assert result.history and all(p.device == trainer.device for p in trainer.model.parameters())
    assert torch.backends.cudnn.benchmark


@gpu
def test_loader_slots_wait_for_their_copies_on_the_gpu(tiny_config):
    import numpy as np

    from facenet.data.loader import BatchLoader
    from facenet.data.sampler import ClassBalancedSampler

    device = resolve_device(f"cuda:{torch.cuda.device_count() - 1}")
    images = np.random.default_rng(0).integers(0, 256, (80, 8, 8, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(20), 4)
    sampler = ClassBalancedSampler(labels, 3, 2, 100)
    reference = [x.clone() for x, _ in BatchLoader(images, labels, sampler, 6)]
    loader = BatchLoader(images, labels, sampler, 6, threads=0, device=device)
    copies = []
    for x, _ in loader:
        assert x.is_pinned()
        copies.append(x.to(device, non_blocking=True))
        torch.cuda._sleep(1_000_000)            # keep the stream busy so the copy is still queued
    assert all(torch.equal(c.cpu(), r) for c, r in zip(copies, reference))
