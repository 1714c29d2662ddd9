"""train.precision: bf16 mixed precision. The matrix products run in bfloat16 while
parameters, optimiser state, posteriors, KLs and losses stay float32; official numerics
refuse it; fp32 is untouched (the rest of the suite pins its numbers bit for bit)."""
import os

import pytest
import torch
from conftest import REPO
from test_captured import _quiet, _setup

from hyperzsl.cli import train_main
from hyperzsl.errors import RecipeError
from hyperzsl.latent import build_family
from hyperzsl.recipe import load_recipe, recipe_from_dict
from hyperzsl.training import build_model, build_objective, fit, fit_replicas, stack_models
from hyperzsl.training.precision import autocast, full

DEMO = os.path.join(REPO, "recipes", "demo.yaml")


def test_bf16_is_refused_with_official_numerics():
    with pytest.raises(RecipeError, match="contradicts train.numerics: official"):
        recipe_from_dict({"train": {"precision": "bf16", "numerics": "official"}})


def test_bf16_in_faithful_mode_resolves_to_fast_numerics():
    r = recipe_from_dict({"mode": "faithful", "train": {"precision": "bf16"}})
    assert r.train.numerics == "fast" and r.train.fused_optimizer
    assert recipe_from_dict({"mode": "faithful"}).train.numerics == "official"


def test_an_unknown_precision_names_the_closest():
    with pytest.raises(RecipeError, match="did you mean 'bf16'"):
        recipe_from_dict({"train": {"precision": "bf61"}})


def test_matrix_products_run_in_bf16_and_the_model_hands_back_float32():
    recipe, x, y, side, _ = _setup()
    model = build_model(recipe, {"image": 24, "att": 6})
    with autocast("bf16", "cpu"):
        raw = model.encoders["image"](x[:8])           # the head's GEMM
        q = model.encode("image", x[:8])
        recon = model.decode("image", q.rsample())
    assert raw.dtype == torch.bfloat16
    assert q.mean.dtype == torch.float32 and recon.dtype == torch.float32
    assert full(torch.zeros(2, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("family", ["gaussian", "vmf", "power_spherical"])
def test_the_kl_is_computed_in_float32_under_autocast(family):
    fam = build_family(family, 8, "clean")
    head = torch.randn(5, fam.head_size(), generator=torch.Generator().manual_seed(0))
    q = fam.posterior(head)
    plain = fam.kl(q)
    with autocast("bf16", "cpu"):
        mixed = fam.kl(fam.posterior(head))
    assert mixed.dtype == plain.dtype == torch.float32
    torch.testing.assert_close(mixed, plain, rtol=0, atol=0)


def test_bf16_training_learns_and_keeps_float32_state():
    recipe, x, y, side, _ = _setup()
    torch.manual_seed(0)
    model = build_model(recipe, {"image": 24, "att": 6})
    history = fit(model, build_objective(recipe), x, y, side, recipe.train, log=_quiet,
                  precision="bf16")
    # the reconstruction error falls (the weighted loss may rise while warm-ups ramp up)
    assert history[-1]["reconstruction"] < 0.9 * history[0]["reconstruction"]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_is_a_different_arithmetic_close_to_fp32():
    recipe, x, y, side, _ = _setup(epochs=1)
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model(recipe, {"image": 24, "att": 6})
        torch.manual_seed(1)
        losses[precision] = fit(model, build_objective(recipe), x, y, side, recipe.train,
                                log=_quiet, precision=precision)[0]["loss"]
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_bf16_composes_with_stacked_replicas():
    recipe, x, y, side, _ = _setup(epochs=3)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_model(recipe, {"image": 24, "att": 6}))
    histories = fit_replicas(stack_models(models), build_objective(recipe), x, y, side,
                             recipe.train, [0, 1], log=_quiet, precision="bf16")
    assert len(histories) == 2 and all(len(h) == 3 for h in histories)
    assert all(torch.isfinite(torch.tensor(h[-1]["loss"])) for h in histories)


def test_the_run_record_says_which_precision_ran(tmp_path):
    out = str(tmp_path / "run")
    assert train_main([DEMO, "--set", "train.epochs=2", "--set", "classifier.epochs=1",
                       "--set", "train.precision=bf16", "--out", out]) == 0
    with open(os.path.join(out, "run.json")) as fh:
        assert '"precision": "bf16 mixed (autocast on cpu' in fh.read()
    assert load_recipe(os.path.join(out, "recipe.yaml")).train.precision == "bf16"
