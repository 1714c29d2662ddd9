"""The captured training step (train.capture) on CPU: its static step, run eagerly,
reproduces the plain training loop bit for bit (single runs and stacked replicas), reads
nothing back to the host for any family, and what cannot be captured is refused before
training. The graph itself is tested on CUDA (tests/test_gpu.py)."""
import copy
import os

import pytest
import torch
from conftest import REPO

from hyperzsl.cli import train_main
from hyperzsl.data import make_synthetic, scale_features
from hyperzsl.errors import RecipeError
from hyperzsl.recipe import load_recipe, recipe_from_dict
from hyperzsl.training import (
    StaticStep,
    build_model,
    build_objective,
    fit,
    fit_replicas,
    make_optimizer,
    stack_models,
)

DEMO = os.path.join(REPO, "recipes", "demo.yaml")
# every warm-up phase within 8 epochs: weights at 0, ramping, and at their maximum
TERMS = {"kl": {"max": 0.25, "start": 0, "end": 5},
         "cross_reconstruction": {"max": 2.37, "start": 2, "end": 6},
         "alignment": {"max": 8.13, "start": 1, "end": 4}}


def _setup(family="gaussian", extra_terms=None, **train):
    fs = make_synthetic(classes=8, unseen=2, per_class=20, attr_dim=6, feature_dim=24, seed=1)
    recipe = recipe_from_dict({
        "mode": "faithful",
        "model": {"family": family, "latent_dim": 4, "image_hidden": [16, 12],
                  "side_hidden": [10, 8]},
        "train": {"epochs": 8, "batch_size": 16, "lr": 1e-3, "numerics": "fast",
                  "terms": {**TERMS, **(extra_terms or {})}, **train}})
    tv = fs.splits["trainval"]
    x = torch.as_tensor(scale_features(fs, "minmax_trainval")[tv])
    y = torch.as_tensor(fs.labels[tv])
    side = {"att": torch.as_tensor(fs.side_info["att"])}
    return recipe, x, y, side, fs.num_classes


def _quiet(_):
    pass


@pytest.mark.parametrize("batching", ["random_subsets", "shuffled_epochs"])
def test_captured_static_step_run_eagerly_reproduces_the_training_loop(batching):
    recipe, x, y, side, _ = _setup(batching=batching)
    if batching == "shuffled_epochs":
        x, y = x[:96], y[:96]            # whole batches: the static step refills a short one
    torch.manual_seed(0)
    plain = build_model(recipe, {"image": 24, "att": 6})
    static = copy.deepcopy(plain)
    objective = build_objective(recipe)
    torch.manual_seed(3)
    want = fit(plain, objective, x, y, side, recipe.train, log=_quiet)
    torch.manual_seed(3)
    got = fit(static, objective, x, y, side, recipe.train, make_optimizer(static, recipe.train),
              log=_quiet, static=True)
    assert [sorted(r) for r in got] == [sorted(r) for r in want]     # the same record keys
    for a, b in zip(got, want):
        assert {k: v for k, v in a.items() if k != "seconds"} == \
            {k: v for k, v in b.items() if k != "seconds"}
    for (name, p), q in zip(static.named_parameters(), plain.parameters()):
        assert torch.equal(p, q), name


def test_captured_static_step_of_stacked_replicas_reproduces_the_replica_loop():
    recipe, x, y, side, _ = _setup()
    models = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        models.append(build_model(recipe, {"image": 24, "att": 6}))
    eager, static = stack_models(models), stack_models(models)
    objective = build_objective(recipe)
    torch.manual_seed(4)
    want = fit_replicas(eager, objective, x, y, side, recipe.train, [0, 1, 2], log=_quiet)
    torch.manual_seed(4)
    got = fit_replicas(static, objective, x, y, side, recipe.train, [0, 1, 2], log=_quiet,
                       static=True)
    for a, b in zip(got, want):
        for ra, rb in zip(a, b):
            assert {k: v for k, v in ra.items() if k != "seconds"} == \
                {k: v for k, v in rb.items() if k != "seconds"}
    for (name, p), q in zip(static.named_parameters(), eager.parameters()):
        assert torch.equal(p, q), name


class _HostRead(AssertionError):
    pass


@pytest.fixture
def no_host_reads(monkeypatch):
    """Every Python-level read of a tensor's value raises (what would be a device sync,
    or an error under capture, on CUDA)."""
    def refuse(*args, **kwargs):
        raise _HostRead("the step read a tensor's value back to the host")
    def arm():
        for name in ("__bool__", "__float__", "__int__", "__index__", "item", "tolist",
                     "numpy", "cpu"):
            monkeypatch.setattr(torch.Tensor, name, refuse)
    return arm


@pytest.mark.parametrize("family, extra", [
    ("gaussian", {}), ("vmf", {}), ("power_spherical", {}),
    ("vmf", {"alignment": {"enabled": False},               # the boundary model
             "classification": {"enabled": True, "max": 1.0, "start": 0, "end": 0}}),
], ids=["gaussian", "vmf", "power_spherical", "boundary"])
def test_captured_static_step_reads_nothing_back_to_the_host(family, extra, no_host_reads):
    recipe, x, y, side, classes = _setup(family, extra)
    if family == "vmf":
        recipe.model.family_options["sync_free"] = True     # as train.capture sets it
    torch.manual_seed(0)
    model = build_model(recipe, {"image": 24, "att": 6}, classes)
    objective = build_objective(recipe)
    optimizer = make_optimizer(model, recipe.train, capturable=True)
    step = StaticStep(model, objective, optimizer, x, y, side, "image", (16,))
    before = [p.detach().clone() for p in model.parameters()]
    step.start_epoch(3)
    rows = [torch.randperm(x.shape[0])[:16] for _ in range(3)]
    no_host_reads()
    for r in rows:                        # the first step initialises Adam's state too
        step.run(r)
    assert all(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))


def test_captured_step_asked_for_on_cpu_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main([DEMO, "--set", "train.capture=true", "--out", str(out)]) == 2
    assert "train.capture: true replays a CUDA graph, but the device is cpu" in \
        capsys.readouterr().err
    assert not out.exists()
    assert train_main([DEMO, "--seeds", "0-1", "--set", "train.capture=true",
                       "--out", str(out)]) == 2
    assert "replays a CUDA graph" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("overrides, message", [
    (["train.capture=true", "train.numerics=official"], "contradicts train.numerics: official"),
    (["train.capture=true", "train.numerics=fast", "train.batching=random_subsets_stepwise"],
     "random_subsets_stepwise"),
])
def test_what_cannot_be_captured_is_named_in_the_recipe(overrides, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(DEMO, overrides)


def test_captured_recipes_choose_what_a_graph_needs():
    faithful = load_recipe(DEMO, ["train.capture=true"])
    assert faithful.train.numerics == "fast"                 # not the official stream
    assert faithful.train.batching == "random_subsets"
    vmf = load_recipe(os.path.join(REPO, "recipes", "demo_vmf.yaml"), ["train.capture=true"])
    assert vmf.model.family_options["sync_free"] is True
    with pytest.raises(RecipeError, match="sync-free sampler"):
        load_recipe(os.path.join(REPO, "recipes", "demo_vmf.yaml"),
                    ["train.capture=true", "model.family_options.sync_free=false"])
    assert load_recipe(DEMO).train.capture is None          # eager unless asked
