"""``facesearch data check``: what a data set holds, what is wrong with it, and the disk its caches and
checkpoints will take, before a build or a study starts.

Images are probed, not decoded: the header gives the size, and a JPEG whose end-of-image marker is
missing is counted unreadable (the usual damage: a truncated copy). The cache build decodes every
file and skips what fails; the jpeg size is projected from a sample encoded as the build does.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import TrainConfig
from ..errors import DataError, UserError
from ..units import fmt_size as gb
from .cache import FORMATS, CacheSpec, cache_size, free_bytes
from .folders import IMAGE_EXTS, IdentityFolder, PairList

SAMPLE = 32                  # images encoded per set and size to project the jpeg bytes
OPTIMIZER_SLOTS = {"adam": 2, "adamw": 2, "radam": 2, "sgd": 1}   # state tensors per parameter


@dataclass
class DataReport:
    rows: list[tuple[str, str, str]] = field(default_factory=list)   # (set, check, value)
    problems: list[str] = field(default_factory=list)                # each also a row
    unusable: str = ""           # the first problem that stops training or scoring

    def add(self, where: str, check: str, value: str) -> None:
        self.rows.append((where, check, value))

    def problem(self, where: str, message: str, fatal: bool = False) -> None:
        self.problems.append(message)
        self.add(where, "PROBLEM" if fatal else "warning", message)
        if fatal and not self.unusable:
            self.unusable = message

    def raise_if_unusable(self) -> None:
        if self.unusable:
            raise DataError(self.unusable)


# ---------------------------------------------------------------- finding the sets
def _has_images(folder: Path, limit: int = 20) -> bool:
    """Whether one of the first ``limit`` sub-folders holds an image file (a training folder's layout)."""
    subs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")][:limit]
    return any(f.suffix.lower() in IMAGE_EXTS for d in subs for f in d.iterdir()) or bool(subs) and all(
        not any(d.iterdir()) for d in subs)


def find_sets(root: Path) -> tuple[list[Path], list[Path]]:
    """(training folders, pair lists) at ``root``: itself if it is one, else its sub-folders."""
    def classify(d: Path) -> tuple[list[Path], list[Path]]:
        lists = sorted(d.glob("*.csv"))
        if lists:
            return [], lists
        return ([d], []) if _has_images(d) else ([], [])

    train, pairs = classify(root)
    if train or pairs:
        return train, pairs
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        t, p = classify(d)
        train += t
        pairs += p
    return train, pairs


# ---------------------------------------------------------------- probing images
def probe(path: Path) -> int:
    """The shorter side of the image at ``path``, or -1 if it cannot be read."""
    try:
        with Image.open(path) as im:
            side = min(im.size)
            if im.format == "JPEG":
                with open(path, "rb") as f:
                    f.seek(max(0, os.fstat(f.fileno()).st_size - 64))
                    if b"\xff\xd9" not in f.read():   # no end-of-image marker: truncated
                        return -1
            elif im.format == "PNG":
                im.verify()   # chunk checksums, the whole file
            return side
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return -1


def probe_all(root: Path, paths: Sequence[str], threads: int) -> np.ndarray:
    with ThreadPoolExecutor(threads) as pool:
        return np.fromiter(pool.map(lambda p: probe(root / p), paths, chunksize=256), np.int32, len(paths))


def _spread(n: int, k: int) -> np.ndarray:
    if not n:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


# ---------------------------------------------------------------- checkpoints
def checkpoint_bytes(config: TrainConfig, n_classes: int) -> int:
    """Bytes a kept trial holds: best.pt (the model) + last.pt (model, loss, optimizer state), in fp32."""
    import torch

    from ..losses import build_loss
    from ..models import _SkipMetaInit, build_model

    with torch.device("meta"), _SkipMetaInit():
        model, loss = build_model(config), build_loss(config, n_classes)

    def tensors(m: torch.nn.Module) -> int:
        return sum(t.numel() for t in m.state_dict().values())

    trainable = sum(p.numel() for m in (model, loss) for p in m.parameters() if p.requires_grad)
    slots = OPTIMIZER_SLOTS.get(config.optimizer, 2) if config.optimizer != "sgd" or config.momentum else 0
    return 4 * (tensors(model) + tensors(model) + tensors(loss) + slots * trainable)


# ---------------------------------------------------------------- the check
def check_data(root: str | Path, resolutions: Sequence[int] = (224,), cache: CacheSpec = CacheSpec(), *,
               keep_checkpoints: int = 3, config: TrainConfig | None = None, threads: int = 0) -> DataReport:
    """Every training folder and pair list at ``root``; projected caches at each of ``resolutions``, in
    the format ``cache`` would choose."""
    root, report = Path(root), DataReport()
    config = config or TrainConfig()
    threads = threads or min(16, 4 * (os.cpu_count() or 1))   # mostly waiting on file reads
    if not root.is_dir():
        report.problem(str(root), f"{root}: folder does not exist", fatal=True)
        return report
    train, lists = find_sets(root)
    if not train and not lists:
        report.problem(str(root), f"{root}: no training folder (identity sub-folders of images) and no "
                                  f"pair list (*.csv) found", fatal=True)
        return report
    sizes = {r: cache_size(r) for r in sorted(set(resolutions))}   # crop -> the size the cache stores
    projected: dict[tuple[int, str], float] = {}   # (size, format) -> bytes, over every set
    folder = cache.folder(train[0] if train else lists[0].parent)
    n_classes = 0
    for d in train:
        name = str(d.relative_to(root)) if d != root else d.name
        try:
            folder_set = IdentityFolder.scan(d)
        except UserError as e:
            report.problem(name, str(e), fatal=True)
            continue
        counts = np.bincount(folder_set.labels)
        n_classes = max(n_classes, len(counts))
        report.add(name, "identities", f"{len(counts):,}")
        report.add(name, "images", f"{len(folder_set.paths):,}")
        report.add(name, "images per identity", f"min {counts.min():,} / median {np.median(counts):,.0f} / "
                                                f"max {counts.max():,}")
        _images(report, name, d, folder_set.paths, sizes, projected, folder, cache, threads, fatal=False)
    for pair_file in lists:
        name = str(pair_file.relative_to(root)) if pair_file.parent != root else pair_file.name
        try:
            pairs = PairList.read(pair_file.parent, pair_file.name)
        except UserError as e:
            report.problem(name, str(e), fatal=True)
            continue
        same = int(pairs.labels.sum())
        report.add(name, "pairs", f"{len(pairs):,} ({same:,} same person, {len(pairs) - same:,} different)")
        report.add(name, "unique images", f"{len(pairs.images):,} (each embedded once)")
        try:
            pairs.check_both_labels(pair_file)
        except DataError as e:   # an error for a val list; a test list may carry dummy labels
            dummy = pair_file.name.startswith("test")
            report.problem(name, f"{e}{' (fine for a test list with dummy labels)' if dummy else ''}", fatal=not dummy)
        repeated, example = pairs.duplicates()
        report.add(name, "duplicate pairs", f"{repeated:,}")
        if repeated:
            report.problem(name, f"{pair_file}: {repeated} pair(s) repeat an earlier pair of the same two images "
                                 f"(first: {example[0]},{example[1]}); each counts again in the EER: remove them")
        _images(report, name, pair_file.parent, pairs.images, sizes, projected, folder, cache, threads,
                fatal=True)
    _disk(report, sizes, projected, folder, cache, keep_checkpoints, config, n_classes)
    return report


def _images(report: DataReport, name: str, root: Path, paths: Sequence[str], sizes: dict[int, int],
            projected: dict, folder: Path, cache: CacheSpec, threads: int, fatal: bool) -> None:
    sides = probe_all(root, paths, threads)
    bad = np.flatnonzero(sides < 0)
    good = sides[sides >= 0]
    if len(good):
        small = int((good < max(sizes.values())).sum())
        report.add(name, "image size (shorter side)", f"min {good.min()} / median {np.median(good):.0f} / "
                                                      f"max {good.max()} px"
                   + (f"; {small:,} below {max(sizes.values())} px are upscaled" if small else ""))
    report.add(name, "unreadable files", f"{len(bad):,}")
    if len(bad):
        shown = ", ".join(str(root / paths[i]) for i in bad[:3]) + (" ..." if len(bad) > 3 else "")
        if fatal:
            report.problem(name, f"{len(bad)} unreadable image(s) in {root}: {shown}; replace them or drop "
                                 f"their pairs", fatal=True)
        elif len(good) == 0:
            report.problem(name, f"{root}: no readable image at all ({shown})", fatal=True)
        else:
            report.problem(name, f"{len(bad)} unreadable image(s) ({shown}); training skips them")
    sample = [root / paths[i] for i in np.flatnonzero(sides >= 0)[_spread(len(good), SAMPLE)]]
    for res, size in sizes.items():
        total = {fmt: (FORMATS.get(fmt).bytes_per_image(size, sample) if sample else 0.0) * len(paths)
                 for fmt in FORMATS}
        auto = cache.choose(len(paths), size, folder)
        total["auto"] = total[auto]
        for fmt, n in total.items():
            projected[size, fmt] = projected.get((size, fmt), 0.0) + n
        cells = ", ".join(f"{fmt} {'~' if fmt != 'raw' else ''}{gb(total[fmt])}" for fmt in FORMATS)
        chosen = "auto takes" if cache.format == "auto" else "cache_format"
        report.add(name, f"cache for {res} px ({size} px stored)", f"{cells}; {chosen} {auto}")


def _disk(report: DataReport, sizes: dict[int, int], projected: dict, folder: Path, cache: CacheSpec,
          keep_checkpoints: int, config: TrainConfig, n_classes: int) -> None:
    free, budget = free_bytes(folder), cache.budget_bytes(folder)
    report.add("disk", "cache folder", str(folder))
    report.add("disk", "free", f"{gb(free)}; budget per cache {gb(budget)}")
    for res, size in sizes.items():
        report.add("all sets", f"cache for {res} px",
                   ", ".join(f"{fmt} {gb(projected.get((size, fmt), 0.0))}" for fmt in (*FORMATS, "auto")))
    per_trial = checkpoint_bytes(config, max(n_classes, 1)) if n_classes else 0
    kept = keep_checkpoints * per_trial
    report.add("disk", "checkpoints kept", f"{keep_checkpoints} x {gb(per_trial)} ({config.model}, n_out "
                                           f"{config.n_out}, {config.loss}, {config.optimizer}) = {gb(kept)}")
    need = sum(projected.get((s, "auto"), 0.0) for s in set(sizes.values())) + kept
    verdict = "fits" if need <= free else "does NOT fit"
    report.add("disk", "projected total",
               f"caches (auto, every size) + checkpoints = {gb(need)}: {verdict} in {gb(free)} free")
    if need > free:
        report.problem("disk", f"the caches and checkpoints need {gb(need)} but {gb(free)} is free at "
                               f"{folder}; set a smaller cache_budget_gb (jpeg caches), fewer resolutions or "
                               f"keep_checkpoints")
