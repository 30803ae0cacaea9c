"""A study's bookkeeping: creating it from a spec (or refusing a different space under its name),
counting its trials against the budget, and keeping the disk bounded."""
from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..record import DESCRIPTION, METRIC, PROMOTED_FROM, SIGNATURE, SPEC, origin_number
from ..spec import StudySpec
from ..storage import StorageError
from .folders import WAIT_FOR_STAMP, stamp_new_study, study_folder, study_stamp, trial_dir


def prepare_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study (queueing promoted trials and the spec's known-good points) or load it; refuse a
    different space."""
    signature = spec.space_signature()
    # look before creating: a journal records a failed create too, and an existing study must stay untouched
    if spec.name in optuna.get_all_study_names(storage):
        return _existing(spec, storage, signature)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction="minimize")
    except optuna.exceptions.DuplicatedStudyError:   # another worker created it a moment ago
        return _existing(spec, storage, signature)
    stamp_new_study(study)   # first: the key of its run folders (another worker waits for it)
    study.set_metric_names([METRIC])   # how optuna-dashboard and plots name the objective
    study.set_user_attr(SIGNATURE, signature)
    study.set_user_attr(SPEC, spec.to_json())
    study.set_user_attr(DESCRIPTION, spec.description or "")
    for promotion in spec.promoted:   # from: {top: k}: the proxy's best, first, each with its proxy's record
        study.enqueue_trial(promotion.params, user_attrs={PROMOTED_FROM: promotion.source})
    for point in spec.enqueue:
        study.enqueue_trial(point, skip_if_exists=True)
    return study


def _existing(spec: StudySpec, storage: optuna.storages.BaseStorage, signature: str) -> optuna.Study:
    study = optuna.load_study(study_name=spec.name, storage=storage)
    stored = study.user_attrs.get(SIGNATURE)
    if stored is not None and stored != signature:
        raise StorageError(f"study {spec.name!r} already exists in this storage with a different search space; "
                           f"give the spec another name: or use another --storage")
    study_stamp(study, wait=WAIT_FOR_STAMP)   # its creator stamps it right after creating it
    return study


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def finished_or_running(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))


def over_budget(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Trial numbers are handed out atomically, so ranking by number settles races between workers:
    a trial runs only if fewer than ``n_trials`` finished or running trials came before it."""
    before = [t for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
              if t.number < number]
    return len(before) >= n_trials


def prune_checkpoints(study: optuna.Study, runs: Path, keep: int) -> list[int]:
    """Bounded disk: delete the checkpoints of finished trials outside the study's best ``keep``.

    Failed trials keep theirs (a retry resumes from it), running ones are still writing.
    Returns the trial numbers whose checkpoints were removed.
    """
    done = study.get_trials(deepcopy=False, states=FINISHED)
    ranked = sorted((t for t in done if t.state == TrialState.COMPLETE and t.value is not None),
                    key=lambda t: t.value)
    keep_runs = {origin_number(t) for t in ranked[:keep]}
    folder = study_folder(runs, study)
    removed = []
    for t in done:
        number = origin_number(t)
        if number in keep_runs:
            continue
        files = list(trial_dir(folder, number).glob("*.pt"))
        for f in files:
            f.unlink(missing_ok=True)
        if files:
            removed.append(t.number)
    return removed
