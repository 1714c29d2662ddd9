"""hyperzsl.detect.metrics against scikit-learn and hand-computed cases.

scikit-learn is a test-only dependency: it is the independent reference here.
"""
import numpy as np
import pytest
import torch

from hyperzsl.detect import metrics as M
from hyperzsl.errors import HyperzslError

sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the test reference")


def _sk_first_fpr_at_tpr(positive, scores, tpr):
    """FPR at the first point of the full ROC (no dropped points) with TPR >= tpr."""
    fpr, tps, _ = sk.roc_curve(positive, scores, drop_intermediate=False)
    return fpr[np.argmax(tps >= tpr)]


def _tied_cases(count=150, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(2, 400))
        scores = rng.integers(0, int(rng.integers(1, 12)), n).astype(float)  # many ties
        is_ood = rng.random(n) < rng.uniform(0.05, 0.95)
        if 0 < is_ood.sum() < n:
            yield scores, is_ood


def test_matches_sklearn_with_ties():
    for scores, is_ood in _tied_cases():
        assert abs(M.auroc(scores, is_ood) - sk.roc_auc_score(is_ood, scores)) < 1e-12
        precision, recall, _ = sk.precision_recall_curve(is_ood, scores)
        assert abs(M.aupr_out(scores, is_ood) - sk.auc(recall, precision)) < 1e-12
        precision, recall, _ = sk.precision_recall_curve(~is_ood, -scores)
        assert abs(M.aupr_in(scores, is_ood) - sk.auc(recall, precision)) < 1e-12
        for tpr in (0.95, 0.8):
            assert M.fpr_at_tpr_ood_pos(scores, is_ood, tpr) == pytest.approx(
                _sk_first_fpr_at_tpr(is_ood, scores, tpr), abs=1e-12)
            assert M.fpr_at_tpr_id_pos(scores, is_ood, tpr) == pytest.approx(
                _sk_first_fpr_at_tpr(~is_ood, -scores, tpr), abs=1e-12)


def test_continuous_scores_and_torch_input():
    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0, 1, 700), rng.normal(1, 1, 300)]
    is_ood = np.r_[np.zeros(700, bool), np.ones(300, bool)]
    assert abs(M.auroc(scores, is_ood.astype(int)) - sk.roc_auc_score(is_ood, scores)) < 1e-12
    as_torch = M.auroc(torch.from_numpy(scores).float(), torch.from_numpy(is_ood))
    assert abs(as_torch - sk.roc_auc_score(is_ood, np.float32(scores))) < 1e-12


def test_invariant_to_sample_order_and_label_flip():
    rng = np.random.default_rng(2)
    scores, is_ood = rng.integers(0, 6, 500).astype(float), rng.random(500) < 0.3
    perm = rng.permutation(500)
    for metric in (M.auroc, M.aupr_in, M.aupr_out, M.fpr_at_tpr_ood_pos, M.fpr_at_tpr_id_pos):
        expected = metric(scores, is_ood)
        assert metric(scores[perm], is_ood[perm]) == pytest.approx(expected, abs=1e-15)
    # AUROC does not depend on which class is called positive
    assert M.auroc(-scores, ~is_ood) == pytest.approx(M.auroc(scores, is_ood), abs=1e-15)
    # the AUPRs swap roles under that flip
    assert M.aupr_in(-scores, ~is_ood) == pytest.approx(M.aupr_out(scores, is_ood), abs=1e-15)


def test_perfect_separation_and_constant_scores():
    s_id, s_ood = np.arange(50.0), np.arange(100.0, 120.0)
    m = M.ood_metrics(s_id, s_ood)
    assert m["auroc"] == 1.0 and m["aupr_in"] == 1.0 and m["aupr_out"] == 1.0
    assert m["fpr95_ood_pos"] == 0.0 and m["fpr95_id_pos"] == 0.0
    assert M.ood_metrics(s_ood, s_id)["auroc"] == 0.0
    flat = M.ood_metrics(np.full(30, 0.7), np.full(10, 0.7))
    assert flat["auroc"] == 0.5
    assert flat["fpr95_ood_pos"] == 1.0 and flat["fpr95_id_pos"] == 1.0


def test_both_fpr_conventions_by_hand():
    # ID scores 0..19, OOD scores 15..24 (10 samples); tpr = 0.9.
    s_id, s_ood = np.arange(20.0), np.arange(15.0, 25.0)
    scores = np.r_[s_id, s_ood]
    is_ood = np.r_[np.zeros(20, bool), np.ones(10, bool)]
    # OOD positive: flag >= t; 9 of 10 OOD flagged first at t = 16; ID >= 16: 16..19 -> 4/20
    assert M.fpr_at_tpr_ood_pos(scores, is_ood, 0.9) == pytest.approx(0.2)
    # ID positive: accept <= tau; 18 of 20 ID accepted first at tau = 17; OOD <= 17: 15,16,17
    assert M.score_threshold(s_id, 0.9) == 17.0
    assert M.fpr_at_tpr_id_pos(scores, is_ood, 0.9) == pytest.approx(0.3)
    keys = M.ood_metrics(s_id, s_ood, tpr=0.9)
    assert keys["fpr90_ood_pos"] == pytest.approx(0.2)
    assert keys["fpr90_id_pos"] == pytest.approx(0.3)


def test_ood_metrics_keys_are_stable():
    m = M.ood_metrics(np.arange(10.0), np.arange(5.0, 15.0), correct_id=np.ones(10, bool))
    assert list(m) == ["auroc", "aupr_in", "aupr_out", "fpr95_ood_pos", "fpr95_id_pos",
                       "n_id", "n_ood", "oscr"]
    assert "oscr" not in M.ood_metrics(np.arange(10.0), np.arange(5.0, 15.0))


def test_oscr_known_answers():
    is_ood = np.r_[np.zeros(4, bool), np.ones(4, bool)]
    correct = np.r_[True, True, True, False, np.zeros(4, bool)]
    separated = np.r_[np.zeros(4), np.ones(4)]
    assert M.oscr(separated, is_ood, correct) == pytest.approx(0.75)   # = closed-set accuracy
    assert M.oscr(np.zeros(8), is_ood, correct) == pytest.approx(0.375)  # random: acc / 2
    assert M.oscr(1.0 - separated, is_ood, correct) == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise(bad):
    scores = np.array([0.1, bad, 0.3, 0.4])
    with pytest.raises(M.MetricInputError, match="NaN/inf"):
        M.auroc(scores, [0, 0, 1, 1])
    with pytest.raises(M.MetricInputError):
        M.ood_metrics([0.1, 0.2], [bad])


def test_single_class_and_shape_errors():
    with pytest.raises(M.MetricInputError, match="only ID"):
        M.auroc([0.1, 0.2], [False, False])
    with pytest.raises(M.MetricInputError, match="only OOD"):
        M.fpr_at_tpr_id_pos([0.1, 0.2], [1, 1])
    with pytest.raises(M.MetricInputError, match="entries"):
        M.aupr_in([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(M.MetricInputError, match="empty"):
        M.ood_metrics([], [1.0])
    with pytest.raises(M.MetricInputError, match="tpr"):
        M.score_threshold([1.0, 2.0], tpr=0.0)
    assert issubclass(M.MetricInputError, (HyperzslError, ValueError))
