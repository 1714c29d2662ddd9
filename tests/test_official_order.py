"""train.numerics: official reproduces the official CADA-VAE arithmetic bit for bit: the
training step (against a line-by-line transcription of the official ``Model.trainstep``,
reference/cadavae.md section 4), the feature scaling (against scikit-learn's MinMaxScaler,
which the official code uses), the classifier's batch order (against torch's own
``DataLoader(shuffle=True)``), and which recipes resolve to it."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from hyperzsl.data import FeatureSet, scale_features, scale_new_rows
from hyperzsl.errors import RecipeError
from hyperzsl.latent import build_family
from hyperzsl.recipe import recipe_from_dict
from hyperzsl.stage.softmax import official_permutation
from hyperzsl.training import MultimodalVAE, Objective, Warmup
from hyperzsl.training.official import OfficialOrderObjective

DIMS = {"image": 20, "att": 6}
LATENT = 4
WARMUPS = {"kl": Warmup(0.25, 0, 9), "cross_reconstruction": Warmup(2.37, 2, 7),
           "alignment": Warmup(8.13, 1, 4)}


class OfficialEncoder(nn.Module):
    """models.encoder_template: Sequential(Linear, ReLU) and two head layers."""

    def __init__(self, ours):
        super().__init__()
        self.feature_encoder = nn.Sequential(copy.deepcopy(ours.hidden), nn.ReLU())
        w, b = ours.head.weight.detach(), ours.head.bias.detach()
        self._mu, self._logvar = nn.Linear(w.shape[1], LATENT), nn.Linear(w.shape[1], LATENT)
        with torch.no_grad():
            self._mu.weight.copy_(w[:LATENT]), self._mu.bias.copy_(b[:LATENT])
            self._logvar.weight.copy_(w[LATENT:]), self._logvar.bias.copy_(b[LATENT:])

    def forward(self, x):
        h = self.feature_encoder(x)
        return self._mu(h), self._logvar(h)


def official_trainstep(enc, dec, img, att, epoch):
    """vaemodel.Model.trainstep up to loss.backward(), transcribed (CPU tensors)."""
    crit = nn.L1Loss(reduction="sum")

    def reparameterize(mu, logvar):
        sigma = torch.exp(logvar)
        eps = torch.FloatTensor(logvar.size()[0], 1).normal_(0, 1)
        eps = eps.expand(sigma.size())
        return mu + sigma * eps

    mu_img, logvar_img = enc["image"](img)
    z_from_img = reparameterize(mu_img, logvar_img)
    mu_att, logvar_att = enc["att"](att)
    z_from_att = reparameterize(mu_att, logvar_att)
    img_from_img = dec["image"](z_from_img)
    att_from_att = dec["att"](z_from_att)
    reconstruction_loss = crit(img_from_img, img) + crit(att_from_att, att)
    img_from_att = dec["image"](z_from_att)
    att_from_img = dec["att"](z_from_img)
    cross_reconstruction_loss = crit(img_from_att, img) + crit(att_from_img, att)
    KLD = (0.5 * torch.sum(1 + logvar_att - mu_att.pow(2) - logvar_att.exp())) \
        + (0.5 * torch.sum(1 + logvar_img - mu_img.pow(2) - logvar_img.exp()))
    distance = torch.sqrt(torch.sum((mu_img - mu_att) ** 2, dim=1)
                          + torch.sum((torch.sqrt(logvar_img.exp())
                                       - torch.sqrt(logvar_att.exp())) ** 2, dim=1))
    distance = distance.sum()
    cross_reconstruction_factor = torch.FloatTensor([WARMUPS["cross_reconstruction"](epoch)])
    beta = torch.FloatTensor([WARMUPS["kl"](epoch)])
    distance_factor = torch.FloatTensor([WARMUPS["alignment"](epoch)])
    loss = reconstruction_loss - beta * KLD
    if cross_reconstruction_loss > 0:
        loss += cross_reconstruction_factor * cross_reconstruction_loss
    if distance_factor > 0:
        loss += distance_factor * distance
    loss.backward()
    return loss


def _models():
    torch.manual_seed(0)
    family = build_family("gaussian", LATENT, "faithful")
    ours = MultimodalVAE(DIMS, {"image": (32, 32), "att": (16, 16)}, family, split_heads=True)
    enc = {m: OfficialEncoder(ours.encoders[m]) for m in DIMS}
    dec = {m: nn.Sequential(copy.deepcopy(ours.decoders[m].hidden), nn.ReLU(),
                            copy.deepcopy(ours.decoders[m].out)) for m in DIMS}
    return ours, enc, dec


def _official_params(enc, dec):
    """The official parameters under hyperzsl's names (heads stacked)."""
    out = {}
    for m in DIMS:
        e, d = enc[m], dec[m]
        for f in ("weight", "bias"):
            out[f"encoders.{m}.hidden.{f}"] = getattr(e.feature_encoder[0], f)
            out[f"encoders.{m}.head.{f}"] = torch.cat([getattr(e._mu, f), getattr(e._logvar, f)])
            out[f"decoders.{m}.hidden.{f}"] = getattr(d[0], f)
            out[f"decoders.{m}.out.{f}"] = getattr(d[2], f)
    return out


