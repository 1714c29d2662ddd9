"""Stacked replicas (hyperzsl-train --seeds): each replica's loss and gradient equal a
single model's on the same batch and noise, replica run folders are ordinary run
folders, replicas match single runs statistically, and what cannot stack is refused."""
import contextlib
import json
import os
import statistics

import pytest
import torch
from conftest import REPO

from hyperzsl.cli import eval_main, train_main
from hyperzsl.recipe import load_recipe
from hyperzsl.training import build_model, build_objective, stack_models, unstacked_state

DEMO = os.path.join(REPO, "recipes", "demo.yaml")


def _queue_noise(monkeypatch, queue):
    """torch.randn returns the prepared tensors in order (the posterior noise)."""
    def fake(shape, **kwargs):
        out = queue.pop(0)
        assert tuple(out.shape) == tuple(shape), (out.shape, shape)
        return out.to(kwargs.get("dtype") or out.dtype)
    monkeypatch.setattr(torch, "randn", fake)


def test_replica_losses_and_gradients_equal_single_models(monkeypatch):
    recipe = load_recipe(DEMO, ["model.latent_dim=6", "model.image_hidden=[24, 20]",
                                "model.side_hidden=[16, 12]", "train.numerics=fast"])
    dims, k, b = {"image": 30, "att": 9}, 3, 7
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(build_model(recipe, dims))
    stacked = stack_models(models)
    objective = build_objective(recipe)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(k, b, 30, generator=g)
    a = torch.rand(k, b, 9, generator=g)
    noise = {m: torch.randn(k, b, 1, generator=g) for m in ("image", "att")}
    epoch = 40                                       # every term at full weight

    _queue_noise(monkeypatch, [noise["image"], noise["att"]])
    loss, parts = objective(stacked, {"image": x, "att": a}, epoch)
    loss.sum().backward()
    assert loss.shape == (k,)
    for i, model in enumerate(models):
        _queue_noise(monkeypatch, [noise["image"][i], noise["att"][i]])
        single, single_parts = objective(model, {"image": x[i], "att": a[i]}, epoch)
        single.backward()
        torch.testing.assert_close(loss[i], single, rtol=1e-5, atol=1e-4)
        for name, value in single_parts.items():
            torch.testing.assert_close(parts[name][i], value, rtol=1e-5, atol=1e-4)
        grads = {n: p.grad[i] for n, p in stacked.named_parameters()}
        for n, p in model.named_parameters():
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-5)
    # a replica unstacks into a plain model with that replica's weights
    plain = build_model(recipe, dims)
    plain.load_state_dict(unstacked_state(stacked, 1))
    torch.testing.assert_close(plain.encoders["image"].hidden.weight,
                               models[1].encoders["image"].hidden.weight)


def test_replica_layer_gradients_are_exact_and_in_the_weights_layout():
    """The stacked layer's hand-written backward against numerical gradients (float64)
    and against K separate nn.Linear layers."""
    from hyperzsl.training.stacked import StackedLinear, _StackedAffine
    torch.manual_seed(0)
    layer = StackedLinear([torch.nn.Linear(4, 6).double() for _ in range(3)])
    x = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_StackedAffine.apply, (x, layer.weight, layer.bias))
    layer(x).square().sum().backward()
    for k in range(3):
        single = torch.nn.Linear(4, 6).double()
        single.load_state_dict({"weight": layer.weight[k].detach(),
                                "bias": layer.bias[k].detach()})
        single(x[k].detach()).square().sum().backward()
        for got, want in ((layer.weight.grad[k], single.weight.grad),
                          (layer.bias.grad[k], single.bias.grad)):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


FAST = ["--set", "train.epochs=6", "--set", "classifier.epochs=3"]


