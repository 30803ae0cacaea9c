"""The Python API for notebooks and scripts (``from search import ...``): what the commands do, as calls.

Storages are named as on the command line (``None``: ``$FACESEARCH_STORAGE``, else
``runs/facesearch.journal``); trial run folders go where ``facesearch study run`` puts them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import optuna

from .spec import StudySpec


def load_spec(spec: str | Path) -> StudySpec:
    """A validated study spec from a YAML file, or a built-in study's name (``facesearch studies --builtin``).

    Every mistake raises ``SpecError`` with one line naming the file and the field::

        >>> from search import load_spec
        >>> spec = load_spec("quickstart")
        >>> spec.name, spec.n_trials, sorted(spec.space)[:2]
        ('quickstart', 12, ['loss', 'lr'])
    """
    from .builtin import resolve_study
    from .spec import load_spec as load

    return load(resolve_study(spec))


def load_study(name: str, storage: str | None = None) -> optuna.Study:
    """The Optuna study ``name`` in ``storage``: everything Optuna offers (plots, ``trials_dataframe``) works.

        >>> study = load_study("quickstart", "runs/facesearch.journal")    # doctest: +SKIP
        >>> optuna.visualization.plot_param_importances(study)             # doctest: +SKIP
    """
    from .storage import load_study as load, open_storage

    return load(name, open_storage(storage), storage)


def run_study(spec: StudySpec | str | Path, workers: int = 1, storage: str | None = None, n_trials: int | None = None,
              timeout: float | None = None, device: str = "auto", gpus: list[int] | None = None,
              tracking: dict[str, str] | None = None, log: Callable[[str], None] = print) -> optuna.Study:
    """Run a study to the end of its budget (``facesearch study run``) and return it.

    ``workers=1`` runs the trials in this process (a spec made in memory is fine); more workers (or ``gpus``,
    one worker per GPU) run as processes that read the spec's file. ``tracking`` replaces the spec's
    ``tracking:`` (``{"mlflow": "sqlite:///mlflow.db", "wandb": "PROJECT", "tensorboard": "tb"}``). Every
    preflight check runs first: a mistake raises a ``UserError`` before any trial::

        >>> study = run_study(load_spec("quickstart"), workers=2, n_trials=4)    # doctest: +SKIP
        >>> study.best_value                                                     # doctest: +SKIP
    """
    from .run.launch import run_study as launch
    from .run.preflight import preflight_study
    from .run.tracked import end_study, reachable_targets
    from .run.worker import run_worker
    from .storage import runs_root
    from .track.registry import merge_targets

    spec = spec if isinstance(spec, StudySpec) else load_spec(spec)
    spec = preflight_study(spec, storage, device, gpus, warn=log)
    targets = merge_targets(tracking if tracking is not None else spec.tracking, {})
    spec = dataclasses.replace(spec, tracking=reachable_targets(spec, targets, runs_root(storage), log))
    if workers == 1 and not gpus:
        run_worker(spec, storage, 0, n_trials, timeout, device, log)
        study = load_study(spec.name, storage)
    else:
        if spec.source is None:
            raise ValueError("run_study with several workers needs a spec loaded from a file (the workers read it)")
        from .view.status import console

        study, code = launch(spec, spec.source, storage, workers, gpus, n_trials, timeout, console(), live=False)
        if code:
            raise RuntimeError(f"study {spec.name} stopped (exit status {code}); run_study again resumes it")
    end_study(spec, study, runs_root(storage), log)
    return study


def best_trials(name: str, storage: str | None = None, top: int = 5) -> list[dict[str, Any]]:
    """The ``top`` complete trials, best first, with 95 % intervals and whether the val list can tell each from
    the best (``facesearch best --format json``'s ``top``)::

        >>> for t in best_trials("quickstart", top=3):                     # doctest: +SKIP
        ...     print(t["number"], t["value"], t["val_eer_ci"], t["verdict"])
        4 8.5 [6.1, 11.2] best
        7 9.1 [6.6, 11.9] within noise

    Each dict holds ``rank``, ``number``, ``value`` (val EER %), ``val_eer_ci`` ([low, high]), ``params``,
    ``param_count``, ``verdict`` (best, within noise, worse, no interval) and ``vs_best`` (the paired
    difference to the best with its interval).
    """
    from .view.best import best_json

    return best_json(load_study(name, storage), top)["top"]


def trials_frame(name: str, storage: str | None = None):
    """Every trial as a row: number, state, best val EER with its interval, epochs, parameter count, time,
    device, each param, and the prune rule or failure. A ``pandas.DataFrame`` when pandas is installed
    (``pip install 'facesearch[notebook]'``), else a list of dicts with the same keys::

        >>> df = trials_frame("quickstart")                                  # doctest: +SKIP
        >>> df[df.state == "COMPLETE"].sort_values("val_eer").head()         # doctest: +SKIP
    """
    from .view.tables import trials_table

    table = trials_table(load_study(name, storage).get_trials(deepcopy=False))
    rows = [dict(zip(table.columns, row)) for row in table.rows]
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows, columns=table.columns)
