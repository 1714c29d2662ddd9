"""Loss terms against hand-computed values, warm-ups, and the faithful-mode quirks."""
import math

import pytest
import torch

from hyperzsl.latent import build_family
from hyperzsl.latent.gaussian import DiagonalGaussian
from hyperzsl.training import MultimodalVAE, Objective, Warmup


def test_gaussian_kl_and_w2_by_hand():
    fam = build_family("gaussian", 2)
    q = DiagonalGaussian(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]]))
    # KL = 1/2 sum(mu^2 + var - 1 - logvar) = 1/2[(1 + 1 - 1 - 0) + (0 + 2 - 1 - ln 2)]
    assert fam.kl(q).item() == pytest.approx(0.5 * (1 + 1 - math.log(2)), rel=1e-6)
    # matches torch.distributions' own KL to the prior
    ref = torch.distributions.kl_divergence(q, fam.prior((1,)))
    assert fam.kl(q).item() == pytest.approx(ref.item(), rel=1e-6)
    p = DiagonalGaussian(torch.tensor([[0.0, 2.0]]), torch.tensor([[math.log(4.0), 0.0]]))
    # W2 = sqrt(|dmu|^2 + |dsigma|^2) = sqrt((1 + 4) + ((1 - 2)^2 + (sqrt2 - 1)^2))
    expect = math.sqrt(5 + 1 + (math.sqrt(2) - 1) ** 2)
    assert fam.align(q, p).item() == pytest.approx(expect, rel=1e-6)
    assert fam.align(q, q).item() == 0.0


@pytest.mark.parametrize("w, checks", [
    (Warmup(8.13, 6, 22), {0: 0.0, 6: 0.0, 14: 8.13 * 8 / 16, 22: 8.13, 99: 8.13}),
    (Warmup(2.37, 21, 75), {21: 0.0, 48: 2.37 * 27 / 54, 75: 2.37, 80: 2.37}),
    (Warmup(0.25, 0, 93), {0: 0.0, 1: 0.25 / 93, 93: 0.25, 99: 0.25}),
    (Warmup(1.0, 5, 5), {4: 0.0, 5: 1.0}),
])
def test_warmups(w, checks):
    for epoch, value in checks.items():
        assert w(epoch) == pytest.approx(value)


def _deterministic_model():
    """Tiny 2-modality model whose posteriors have sigma ~ 0, so z = mu exactly and
    every loss term can be computed by hand from the network outputs."""
    torch.manual_seed(0)
    fam = build_family("gaussian", 3, mode="faithful")
    model = MultimodalVAE({"image": 5, "att": 4}, {"image": (6, 7), "att": (6, 7)}, fam)
    with torch.no_grad():
        for enc in model.encoders.values():
            enc.head.bias[3:] = -200.0  # logvar -> exp(logvar) = 0
    return model