def test_replica_run_folders_are_ordinary_run_folders(tmp_path):
    out = tmp_path / "rep"
    assert train_main([DEMO, "--seeds", "0-1", "--out", str(out), *FAST]) == 0
    for seed in (0, 1):
        run = out / f"seed{seed}"
        info = json.load(open(run / "run.json"))
        assert info["status"] == "done" and info["seed"] == seed
        assert info["replica"] == {"index": seed, "of": 2, "seeds": [0, 1], "folder": str(out)}
        metrics = json.load(open(run / "metrics.json"))
        assert len(metrics["vae_history"]) == 6
        assert eval_main([str(run)]) == 0            # hyperzsl-eval reads it
        assert json.load(open(run / "eval.json"))["result"] == metrics["result"]
    h0 = json.load(open(out / "seed0" / "metrics.json"))["vae_history"]
    h1 = json.load(open(out / "seed1" / "metrics.json"))["vae_history"]
    assert h0[0]["loss"] != h1[0]["loss"]            # two replicas, not one twice


@pytest.mark.slow
def test_replicas_match_single_runs_statistically(tmp_path):
    """6 stacked replicas against 6 single runs with the same seeds on the demo: the
    means of S, U and H agree within three standard errors of their difference."""
    seeds = list(range(6))
    assert train_main([DEMO, "--seeds", "0-5", "--out", str(tmp_path / "rep")]) == 0
    rep = [json.load(open(tmp_path / "rep" / f"seed{s}" / "metrics.json"))["result"]
           for s in seeds]
    single = []
    for s in seeds:
        out = tmp_path / f"single{s}"
        assert train_main([DEMO, "--seed", str(s), "--out", str(out)]) == 0
        single.append(json.load(open(out / "metrics.json"))["result"])
    for key in ("S", "U", "H"):
        a, b = [r[key] for r in rep], [r[key] for r in single]
        se = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
        assert abs(statistics.mean(a) - statistics.mean(b)) <= 3 * se + 0.01, (key, a, b)
        assert statistics.mean(a) > 0.5, (key, a)     # replicas learn, as single runs do


