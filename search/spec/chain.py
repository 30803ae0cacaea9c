"""``from:``: a phase that starts from the best trial of an earlier one in the same storage, or that
re-runs the best ``top`` trials of a cheaper proxy phase at its own (full) fidelity."""
from __future__ import annotations

import dataclasses

import optuna
from optuna.trial import TrialState

from ..record import stored_spec
from .parse import validate
from .reader import Reader
from .schema import Promotion, StudySpec


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
        names = ", ".join(sorted(n for n in existing if not n.startswith("facesearch:"))) or "none"
        r.fail("from.study", f"no study named {name!r} in this storage (studies: {names}); run that phase first")
    earlier = optuna.load_study(study_name=name, storage=storage)
    trials = earlier.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        r.fail("from.study", f"study {name!r} has no complete trial yet; run it first")
    if spec.from_.top is not None:
        return _promote(r, spec, earlier, trials)
    try:
        best = earlier.best_trial
    except ValueError as e:
        r.fail("from.study", f"study {name!r}: {e}")
    before = stored_spec(earlier).get("inherited", {})
    available = {**before, **best.params}
    known = set(before).union(*(t.params for t in trials))
    listed = spec.from_.params or ()
    for i, key in enumerate(listed):
        if key not in known:
            r.fail(f"from.params[{i}]", f"{key!r} is not a param of study {name!r} "
                                        f"(its params: {', '.join(sorted(known))})")
    paths = {key: f"from.params[{i}]" for i, key in enumerate(listed)}
    inherited = {key: r.field_value(r.field_name(key, paths.get(key, "from")), value, paths.get(key, "from"))
                 for key, value in spec.takes_from(available).items()}
    enqueue = [p for p in ({k: v for k, v in point.items() if k not in inherited} for point in spec.enqueue) if p]
    out = dataclasses.replace(spec, fixed={**inherited, **spec.fixed}, inherited=inherited, enqueue=enqueue,
                              space={k: p for k, p in spec.space.items() if k not in inherited})
    validate(r, out, set())
    return out


def ranked(trials: list) -> list:
    """Complete trials best first (ties: the earlier trial), each set of params once."""
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                  key=lambda t: (t.value, t.number))
    seen, out = set(), []
    for t in done:
        key = tuple(sorted((k, repr(v)) for k, v in t.params.items()))
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def _promote(r: Reader, spec: StudySpec, earlier: optuna.Study, trials: list) -> StudySpec:
    """``from: {study: X, top: k}``: X's best k trials queued here, with this spec's ``fixed`` (the full
    fidelity) over them; what X inherited itself comes along as fixed, as with plain ``from:``."""
    name, k = earlier.study_name, spec.from_.top
    inherited = {key: r.field_value(r.field_name(key, "from"), value, "from")
                 for key, value in spec.takes_from(stored_spec(earlier).get("inherited", {})).items()}
    promoted = []
    for t in ranked(trials)[:k]:
        point = {}
        for key, value in t.params.items():
            if key in spec.fixed or key in inherited:
                continue   # this phase's fidelity (resolution, epochs, identities...) wins
            if key not in spec.space:
                r.fail("from.top", f"{key!r} (searched in study {name!r}) is neither in this spec's space "
                                   f"nor in fixed; add it to space as {name!r} has it, or fix it")
            if not spec.space[key].contains(value):
                r.fail(f"space.{key}", f"{value!r} of trial {t.number} of study {name!r} is outside this "
                                       f"space ({spec.space[key].describe()}); widen it to promote it")
            point[key] = value
        promoted.append(Promotion(point, {"study": name, "trial": t.number, "value": t.value}))
    n_trials = len(promoted) if spec.n_trials == k else spec.n_trials   # fewer complete trials than k
    out = dataclasses.replace(spec, fixed={**inherited, **spec.fixed}, inherited=inherited,
                              promoted=tuple(promoted), n_trials=n_trials)
    validate(r, out, set())
    return out
