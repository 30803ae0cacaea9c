"""``from:``: a phase that starts from the best trial of an earlier one in the same storage."""
from __future__ import annotations

import dataclasses

import optuna
from optuna.trial import TrialState

from ..record import stored_spec
from .parse import validate
from .reader import Reader
from .schema import StudySpec


def apply_from(spec: StudySpec, storage) -> StudySpec:
    """Fix the ``from:`` params to the best complete trial of the earlier study in ``storage``.

    The earlier study's own inherited values come along, so a chain of phases carries every
    decision forward; a listed param absent from the best trial (inactive there) stays as it is.
    Listed params leave this spec's space; with no list (every param), what this spec searches or
    fixes itself wins, so a later phase can search again what an earlier one settled.
    """
    if spec.from_ is None:
        return spec
    r = Reader(spec.source)
    name = spec.from_.study
    existing = optuna.get_all_study_names(storage)
    if name not in existing:
        names = ", ".join(sorted(existing)) or "none"
        r.fail("from.study", f"no study named {name!r} in this storage (studies: {names}); run that phase first")
    earlier = optuna.load_study(study_name=name, storage=storage)
    trials = earlier.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        r.fail("from.study", f"study {name!r} has no complete trial yet; run it first")
    try:
        best = earlier.best_trial
    except ValueError as e:
        r.fail("from.study", f"study {name!r}: {e}")
    before = stored_spec(earlier).get("inherited", {})
    available = {**before, **best.params}
    known = set(before).union(*(t.params for t in trials))
    listed = spec.from_.params is not None
    inherited = {}
    for i, key in enumerate(spec.from_.params if listed else available):
        path = f"from.params[{i}]" if listed else "from"
        if key not in known:
            r.fail(path, f"{key!r} is not a param of study {name!r} (its params: {', '.join(sorted(known))})")
        if key in available and (listed or key not in spec.space and key not in spec.fixed):
            inherited[key] = r.field_value(r.field_name(key, path), available[key], path)
    enqueue = [p for p in ({k: v for k, v in point.items() if k not in inherited} for point in spec.enqueue) if p]
    out = dataclasses.replace(spec, fixed={**inherited, **spec.fixed}, inherited=inherited, enqueue=enqueue,
                              space={k: p for k, p in spec.space.items() if k not in inherited})
    validate(r, out, set())
    return out