@pytest.mark.parametrize("args, message", [
    (["--set", "model.family=vmf"], "latent family 'vmf' cannot be stacked"),
    (["--set", "train.terms.classification.enabled=true"], "classification cannot be stacked"),
    (["--set", "train.batching=random_subsets_stepwise"], "random_subsets_stepwise"),
    (["--set", "train.numerics=official"], "train.numerics official"),
])
def test_what_cannot_stack_is_refused_before_training(tmp_path, capsys, args, message):
    out = tmp_path / "rep"
    assert train_main([DEMO, "--seeds", "0-1", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("seeds, message", [("3-1", "no seeds (K must be >= 1)"),
                                            ("0,0", "listed twice"), ("a-b", "expected A-B")])
def test_bad_seed_lists_are_named(tmp_path, capsys, seeds, message):
    assert train_main([DEMO, "--seeds", seeds, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_replica_stages_trained_stacked_do_not_depend_on_the_other_replicas():
    """Replica k's stacked classifier stage gives the same history and weights whether it
    trains beside other replicas or alone (which is how hyperzsl-eval reruns it)."""
    import copy

    from hyperzsl.data.prepare import prepare
    from hyperzsl.stage.stacked import fit_stacked_softmax
    recipe = load_recipe(DEMO, ["classifier.epochs=3", "train.numerics=fast"])
    prep = prepare(recipe, torch.device("cpu"))
    recipes, models = [], []
    for seed in (0, 1, 2):
        r = copy.deepcopy(recipe)
        r.seed = seed
        torch.manual_seed(seed)
        recipes.append(r)
        models.append(build_model(r, prep.input_dims, prep.fs.num_classes))
    together = fit_stacked_softmax(recipes, models, prep)
    alone = fit_stacked_softmax(recipes[1:2], models[1:2], prep)[0]
    assert together[1][1] == alone[1]                       # per-epoch test history
    assert torch.equal(together[1][0].clf.weight, alone[0].clf.weight)
    assert together[0][1] != together[1][1]                 # replicas differ


def test_replica_loss_weights_can_differ_per_replica(monkeypatch):
    """Replicas whose alignment and KL weights differ (--vary): each replica's loss and
    gradient equal a single model's built from its own recipe."""
    base = ["model.latent_dim=6", "model.image_hidden=[24, 20]", "model.side_hidden=[16, 12]",
            "train.numerics=fast"]
    values = [("2", "0.1"), ("8.13", "0.25"), ("20", "1.0")]
    recipes = [load_recipe(DEMO, base + [f"train.terms.alignment.max={a}",
                                         f"train.terms.kl.max={kl}"]) for a, kl in values]
    dims, k, b = {"image": 30, "att": 9}, 3, 7
    models = []
    for seed, r in enumerate(recipes):
        torch.manual_seed(seed)
        models.append(build_model(r, dims))
    stacked = stack_models(models)
    objectives = [build_objective(r) for r in recipes]
    from hyperzsl.training.loop import replica_weights
    epoch = 40
    weights = {name: torch.tensor(v) for name, v in replica_weights(objectives, epoch).items()}
    assert weights["alignment"].tolist() == pytest.approx([2.0, 8.13, 20.0])
    g = torch.Generator().manual_seed(5)
    x, a = torch.rand(k, b, 30, generator=g), torch.rand(k, b, 9, generator=g)
    noise = {m: torch.randn(k, b, 1, generator=g) for m in ("image", "att")}
    _queue_noise(monkeypatch, [noise["image"], noise["att"]])
    loss, _ = objectives[0](stacked, {"image": x, "att": a}, epoch, weights=weights)
    loss.sum().backward()
    for i, (model, objective) in enumerate(zip(models, objectives)):
        _queue_noise(monkeypatch, [noise["image"][i], noise["att"][i]])
        single, _ = objective(model, {"image": x[i], "att": a[i]}, epoch)
        single.backward()
        torch.testing.assert_close(loss[i], single, rtol=1e-5, atol=1e-4)
        grads = {n: p.grad[i] for n, p in stacked.named_parameters()}
        for n, p in model.named_parameters():
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-5)


def test_replicas_that_vary_a_weight_write_a_folder_per_value(tmp_path):
    out = tmp_path / "rep"
    assert train_main([DEMO, "--seeds", "0", "--vary", "train.terms.alignment.max=2,8.13",
                       "--out", str(out), *FAST]) == 0
    for value in (2.0, 8.13):
        run = out / f"alignment.max-{value:g}" / "seed0"
        info = json.load(open(run / "run.json"))
        assert info["replica"]["variant"] == f"alignment.max-{value:g}"
        assert load_recipe(str(run / "recipe.yaml")).train.terms.alignment.max == value
        history = json.load(open(run / "metrics.json"))["vae_history"]
        assert max(r["weights"]["alignment"] for r in history) <= value
        assert eval_main([str(run)]) == 0            # hyperzsl-eval reproduces it
        assert json.load(open(run / "eval.json"))["result"] == \
            json.load(open(run / "metrics.json"))["result"]


@pytest.mark.parametrize("args, message", [
    (["--vary", "train.terms.alignment.max=2,4"], "give their seeds with --seeds"),
    (["--seeds", "0", "--vary", "train.lr=1e-3,1e-4"], "only in loss-term weights"),
    (["--seeds", "0", "--vary", "train.terms.alignment.enabled=true,false"],
     "only in loss-term weights"),
    (["--seeds", "0", "--vary", "train.terms.alignment.max"], "expected KEY=V1,V2"),
    (["--seeds", "0", "--vary", "train.terms.classification.max=1,2"], "is off in this recipe"),
    (["--seeds", "0", "--vary", "train.terms.kl.max=0.1,x"], "kl.max: expected a number"),
])
def test_replica_knobs_that_cannot_vary_are_named(tmp_path, capsys, args, message):
    out = tmp_path / "rep"
    with pytest.raises(SystemExit) if "--seeds" not in args else contextlib.nullcontext():
        assert train_main([DEMO, "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
