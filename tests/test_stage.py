"""The classifier stage: strategies, the decision rule, calibration as a protocol step."""
import copy
import json
import os

import numpy as np
import pytest
import torch
from conftest import REPO

from hyperzsl.cli import train_main
from hyperzsl.data.prepare import prepare
from hyperzsl.errors import DataError, RecipeError
from hyperzsl.latent import build_family
from hyperzsl.recipe import classifier_epochs, load_recipe
from hyperzsl.runs.calibrated import choose_knobs, validation_recipe
from hyperzsl.stage import STRATEGIES, decide, stacking_candidates
from hyperzsl.stage.run import run_classifier_stage, stage_classes
from hyperzsl.stage.samples import build_classifier_data
from hyperzsl.stage.softmax import train_classifier
from hyperzsl.training import MultimodalVAE, Objective, Warmup, build_model, build_objective, fit

DEMO = os.path.join(REPO, "recipes", "demo.yaml")
DEMO_CAL = os.path.join(REPO, "recipes", "demo_calibrated.yaml")
SHORT = ["train.epochs=6", "classifier.epochs=3"]


# ---------------------------------------------------------------------------- decide
def test_decide_known_answers():
    scores = torch.tensor([[3.0, 1.0, 2.5, 0.0],     # seen 0, 1; unseen 2, 3
                           [0.0, 2.0, 1.9, 1.0]])
    seen, unseen = torch.tensor([0, 1]), torch.tensor([2, 3])
    assert decide(scores, seen, unseen).tolist() == [0, 1]
    assert decide(scores, seen, unseen, stacking=0.2).tolist() == [0, 2]
    assert decide(scores, seen, unseen, stacking=1.0).tolist() == [2, 2]
    assert decide(scores, seen, unseen, zsl=True).tolist() == [2, 2]
    routed = torch.tensor([True, False])
    assert decide(scores, seen, unseen, route_unseen=routed).tolist() == [2, 1]


def test_stacking_moves_predictions_to_unseen_monotonically():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(500, 12, generator=g)
    scores[:, :8] += 1.0                              # seen classes 0-7 dominate
    seen, unseen = torch.arange(8), torch.arange(8, 12)
    counts = [int(torch.isin(decide(scores, seen, unseen, gamma), unseen).sum())
              for gamma in np.linspace(-3, 5, 41)]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 500
    cands = stacking_candidates(scores, seen, unseen)
    assert cands[0] == 0.0 and len(cands) > 50
    # the candidates span every decision: beyond the largest margin all go unseen
    assert int(torch.isin(decide(scores, seen, unseen, max(cands)), unseen).sum()) == 500


# ---------------------------------------------------------------------------- strategies
@pytest.fixture(scope="module")
def demo_model():
    """A briefly trained demo VAE and its prepared data."""
    recipe = load_recipe(DEMO, ["train.epochs=10"])
    torch.manual_seed(recipe.seed)
    prep = prepare(recipe, torch.device("cpu"))
    model = build_model(recipe, prep.input_dims, prep.fs.num_classes)
    tv = torch.as_tensor(prep.splits["trainval"])
    fit(model, build_objective(recipe), prep.features[tv], prep.labels[tv], prep.side,
        recipe.train, log=lambda s: None)
    return recipe, model, prep


def test_softmax_strategy_is_the_paper_stage_unchanged(demo_model):
    """Same seed, same numbers as the classifier stage before strategies existed
    (build_classifier_data + train_classifier, argmax over all classes)."""
    recipe, model, prep = demo_model
    metrics, scorer = run_classifier_stage(recipe, model, prep, log=lambda s: None)
    torch.manual_seed(recipe.seed + 1)
    model.eval()
    seen, unseen = stage_classes(prep)
    data = build_classifier_data(model, prep.features, prep.labels, prep.side, prep.splits,
                                 recipe.classifier, seen, unseen)
    _, history = train_classifier(data, prep.fs.num_classes, recipe.classifier,
                                  classifier_epochs(recipe))
    assert metrics["result"] == history[-1]
    assert metrics["classifier_history"] == history


