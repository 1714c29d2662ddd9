"""Fitting the recipe's stage on a trained VAE, scoring it and turning the scores into
S/U/H through the one decision rule (:func:`hyperzsl.stage.decision.decide`)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..data.prepare import IMAGE, Prepared
from ..recipe import Recipe, classifier_epochs
from ..training.model import MultimodalVAE
from .base import StageCodes, StageInputs, build_strategy, score_rows
from .decision import decide
from .gate import Gate
from .metrics import gzsl_metrics, per_class_accuracy


def test_codes(model: MultimodalVAE, prep: Prepared) -> StageCodes:
    """(z_seen, y_seen, z_unseen, y_unseen): deterministic codes of the split's test sets,
    carrying the same rows' features for a strategy that reads them."""
    out, rows = [], []
    for key in ("test_seen", "test_unseen"):
        rows.append(torch.as_tensor(prep.splits[key], device=prep.device))
        out += [model.codes(IMAGE, prep.features[rows[-1]]), prep.labels[rows[-1]]]
    return StageCodes(out, prep.features, tuple(rows))


def test_scores(scorer, codes) -> tuple[torch.Tensor, torch.Tensor]:
    """The scorer's (test_seen, test_unseen) scores; features from ``codes`` (a
    :class:`StageCodes`) for a strategy that reads them."""
    x_s, x_u = getattr(codes, "features", None) or (None, None)
    return score_rows(scorer, codes[0], x_s), score_rows(scorer, codes[2], x_u)


def stage_classes(prep: Prepared) -> tuple[torch.Tensor, torch.Tensor]:
    """Seen (trainval) and unseen (test_unseen) class ids of the split in use."""
    seen = np.unique(prep.fs.labels[prep.splits["trainval"]])
    unseen = np.unique(prep.fs.labels[prep.fs.splits["test_unseen"]])
    return (torch.as_tensor(seen, device=prep.device), torch.as_tensor(unseen, device=prep.device))


def stage_result(scorer, codes, seen, unseen, zsl: bool = False, stacking: float = 0.0,
                 gate=None, scores=None) -> dict:
    """S/U/H (or ZSL accuracy) of a fitted strategy with the decision knobs, through
    :func:`hyperzsl.stage.decision.decide`. ``scores``: the scorer's (seen, unseen) test scores
    when already computed (calibration reuses them across its grid)."""
    z_s, y_s, z_u, y_u = codes
    scores = scores or (None, None)
    if all(given is None for given in scores) and getattr(scorer, "reads_features", False):
        scores = test_scores(scorer, codes)
    if zsl:
        return {"zsl_accuracy": per_class_accuracy(
            decide(scorer(z_u) if scores[1] is None else scores[1], seen, unseen, zsl=True), y_u)}
    preds = []
    for z, given in zip((z_s, z_u), scores):
        scores_z = scorer(z) if given is None else given
        route = gate.route(z, scores_z) if gate is not None and z.shape[0] else None
        preds.append(decide(scores_z, seen, unseen, stacking, route) if z.shape[0] else
                     torch.zeros(0, dtype=torch.long, device=z.device))
    return gzsl_metrics(preds[0], y_s, preds[1], y_u)


def fit_stage(recipe: Recipe, model: MultimodalVAE, prep: Prepared, codes=None,
              strategy=None):
    """The recipe's strategy fitted on its split. It is seeded independently of VAE
    training, so that ``hyperzsl-eval`` on a saved run reproduces the numbers
    ``hyperzsl-train`` printed. With ``train.numerics: official`` it instead continues the
    random stream where VAE training left it, as the official code does (the state is in
    the checkpoint, so eval still reproduces the run). ``strategy``: an unfitted strategy
    to fit instead of building the recipe's (the conformance checks of a class). Returns
    (strategy, per-epoch history, codes)."""
    official = recipe.train.numerics == "official" and model.rng_after_training is not None
    if official:
        torch.set_rng_state(model.rng_after_training)
    else:
        torch.manual_seed(recipe.seed + 1)
    model.eval()
    codes = codes or test_codes(model, prep)
    seen, unseen = stage_classes(prep)
    zsl = recipe.protocol.setting == "zsl"
    cfg = recipe.classifier
    strategy = strategy or build_strategy(cfg.strategy, cfg.strategy_options)
    history = strategy.fit(StageInputs(model, prep, prep.splits, cfg, seen, unseen, zsl,
                                       classifier_epochs(recipe), IMAGE, official,
                                       recipe.train.precision), codes)
    return strategy, history, codes


def run_classifier_stage(recipe: Recipe, model: MultimodalVAE, prep: Prepared,
                         log=print, fitted=None) -> tuple[dict, torch.nn.Module]:
    """Metrics and the fitted strategy (callable: codes -> class scores). ``fitted``:
    (strategy, history, codes) already fitted (stacked replicas' stages)."""
    strategy, history, codes = fitted or fit_stage(recipe, model, prep)
    cfg = recipe.classifier
    seen, unseen = stage_classes(prep)
    gate = None
    if cfg.gate is not None:
        g = cfg.gate
        gate = Gate(model, prep, prep.splits, strategy, g.detector, g.tpr, g.per_class,
                    g.options, IMAGE)
    result = stage_result(strategy, codes, seen, unseen, recipe.protocol.setting == "zsl",
                          cfg.stacking, gate)
    epochs = classifier_epochs(recipe)
    samples = getattr(strategy, "samples", None)
    log("classifier: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in result.items())
        + f" ({cfg.strategy}" + (f", after {epochs} epochs, {samples} "
                                 + ("feature rows" if getattr(strategy, "reads_features", False)
                                    else "latent samples") if samples else "")
        + (f", stacking {cfg.stacking:g}" if cfg.stacking else "")
        + (f", gate {cfg.gate.detector} at tpr {cfg.gate.tpr:g}" if gate else "") + ")")
    metrics = {"result": result, "classifier_history": history, "classifier_epochs": epochs,
               "classifier_samples": samples,
               "stage": {"strategy": cfg.strategy, "stacking": cfg.stacking,
                         "gate": dataclasses.asdict(cfg.gate) if cfg.gate else None,
                         "unseen_spread": cfg.unseen_spread}}
    return metrics, strategy