def _official_grads(enc, dec):
    out = {}
    for m in DIMS:
        e, d = enc[m], dec[m]
        for f in ("weight", "bias"):
            out[f"encoders.{m}.hidden.{f}"] = getattr(e.feature_encoder[0], f).grad
            out[f"encoders.{m}.head.{f}"] = torch.cat([getattr(e._mu, f).grad,
                                                       getattr(e._logvar, f).grad])
            out[f"decoders.{m}.hidden.{f}"] = d[0].__getattr__(f).grad
            out[f"decoders.{m}.out.{f}"] = d[2].__getattr__(f).grad
    return out


def _batches(steps):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 20, generator=g)
    for _ in range(steps):
        att = torch.rand(50, 6, generator=g)
        yield torch.relu(att @ w + 0.3 * torch.randn(50, 20, generator=g)), att


@pytest.mark.parametrize("adam", [False, True])
def test_official_order_gives_the_official_gradients_bit_for_bit(adam):
    """Every gradient element equal (torch.equal, no tolerance) at epochs where each
    warm-up is off, rising and at its maximum; with Adam (the per-tensor loop on both
    sides) the parameters stay equal over a run of steps."""
    ours, enc, dec = _models()
    objective = OfficialOrderObjective(WARMUPS)
    theirs_params = [p for m in DIMS for p in list(enc[m].parameters()) + list(dec[m].parameters())]
    opt_theirs = torch.optim.Adam(theirs_params, lr=1e-3, amsgrad=True)
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-3, amsgrad=True)
    epochs = [0, 1, 2, 3, 5, 8, 12] * (3 if adam else 1)
    for step, ((img, att), epoch) in enumerate(zip(_batches(len(epochs)), epochs)):
        opt_theirs.zero_grad(), opt_ours.zero_grad()
        torch.manual_seed(100 + step)
        loss_theirs = official_trainstep(enc, dec, img, att, epoch)
        torch.manual_seed(100 + step)
        loss, _ = objective(ours, {"image": img, "att": att}, epoch)
        loss.backward()
        assert torch.equal(loss.reshape(1), loss_theirs.detach()), (step, epoch)
        grads = _official_grads(enc, dec)
        for name, p in ours.named_parameters():
            assert torch.equal(p.grad, grads[name]), (step, epoch, name)
        if adam:
            opt_theirs.step(), opt_ours.step()
            params = _official_params(enc, dec)
            for name, p in ours.named_parameters():
                assert torch.equal(p.detach(), params[name].detach()), (step, epoch, name)