def test_prototype_strategy_recovers_each_class_from_its_prototype(demo_model):
    recipe, model, prep = demo_model
    seen, unseen = stage_classes(prep)
    for option in ("image_mean", "side"):
        r = copy.deepcopy(recipe)
        r.classifier.strategy, r.classifier.strategy_options = "prototype", {"seen": option}
        metrics, scorer = run_classifier_stage(r, model, prep, log=lambda s: None)
        known = torch.cat([seen, unseen])
        protos = scorer.prototypes[known]
        assert torch.equal(decide(scorer(protos), seen, unseen), known)   # known answer
        # and it transfers: above chance (1/40) on both sides after 10 VAE epochs
        assert metrics["result"]["S"] > 0.3 and metrics["result"]["U"] > 0.05, metrics["result"]


def test_strategies_are_registered_and_unknown_ones_are_named():
    assert {"softmax", "prototype"} <= set(STRATEGIES.names())
    with pytest.raises(RecipeError, match="did you mean 'prototype'"):
        load_recipe(DEMO, ["classifier.strategy=prototyp"])
    with pytest.raises(RecipeError, match="unknown option"):
        load_recipe(DEMO, ["classifier.strategy=prototype", "classifier.strategy_options={x: 1}"])


# ---------------------------------------------------------------------------- calibration
def _validation_model(recipe, poison: bool):
    """The validation-split VAE of ``recipe``; with ``poison`` every test row (test_seen and
    test_unseen of the real split) is replaced by garbage first."""
    import hyperzsl.data.prepare as pipeline
    real = pipeline.load_data

    def poisoned(r):
        fs = real(r)
        if poison:
            rows = np.concatenate([fs.splits["test_seen"], fs.splits["test_unseen"]])
            fs.features[rows] = np.random.default_rng(1).uniform(0, 1e3, (rows.size, fs.features.shape[1]))
        return fs

    pipeline.load_data = poisoned
    try:
        torch.manual_seed(recipe.seed)
        prep = prepare(recipe, torch.device("cpu"))
    finally:
        pipeline.load_data = real
    model = build_model(recipe, prep.input_dims, prep.fs.num_classes)
    tv = torch.as_tensor(prep.splits["trainval"])
    fit(model, build_objective(recipe), prep.features[tv], prep.labels[tv], prep.side,
        recipe.train, log=lambda s: None)
    return model, prep


def test_selection_never_sees_test_rows():
    """Poisoning every real test row (test_seen and test_unseen) leaves the validation
    table and the choice unchanged; the validation split holds none of those rows."""
    recipe = validation_recipe(load_recipe(DEMO_CAL, SHORT))
    tables = []
    for poison in (False, True):
        model, prep = _validation_model(recipe, poison)
        tables.append(choose_knobs(recipe, model, prep, log=lambda s: None))
    assert tables[0] == tables[1]
    real = prep.fs.splits          # the validation FeatureSet's own splits
    from hyperzsl.data.prepare import load_data
    original = load_data(recipe).splits
    test_rows = np.concatenate([original["test_seen"], original["test_unseen"]])
    used = np.concatenate([real[k] for k in ("trainval", "test_seen", "test_unseen")])
    assert np.intersect1d(used, test_rows).size == 0


def test_choose_knobs_refuses_a_test_split_run(demo_model):
    recipe, model, prep = demo_model
    with pytest.raises(Exception, match="validation"):
        choose_knobs(recipe, model, prep)


def test_one_command_calibration_on_the_demo(tmp_path):
    out = str(tmp_path / "cal")
    assert train_main([DEMO_CAL, "--out", out] + sum((["--set", s] for s in SHORT), [])) == 0
    run = json.load(open(os.path.join(out, "run.json")))
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    cal = run["calibration"]
    assert "validation split" in cal["how"] and set(cal["chosen"]) == {
        "unseen_spread", "stacking", "gate"}
    table = json.load(open(os.path.join(out, "calibration.json")))["table"]
    assert len(table) == cal["grid_rows"] > 4
    assert max(r["H"] for r in table) == cal["validation"]["H"]
    assert set(metrics["uncalibrated"]) == {"S", "U", "H"} and metrics["result"]
    assert metrics["stage"]["unseen_spread"] == cal["chosen"]["unseen_spread"]
    assert os.path.isfile(os.path.join(out, "validation", "checkpoint.pt"))
    assert json.load(open(os.path.join(out, "validation", "run.json")))["status"] == "done"
    # a second call reuses both finished stages and gives the same numbers
    assert train_main([DEMO_CAL, "--out", out] + sum((["--set", s] for s in SHORT), [])) == 0
    again = json.load(open(os.path.join(out, "metrics.json")))
    assert again["result"] == metrics["result"]


