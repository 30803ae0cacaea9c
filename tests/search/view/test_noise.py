"""Honest rankings on a case with a known answer: two trials whose saved val scores are identical
cannot be told apart, a clearly weaker one is worse, and trials whose score files are gone are
compared from their stored intervals (and say so) -- in ``best``, its --json, ``study status --json``
and the EER-by-choice verdict."""
from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from facenet.eval.evaluate import eer
from facenet.eval.stats import ScoredPairs
from search.record import VAL_EER_CI, VAL_SCORES
from search.storage import open_storage
from search.view.choices import by_choice
from search.view.noise import PAIRED, UNPAIRED, rank_top, within_noise_of_best
from tests.search.cli.test_cli_errors import cli

LOSS = CategoricalDistribution(["arcface", "cosface", "softmax", "triplet_hard", "contrastive"])


def val_list(seed: int = 0, n_ids: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, identities and a per-identity random effect of a simulated list: 5 genuine pairs per
    identity, 400 impostor pairs between different identities."""
    rng = np.random.default_rng(seed)
    gen = np.repeat(np.arange(n_ids), 5)
    a = rng.integers(0, n_ids, 400)
    b = (a + rng.integers(1, n_ids, 400)) % n_ids
    left, right = np.r_[gen, a], np.r_[gen, b]
    labels = np.r_[np.ones(len(gen), int), np.zeros(400, int)]
    return labels, left, right, rng.normal(0, 0.4, n_ids)


def scores(separation: float, seed: int) -> np.ndarray:
    labels, left, right, effect = val_list()
    rng = np.random.default_rng(seed)
    return separation * labels + effect[left] + effect[right] + rng.normal(size=len(labels))


@pytest.fixture
def ranked_study(tmp_path) -> tuple[str, dict[str, int]]:
    """Trials: ``twin_a`` and ``twin_b`` with identical saved scores (the best two), ``weak`` clearly worse,
    ``close_gone`` a little worse and ``weak_gone`` clearly worse, both with their score files deleted."""
    labels, left, right, _ = val_list()
    good = scores(2.5, 1)
    close = good + np.random.default_rng(7).normal(0, 0.15, len(good))
    assert eer(labels, close) > eer(labels, good)            # the seeds give the intended order
    kinds = {"twin_a": ("arcface", good), "twin_b": ("cosface", good.copy()),
             "weak": ("softmax", scores(0.6, 2)), "close_gone": ("triplet_hard", close),
             "weak_gone": ("contrastive", scores(0.5, 3))}
    url = str(tmp_path / "s.journal")
    study = optuna.create_study(study_name="ranked", storage=open_storage(url))
    numbers = {}
    for name, (loss, s) in kinds.items():
        scored = ScoredPairs(labels, s, left, right)
        path = tmp_path / f"{name}.npz"
        scored.save(path)
        iv = scored.interval()
        study.add_trial(create_trial(value=iv.eer, params={"loss": loss}, distributions={"loss": LOSS},
                                     user_attrs={"config": {"loss": loss, "model": "resnet_w"},
                                                 VAL_EER_CI: [iv.low, iv.high], VAL_SCORES: str(path)}))
        numbers[name] = len(study.trials) - 1
        if name.endswith("_gone"):
            path.unlink()
    return url, numbers


def test_best_marks_the_within_noise_trials(ranked_study):
    url, n = ranked_study
    study = optuna.load_study(study_name="ranked", storage=open_storage(url))
    ranked = rank_top(study.trials, 5)
    verdicts = {r.trial.number: (r.verdict, r.gap.method if r.gap else None) for r in ranked}
    assert ranked[0].trial.number == n["twin_a"]
    assert verdicts == {n["twin_a"]: ("best", None), n["twin_b"]: ("within noise", PAIRED),
                        n["weak"]: ("worse", PAIRED), n["close_gone"]: ("within noise", UNPAIRED),
                        n["weak_gone"]: ("worse", UNPAIRED)}
    twin = next(r.gap for r in ranked if r.trial.number == n["twin_b"])
    # identical scores: every resample gives the same EER to both, so the difference is exactly 0
    assert (twin.difference, twin.low, twin.high, twin.p_b_better) == (0.0, 0.0, 0.0, 0.5)
    assert {t.number for t in within_noise_of_best(ranked)} == {n["twin_a"], n["twin_b"], n["close_gone"]}

    out = cli("best", "ranked", "--storage", url)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "top 5 of 5 complete trials of study ranked" in text
    assert "3 of the top 5 cannot be told from the best" in text and "--within-noise" in text
    assert "paired on the saved val scores" in text and "unpaired from the stored intervals" in text
    assert f"best trial {n['twin_a']} of study ranked: val EER {ranked[0].interval}" in text
    assert text.count("within noise") == 2 and text.count("worse") == 2

    top = json.loads(cli("best", "ranked", "--storage", url, "--json", "--top", "3").stdout)
    assert top["number"] == n["twin_a"] and top["val_eer_ci"] == list(ranked[0].trial.user_attrs[VAL_EER_CI])
    assert [(t["number"], t["verdict"]) for t in top["top"]] == [
        (n["twin_a"], "best"), (n["twin_b"], "within noise"), (n["close_gone"], "within noise")]
    assert top["top"][0]["vs_best"] is None and top["top"][1]["vs_best"]["method"] == "paired"
    assert top["top"][2]["vs_best"]["method"] == "unpaired" and top["top"][2]["vs_best"]["low"] < 0


def test_status_json_carries_every_trials_interval(ranked_study):
    url, _ = ranked_study
    # Optuna gives a pruned trial its *last* value (35): status shows its best epoch (30) with that
    # epoch's interval, in parentheses, and it is no complete trial of `best`
    study = optuna.load_study(study_name="ranked", storage=open_storage(url))
    study.add_trial(create_trial(state=TrialState.PRUNED, value=35.0, params={"loss": "softmax"},
                                 distributions={"loss": LOSS}, intermediate_values={1: 30.0, 2: 35.0},
                                 user_attrs={VAL_EER_CI: [26.0, 34.5], "pruned_by": "median"}))
    assert "(30.00% [26.0, 34.5])" in cli("study", "status", "ranked", "--storage", url).stdout
    assert "top 5 of 5 complete trials" in cli("best", "ranked", "--storage", url).stdout
    status = json.loads(cli("study", "status", "ranked", "--storage", url, "--json").stdout)
    for t in status["trials"][:5]:
        low, high = t["val_eer_ci"]
        assert low <= t["value"] <= high
    assert status["trials"][5]["val_eer_ci"] == [26.0, 34.5]
    table = cli("study", "status", "ranked", "--storage", url).stdout
    iv = rank_top(optuna.load_study(study_name="ranked", storage=open_storage(url)).trials, 1)[0].interval
    assert "val EER [95% CI]" in table and str(iv) in table


def test_by_choice_says_which_losses_cannot_be_told_apart(ranked_study):
    url, _ = ranked_study
    study = optuna.load_study(study_name="ranked", storage=open_storage(url))
    losses = by_choice(study.trials, "loss")
    assert [r.choice for r in losses.rows][:2] == ["arcface", "cosface"]
    text = losses.verdict()
    assert "arcface, cosface and triplet_hard cannot be told apart on this val list" in text
    assert "cosface +0.00 [+0.0, +0.0] (paired)" in text and "triplet_hard +" in text and "(unpaired)" in text
    assert "softmax is worse than arcface" in text and "contrastive is worse than arcface" in text
    cells = losses.table().rows
    assert [c[-1] for c in cells] == ["leader", "within noise", "within noise", "worse", "worse"]
    # one trial per choice: the median is that trial's EER, with no interval
    assert cells[0][3] == f"{study.trials[0].value:.2f}%"


def test_live_views_best_line_shows_the_interval(ranked_study):
    from types import SimpleNamespace

    from rich.console import Console

    from search.view.live import progress_view

    url, n = ranked_study
    study = optuna.load_study(study_name="ranked", storage=open_storage(url))
    supervisor = SimpleNamespace(procs=[], n_trials=5, spec=None)   # the fields the view reads of a Supervisor
    console = Console(width=160, record=True)
    console.print(progress_view(study, supervisor, 0.0))
    best = rank_top(study.trials, 1)[0]
    assert f"best {best.interval} (trial {n['twin_a']}: loss=arcface)" in console.export_text()
