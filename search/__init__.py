"""search: Optuna studies over facenet's trainer, for the command line and for notebooks.

The Python API (imported lazily, so ``import search`` stays cheap)::

    import search
    spec = search.load_spec("studies/losses.yaml")       # or a built-in study's name
    study = search.run_study(spec, workers=2)            # facesearch study run
    search.best_trials(spec.name)                        # top trials, 95 % intervals, within-noise verdicts
    search.trials_frame(spec.name)                       # every trial, a pandas DataFrame
    study.optimize(search.Objective(spec), n_trials=4)   # the objective, for your own Optuna loop
"""
from importlib import import_module

_EXPORTS = {
    "load_spec": "api", "load_study": "api", "run_study": "api", "best_trials": "api", "trials_frame": "api",
    "Objective": "run.objective", "StudySpec": "spec", "SpecError": "spec",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
