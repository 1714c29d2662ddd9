"""A toy latent family, a toy detector, a toy loss term and a toy classifier strategy,
registered here and nowhere else: the conformance suite (tests/test_conformance.py's
run-time loops), the recipe checks and training pick them up with no other edit; broken
variants fail the checks. docs/extending.md shows the four toys from the marked sections."""
import pytest
import torch
from conftest import REPO
from torch.distributions import Independent, Normal

from hyperzsl.conformance import check_detector, check_family, check_loss_term, check_strategy
from hyperzsl.detect.detectors import REGISTRY, Detector
from hyperzsl.latent import LatentFamily, register_family
from hyperzsl.recipe import load_recipe
from hyperzsl.stage import STRATEGIES, Strategy
from hyperzsl.training import LOSS_TERMS, LossTerm

DEMO = f"{REPO}/recipes/demo.yaml"


# --8<-- [start:family]
@register_family
class UnitGaussianFamily(LatentFamily):
    """N(mu, I): the head is the mean only."""

    name = "toy_unit_gaussian"

    def head_size(self):
        return self.latent_dim

    def posterior(self, head):
        return Independent(Normal(head, torch.ones_like(head)), 1)

    def prior(self, batch_shape, device=None, dtype=None):
        zeros = torch.zeros(tuple(batch_shape) + (self.latent_dim,), device=device, dtype=dtype)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def kl(self, q):
        return 0.5 * q.mean.pow(2).sum(-1)

    def align(self, q_a, q_b):
        return (q_a.mean - q_b.mean).norm(dim=-1)

    def sample(self, q, spread=1.0):
        return q.mean + spread * torch.randn_like(q.mean)

    def code(self, q):
        return q.mean
# --8<-- [end:family]


# --8<-- [start:detector]
@REGISTRY.register
class CentroidDetector(Detector):
    """Distance to the mean of the ID latents."""

    name = "toy_centroid"

    def _fit(self, z, y, extra):
        self.centre = z.mean(0)

    def _score(self, z):
        return (z - self.centre).norm(dim=-1)
# --8<-- [end:detector]


# --8<-- [start:loss_term]
@LOSS_TERMS.register
class CodeNormTerm(LossTerm):
    """Squared norm of every modality's posterior code (off unless a recipe enables it)."""

    name = "toy_code_norm"

    def __call__(self, ctx):
        family = ctx.model.family
        return sum(family.code(q).pow(2).sum() for q in ctx.posts.values())
# --8<-- [end:loss_term]


# --8<-- [start:strategy]
@STRATEGIES.register
class NearestMeanStrategy(Strategy):
    """Seen classes by the mean trainval image code, unseen ones by the side code;
    scores: minus the squared distance (``scale`` multiplies them)."""

    name = "toy_nearest_mean"
    options = {"scale": 1.0}

    def fit(self, inputs, test_codes):
        i, p = inputs, inputs.prep
        side = next(iter(p.side))
        centres = i.model.codes(side, p.side[side]).clone()
        rows = torch.as_tensor(i.splits["trainval"])
        z, y = i.model.codes(i.image, p.features[rows]), p.labels[rows]
        for c in i.seen.tolist():
            centres[c] = z[y == c].mean(0)
        self.centres = centres
        return []

    def scores(self, z):
        return -self.config["scale"] * torch.cdist(z, self.centres).pow(2)
# --8<-- [end:strategy]


class NonFiniteTerm(CodeNormTerm):
    name = "toy_broken_log"

    def __call__(self, ctx):
        return super().__call__(ctx) * 0 + torch.log(torch.zeros(()))


class SeenOnlyScores(NearestMeanStrategy):
    name = "toy_broken_columns"

    def scores(self, z):
        return super().scores(z)[:, :5]


class NegativeKL(UnitGaussianFamily):
    name = "toy_broken_kl"

    def kl(self, q):
        return -super().kl(q) - 1.0


class InlierScore(CentroidDetector):
    name = "toy_broken_sign"

    def _score(self, z):
        return -super()._score(z)


def test_toy_parts_are_registered_and_usable_from_a_recipe():
    r = load_recipe(DEMO, ["model.family=toy_unit_gaussian",
                                          "ood.detectors=[toy_centroid]"])
    assert r.model.family == "toy_unit_gaussian" and r.ood.detectors == ["toy_centroid"]


def test_toy_parts_pass_the_conformance_suite():
    check_family("toy_unit_gaussian")
    check_detector("toy_centroid")
    check_loss_term("toy_code_norm")
    check_strategy("toy_nearest_mean")


def test_broken_parts_fail_it():
    with pytest.raises(AssertionError, match="KL negative"):
        check_family(NegativeKL)
    with pytest.raises(AssertionError, match="outlier scores"):
        check_detector(InlierScore)
    with pytest.raises(AssertionError, match="not a finite scalar"):
        check_loss_term(NonFiniteTerm)
    with pytest.raises(AssertionError, match="not \\(rows, classes\\)"):
        check_strategy(SeenOnlyScores)


def test_toy_term_trains_from_a_recipe(tmp_path):
    import json

    from hyperzsl.cli import train_main
    out = tmp_path / "toy"
    assert train_main([DEMO, "--out", str(out), "--set", "model.family=toy_unit_gaussian",
                       "--set", "train.terms.toy_code_norm={enabled: true, max: 0.1}",
                       "--set", "train.epochs=2", "--set", "classifier.epochs=1"]) == 0
    history = json.load(open(out / "metrics.json"))["vae_history"]
    assert all("toy_code_norm" in r and r["weights"]["toy_code_norm"] == 0.1 for r in history)


def test_grid_workers_need_only_the_plugins_a_run_uses(tmp_path, capsys):
    """The toy term is registered here, not in hyperzsl-grid's worker processes: a grid
    that leaves it off runs there; one that turns it on fails with the term named."""
    import yaml

    from hyperzsl.grid.cli import grid_main
    fast = {"train.epochs": 2, "classifier.epochs": 1, "model.latent_dim": 4,
            "model.image_hidden": [16, 16], "model.side_hidden": [16, 16]}
    for name, extra, code in (("off", {}, 0),
                              ("on", {"train.terms.toy_code_norm": {"enabled": True}}, 1)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"recipes": {"demo": DEMO}, "set": {**fast, **extra},
                                        "retries": 0, "out": str(tmp_path / name)}))
        assert grid_main([str(path)]) == code
    assert "unknown recipe key 'train.terms.toy_code_norm'" in capsys.readouterr().out
