"""ResNet18 training images/s on a GPU: fp32 NCHW versus bf16 autocast + channels_last.

Each precision mode at each resolution is measured through the real pipeline
(``Trainer.train_epoch``) and from in-memory batches (see ``train_step.py``). The last line
is the speed-up of bf16 channels_last over fp32 NCHW through the pipeline at the largest
resolution. ``--device cpu --quick`` checks that it runs (on CPU both modes are fp32 NCHW).
"""
from __future__ import annotations

import sys

import torch

from common import device, face_set, parse, parser, ratio_line, temp_dir
from facenet.data import cache_size
from train_step import measure, train_config

MODES = {"fp32 NCHW": {"amp": False, "channels_last": False},
         "bf16 channels_last": {"amp": True, "channels_last": True}}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--res", default="112,224", help="comma-separated crop sizes")
    p.add_argument("--identities", type=int, default=64, help="identities per batch")
    p.add_argument("--n-per-class", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="loader threads")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians count")
    p.add_argument("--epochs", type=int, default=2, help="epochs per round and side")
    p.set_defaults(threads=0)   # the GPU does the work; the CPU side keeps torch's default
    a = parse(p, argv)
    dev = device(a.device)
    resolutions = [int(r) for r in a.res.split(",")]
    n_ids, per_id, width = 200, 16, 1.0   # identities in all four splits; train1 gets 55 %
    if a.quick:
        resolutions, n_ids, per_id, width = [32], 24, 6, 0.125
        a.model, a.identities, a.rounds, a.epochs = "resnet_w", 8, 1, 1
    if dev.type == "cuda":
        print(torch.cuda.get_device_name(dev), f"bf16 supported: {torch.cuda.is_bf16_supported()}")
    rows = {}
    with face_set(a.data, n_ids, per_id, cache_size(max(resolutions)), val_pairs=100, test_pairs=10) as data, \
            temp_dir() as work:   # one decoded cache per resolution, shared by both modes
        for res in resolutions:
            for mode, flags in MODES.items():
                config = train_config(data, work, model=a.model, width=width, resolution=res, augment="flip",
                                      batch_size=a.identities, n_per_class=a.n_per_class, workers=a.workers,
                                      device=str(dev), **flags)
                print(f"-- {a.model} at {res} px, {mode}", flush=True)
                rows[res, mode] = measure(config, a.rounds, a.epochs)
    print(f"\n{'res':>5}  {'mode':<20}{'pipeline img/s':>16}{'in-memory img/s':>17}{'ratio':>7}")
    for (res, mode), (pipe, mem, ratio) in rows.items():
        print(f"{res:>5}  {mode:<20}{pipe:>16.0f}{mem:>17.0f}{ratio:>7.2f}")
    res = resolutions[-1]
    fast, slow = rows[res, "bf16 channels_last"][0], rows[res, "fp32 NCHW"][0]
    ratio_line(fast / slow, f"bf16 channels_last {fast:.0f} img/s vs fp32 NCHW {slow:.0f} img/s, pipeline, {res} px")


if __name__ == "__main__":
    main(sys.argv[1:])
