"""Closed-form baselines: a known answer on linear data, choices made on validation only."""
import numpy as np
import pytest

from hyperzsl.cli import baselines_main as main
from hyperzsl.data import FeatureSet
from hyperzsl.errors import DataError
from hyperzsl.runs.baselines import run_baseline


def linear_set(noise=0.0, seed=0):
    """30 classes (18 train, 6 val, 6 unseen), images = W s_y (+ noise): a visual
    prototype is an exact linear map of the side information."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(30, 12))
    w = rng.normal(size=(40, 12))
    y = np.repeat(np.arange(30), 20)
    x = s[y] @ w.T + noise * rng.normal(size=(600, 40))
    rows = {c: np.flatnonzero(y == c) for c in range(30)}
    train = np.concatenate([rows[c][:16] for c in range(18)])
    val = np.concatenate([rows[c][:16] for c in range(18, 24)])
    test_seen = np.concatenate([rows[c][16:] for c in range(24)])
    test_unseen = np.concatenate([rows[c] for c in range(24, 30)])
    return FeatureSet(x, y, {"att": s}, {"trainval": np.concatenate([train, val]),
                                         "test_seen": test_seen, "test_unseen": test_unseen,
                                         "train": train, "val": val})


def test_ridge_prototypes_recover_linear_classes_exactly():
    r = run_baseline("ridge", linear_set())
    assert r["validation_zsl"] == 1.0 and r["zsl_accuracy"] == 1.0
    assert r["calibrated"]["H"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["eszsl", "ridge"])
def test_calibration_trades_seen_for_unseen(name):
    r = run_baseline(name, linear_set(noise=8.0))
    # the constant is the best on validation (0 is among the candidates), not on test
    assert r["validation_H"] >= r["validation_H_uncalibrated"]
    assert 0 <= r["zsl_accuracy"] <= 1 and "nothing chosen on test" in r["how"]


def test_baselines_need_the_validation_split(capsys):
    fs = linear_set()
    fs.splits.pop("train"), fs.splits.pop("val")
    with pytest.raises(DataError, match="train_loc"):
        run_baseline("ridge", fs)
    assert main(["/no/such/recipe.yaml"]) == 2
    assert "recipe not found" in capsys.readouterr().err
