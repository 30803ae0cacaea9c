"""The plan file: phases in order (a built-in study's name or a spec file beside the plan), the GPU-hours,
each phase's weight in the sharing, the fitting floors, and the finishing steps.

```yaml
name: course
hours: 60
phases:
  - baseline                              # a study file beside this one, else the built-in study
  - {study: losses-proxy, weight: 2}      # weight: its share of the budget against the others' (default 1)
  - {study: losses, max_trials: 12}       # the fit grows a phase to at most this many trials
fit: {min_resolution: 64, min_identities: 200, min_epochs: 0.3, max_growth: 4}
calibration: {share: 0.02}                # at most this share of the hours calibrates a new device
finish: {study: augmentation, epochs: 10, finetune_on: train2, finetune_epochs: 5, test: PATH}
# reuse (default true): a retrain that would repeat the winner's run (same epochs and seed) starts from its checkpoints
```

Every mistake is a one-line ``SpecError`` naming the file and the key, as a study spec's are.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec.reader import Reader, expand, read_yaml
from ..spec.units import parse_duration

TOP_KEYS = ("name", "description", "hours", "phases", "fit", "calibration", "finish")
FIT_KEYS = ("min_resolution", "min_identities", "min_epochs", "max_growth")
FINISH_KEYS = ("study", "epochs", "finetune_on", "finetune_epochs", "test", "export", "report", "reuse")


@dataclass(frozen=True)
class PhaseEntry:
    name: str                 # the study's name (its spec's ``name:``)
    path: Path                # its spec file
    weight: float = 1.0
    max_trials: int | None = None   # the most trials the fit grows it to (default: fit.max_growth x its own)


@dataclass(frozen=True)
class FitRules:
    """Floors the fit never goes below (see ``search.plan.fit``)."""

    min_resolution: int = 64          # a proxy phase's resolution is cut to this at most
    min_identities: int = 200         # ... and its identities
    min_epochs: float = 0.3           # a phase keeps at least this share of its epochs (and 1)
    max_growth: float = 4.0           # a budget with room grows a phase's trials to at most this x its own


@dataclass(frozen=True)
class FinishSpec:
    study: str | None = None          # whose winner is retrained (default: the last phase)
    epochs: int | None = None         # retrain epochs (default: the trial's)
    finetune_on: str | None = None    # then fine-tune on this set (e.g. train2)
    finetune_epochs: int | None = None
    test: str | None = None           # the test pair list (default: test/test_pairs.csv beside the val folder)
    export: bool = True
    report: bool = True
    reuse: bool = True                # the winner's own run stands for a retrain that would repeat it


@dataclass(frozen=True)
class PlanSpec:
    name: str
    phases: tuple[PhaseEntry, ...]
    hours: float | None = None
    description: str = ""
    fit: FitRules = field(default_factory=FitRules)
    calibration_share: float = 0.02
    finish: FinishSpec = field(default_factory=FinishSpec)
    source: Path | None = None
    signature: str = ""               # a hash of the file as written: one plan per name in a storage

    def phase(self, name: str) -> PhaseEntry:
        return next(p for p in self.phases if p.name == name)

    @property
    def finish_study(self) -> str:
        return self.finish.study or self.phases[-1].name


def _phase_path(r: Reader, raw: str, path: str, folder: Path) -> Path:
    """A spec file relative to the plan's folder, or (a bare name) the file beside it, else the built-in study."""
    from ..builtin import UnknownStudy, plans_dir, resolve_study

    candidate = folder / raw
    shipped = folder.resolve() == plans_dir().resolve()   # a shipped plan's phases are the built-in studies
    for option in () if shipped else (candidate, candidate.with_name(candidate.name + ".yaml")):
        if option.is_file():
            return option
    try:
        return resolve_study(raw)
    except UnknownStudy as e:
        r.fail(path, f"{raw!r}: no spec file beside the plan nor {str(e).split('; ', 1)[1]}")


