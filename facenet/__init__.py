"""facenet: the face-embedding trainer (knows nothing of Optuna).

Names are imported lazily so that ``import facenet.config`` (and the CLI's start-up)
does not pay for torch and every backbone.
"""
from importlib import import_module

_EXPORTS = {
    "TrainConfig": "config", "PARAM_CAP": "config", "feasibility": "runnable",
    "fit": "train", "EpochResult": "train", "RunResult": "train",
    "ConfigError": "errors", "NonFiniteLoss": "errors", "DataError": "errors", "UserError": "errors",
    "build_model": "models", "count_params": "models",
    "EerInterval": "eval.stats", "ScoredPairs": "eval.stats", "eer_interval": "eval.stats",
    "compare_eers": "eval.stats",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'facenet' has no attribute {name!r}")
