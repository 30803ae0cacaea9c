"""ResNet18 training images/s on a GPU and its model FLOP utilisation (run by benchmarks/gpu.sh).

For each resolution (112 and 224 px) and precision mode (fp32 NCHW with TF32 off, fp32 NCHW with
TF32 on, bf16 autocast + channels_last; fp16 where the GPU has no native bf16), one ``Trainer``
is fed two ways:

- pipeline: the real one (decoded-image cache, sampler, loader threads cutting crops into pinned
  slots, ``Trainer.step``) as one continuous stream of batches across epoch ends, so no timed
  window starts from an empty loader ring;
- in-memory: the same kind of uint8 batches, held in pinned memory, through ``Trainer.step``.

Each point runs warm-up steps (cuDNN autotuning included), then ``--steps`` (>= 200) timed steps
between two device syncs. MFU is the model's training FLOPs per image (torch's FLOP counter over
one forward and backward, on the meta device) times images/s, over the GPU's dense peak for that
precision: from the spec sheet where the GPU is known, and from a large matmul measured in the
same precision. Every figure is one ``summary:`` line. ``--dry-run``: the same path on CPU with
tiny sizes (there every mode runs fp32 NCHW: channels_last and autocast are CUDA-only).
"""
from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import torch

from common import face_set, parse, parser, sync, temp_dir
from facenet.config import TrainConfig
from facenet.devices import amp_dtype, resolve_device
from facenet.train import Trainer

# dense peak TFLOP/s (fp32, tf32, bf16, fp16) from NVIDIA's data sheets; first matching name wins
PEAKS = {
    "H100 PCIe": (51.2, 378.0, 756.0, 756.0), "H100": (66.9, 494.7, 989.4, 989.4),
    "H200": (66.9, 494.7, 989.4, 989.4), "H800": (66.9, 494.7, 989.4, 989.4),
    "A100": (19.5, 156.0, 312.0, 312.0), "A800": (19.5, 156.0, 312.0, 312.0),
    "L40S": (91.6, 183.0, 362.0, 362.0), "L40": (90.5, 90.5, 181.0, 181.0), "L4": (30.3, 60.0, 121.0, 121.0),
    "A10": (31.2, 62.5, 125.0, 125.0), "A30": (10.3, 82.0, 165.0, 165.0),
    "V100": (15.7, None, None, 125.0), "T4": (8.1, None, None, 65.0),
}
PRECISION = {"fp32": 0, "tf32": 1, "bf16": 2, "fp16": 3}


def modes(dev: torch.device) -> dict[str, dict]:
    """Label -> config flags and the precision the GPU computes in (on CPU everything is fp32)."""
    half = "bf16" if amp_dtype(dev) in (None, torch.bfloat16) else "fp16"
    cpu = dev.type != "cuda"
    return {"fp32 NCHW, TF32 off": dict(amp=False, channels_last=False, tf32=False, precision="fp32"),
            "fp32 NCHW, TF32 on": dict(amp=False, channels_last=False, tf32=True,
                                       precision="fp32" if cpu else "tf32"),
            f"{half} channels_last": dict(amp=True, channels_last=True, tf32=True,
                                          precision="fp32" if cpu else half)}


def set_tf32(on: bool) -> None:
    """TF32 for matmuls and convolutions (cuDNN allows it by default: "fp32" convolutions would be TF32)."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def spec_peak(dev: torch.device, precision: str) -> tuple[float | None, str]:
    if dev.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(dev)
    for key, peaks in PEAKS.items():
        if key in name:
            peak = peaks[PRECISION[precision]]
            return (peak * 1e12 if peak else None), key
    return None, name


def matmul_peak(dev: torch.device, precision: str, n: int, reps: int) -> float:
    """FLOP/s of an n x n matmul in ``precision``: what this GPU reaches on the easiest workload."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    set_tf32(precision == "tf32")
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def train_flops_per_image(config: TrainConfig) -> float:
    """Forward + backward FLOPs of the embedding network on one image (shapes only, no memory)."""
    from torch.utils.flop_counter import FlopCounterMode

    from facenet.models import build_model

    with torch.device("meta"):
        model = build_model(config)
        x = torch.randn(2, 3, config.resolution, config.resolution)
        with FlopCounterMode(display=False) as counter:
            model(x).sum().backward()
    return counter.get_total_flops() / 2


class Epochs:
    """A sampler's batches epoch after epoch as one stream of ``n``: the loader's ring stays full
    across epoch ends, as it would within one long epoch of the real data."""

    def __init__(self, sampler, n: int):
        self.sampler, self.n = sampler, n
        self.batch_size, self.n_per_class = sampler.batch_size, sampler.n_per_class

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return itertools.islice(self._forever(), self.n)

    def _forever(self):
        for epoch in itertools.count():
            self.sampler.set_epoch(epoch)
            yield from self.sampler


def timed_steps(t: Trainer, batches, warmup: int) -> tuple[int, float]:
    """Run ``t.step`` on every batch; (images, seconds) of the steps after the first ``warmup``."""
    t.model.train()
    t.criterion.train()
    images, start = 0, None
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            sync()
            start = time.perf_counter()
        t.step(x, y)
        images += len(y) if i >= warmup else 0
    sync()
    return images, time.perf_counter() - start