def test_official_order_is_the_generic_objective_up_to_rounding():
    """Same loss as the generic objective (only the float order differs), same parts."""
    ours, _, _ = _models()
    img, att = next(_batches(1))
    torch.manual_seed(3)
    loss_a, parts_a = OfficialOrderObjective(WARMUPS)(ours, {"image": img, "att": att}, 5)
    ours.encoders["image"].blocks = ours.encoders["att"].blocks = None
    torch.manual_seed(3)
    loss_b, parts_b = Objective(WARMUPS)(ours, {"image": img, "att": att}, 5)
    assert set(parts_a) == set(parts_b)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=0)
    for k in parts_a:
        torch.testing.assert_close(parts_a[k], parts_b[k], rtol=1e-5, atol=0)


def test_official_scaling_is_scikit_learns_minmax_scaler_bit_for_bit():
    pre = pytest.importorskip("sklearn.preprocessing", reason="scikit-learn is the reference")
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(300, 40)), 0).astype(np.float32) * 3.7
    x[:, 5] = 2.5                                   # a constant column
    labels = np.repeat(np.arange(10), 30)
    fit_rows = np.arange(0, 300, 2)
    fs = FeatureSet(features=x, labels=labels, side_info={"att": np.eye(10, dtype=np.float32)},
                    splits={"trainval": fit_rows, "test_seen": np.arange(1, 300, 2),
                            "test_unseen": np.array([], dtype=int)}, source="toy")
    scaler = pre.MinMaxScaler().fit(x[fit_rows])
    assert np.array_equal(scale_features(fs, "minmax_trainval", "official"),
                          scaler.transform(x))
    new = (rng.normal(size=(7, 40)) * 2).astype(np.float32)
    assert np.array_equal(scale_new_rows(fs, "minmax_trainval", new, "official"),
                          scaler.transform(new))
    fast = scale_features(fs, "minmax_trainval", "fast")
    np.testing.assert_allclose(fast, scaler.transform(x), rtol=0, atol=1e-6)
    with pytest.raises(RecipeError, match="scaling arithmetic"):
        scale_features(fs, "minmax_trainval", "exact")


def test_official_permutation_is_the_shuffling_dataloaders_order():
    n = 103
    torch.manual_seed(7)
    loader = torch.utils.data.DataLoader(torch.arange(n), batch_size=n, shuffle=True)
    expected = [next(iter(loader)) for _ in range(3)]
    torch.manual_seed(7)
    got = [official_permutation(e, n) for e in range(3)]
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def test_numerics_resolve_to_official_only_where_the_official_code_exists():
    r = recipe_from_dict({"mode": "faithful"})
    assert (r.train.numerics, r.train.fused_optimizer, r.train.batching) == \
        ("official", False, "random_subsets_stepwise")
    r = recipe_from_dict({"mode": "clean"})
    assert (r.train.numerics, r.train.fused_optimizer, r.train.batching) == \
        ("fast", True, "random_subsets")
    for raw in ({"mode": "faithful", "model": {"family": "vmf"}},
                {"mode": "faithful", "train": {"terms": {"classification": {"enabled": True}}}},
                {"mode": "faithful", "train": {"reduction": "mean"}}):
        assert recipe_from_dict(raw).train.numerics == "fast"
    r = recipe_from_dict({"mode": "faithful", "train": {"numerics": "fast"}})
    assert (r.train.fused_optimizer, r.train.batching) == (True, "random_subsets")


@pytest.mark.parametrize("raw, match", [
    ({"model": {"family": "vmf"}, "train": {"numerics": "official"}},
     "exists only for model.family gaussian"),
    ({"mode": "clean", "train": {"numerics": "official"}}, "faithful Gaussian sampler"),
    ({"train": {"numerics": "official", "reduction": "mean"}}, "train.reduction: sum"),
    ({"train": {"numerics": "official", "fused_optimizer": True}},
     "fused_optimizer: true contradicts"),
    ({"train": {"numerics": "exact"}}, "train.numerics"),
])
def test_impossible_official_numerics_are_named(raw, match):
    with pytest.raises(RecipeError, match=match):
        recipe_from_dict({"mode": "faithful", **raw})
