"""The levers of issue 24 as plug-ins: the ``contrastive`` loss term, the
``feature_space`` classifier strategy and several side modalities at once; their named
errors before training, and calibration's selection still blind to test rows."""
import math
import os

import numpy as np
import pytest
import torch
from conftest import REPO
from test_stage import DEMO_CAL, SHORT, _validation_model

from hyperzsl.cli import train_main
from hyperzsl.data.prepare import prepare
from hyperzsl.data.xlsa17 import save_xlsa17
from hyperzsl.errors import DataError, RecipeError
from hyperzsl.latent import FAMILIES, build_family
from hyperzsl.recipe import load_recipe, recipe_from_dict
from hyperzsl.registry import LOSS_TERMS
from hyperzsl.runs.calibrated import choose_knobs, validation_recipe
from hyperzsl.runs.replicas import check_stackable
from hyperzsl.stage import decide
from hyperzsl.stage.run import fit_stage, run_classifier_stage, stage_classes
from hyperzsl.stage.samples import build_classifier_data, split_budget
from hyperzsl.training import MultimodalVAE, build_model, build_objective, fit, stack_models
from hyperzsl.training.contrastive import class_contrastive, instance_contrastive, similarity
from hyperzsl.training.objective import SampledLatents, TermContext

DEMO = os.path.join(REPO, "recipes", "demo.yaml")
TWO_SIDES = "data.side_info=[{key: att}, {key: att_hypernym, name: hypernym}]"
# the demo shortened to 12 epochs, warm-ups scaled, a larger step
QUICK = ["train.epochs=12", "train.lr=1e-3", "classifier.epochs=5",
         "train.terms.kl={max: 0.25, start: 0, end: 11}",
         "train.terms.cross_reconstruction={max: 2.37, start: 2, end: 9}",
         "train.terms.alignment={max: 8.13, start: 0, end: 3}"]


def _trained(recipe):
    torch.manual_seed(recipe.seed)
    prep = prepare(recipe, torch.device("cpu"))
    model = build_model(recipe, prep.input_dims, prep.fs.num_classes)
    tv = torch.as_tensor(prep.splits["trainval"])
    history = fit(model, build_objective(recipe), prep.features[tv], prep.labels[tv],
                  prep.side, recipe.train, log=lambda s: None)
    return model, prep, history