def pipeline_rate(t: Trainer, warmup: int, steps: int) -> float:
    t.loader.sampler = Epochs(t.sampler, warmup + steps)
    images, seconds = timed_steps(t, t.loader, warmup)
    return images / seconds


def memory_rate(t: Trainer, batches: list, warmup: int, steps: int) -> float:
    feed = (batches[i % len(batches)] for i in range(warmup + steps))
    images, seconds = timed_steps(t, feed, warmup)
    return images / seconds


def held_batches(t: Trainer, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    t.loader.sampler = Epochs(t.sampler, n)
    cuda = t.device.type == "cuda"
    return [(x.clone().pin_memory() if cuda else x.clone(), y.clone()) for x, y in t.loader]


def tflops(flops: float | None) -> str:
    if not flops:
        return "n/a"
    return f"{flops / 1e12:.1f} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:.1f} GFLOP/s"


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--dry-run", action="store_true", help="the same path on CPU with tiny sizes")
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--res", default="112,224", help="comma-separated crop sizes")
    p.add_argument("--identities", type=int, default=64, help="identities per batch")
    p.add_argument("--n-per-class", type=int, default=2)
    p.add_argument("--workers", type=int, default=TrainConfig.workers,
                   help="loader threads (the config's default)")
    p.add_argument("--warmup", type=int, default=30, help="untimed steps before each timed window")
    p.add_argument("--steps", type=int, default=200, help="timed steps per point")
    p.add_argument("--budget", type=float, default=210, help="seconds after which no new point starts")
    p.set_defaults(threads=0)   # the GPU does the work; the CPU side keeps torch's default
    a = parse(p, argv)
    n_ids, per_id, size, mm = 200, 12, 48, (8192, 20)   # identities in all four splits; train1 gets 55 %
    width = 1.0
    if a.dry_run:   # a narrow ResNet: the CPU only proves the path
        a.device, a.model, a.res, a.identities, a.warmup, a.steps = "cpu", "resnet_w", "32,48", 8, 2, 5
        n_ids, per_id, size, mm, width = 40, 6, 40, (512, 3), 0.25
    if a.quick:   # the smoke test's: one resolution, one step per window
        a.res, a.warmup, a.steps = a.res.split(",")[0], 1, 1
    dev = resolve_device(a.device)
    resolutions = [int(r) for r in a.res.split(",")]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU (dry run)" if a.dry_run else "CPU"
    print(f"{name}: torch {torch.__version__}, native bf16: {amp_dtype(dev) == torch.bfloat16}, "
          f"{a.model}, batches of {a.identities} x {a.n_per_class}, {a.workers} loader threads, "
          f"{a.warmup} warm-up + {a.steps} timed steps per point", flush=True)
    mode_table = modes(dev)
    precisions = dict.fromkeys(m["precision"] for m in mode_table.values())
    measured = {p: matmul_peak(dev, p, *mm) for p in precisions}
    print("summary: matmul peak measured, " + ", ".join(f"{k} {tflops(v)}" for k, v in measured.items())
          + f" ({mm[0]}x{mm[0]}, {name})", flush=True)
    start, rows = time.perf_counter(), []
    with face_set(a.data, n_ids, per_id, size, val_pairs=100, test_pairs=10) as data, temp_dir() as work:
        for res in resolutions:
            for mode, m in mode_table.items():
                label = f"{a.model} {res} px, {mode}" + ("" if dev.type == "cuda" else " [CPU: fp32 NCHW]")
                if time.perf_counter() - start > a.budget:
                    print(f"summary: {label}: skipped, past the {a.budget:.0f} s budget", flush=True)
                    continue
                set_tf32(m["tf32"])
                config = TrainConfig(
                    train_path=str(Path(data) / "train1"), val_path=str(Path(data) / "val"),
                    max_val_pairs=100, cache_dir=str(work / "cache"), run_dir=str(work / "run"), resume=False,
                    model=a.model, width=width,
                    resolution=res, augment="flip", batch_size=a.identities, n_per_class=a.n_per_class,
                    workers=a.workers, device=str(dev), amp=m["amp"], channels_last=m["channels_last"])
                t = Trainer(config, log=lambda msg: None)
                flops = train_flops_per_image(config)
                batches = held_batches(t, 8)
                rates = {"pipeline": pipeline_rate(t, a.warmup, a.steps),
                         "in-memory": memory_rate(t, batches, a.warmup, a.steps)}
                t.loader.close()
                precision = m["precision"]
                spec, which = spec_peak(dev, precision)
                for feed, rate in rates.items():
                    used = flops * rate
                    mfu = []
                    if spec:
                        mfu.append(f"{100 * used / spec:.1f}% of {tflops(spec)} ({which} {precision} spec)")
                    mfu.append(f"{100 * used / measured[precision]:.1f}% of measured {precision} matmul")
                    print(f"summary: {label}, {feed}: {rate:.0f} img/s, {tflops(used)} "
                          f"({flops / 1e9:.2f} GFLOP/img), MFU {', '.join(mfu)}", flush=True)
                rows.append((res, mode, rates["pipeline"], rates["in-memory"]))
    print(f"\n{'res':>5}  {'mode':<22}{'pipeline img/s':>16}{'in-memory img/s':>17}{'ratio':>7}")
    for res, mode, pipe, mem in rows:
        print(f"{res:>5}  {mode:<22}{pipe:>16.0f}{mem:>17.0f}{pipe / mem:>7.2f}")
    print(f"points took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
