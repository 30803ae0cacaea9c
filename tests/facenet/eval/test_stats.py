"""facenet.eval.stats: the weighted EER against sklearn and explicit duplication, the identity bootstrap's
coverage on simulated lists with a known population EER, paired comparisons, and the run's interval."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_curve

import facenet.eval.stats as stats
from facenet.data.folders import PairList
from facenet.errors import CheckpointError
from facenet.eval.evaluate import eer
from facenet.eval.compare import EerInterval, compare_intervals, unpaired_difference
from facenet.eval.stats import (IdentityBootstrap, ScoredPairs, compare_eers, eer_interval, pair_identities,
                                weighted_eer, within_noise)


def eer_sklearn_weighted(labels, scores, weights):
    """DESIGN.md's formula with roc_curve's own sample weights."""
    fpr, tpr, _ = roc_curve(labels, scores, sample_weight=weights)
    fnr = 1 - tpr
    i = np.nanargmin(np.abs(fnr - fpr))
    return float(max(fpr[i], fnr[i]) * 100)


def random_list(rng, n, decimals):
    """Labels and scores; rounding makes ties, which roc_curve merges into one threshold."""
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=n) + labels * rng.uniform(0, 2), decimals)
    return labels, scores


# ---------------------------------------------------------------- the weighted EER is the course's EER
@pytest.mark.parametrize("seed", range(20))
def test_unit_weights_give_the_course_eer(seed):
    rng = np.random.default_rng(seed)
    labels, scores = random_list(rng, int(rng.integers(2, 400)), seed % 4)
    assert weighted_eer(labels, scores, np.ones(len(labels), int)) == eer(labels, scores)


@pytest.mark.parametrize("seed", range(40))
def test_integer_weights_equal_the_duplicated_list(seed):
    rng = np.random.default_rng(seed)
    labels, scores = random_list(rng, int(rng.integers(2, 150)), seed % 3)
    weights = rng.poisson(1, len(labels)) * rng.poisson(1, len(labels))   # bootstrap-like: many 0s and 1s
    weights[:2] = [1, 1]
    duplicated = eer(np.repeat(labels, weights), np.repeat(scores, weights))
    assert weighted_eer(labels, scores, weights) == duplicated
    assert duplicated == eer_sklearn_weighted(labels, scores, weights)


@pytest.mark.parametrize("seed", range(10))
def test_long_runs_of_equal_steps_widen_the_window(seed, monkeypatch):
    """Blocks of one label make long runs of equal ROC steps that sklearn thins: a 1-point window widens."""
    monkeypatch.setattr(stats, "_WINDOW", 1)
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.permutation([0, 1] * 4), 25)
    scores = rng.normal(size=len(labels))
    if seed % 2:   # sorted and rounded: the runs stay unbroken, with ties inside them
        scores = np.sort(np.round(scores, 1))[::-1]
    weights = np.ones(len(labels), int) if seed % 3 else rng.integers(0, 3, len(labels))
    weights[[np.argmax(labels), np.argmin(labels)]] = 1
    duplicated = eer(np.repeat(labels, weights), np.repeat(scores, weights))
    assert weighted_eer(labels, scores, weights) == duplicated


def test_every_resample_is_the_list_rebuilt_from_its_identities():
    """Brute force: for each resample, repeat each pair by its identities' multiplicities
    (m_i for a pair within identity i, m_i * m_j across two), and take the course EER of that list."""
    rng = np.random.default_rng(3)
    n_ids, n = 12, 120
    left = rng.integers(0, n_ids, n)
    labels = rng.integers(0, 2, n)
    right = np.where(labels == 1, left, (left + rng.integers(1, n_ids, n)) % n_ids)
    right[:5] = (left[:5] + 1) % n_ids          # genuine-labelled pairs of two identities, as a mislabel
    scores = np.round(rng.normal(size=n) + labels, 2)
    boot = IdentityBootstrap(labels, left, right, n_resamples=60, seed=7)
    got = boot.eers(scores)
    for r in range(60):
        m = boot.multiplicity[r, :n_ids]
        w = np.array([m[a] if a == b else m[a] * m[b] for a, b in zip(left, right)])
        if w[labels == 1].sum() == 0 or w[labels == 0].sum() == 0:
            assert np.isnan(got[r])
        else:
            assert got[r] == eer(np.repeat(labels, w), np.repeat(scores, w))
    assert (boot.multiplicity[:, :n_ids].sum(1) == n_ids).all()


def test_resamples_without_genuine_pairs_are_left_out():
    """Two identities, genuine pairs of only one: a resample drawing one of them twice lacks genuine or
    impostor pairs and has no EER."""
    labels = np.array([1, 1, 1, 0, 0, 0])
    left, right = np.zeros(6, int), np.array([0, 0, 0, 1, 1, 1])
    boot = IdentityBootstrap(labels, left, right, n_resamples=200, seed=0)
    eers = boot.eers(np.array([0.9, 0.8, 0.3, 0.5, 0.2, 0.1]))
    lacking = (boot.multiplicity[:, :2] == 0).any(1)
    assert lacking.any() and np.isnan(eers[lacking]).all() and np.isfinite(eers[~lacking]).all()
    assert boot.interval(np.array([0.9, 0.8, 0.3, 0.5, 0.2, 0.1])).n_resamples == (~lacking).sum() < 200


def test_non_finite_scores_and_fractional_weights_are_refused():
    with pytest.raises(ValueError, match="NaN or infinite"):
        eer_interval([0, 1], [0.1, np.nan], [0, 1], [0, 1])
    with pytest.raises(ValueError, match="non-negative integer"):
        weighted_eer([0, 1], [0.1, 0.2], [0.5, 1])


# ---------------------------------------------------------------- coverage on simulated lists
MU, SD_GENUINE_ID, SD_IMPOSTOR_ID, SD_PAIR = 2.5, 0.7, 0.5, 1.0


def simulated_list(rng, n_ids=60, genuine_per_id=4, impostors=600):
    """Identities with random effects: identity i shifts its genuine scores by a_i and every impostor
    score it takes part in by b_i; pair noise on top.
    Genuine ~ N(MU, .7^2 + 1), impostor ~ N(0, 2 * .5^2 + 1)."""
    a, b = rng.normal(0, SD_GENUINE_ID, n_ids), rng.normal(0, SD_IMPOSTOR_ID, n_ids)
    g = np.repeat(np.arange(n_ids), genuine_per_id)
    i = rng.integers(0, n_ids, impostors)
    j = (i + rng.integers(1, n_ids, impostors)) % n_ids
    genuine = MU + a[g] + rng.normal(0, SD_PAIR, len(g))
    scores = np.r_[genuine, b[i] + b[j] + rng.normal(0, SD_PAIR, impostors)]
    labels = np.r_[np.ones(len(g), int), np.zeros(impostors, int)]
    return labels, scores, np.r_[g, i], np.r_[g, j]


def population_eer():
    """Two normals cross where both error rates equal Phi(-MU / (sd_genuine + sd_impostor))."""
    sd_genuine = np.hypot(SD_GENUINE_ID, SD_PAIR)
    sd_impostor = np.sqrt(2 * SD_IMPOSTOR_ID ** 2 + SD_PAIR ** 2)
    return float(norm.cdf(-MU / (sd_genuine + sd_impostor)) * 100)


def test_identity_interval_covers_the_population_eer_and_the_pair_interval_does_not():
    """200 simulated lists (60 identities, 840 pairs), 400 resamples each: the 95 % interval covers the
    population EER (15.33 %) in 90-98 % of them; a pair bootstrap on the same lists is narrower and misses."""
    truth, rng = population_eer(), np.random.default_rng(0)
    covered = pair_covered = 0
    widths, pair_widths = [], []
    for draw in range(200):
        labels, scores, left, right = simulated_list(rng)
        iv = eer_interval(labels, scores, left, right, n_resamples=400, seed=draw)
        covered += iv.low <= truth <= iv.high
        widths.append(iv.high - iv.low)
        if draw < 50:   # the pair bootstrap: each pair an identity of its own
            n = len(labels)
            pv = eer_interval(labels, scores, np.arange(n), np.arange(n), n_resamples=400, seed=draw)
            pair_covered += pv.low <= truth <= pv.high
            pair_widths.append(pv.high - pv.low)
    print(f"population EER {truth:.2f}%: identity bootstrap covers {covered}/200, mean width "
          f"{np.mean(widths):.2f}; pair bootstrap covers {pair_covered}/50, mean width "
          f"{np.mean(pair_widths):.2f}")
    assert 0.90 <= covered / 200 <= 0.98
    assert np.mean(pair_widths) < 0.8 * np.mean(widths[:50])
    assert pair_covered / 50 < covered / 200


def test_same_seed_same_resamples_for_every_model():
    rng = np.random.default_rng(1)
    labels, scores, left, right = simulated_list(rng)
    once = eer_interval(labels, scores, left, right, 300, seed=4)
    assert once == eer_interval(labels, scores, left, right, 300, seed=4)
    a = IdentityBootstrap(labels, left, right, 300, seed=4)
    b = IdentityBootstrap(labels, left, right, 300, seed=4)
    assert np.array_equal(a.multiplicity, b.multiplicity)
    iv = a.interval(scores)
    assert iv.low <= iv.eer <= iv.high and iv.n_resamples == 300 and iv.eer == eer(labels, scores)


# ---------------------------------------------------------------- paired comparisons
def test_identical_models_differ_by_nothing_and_are_within_noise():
    labels, scores, left, right = simulated_list(np.random.default_rng(2))
    c = compare_eers(labels, scores, scores.copy(), left, right, n_resamples=300)
    assert (c.difference, c.low, c.high, c.p_a_better) == (0.0, 0.0, 0.0, 0.5)
    assert c.within_noise and within_noise(labels, scores, scores, left, right, n_resamples=300)


def test_a_clearly_better_model_wins_on_nearly_every_resample():
    rng = np.random.default_rng(5)
    labels, scores, left, right = simulated_list(rng)
    better = scores + 1.5 * labels          # the same list, genuine scores 1.5 further from the impostors
    c = compare_eers(labels, better, scores, left, right, n_resamples=500)
    print(c)
    assert c.difference < 0 and c.high < 0 and not c.within_noise and c.p_a_better > 0.99
    reverse = compare_eers(labels, scores, better, left, right, n_resamples=500)
    boot = IdentityBootstrap(labels, left, right, 500)
    assert boot.compare_many(better, [scores, better]) == [c, boot.compare(better, better)]
    assert reverse.difference == -c.difference and reverse.p_a_better == 1 - c.p_a_better
    assert (reverse.low, reverse.high) == pytest.approx((-c.high, -c.low))   # percentiles interpolate
    flipped = c.reversed()   # B against A without recomputing: what the views and retrain --top show
    assert (flipped.eer_a, flipped.eer_b, flipped.difference, flipped.p_a_better) == \
        (reverse.eer_a, reverse.eer_b, reverse.difference, reverse.p_a_better)
    assert (flipped.low, flipped.high) == pytest.approx((reverse.low, reverse.high))
    assert flipped.method == "paired" and flipped.reversed() == c


def test_a_model_that_only_adds_a_little_noise_is_within_noise():
    rng = np.random.default_rng(6)
    labels, scores, left, right = simulated_list(rng)
    c = compare_eers(labels, scores, scores + rng.normal(0, 0.05, len(scores)), left, right, n_resamples=500)
    assert c.within_noise and 0.05 < c.p_a_better < 0.95


def test_unpaired_difference_from_stored_intervals():
    a, b = EerInterval(7.5, 5.9, 9.4, 1000), EerInterval(12.0, 10.1, 14.2, 1000)
    low, high = unpaired_difference(a, b)
    assert low < a.eer - b.eer < high < 0                               # clearly apart
    assert unpaired_difference(a, a)[0] < 0 < unpaired_difference(a, a)[1]
    assert (low, high) == pytest.approx((-4.5 - np.hypot(1.6, 2.2), -4.5 + np.hypot(1.9, 1.9)))
    c = compare_intervals(a, b)
    assert (c.difference, c.low, c.high, c.method, c.p_a_better) == (a.eer - b.eer, low, high, "unpaired", None)


def test_stored_intervals_give_a_wider_difference_than_the_paired_comparison():
    """Two similar models on one list err on the same hard identities: pairing cancels that shared part."""
    rng = np.random.default_rng(9)
    labels, scores, left, right = simulated_list(rng)
    other = scores + rng.normal(0, 0.3, len(scores))
    boot = IdentityBootstrap(labels, left, right, 500, seed=1)
    paired = boot.compare(scores, other)
    low, high = unpaired_difference(boot.interval(scores), boot.interval(other))
    print(f"paired [{paired.low:.2f}, {paired.high:.2f}], from the two intervals [{low:.2f}, {high:.2f}]")
    assert low < paired.low and paired.high < high
    assert high - low > 1.5 * (paired.high - paired.low)


def test_interval_text():
    assert str(EerInterval(7.5, 5.9, 9.4, 1000)) == "7.50% [5.9, 9.4]"
    assert str(EerInterval(7.5, 5.94, 9.36)) == "7.50% [5.9, 9.4]"      # e.g. rebuilt from a stored trial


# ---------------------------------------------------------------- pair lists, stored scores, the trainer
def test_identities_are_the_first_path_component():
    pairs = PairList(root=None, labels=np.array([1, 0, 0]), left=np.array([0, 1, 3]),
                     right=np.array([2, 3, 0]),
                     images=["id00012/00001.jpg", "id00007/00002.jpg", "id00012/00003.jpg", "id00031/01.jpg"])
    left, right = pair_identities(pairs)
    assert left[0] == right[0] != left[1] and right[1] == left[2] != right[2] == left[0]
    assert stats.identity_of("id00012\\00001.jpg") == "id00012"


def test_scored_pairs_round_trip_and_refuse_another_list(tmp_path):
    labels, scores, left, right = simulated_list(np.random.default_rng(8))
    saved = ScoredPairs(labels, scores.astype(np.float32), left, right)
    saved.save(tmp_path / "s.npz")
    back = ScoredPairs.load(tmp_path / "s.npz")
    assert np.array_equal(back.scores, saved.scores) and np.array_equal(back.labels, labels)
    assert back.interval(300) == eer_interval(labels, saved.scores, left, right, 300)
    assert back.compare(saved, 300).within_noise
    other = ScoredPairs(labels, scores + 1.0 * labels, left, right)
    assert back.compare_many([saved, other], 300) == [back.compare(saved, 300), back.compare(other, 300)]
    with pytest.raises(ValueError, match="different pair lists"):
        back.compare(ScoredPairs(labels[1:], scores[1:], left[1:], right[1:]))
    with pytest.raises(CheckpointError, match="cannot write"):
        saved.save(tmp_path / "no such folder" / "s.npz")
    assert not list(tmp_path.glob(".*.tmp*"))


def test_fit_reports_the_best_epochs_interval_and_keeps_its_scores(tiny_config, tmp_path):
    from facenet.train import BEST_VAL_SCORES, fit

    r = fit(tiny_config.replace(epochs=2), log=lambda m: None)
    kept = ScoredPairs.load(tmp_path / "run" / BEST_VAL_SCORES)
    iv = kept.interval()
    assert eer(kept.labels, kept.scores) == r.best_val_eer == r.history[r.best_epoch - 1]["val_eer"]
    assert r.val_eer_ci == (iv.low, iv.high) and iv.low <= r.best_val_eer <= iv.high
    pairs = PairList.read(tiny_config.val_path, tiny_config.val_list)
    folders = {p.split("/")[0] for p in pairs.images}    # the synthetic val split: a handful of identities
    assert np.array_equal(kept.labels, pairs.labels)
    assert len(np.unique(np.r_[kept.left_ids, kept.right_ids])) == len(folders) > 1

    resumed = fit(tiny_config.replace(epochs=3), log=lambda m: None)   # picks the run up after epoch 2
    assert resumed.resumed_from == 2 and resumed.val_eer_ci is not None
    if resumed.best_epoch == r.best_epoch:
        assert resumed.val_eer_ci == r.val_eer_ci
