"""Quality metrics on hand-made examples (values worked out by hand in the comments)."""

import math

import numpy as np
import pytest

from joulegrid.workloads import quality


def test_roc_auc_hand_made():
    # signal scores 0.9 0.8 0.7 0.2 vs background 0.85 0.6 0.3 0.1 0.05:
    # pairs won by signal: 5 + 4 + 4 + 2 = 15 of 4*5 = 20
    s = [0.9, 0.8, 0.7, 0.2, 0.85, 0.6, 0.3, 0.1, 0.05]
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert quality.roc_auc(s, y) == pytest.approx(0.75)


def test_roc_auc_ties_count_half_and_extremes():
    assert quality.roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    # one tie (0.4 vs 0.4) of 4 pairs: 3 wins + 0.5 = 3.5 / 4
    assert quality.roc_auc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert quality.roc_auc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert quality.roc_auc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert quality.roc_auc([0.1, 0.2], [1, 1]) is None


def test_roc_auc_matches_scikit_learn_on_random_scores():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(y * 0.7, 1.0), 1)  # rounded: many ties
    assert quality.roc_auc(s, y) == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)


def test_background_rejection_at_half_signal_efficiency():
    # 4 signal -> keep k = 2: cut at the 2nd highest signal score 0.8;
    # background >= 0.8: only 0.85 -> eps_B = 1/5 -> rejection 5
    s = [0.9, 0.8, 0.7, 0.2, 0.85, 0.6, 0.3, 0.1, 0.05]
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert quality.bkg_rejection_at(s, y, 0.5) == pytest.approx(5.0)
    # at 100 % efficiency the cut is 0.2: background 0.85, 0.6, 0.3 pass -> 5/3
    assert quality.bkg_rejection_at(s, y, 1.0) == pytest.approx(5 / 3)


def test_background_rejection_none_when_nothing_passes():
    assert quality.bkg_rejection_at([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0], 0.5) is None
    assert quality.bkg_rejection_at([0.9, 0.8], [1, 1], 0.5) is None


def test_accuracy_and_mse():
    assert quality.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert quality.accuracy(np.array([True, False]), np.array([1, 0])) == 1.0
    assert quality.mse([[1.0, 2.0]], [[0.0, 4.0]]) == pytest.approx(2.5)  # (1 + 4) / 2
    with pytest.raises(ValueError):
        quality.accuracy([1, 0], [1])


def test_quality_ranges_for_targets():
    assert quality.QUALITY_RANGES["roc_auc"] == (0.0, 1.0)
    assert math.isinf(quality.QUALITY_RANGES["recon_mse"][1])