def test_objective_terms_by_hand():
    model = _deterministic_model()
    x, a = torch.rand(3, 5), torch.rand(3, 4)
    weights = {"kl": Warmup(0.5), "cross_reconstruction": Warmup(2.0),
               "alignment": Warmup(3.0)}
    total, parts = Objective(weights)(model, {"image": x, "att": a}, epoch=0)
    with torch.no_grad():
        head_x, head_a = model.encoders["image"](x), model.encoders["att"](a)
        mu_x, lv_x = head_x[:, :3], head_x[:, 3:]
        mu_a, lv_a = head_a[:, :3], head_a[:, 3:]
        rec = ((model.decoders["image"](mu_x) - x).abs().sum()
               + (model.decoders["att"](mu_a) - a).abs().sum())
        cross = ((model.decoders["image"](mu_a) - x).abs().sum()
                 + (model.decoders["att"](mu_x) - a).abs().sum())
        # KL per dim = 1/2(mu^2 + exp(logvar) - 1 - logvar), exp(logvar) ~ 0 here
        kl = 0.5 * ((mu_x ** 2 - 1 - lv_x).sum() + (mu_a ** 2 - 1 - lv_a).sum())
        da = (mu_x - mu_a).norm(dim=1).sum()  # sigmas are both ~0
    assert parts["reconstruction"].item() == pytest.approx(rec.item(), rel=1e-5)
    assert parts["cross_reconstruction"].item() == pytest.approx(cross.item(), rel=1e-5)
    assert parts["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert parts["alignment"].item() == pytest.approx(da.item(), rel=1e-5)
    expect = rec + 0.5 * kl + 2.0 * cross + 3.0 * da
    assert total.item() == pytest.approx(expect.item(), rel=1e-5)
    mean_total, _ = Objective(weights, reduction="mean")(model, {"image": x, "att": a}, 0)
    assert mean_total.item() == pytest.approx(expect.item() / 3, rel=1e-5)


def test_switched_off_terms_are_absent():
    model = _deterministic_model()
    batch = {"image": torch.rand(2, 5), "att": torch.rand(2, 4)}
    _, parts = Objective({"kl": Warmup(0.25, 0, 93)})(model, batch, epoch=0)
    assert set(parts) == {"reconstruction"}  # KL weight is 0 in epoch 0
    _, parts = Objective({"kl": Warmup(0.25, 0, 93)})(model, batch, epoch=10)
    assert set(parts) == {"reconstruction", "kl"}


def test_faithful_quirks_present():
    """faithful: sigma = exp(logvar), one epsilon per sample shared by all dimensions, so
    (z - mu) / exp(logvar) is constant along each row; clean: exp(logvar/2), per-dim."""
    torch.manual_seed(1)
    loc, logvar = torch.randn(4000, 8), torch.randn(4000, 8) * 0.5
    q = DiagonalGaussian(loc, logvar)
    faithful = build_family("gaussian", 8, mode="faithful")
    eps = (faithful.sample(q) - loc) / logvar.exp()
    assert torch.allclose(eps, eps[:, :1].expand_as(eps), atol=1e-4)
    assert eps[:, 0].std().item() == pytest.approx(1.0, abs=0.05)
    clean = build_family("gaussian", 8, mode="clean")
    eps = (clean.sample(q) - loc) / torch.exp(0.5 * logvar)
    assert eps.std(dim=1).mean().item() > 0.5  # dimensions vary independently
    assert eps.std().item() == pytest.approx(1.0, abs=0.05)
    assert abs(torch.corrcoef(eps[:, :2].T)[0, 1].item()) < 0.1


def test_family_options_from_mode_and_override():
    assert build_family("gaussian", 4, "faithful").config == {
        "sample_scale": "exp_logvar", "shared_epsilon": True}
    fam = build_family("gaussian", 4, "faithful", {"shared_epsilon": False})
    assert fam.config["shared_epsilon"] is False
    from hyperzsl.errors import RecipeError
    with pytest.raises(RecipeError, match="unknown option"):
        build_family("gaussian", 4, "clean", {"sigma": 1})


def test_training_reduces_the_loss():
    from hyperzsl.data import make_synthetic, scale_features
    from hyperzsl.recipe import recipe_from_dict
    from hyperzsl.training import build_model, build_objective, fit
    torch.manual_seed(0)
    fs = make_synthetic(classes=8, unseen=2, per_class=20, attr_dim=6, feature_dim=32)
    r = recipe_from_dict({"model": {"latent_dim": 8, "image_hidden": [32, 32],
                                    "side_hidden": [16, 16]},
                          "train": {"epochs": 20, "lr": 1e-3, "terms": {
                              "cross_reconstruction": {"max": 1.0, "start": 2, "end": 6}}}})
    tv = fs.splits["trainval"]
    x = torch.as_tensor(scale_features(fs, "minmax_trainval")[tv])
    y = torch.as_tensor(fs.labels[tv])
    model = build_model(r, {"image": 32, "att": 6})
    hist = fit(model, build_objective(r), x, y, {"att": torch.as_tensor(fs.side_info["att"])},
               r.train, log=lambda m: None)
    assert hist[-1]["reconstruction"] < 0.85 * hist[0]["reconstruction"]
    assert hist[-1]["cross_reconstruction"] < hist[3]["cross_reconstruction"]


def test_classification_term_by_hand():
    """Cross-entropy of the shared latent classifier, summed over both modalities'
    latents (z = mu here), against a hand-written log-softmax."""
    torch.manual_seed(1)
    fam = build_family("gaussian", 3, mode="faithful")
    model = MultimodalVAE({"image": 5, "att": 4}, {"image": (6, 7), "att": (6, 7)}, fam,
                          num_classes=4)
    with torch.no_grad():
        for enc in model.encoders.values():
            enc.head.bias[3:] = -200.0
    x, a, y = torch.rand(3, 5), torch.rand(3, 4), torch.tensor([0, 3, 1])
    objective = Objective({"classification": Warmup(0.7)})
    total, parts = objective(model, {"image": x, "att": a}, 0, y)
    with torch.no_grad():
        expect = 0.0
        for enc, inp in ((model.encoders["image"], x), (model.encoders["att"], a)):
            logits = model.latent_classifier(enc(inp)[:, :3])
            logp = logits - logits.exp().sum(1, keepdim=True).log()
            expect -= logp[torch.arange(3), y].sum().item()
    assert parts["classification"].item() == pytest.approx(expect, rel=1e-5)
    assert total.item() == pytest.approx(parts["reconstruction"].item() + 0.7 * expect,
                                         rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        objective(model, {"image": x, "att": a}, 0)


def test_classification_term_trains_the_latent_classifier():
    """Behaviour: with only the classification term on, the classifier on the latents
    learns separable classes (loss falls by more than half)."""
    torch.manual_seed(2)
    fam = build_family("vmf", 4)
    model = MultimodalVAE({"image": 6, "att": 3}, {"image": (16, 16), "att": (16, 16)}, fam,
                          num_classes=3)
    centres, att = torch.randn(3, 6) * 3, torch.eye(3)
    y = torch.arange(3).repeat(20)
    x = centres[y] + 0.3 * torch.randn(60, 6)
    objective = Objective({"classification": Warmup(1.0)})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        total, parts = objective(model, {"image": x, "att": att[y]}, 0, y)
        first = parts["classification"].item() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert parts["classification"].item() < 0.5 * first


@pytest.mark.parametrize("mode", ["faithful", "clean"])
def test_gaussian_sample_spread_scales_the_deviation_from_the_code(mode):
    fam = build_family("gaussian", 6, mode=mode)
    q = DiagonalGaussian(torch.randn(4, 6, dtype=torch.float64),
                         torch.randn(4, 6, dtype=torch.float64))
    torch.manual_seed(3)
    plain = fam.sample(q)
    torch.manual_seed(3)
    wide = fam.sample(q, spread=2.5)
    torch.testing.assert_close(wide - q.loc, 2.5 * (plain - q.loc), rtol=1e-12, atol=1e-12)