# ---------------------------------------------------------------------------- contrastive
def test_contrastive_losses_by_hand():
    """Two classes on the unit circle, temperature 1. Anchor 0 (class 0) has class
    similarities (1, 0) on the sphere: class loss log(1 + e^-1); its one positive (row 2)
    against row 1: the same value; row 1 is alone in its class: instance loss 0."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    log1pe = math.log1p(math.exp(-1))
    assert class_contrastive(a, a, y, "sphere", 1.0).tolist() == pytest.approx([log1pe] * 3)
    assert instance_contrastive(a, y, "sphere", 1.0).tolist() == pytest.approx(
        [log1pe, 0.0, log1pe])
    # Euclidean: -|a - b|^2 / (2 m) = -0.5 between the classes; temperature 0.5 doubles it
    assert class_contrastive(a, a, y, "euclidean", 0.5).tolist() == pytest.approx(
        [math.log1p(math.exp(-1))] * 3)
    # on the sphere of radius sqrt(m) the two similarities differ by the constant 1
    z = torch.nn.functional.normalize(torch.randn(5, 8), dim=1) * math.sqrt(8)
    assert torch.allclose(similarity(z, z, "euclidean"), similarity(z, z, "sphere") - 1,
                          atol=1e-5)


def _margin(family, image_codes, class_codes, y):
    """Mean over rows of: similarity to the own class code minus the best other one."""
    s = similarity(image_codes, class_codes, family.geometry)
    own = s.gather(1, y[:, None]).squeeze(1)
    return float((own - s.scatter(1, y[:, None], -torch.inf).amax(1)).mean())


@pytest.mark.parametrize("name", FAMILIES.names())
def test_contrastive_term_pulls_image_codes_to_their_class_code(name):
    """Known answer, every family: gradient steps on the term alone move each image code
    towards its class's side code and away from the other classes' (the margin in the
    family's geometry goes from negative to positive, every row nearest its own class)."""
    torch.manual_seed(0)
    family = build_family(name, 6, "clean")
    model = MultimodalVAE({"image": 10, "att": 5}, {"image": (32, 32), "att": (16, 16)},
                          family)
    att = torch.randn(4, 5)
    y = torch.arange(4).repeat(8)
    x = torch.randn(32, 10)                          # images carry no class signal at first
    batch = {"image": x, "att": att[y]}
    term = LOSS_TERMS.get("contrastive")(temperature=0.2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def margin():
        with torch.no_grad():
            return _margin(family, model.codes("image", x), model.codes("att", att), y)

    before = margin()
    for _ in range(60):
        posts = {m: model.encode(m, v) for m, v in batch.items()}
        loss = term(TermContext(model, batch, posts, SampledLatents(family, posts), y, "l1"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = margin()
    assert before < 0 < after, (before, after)
    with torch.no_grad():
        s = similarity(model.codes("image", x), model.codes("att", att), family.geometry)
    assert torch.equal(s.argmax(1), y)


def test_contrastive_term_sums_per_replica():
    """Stacked replicas: one value per replica, each the term of that replica alone."""
    torch.manual_seed(0)
    dims, hidden = {"image": 7, "att": 3}, {"image": (8, 8), "att": (8, 8)}
    models = [MultimodalVAE(dims, hidden, build_family("gaussian", 4)) for _ in range(2)]
    term = LOSS_TERMS.get("contrastive")()
    y = torch.randint(3, (2, 10))
    batch = {"image": torch.randn(2, 10, 7), "att": torch.randn(3, 3)[y]}

    def value(model, b, labels, replicated):
        posts = {m: model.encode(m, v) for m, v in b.items()}
        total = (lambda t: t.flatten(1).sum(1)) if replicated else None
        return term(TermContext(model, b, posts, SampledLatents(model.family, posts, total),
                                labels, "l1"))

    stacked = value(stack_models(models), batch, y, True)
    alone = [value(m, {k: v[i] for k, v in batch.items()}, y[i], False)
             for i, m in enumerate(models)]
    assert stacked.shape == (2,)
    assert torch.allclose(stacked, torch.stack(alone), rtol=1e-5)


def test_contrastive_from_a_recipe_trains_and_keeps_the_checks_right():
    """Set from a recipe, the term trains the demo's codes towards their classes: the
    held-out seen images' margin to their class code grows over the same run without it
    (measured 0.004 -> 0.094; H 30 -> 96 after 12 epochs)."""
    on = "train.terms.contrastive={enabled: true, max: 5, options: {temperature: 0.05}}"
    r = load_recipe(DEMO, QUICK + [on])
    assert r.train.terms.contrastive.options == {"temperature": 0.05}
    assert r.train.numerics == "fast"      # the official arithmetic writes only CADA-VAE's
    with pytest.raises(RecipeError, match="CADA-VAE terms"):
        load_recipe(DEMO, ["train.numerics=official", "train.terms.contrastive.enabled=true"])
    check_stackable(load_recipe(DEMO, ["train.numerics=fast",
                                       "train.terms.contrastive.enabled=true"]))
    margins = []
    for recipe in (load_recipe(DEMO, QUICK + ["train.numerics=fast"]), r):
        model, prep, history = _trained(recipe)
        ts = torch.as_tensor(prep.splits["test_seen"])
        with torch.no_grad():
            margins.append(_margin(model.family, model.codes("image", prep.features[ts]),
                                   model.codes("att", prep.side["att"]), prep.labels[ts]))
    assert all("contrastive" in h for h in history)
    assert history[-1]["contrastive"] < 0.5 * history[0]["contrastive"]
    assert margins[1] > margins[0] + 0.03, margins
    metrics, _ = run_classifier_stage(r, model, prep, log=lambda s: None)
    assert metrics["result"]["H"] > 0.6, metrics["result"]


# ---------------------------------------------------------------------------- feature space
@pytest.fixture(scope="module")
def separable(tmp_path_factory):
    """40 classes (5 unseen) whose features are a linear map of 6-d side information plus
    small noise: well separated, and 35 seen classes span the side space, so the
    cross-decoder can place unseen classes. A small VAE trained for 60 epochs."""
    rng = np.random.default_rng(0)
    n_classes, per = 40, 30
    att = rng.standard_normal((n_classes, 6))
    labels = np.repeat(np.arange(n_classes), per)
    x = att[labels] @ rng.standard_normal((6, 32)) + 0.1 * rng.standard_normal((labels.size, 32))
    rows, unseen = np.arange(labels.size), labels >= n_classes - 5
    path = str(tmp_path_factory.mktemp("sep") / "sep.npz")
    np.savez(path, features=x.astype(np.float32), labels=labels,
             side_info=att.astype(np.float32), trainval_loc=rows[~unseen & (rows % per >= 6)],
             test_seen_loc=rows[~unseen & (rows % per < 6)], test_unseen_loc=rows[unseen])
    recipe = recipe_from_dict({
        "mode": "clean", "device": "cpu",
        "data": {"kind": "file", "path": path, "side_info": [{"key": "side_info"}]},
        "model": {"latent_dim": 8, "image_hidden": [64, 64], "side_hidden": [32, 32]},
        "train": {"epochs": 60, "batch_size": 32, "lr": 3e-3,
                  "terms": {"kl": {"max": 0.1, "start": 0, "end": 0},
                            "cross_reconstruction": {"max": 1.0, "start": 0, "end": 0},
                            "alignment": {"max": 1.0, "start": 0, "end": 0}}},
        "classifier": {"strategy": "feature_space", "epochs": 30, "lr": 1e-2,
                       "unseen_samples": 24}})
    threads = torch.get_num_threads()       # module fixtures run before conftest's
    torch.set_num_threads(1)
    try:
        model, prep, _ = _trained(recipe)
    finally:
        torch.set_num_threads(threads)
    return recipe, model, prep


@pytest.mark.parametrize("join", [False, True])
def test_feature_space_strategy_on_a_separable_toy(separable, join):
    recipe, model, prep = separable
    recipe.classifier.strategy_options = {"join_codes": join}
    metrics, strategy = run_classifier_stage(recipe, model, prep, log=lambda s: None)
    assert metrics["result"]["S"] > 0.95 and metrics["result"]["U"] > 0.9, metrics["result"]
    # 35 seen classes x 24 real rows + 5 unseen x 24 generated ones
    assert strategy.samples == 35 * 24 + 5 * 24
    strategy, _, (z_s, y_s, z_u, y_u) = fit_stage(recipe, model, prep)
    x_u = prep.features[torch.as_tensor(prep.splits["test_unseen"])]
    scores = strategy(z_u, x_u)
    if not join:                           # the features alone decide: codes are ignored
        assert torch.equal(scores, strategy(torch.randn_like(z_u), x_u))
    seen, unseen = stage_classes(prep)
    # the rows' features, not their order, decide: permuted features, permuted decisions
    perm = torch.randperm(x_u.shape[0])
    assert torch.equal(decide(strategy(z_u[perm], x_u[perm]), seen, unseen),
                       decide(scores, seen, unseen)[perm])


def test_feature_space_bad_input_is_named_before_training(tmp_path):
    fs = ["classifier.strategy=feature_space"]
    with pytest.raises(RecipeError, match="cross-decoder.*cross_reconstruction"):
        load_recipe(DEMO, fs + ["train.terms.cross_reconstruction.enabled=false"])
    with pytest.raises(RecipeError, match="cross_reconstruction"):
        load_recipe(DEMO, fs + ["train.epochs=8"])      # the demo's term starts at epoch 8
    with pytest.raises(RecipeError, match="join_codes must be true or false"):
        load_recipe(DEMO, fs + ["classifier.strategy_options={join_codes: 1}"])
    with pytest.raises(RecipeError, match="unseen_samples must be a positive"):
        load_recipe(DEMO, fs + ["classifier.strategy_options={unseen_samples: 0}"])
    with pytest.raises(RecipeError, match="did you mean 'join_codes'"):
        load_recipe(DEMO, fs + ["classifier.strategy_options={join_code: true}"])
    with pytest.raises(RecipeError, match="energy.*logits"):
        load_recipe(DEMO_CAL, fs)                       # its gate grid includes energy
    load_recipe(DEMO_CAL, fs + ["calibration.gate_detectors=[vmf]"])
    out = tmp_path / "dava"
    assert train_main([DEMO, "--out", str(out), "--set", fs[0], "--set",
                       "train.terms.cross_reconstruction.enabled=false"]) == 2
    assert not os.path.exists(out / "checkpoint.pt")


# ---------------------------------------------------------------------------- side modalities
def test_two_side_modalities_train_and_evaluate_on_the_demo():
    """Image, MiniLM-like ``att`` and hypernym indicators: one encoder and decoder each,
    trained together; the stage splits each unseen class's budget between the two side
    encoders (in data.side_info order) and the prototypes average their codes."""
    r = load_recipe(DEMO, QUICK + [TWO_SIDES])
    assert r.train.numerics == "fast"           # the official step has one side modality
    model, prep, history = _trained(r)
    assert list(model.encoders) == list(model.decoders) == ["image", "att", "hypernym"]
    assert prep.side["hypernym"].shape == (40, 16)
    assert history[-1]["reconstruction"] < history[0]["reconstruction"]
    metrics, strategy = run_classifier_stage(r, model, prep, log=lambda s: None)
    result = metrics["result"]
    assert set(result) == {"S", "U", "H"} and all(0 <= v <= 1 for v in result.values())
    assert result["S"] + result["U"] > 0.1, result       # above chance (2.5 % each)
    assert strategy.samples == 30 * 200 + 10 * 400
    # the budget split, by hand: spread ~0 makes every sample its posterior's mean
    seen, unseen = stage_classes(prep)
    r.classifier.unseen_spread, r.classifier.unseen_samples = 1e-9, 5
    r.classifier.sampling = "random"
    data = build_classifier_data(model, prep.features, prep.labels, prep.side, prep.splits,
                                 r.classifier, seen[:0], unseen[:1])
    assert split_budget(5, 2) == [3, 2] and data.train_z.shape[0] == 5
    c = int(unseen[0])
    codes = {m: model.codes(m, prep.side[m][c:c + 1]) for m in ("att", "hypernym")}
    assert torch.allclose(data.train_z[:3], codes["att"].expand(3, -1), atol=1e-4)
    assert torch.allclose(data.train_z[3:], codes["hypernym"].expand(2, -1), atol=1e-4)
    r.classifier.strategy = "prototype"
    _, proto = run_classifier_stage(r, model, prep, log=lambda s: None)
    assert torch.allclose(proto.prototypes[c], (codes["att"] + codes["hypernym"])[0] / 2)


def test_a_side_modality_the_data_lacks_is_named_before_training(tmp_path):
    with pytest.raises(RecipeError, match="provides only 'att', 'att_hypernym'"):
        prepare(load_recipe(DEMO, ["data.side_info=[{key: att}, {key: att_text}]"]),
                torch.device("cpu"))
    folder = tmp_path / "xlsa"
    save_xlsa17(prepare(load_recipe(DEMO), torch.device("cpu")).fs, str(folder))
    out = tmp_path / "run"
    code = train_main([DEMO, "--out", str(out), "--set", "data.kind=xlsa17", "--set",
                       f"data.path={folder}", "--set", TWO_SIDES])
    assert code == 2 and not os.path.exists(out / "checkpoint.pt")
    with pytest.raises(DataError, match="key 'att_hypernym' not found"):
        prepare(load_recipe(DEMO, ["data.kind=xlsa17", f"data.path={folder}", TWO_SIDES]),
                torch.device("cpu"))


# ---------------------------------------------------------------------------- named errors
@pytest.mark.parametrize("value", [0, -0.5, "cold"])
def test_a_temperature_not_above_zero_is_named_when_the_recipe_is_resolved(value):
    with pytest.raises(RecipeError, match="contrastive.options: temperature must be a "
                                          "positive number"):
        load_recipe(DEMO, [f"train.terms.contrastive.options={{temperature: {value}}}"])
    with pytest.raises(RecipeError, match="did you mean 'temperature'"):
        load_recipe(DEMO, ["train.terms.contrastive.options={temprature: 0.1}"])


# ---------------------------------------------------------------------------- calibration
def test_selection_with_the_new_levers_never_sees_test_rows():
    """The poisoning test of tests/test_stage.py with a feature-space stage (it reads test
    features) on a VAE trained with the contrastive term: every real test row replaced by
    garbage leaves the validation table and the choice unchanged."""
    recipe = validation_recipe(load_recipe(DEMO_CAL, SHORT + [
        "classifier.strategy=feature_space", "classifier.strategy_options={join_codes: true}",
        "train.terms.cross_reconstruction.start=0", "calibration.gate_detectors=[vmf]",
        "calibration.unseen_spread=[1.0, 2.0]",
        "train.terms.contrastive={enabled: true, max: 2}"]))
    tables = []
    for poison in (False, True):
        model, prep = _validation_model(recipe, poison)
        tables.append(choose_knobs(recipe, model, prep, log=lambda s: None))
    assert tables[0] == tables[1]
    assert len(tables[0][0]) > 4
