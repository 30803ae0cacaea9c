"""``TrainConfig``: every knob of one training run, in one dataclass.

A run is fully described (and reproducible) by its config and seed: it is stored
as ``config.json`` in the run folder and on every Optuna trial.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, did_you_mean

PARAM_CAP = 11_500_000   # the course's cap on the embedding network (facenet.models.count_params counts it)


@dataclass
class TrainConfig:
    # --- data (course layout, see docs/DESIGN.md) ---
    train_path: str = "data/train1"          # one sub-folder per identity
    val_path: str = "data/val"               # root that val_list paths are relative to
    val_list: str = "val_pairs.csv"          # relative to val_path unless absolute
    resolution: int = 224                    # crop size; images are resized to res*256/224 first
    cache_dir: str = ""                      # decoded-image cache; "" = $FACESEARCH_CACHE, else ~/.cache/...
    cache_format: str = "auto"               # raw | jpeg | auto: raw when it fits the budget (facenet.data.cache)
    cache_budget_gb: float = 0.0             # most one cache may take; 0: $FACESEARCH_CACHE_BUDGET or free/2
    max_val_pairs: int = 0                   # 0 = all pairs
    max_identities: int = 0                  # a fixed subset of this many identities (0 = all): a cheap proxy
    # --- model ---
    model: str = "resnet18"
    width: float = 1.0                       # stage-width multiplier where the model has one
    block: str = "basic"                     # basic | bottleneck (resnet_w)
    depth: int = 18                          # 18 | 34 (resnet_w)
    n_out: int = 512                         # embedding size
    # --- loss ---
    loss: str = "softmax"
    scale: float = 30.0                      # margin losses: logit scale s
    margin: float = 0.3                      # ArcFace / CosFace m, triplet margin
    easy_margin: bool = False                # ArcFace easy-margin variant
    subcenters: int = 3                      # sub-center ArcFace k
    hard_rank: int = 10                      # triplet hard mining: top-k most similar negatives (<0: semi-hard)
    hard_prob: float = 0.5                   # probability of a hard negative
    loss_weight: float = 0.5                 # combined losses: weight of the first term
    # --- batches (course sampler: batch_size identities x n_per_class images) ---
    batch_size: int = 100
    n_per_class: int = 1
    max_img_per_cls: int = 500
    # --- optimisation ---
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.9
    nesterov: bool = False
    no_decay_norm_bias: bool = False         # exempt norm and bias parameters from weight decay
    scheduler: str = "step"
    lr_decay: float = 0.90                   # StepLR gamma
    step_size: int = 1                       # StepLR period in epochs
    t_max: int = 0                           # cosine period in epochs; 0 = epochs
    eta_min: float = 0.0
    t_0: int = 2                             # SGDR first period in epochs
    t_mult: int = 2
    warmup_epochs: float = 0.0               # linear warm-up, may be fractional
    epochs: int = 10
    patience: int = 0                        # early stop after this many epochs without val EER gain; 0 = off
    # --- augmentation ---
    augment: str = "baseline"                # preset or '+'-joined names, see facenet.data.augment
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    # --- runtime ---
    seed: int = 0
    device: str = "auto"                     # auto | cpu | cuda | cuda:N
    workers: int = 2                         # loader threads cutting crops ahead (0: in the training thread)
    amp: bool = True                         # autocast on CUDA (bf16 where supported, else fp16)
    channels_last: bool = True               # CUDA only
    compile: bool = False                    # torch.compile the model
    eval_batch: int = 256
    run_dir: str = "runs/train"              # facesearch train: a new dated folder under it unless named
    initial_model: str = ""                  # weights to start from (missing / mis-shaped keys skipped)
    resume: bool = True                      # resume from run_dir/last.pt when present

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return cls().replace(**values)

    @classmethod
    def from_file(cls, path: str | Path, overrides: list[str] | None = None) -> "TrainConfig":
        """Load YAML or JSON (JSON is YAML) and apply ``key=value`` overrides."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: {yaml_problem(e)}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of TrainConfig fields, got {type(values).__name__}")
        try:
            return cls.from_dict(values).override(overrides or [])
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def replace(self, **values: Any) -> "TrainConfig":
        """A copy with ``values`` coerced to each field's type; unknown keys fail."""
        return dataclasses.replace(self, **{k: coerce(k, v) for k, v in values.items()})

    def override(self, pairs: list[str]) -> "TrainConfig":
        values = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise ConfigError(f"--set {pair!r}: expected key=value")
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        return self.replace(**values)


FIELD_TYPES: dict[str, str] = {f.name: f.type for f in dataclasses.fields(TrainConfig)}   # "int", "float", ...


def yaml_problem(e: yaml.YAMLError) -> str:
    """One line for a YAML error: what and where (spec files and config files alike)."""
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark else ""
    return f"YAML syntax error{where}: {getattr(e, 'problem', None) or e}"


def coerce(key: str, value: Any) -> Any:
    """Coerce ``value`` to the declared type of field ``key`` (YAML gives ints for floats etc.)."""
    if key not in FIELD_TYPES:
        raise ConfigError(f"unknown TrainConfig field {key!r}{did_you_mean(key, FIELD_TYPES)}")
    kind = FIELD_TYPES[key]
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"TrainConfig field {key!r} expects {kind}, got {value!r}") from None