def _phases(r: Reader, raw: Any, folder: Path) -> tuple[PhaseEntry, ...]:
    from ..spec import load_spec

    items = r.expect(raw, "phases", "a list")
    if not items:
        r.fail("phases", "needs at least one phase")
    out: list[PhaseEntry] = []
    for i, item in enumerate(items):
        path = f"phases[{i}]"
        if isinstance(item, str):
            item = {"study": item}
        item = r.mapping(item, path, ("study", "weight", "max_trials"), required=("study",))
        study = r.expect(item["study"], f"{path}.study", "a string")
        weight = r.expect(item.get("weight", 1), f"{path}.weight", "a number")
        if weight <= 0:
            r.fail(f"{path}.weight", f"must be > 0, got {weight}")
        most = None if item.get("max_trials") is None else r.int_at_least(item["max_trials"], f"{path}.max_trials")
        spec = load_spec(_phase_path(r, study, f"{path}.study", folder))
        if any(p.name == spec.name for p in out):
            r.fail(f"{path}.study", f"phase {spec.name!r} is listed twice")
        earlier = spec.from_.study if spec.from_ else None
        later = [str(it if isinstance(it, str) else it.get("study")) for it in items[i + 1:]]
        if earlier is not None and earlier in later:
            r.fail(f"{path}.study", f"{spec.name!r} takes from: {earlier!r}, which comes after it; list "
                                    f"{earlier!r} first")
        out.append(PhaseEntry(spec.name, spec.source, float(weight), most))
    return tuple(out)


def _hours(r: Reader, raw: Any, path: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if not 0 < raw < float("inf"):
            r.fail(path, f"must be > 0 GPU-hours, got {raw}")
        return float(raw)
    return parse_duration(raw) / 3600


def _share(r: Reader, raw: Any, path: str) -> float:
    value = r.expect(raw, path, "a number")
    if not 0 <= value < 1:
        r.fail(path, f"must be a share in [0, 1), got {value}")
    return float(value)


def _fit(r: Reader, raw: Any) -> FitRules:
    raw = r.mapping(raw, "fit", FIT_KEYS)
    rules = FitRules()
    values = {k: r.int_at_least(raw[k], f"fit.{k}") for k in ("min_resolution", "min_identities") if k in raw}
    if "min_epochs" in raw:
        value = r.expect(raw["min_epochs"], "fit.min_epochs", "a number")
        if not 0 < value <= 1:
            r.fail("fit.min_epochs", f"a share of each phase's epochs in (0, 1], got {value}")
        values["min_epochs"] = float(value)
    if "max_growth" in raw:
        value = r.expect(raw["max_growth"], "fit.max_growth", "a number")
        if not 1 <= value < float("inf"):
            r.fail("fit.max_growth", f"a factor of each phase's own trials, at least 1 (1: never grow), got {value}")
        values["max_growth"] = float(value)
    return FitRules(**{**rules.__dict__, **values})


def _finish(r: Reader, raw: Any, names: list[str]) -> FinishSpec:
    raw = r.mapping(raw, "finish", FINISH_KEYS)
    study = raw.get("study")
    if study is not None and study not in names:
        r.fail("finish.study", f"{study!r} is not a phase of this plan (phases: {', '.join(names)})")
    ints = {k: r.int_at_least(raw[k], f"finish.{k}") for k in ("epochs", "finetune_epochs") if raw.get(k) is not None}
    strings = {k: r.expect(raw[k], f"finish.{k}", "a string") for k in ("finetune_on", "test")
               if raw.get(k) is not None}
    if "test" in strings:
        strings["test"] = expand(r, strings["test"], "finish.test")
    flags = {k: r.expect(raw[k], f"finish.{k}", "true or false") for k in ("export", "report", "reuse") if k in raw}
    return FinishSpec(study=study, **ints, **strings, **flags)


def _name(r: Reader, raw: Any) -> str:
    from ..spec.parse import NAME

    name = r.expect(raw["name"], "name", "a string")
    if not NAME.fullmatch(name):
        r.fail("name", f"{name!r}: use letters, digits, '_', '.' and '-' only")
    return name


def plan_name(path: str | Path) -> str:
    """Only the plan's name (``plan status`` needs no phase, data or environment variable)."""
    r = Reader(path)
    return _name(r, r.mapping(read_yaml(path), "", TOP_KEYS, required=("name", "phases")))


def load_plan(path: str | Path) -> PlanSpec:
    """A validated ``PlanSpec`` from a plan file (phases loaded and checked as study specs)."""
    path = Path(path)
    raw = read_yaml(path)
    text = path.read_text()
    r = Reader(path)
    raw = r.mapping(raw, "", TOP_KEYS, required=("name", "phases"))
    name = _name(r, raw)
    phases = _phases(r, raw["phases"], path.parent)
    calibration = r.mapping(raw.get("calibration"), "calibration", ("share",))
    return PlanSpec(
        name=name, phases=phases, hours=_hours(r, raw.get("hours"), "hours"),
        description=" ".join(r.expect(raw.get("description") or "", "description", "a string").split()),
        fit=_fit(r, raw.get("fit")),
        calibration_share=_share(r, calibration.get("share", 0.02), "calibration.share"),
        finish=_finish(r, raw.get("finish"), [p.name for p in phases]), source=path,
        signature=hashlib.sha256(text.encode()).hexdigest()[:16])