def test_calibration_bad_input_stops_before_training(tmp_path):
    with pytest.raises(RecipeError, match="no values"):
        load_recipe(DEMO_CAL, ["calibration.unseen_spread=[]"])
    with pytest.raises(RecipeError, match="gate_detectors"):
        load_recipe(DEMO_CAL, ["calibration.gate_detectors=[vmff]"])
    out = tmp_path / "nosplit"
    # the plain demo has no train_loc/val_loc: a named error, and nothing trained
    code = train_main([DEMO, "--out", str(out), "--set", "calibration.enabled=true"])
    assert code == 2
    assert not os.path.exists(out / "validation" / "checkpoint.pt")
    with pytest.raises(DataError, match="train_loc"):
        prepare(validation_recipe(load_recipe(DEMO)), torch.device("cpu"))


# ---------------------------------------------------------------------------- correction
def test_classification_term_gets_the_samplers_gradient_correction():
    """With vMF latents and grad_correction on, the classification term's kappa gradient
    includes the rejection sampler's score term, as reconstruction's does: the term equals
    surrogate_loss applied to its per-sample cross-entropy (it did not before)."""
    torch.manual_seed(0)
    fam = build_family("vmf", 8, "clean", {"kappa_init": 5.0})   # m = 3 needs no rejection
    model = MultimodalVAE({"image": 6, "att": 4}, {"image": (8, 8), "att": (8, 8)}, fam,
                          num_classes=3)
    batch = {"image": torch.randn(16, 6), "att": torch.randn(16, 4)}
    y = torch.randint(3, (16,))
    obj = Objective({"classification": Warmup(1.0)})   # plus reconstruction, always on

    def head_grad(objective):
        torch.manual_seed(1)                             # the same samples every time
        model.zero_grad()
        objective(model, batch, 0, y)[0].backward()
        return model.encoders["image"].head.weight.grad.clone()

    g_term = head_grad(obj) - head_grad(Objective({}))  # minus reconstruction alone
    torch.manual_seed(1)
    posts = {m: model.encode(m, x) for m, x in batch.items()}
    z = {m: fam.sample(q) for m, q in posts.items()}
    ce = {m: torch.nn.functional.cross_entropy(model.latent_classifier(z[m]), y,
                                               reduction="none") for m in batch}
    model.zero_grad()
    sum(fam.surrogate_loss(posts[m], ce[m]).sum() for m in batch).backward(retain_graph=True)
    g_corrected = model.encoders["image"].head.weight.grad.clone()
    model.zero_grad()
    sum(ce[m].sum() for m in batch).backward()
    g_plain = model.encoders["image"].head.weight.grad.clone()
    assert not torch.allclose(g_corrected, g_plain, rtol=1e-3)   # the correction is real
    assert torch.allclose(g_term, g_corrected, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------- ensembles
def test_seed_ensemble_chooses_its_stacking_on_validation(tmp_path):
    """calibration.ensemble: 2 trains two calibrated members (seeds 0 and 1), averages
    their probabilities and takes the stacking constant with the best validation H of
    the average, recomputed here from the members' validation runs alone."""
    from hyperzsl.runs.ensemble import average, member_log_probs, result
    out = str(tmp_path / "ens")
    sets = sum((["--set", s] for s in SHORT + ["calibration.ensemble=2"]), [])
    assert train_main([DEMO_CAL, "--out", out] + sets) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    record = metrics["ensemble"]
    assert [m["seed"] for m in record["members"]] == [0, 1]
    assert "never on test" in record["how"]
    val = average([member_log_probs(os.path.join(m["dir"], "validation"), m["spread"],
                                    torch.device("cpu")) for m in record["members"]])
    table = json.load(open(os.path.join(out, "calibration.json")))["table"]
    best = max(table, key=lambda r: r["H"])
    assert best["stacking"] == record["stacking"]
    assert result(val, record["stacking"])["H"] == pytest.approx(record["validation"]["H"])
    assert json.load(open(os.path.join(out, "run.json")))["status"] == "done"
    with pytest.raises(RecipeError, match="calibration.enabled"):
        load_recipe(DEMO, ["calibration.ensemble=3"])
