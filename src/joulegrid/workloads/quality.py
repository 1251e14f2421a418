"""Quality metrics of the built-in workloads (plain numpy, no torch, no scikit-learn).

Binary classifiers: the signal is label 1 (quark jets, top jets), the background label 0.
"""

from __future__ import annotations

import math

import numpy as np

# Possible values of the built-in quality metrics (a target_quality outside can never be reached).
QUALITY_RANGES = {"accuracy": (0.0, 1.0), "roc_auc": (0.0, 1.0), "recon_mse": (0.0, float("inf"))}


def _binary(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    return s, y.astype(bool)


def roc_auc(scores, labels) -> float | None:
    """Area under the ROC curve = P(score of a random signal > score of a random background),
    ties counted 1/2 (the Mann-Whitney U statistic, from average ranks). None if one class is empty."""
    s, y = _binary(scores, labels)
    n_sig, n_bkg = int(y.sum()), int((~y).sum())
    if n_sig == 0 or n_bkg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks of tied groups (1-based)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n_sig * (n_sig + 1) / 2.0
    return float(u / (n_sig * n_bkg))


def bkg_rejection_at(scores, labels, signal_efficiency: float = 0.5) -> float | None:
    """Background rejection 1/eps_B at the working point that keeps ``signal_efficiency`` of the signal.

    The cut is the highest score threshold t with P(signal score >= t) >= signal_efficiency
    (t = the k-th highest signal score, k = ceil(eff * n_signal)); eps_B = P(background score >= t).
    None when no background passes the cut (the rejection is then larger than n_background and
    cannot be estimated from this test set) or one class is empty.
    """
    s, y = _binary(scores, labels)
    sig = np.sort(s[y])[::-1]
    bkg = s[~y]
    if len(sig) == 0 or len(bkg) == 0:
        return None
    k = max(1, math.ceil(signal_efficiency * len(sig)))
    cut = sig[k - 1]
    eps_b = float(np.mean(bkg >= cut))
    return 1.0 / eps_b if eps_b > 0 else None


def accuracy(predicted, labels) -> float:
    p = np.asarray(predicted).ravel()
    y = np.asarray(labels).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"{p.size} predictions but {y.size} labels")
    return float(np.mean(p == y))


def mse(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.mean((a - b) ** 2))
