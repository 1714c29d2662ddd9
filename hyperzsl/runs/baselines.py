"""Closed-form GZSL baselines on any recipe's data, with calibrated stacking:

* ESZSL (Romera-Paredes & Torr, ICML 2015): V = (X'X + g I)^-1 X'Y S (S'S + l I)^-1,
  score(x, c) = x V s_c;
* ridge semantic -> visual prototypes: W = X'S_y (S_y'S_y + l I)^-1 maps each class's
  side information to a visual prototype W s_c, score(x, c) = cos(x, W s_c).

Features are L2-normalised. Each model's regularisers are chosen by ZSL accuracy on
val_loc after fitting on train_loc; the stacking constant by H on the validation GZSL
task (train_loc minus a held-out share of each class as seen, val_loc as unseen, the
same split hyperzsl's calibration uses); then the model is refitted on trainval and
scored on test. Nothing is chosen on test. Metrics are hyperzsl's (per-class accuracy,
hyperzsl.stage.decision.decide).

    hyperzsl-baselines RECIPE [--json FILE]
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.protocol import validation_splits
from ..errors import DataError
from ..stage.decision import decide, stacking_candidates
from ..stage.metrics import gzsl_metrics, per_class_accuracy

GRID = [10.0 ** k for k in range(-3, 4)]


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def eszsl_fit(x, y, s, gamma, lam):
    classes = np.unique(y)
    sc = s[classes]
    targets = -np.ones((len(y), len(classes)))
    targets[np.arange(len(y)), np.searchsorted(classes, y)] = 1
    left = np.linalg.solve(x.T @ x + gamma * np.eye(x.shape[1]), x.T @ targets @ sc)
    v = np.linalg.solve(sc.T @ sc + lam * np.eye(sc.shape[1]), left.T).T    # D x A
    return lambda q: q @ v @ s.T                                            # (N, C)


def ridge_fit(x, y, s, lam, _unused=None):
    sy = s[y]                                                               # N x A
    w = np.linalg.solve(sy.T @ sy + lam * np.eye(s.shape[1]), sy.T @ x).T   # D x A
    protos = _l2(s @ w.T)                                                   # C x D
    return lambda q: _l2(q) @ protos.T


BASELINES = {
    "eszsl": (eszsl_fit, [(g, lam) for g in GRID for lam in GRID]),
    "ridge": (ridge_fit, [(lam, None) for lam in GRID]),
}


def _zsl(score_fn, x, y, classes) -> float:
    scores = torch.as_tensor(score_fn(x))
    return per_class_accuracy(decide(scores, classes[:0], torch.as_tensor(classes), zsl=True),
                              torch.as_tensor(y))


def _gzsl(score_fn, x, sp, y, seen, unseen, stacking=0.0) -> dict:
    preds = [decide(torch.as_tensor(score_fn(x[sp[k]])), seen, unseen, stacking)
             for k in ("test_seen", "test_unseen")]
    return gzsl_metrics(preds[0], torch.as_tensor(y[sp["test_seen"]]), preds[1],
                        torch.as_tensor(y[sp["test_unseen"]]))


def run_baseline(name: str, fs, side: str | None = None, seed: int = 0,
                 holdout: float = 0.2) -> dict:
    """One baseline on a FeatureSet: choices on validation, numbers on test."""
    fit, grid = BASELINES[name]
    sp, y = fs.splits, fs.labels
    if "train" not in sp or "val" not in sp:
        raise DataError(f"{fs.source}: the baselines choose their regularisers on the "
                        f"train_loc / val_loc split, which this data set lacks")
    x = _l2(fs.features.astype(np.float64))
    s = fs.side_info[side or fs.side_names[0]].astype(np.float64)
    val_classes = np.unique(y[sp["val"]])
    zsl = {p: _zsl(fit(x[sp["train"]], y[sp["train"]], s, *p), x[sp["val"]], y[sp["val"]],
                   val_classes) for p in grid}
    best = max(zsl, key=zsl.get)
    vsp = validation_splits(sp, y, holdout, seed, fs.source)
    v_seen, v_unseen = (torch.as_tensor(np.unique(y[vsp[k]])) for k in ("trainval", "test_unseen"))
    v_fn = fit(x[vsp["trainval"]], y[vsp["trainval"]], s, *best)
    v_scores = torch.as_tensor(np.concatenate([v_fn(x[vsp[k]]) for k in ("test_seen", "test_unseen")]))
    table = [(g, _gzsl(v_fn, x, vsp, y, v_seen, v_unseen, g))
             for g in stacking_candidates(v_scores, v_seen, v_unseen)]
    gamma, val = max(table, key=lambda t: t[1]["H"])
    fn = fit(x[sp["trainval"]], y[sp["trainval"]], s, *best)
    seen = torch.as_tensor(fs.seen_classes)
    unseen = torch.as_tensor(fs.unseen_classes)
    return {"method": name, "regularisers": [p for p in best if p is not None],
            "validation_zsl": zsl[best], "stacking": gamma, "validation_H": val["H"],
            "validation_H_uncalibrated": table[0][1]["H"],
            "zsl_accuracy": _zsl(fn, x[sp["test_unseen"]], y[sp["test_unseen"]],
                                 fs.unseen_classes),
            "uncalibrated": _gzsl(fn, x, sp, y, seen, unseen),
            "calibrated": _gzsl(fn, x, sp, y, seen, unseen, gamma),
            "how": "regularisers by ZSL accuracy on val_loc (fit on train_loc); stacking by H "
                   "on the validation GZSL task; refit on trainval; nothing chosen on test"}


def format_rows(results: list[dict]) -> str:
    lines = ["| baseline | ZSL | S | U | H | S (cal.) | U (cal.) | H (cal.) | stacking |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        u, c = r["uncalibrated"], r["calibrated"]
        lines.append(f"| {r['method']} | {100 * r['zsl_accuracy']:.1f} | {100 * u['S']:.1f} | "
                     f"{100 * u['U']:.1f} | {100 * u['H']:.1f} | {100 * c['S']:.1f} | "
                     f"{100 * c['U']:.1f} | {100 * c['H']:.1f} | {r['stacking']:.3g} |")
    return "\n".join(lines)
