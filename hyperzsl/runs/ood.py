"""OOD evaluation of a trained run, two protocols (docs/ood.md):

(a) seen vs unseen: in-distribution = test_seen codes, OOD = test_unseen codes; also the
    boundary gate for GZSL (gated vs ungated S/U/H);
(b) dataset vs dataset: in-distribution = test_seen codes, OOD = the codes of each set in
    the recipe's ``ood.sets`` (feature files scaled with the trainval-fitted scaling).

In both, detectors are fitted on the trainval codes (seen classes only; prototypes = the
side encoder's codes of the seen classes), and thresholds keep ``tpr`` of the *trainval*
codes on the ID side: nothing is chosen on test data.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import report
from ..detect.detectors import REGISTRY, make_detector
from ..detect.metrics import ood_metrics, roc_curve, score_threshold
from ..recipe import detector_specs
from ..stage.decision import decide
from ..stage.gate import gated_predictions, per_class_thresholds
from ..stage.metrics import harmonic_mean, per_class_accuracy
from ..stage.samples import class_side_codes


def default_detectors() -> tuple[str, ...]:
    """Every detector registered when asked (plugins included)."""
    return tuple(REGISTRY.names())


def _fitted_detectors(model, prep, clf, detectors, tpr: float, image: str):
    """(trainval codes, trainval labels, [(label, detector, threshold, trainval scores)]):
    ``detectors``: names or {name, options, label} entries (detector_specs).
    every detector fitted on the trainval codes, its threshold keeping ``tpr`` of them as
    ID (each split is scored once per detector: kNN scoring is the costly step)."""
    rows = torch.as_tensor(prep.splits["trainval"], device=prep.features.device)
    z, y = model.codes(image, prep.features[rows]), prep.labels[rows]
    prototypes = class_side_codes(model, prep.side, torch.unique(y))
    fitted = []
    for label, name, options in detector_specs(detectors or default_detectors()):
        det = make_detector(name, model.family.geometry, clf, options).fit(
            z, y, prototypes=prototypes)
        s_trainval = det.score(z)
        fitted.append((label, det, score_threshold(s_trainval, tpr), s_trainval))
    return z, y, fitted


def _scored(tau: float, s_id, s_ood, tpr: float) -> tuple[dict, tuple]:
    """Detection metrics of one detector from its ID and OOD scores, and the scores."""
    s_id, s_ood = s_id.cpu().numpy(), s_ood.cpu().numpy()
    metrics = ood_metrics(s_id, s_ood, tpr=tpr)
    metrics["threshold"] = tau
    return metrics, (s_id, s_ood)


@torch.no_grad()
def evaluate_ood(model, prep, splits, clf, detectors=None, tpr: float = 0.95,
                 image: str = "image") -> dict:
    """Protocol (a): per-detector metrics and gated vs ungated GZSL numbers."""
    device = prep.features.device
    rows = {k: torch.as_tensor(splits[k], device=device) for k in ("test_seen", "test_unseen")}
    z = {k: model.codes(image, prep.features[r]) for k, r in rows.items()}
    y = {k: prep.labels[r] for k, r in rows.items()}
    z["trainval"], y["trainval"], fitted = _fitted_detectors(model, prep, clf, detectors,
                                                             tpr, image)
    seen = torch.unique(y["trainval"])
    unseen = torch.unique(y["test_unseen"])
    logits = {k: clf(z[k]) for k in ("test_seen", "test_unseen")}
    ungated = {"S": per_class_accuracy(decide(logits["test_seen"], seen, unseen),
                                       y["test_seen"]),
               "U": per_class_accuracy(decide(logits["test_unseen"], seen, unseen),
                                       y["test_unseen"])}
    ungated["H"] = harmonic_mean(ungated["S"], ungated["U"])
    out = {"ungated": ungated, "detectors": {}, "scores": {}}
    for name, det, tau, s_trainval in fitted:
        s = {split: det.score(z[split]) for split in ("test_seen", "test_unseen")}
        metrics, scores = _scored(tau, s["test_seen"], s["test_unseen"], tpr)
        # one global threshold, and one per seen class (the boundary paper's v2), both
        # from trainval codes only
        taus = per_class_thresholds(s_trainval, y["trainval"], seen, tpr)
        for prefix, threshold in (("", tau), ("pc_", taus)):
            gated = {split: gated_predictions(s[split], threshold,
                                              logits[split][:, seen], logits[split][:, unseen],
                                              seen, unseen, y[split])
                     for split in ("test_seen", "test_unseen")}
            g = {"S": per_class_accuracy(gated["test_seen"].predictions, y["test_seen"]),
                 "U": per_class_accuracy(gated["test_unseen"].predictions, y["test_unseen"])}
            metrics.update({f"{prefix}gated_S": g["S"], f"{prefix}gated_U": g["U"],
                            f"{prefix}gated_H": harmonic_mean(g["S"], g["U"]),
                            f"{prefix}seen_routed_seen": gated["test_seen"].seen_to_seen,
                            f"{prefix}unseen_routed_unseen":
                                gated["test_unseen"].unseen_to_unseen})
        out["detectors"][name] = metrics
        out["scores"][name] = scores
    return out


@torch.no_grad()
def evaluate_ood_sets(model, prep, clf, sets: dict, detectors=None,
                      tpr: float = 0.95, image: str = "image") -> dict:
    """Protocol (b): for each OOD set (name -> scaled features on the device), the ID test
    codes (test_seen) vs the set's codes, per detector. Also the closed-set accuracy S of
    the classifier on the ID test set, and the fractions of ID test / OOD rows on the
    right side of the trainval threshold (``id_accepted``, ``ood_rejected``)."""
    rows = torch.as_tensor(prep.splits["test_seen"], device=prep.features.device)
    z_id, y_id = model.codes(image, prep.features[rows]), prep.labels[rows]
    z_ood = {name: model.codes(image, x) for name, x in sets.items()}
    _, _, fitted = _fitted_detectors(model, prep, clf, detectors, tpr, image)
    s = per_class_accuracy(clf(z_id).argmax(1), y_id)   # closed set: every class is seen
    out = {name: {"n_id": int(z_id.shape[0]), "n_ood": int(z.shape[0]), "S": s,
                  "detectors": {}, "scores": {}} for name, z in z_ood.items()}
    for det_name, det, tau, _ in fitted:
        s_id = det.score(z_id)
        for name, z in z_ood.items():
            metrics, scores = _scored(tau, s_id, det.score(z), tpr)
            metrics.update(id_accepted=float(np.mean(scores[0] <= tau)),
                           ood_rejected=float(np.mean(scores[1] > tau)))
            out[name]["detectors"][det_name] = metrics
            out[name]["scores"][det_name] = scores
    return out


def _detector_table(result: dict, extra: list[str], title: str) -> str:
    rows = [{"detector": n, **m} for n, m in result["detectors"].items()]
    fpr = [k for k in next(iter(result["detectors"].values())) if k.startswith("fpr")]
    return report.format_table(rows, ["detector", "auroc", "aupr_in", "aupr_out", *fpr,
                                      *extra], title)


def format_ood_table(result: dict) -> str:
    """Protocol (a) table."""
    u = result["ungated"]
    title = (f"seen (ID) vs unseen (OOD); ungated S {100 * u['S']:.1f} U {100 * u['U']:.1f} "
             f"H {100 * u['H']:.1f}")
    return _detector_table(result, ["seen_routed_seen", "unseen_routed_unseen", "gated_S",
                                    "gated_U", "gated_H", "pc_seen_routed_seen",
                                    "pc_unseen_routed_unseen", "pc_gated_H"], title)


def format_ood_set_table(name: str, result: dict) -> str:
    """Protocol (b) table for one OOD set."""
    title = (f"test_seen (ID, {result['n_id']}) vs OOD set '{name}' ({result['n_ood']}); "
             f"closed-set S {100 * result['S']:.1f}")
    return _detector_table(result, ["id_accepted", "ood_rejected"], title)


def plot_ood(result: dict, path_prefix: str,
             labels: tuple[str, str] = ("seen (ID)", "unseen (OOD)")) -> None:
    """ROC curves of all detectors (``PREFIX_roc.png``) and one score histogram per
    detector with its trainval threshold (``PREFIX_hist.png``)."""
    import matplotlib  # only when a figure is drawn: slow to import; Agg needs no display
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (s_id, s_ood) in result["scores"].items():
        scores = np.r_[s_id, s_ood]
        fpr, tpr = roc_curve(scores, np.r_[np.zeros(len(s_id), bool), np.ones(len(s_ood), bool)])
        ax.plot(fpr, tpr, label=f"{name} ({result['detectors'][name]['auroc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("FPR (ID flagged as OOD)")
    ax.set_ylabel("TPR (OOD detected)")
    ax.legend(fontsize=8)
    _save(fig, f"{path_prefix}_roc.png")
    n = len(result["scores"])
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), squeeze=False)
    for ax, (name, (s_id, s_ood)) in zip(axes[0], result["scores"].items()):
        bins = np.histogram_bin_edges(np.r_[s_id, s_ood], bins=50)
        ax.hist(s_id, bins, alpha=0.6, label=labels[0])
        ax.hist(s_ood, bins, alpha=0.6, label=labels[1])
        ax.axvline(result["detectors"][name]["threshold"], color="k", lw=0.8)
        ax.set_title(name, fontsize=9)
    axes[0][0].legend(fontsize=7)
    _save(fig, f"{path_prefix}_hist.png")


def _save(fig, path: str) -> None:
    report.save_figure(fig, path)
