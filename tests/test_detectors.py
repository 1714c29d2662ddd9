"""Detectors: a fixed synthetic regression, the formulas, the protocol, the GZSL gate."""
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hyperzsl.detect import (
    DETECTORS,
    KNNDetector,
    MahalanobisDetector,
    NearestClassDetector,
    VMFLikelihoodDetector,
    auroc,
    build_detector,
)
from hyperzsl.errors import NotFittedError, RecipeError
from hyperzsl.stage.gate import gated_predictions

DIM, NOISE = 16, 0.25


def _mixture():
    """A fixed mixture on S^15: ID = 10 classes around random directions, OOD = 5 other
    directions. Samples are normalised Gaussian perturbations of the directions (close to
    vMF with kappa ~ 22, Banerjee's estimate); the closest ID/OOD directions have cosine
    0.48, so the task is not trivial."""
    g = torch.Generator().manual_seed(0)
    directions = F.normalize(torch.randn(15, DIM, generator=g, dtype=torch.float64), dim=1).float()

    def draw(centres, per_class):
        labels = torch.arange(len(centres)).repeat_interleave(per_class)
        noise = NOISE * torch.randn(len(labels), DIM, generator=g)
        return F.normalize(centres[labels] + noise, dim=1), labels

    z_train, y_train = draw(directions[:10], 200)
    z_id, _ = draw(directions[:10], 100)
    z_ood, _ = draw(directions[10:], 200)
    return z_train, y_train, z_id, z_ood


MIXTURE = _mixture()


def _auroc(detector):
    _, _, z_id, z_ood = MIXTURE
    scores = torch.cat([detector.score(z_id), detector.score(z_ood)])
    return auroc(scores, np.r_[np.zeros(len(z_id)), np.ones(len(z_ood))])


# measured on this mixture: 0.969, 0.969, 0.968, 0.967, 0.967, 0.967 (vmf 0.968)
@pytest.mark.parametrize("name, options", [
    ("nearest_class", dict(geometry="sphere")),
    ("nearest_class", dict(geometry="euclidean")),
    ("knn", dict(k=10)),
    ("knn", dict(k=50, backend="torch")),
    ("mahalanobis", dict(inverse="ridge")),
    ("mahalanobis", dict(inverse="pinv")),
])
def test_regression_auroc_on_vmf_mixture(name, options):
    z_train, y_train, _, _ = MIXTURE
    assert _auroc(build_detector(name, **options).fit(z_train, y_train)) > 0.95


def _reference_log_normalizer(m, kappa):
    """log C_m(kappa) from scipy's exponentially scaled Bessel function (test reference)."""
    special = pytest.importorskip("scipy.special")
    nu = m / 2 - 1
    k = kappa.double()
    log_iv = torch.from_numpy(np.log(special.ive(nu, k.numpy()))) + k
    return nu * torch.log(k) - (m / 2) * np.log(2 * np.pi) - log_iv


def test_vmf_detector_with_bessel_core():
    try:
        from hyperzsl.latent.bessel import vmf_log_normalizer  # noqa: F401
    except ImportError as error:
        pytest.skip(f"hyperzsl.latent.bessel.vmf_log_normalizer not importable yet: {error}")
    z_train, y_train, _, _ = MIXTURE
    detector = VMFLikelihoodDetector().fit(z_train, y_train)
    torch.testing.assert_close(detector.log_normalizer,
                               _reference_log_normalizer(DIM, detector.kappa),
                               rtol=1e-10, atol=1e-10)
    assert _auroc(detector) > 0.95


def test_vmf_detector_formula(monkeypatch):
    """The detector's arithmetic, with a scipy normaliser standing in for the Bessel core
    (so this runs whether or not hyperzsl.latent.bessel exists yet)."""
    stub = types.ModuleType("hyperzsl.latent.bessel")
    stub.vmf_log_normalizer = _reference_log_normalizer
    monkeypatch.setitem(sys.modules, "hyperzsl.latent.bessel", stub)
    z_train, y_train, z_id, _ = MIXTURE
    detector = VMFLikelihoodDetector().fit(z_train, y_train)
    unit = F.normalize(z_train.double(), dim=1)
    mean = torch.stack([unit[y_train == c].mean(0) for c in range(10)])
    r = mean.norm(dim=1)
    kappa = r * (DIM - r ** 2) / (1 - r ** 2)
    torch.testing.assert_close(detector.kappa, kappa)
    log_lik = (F.normalize(z_id.double(), dim=1) @ (F.normalize(mean, dim=1) * kappa[:, None]).T
               + _reference_log_normalizer(DIM, kappa))
    torch.testing.assert_close(detector.score(z_id).double(), -log_lik.max(1).values,
                               rtol=1e-5, atol=1e-4)
    assert _auroc(detector) > 0.95


def test_vmf_single_sample_class_is_capped(monkeypatch):
    stub = types.ModuleType("hyperzsl.latent.bessel")
    stub.vmf_log_normalizer = lambda m, kappa: torch.zeros_like(kappa)
    monkeypatch.setitem(sys.modules, "hyperzsl.latent.bessel", stub)
    z = F.normalize(torch.randn(3, DIM), dim=1)
    detector = VMFLikelihoodDetector(max_kappa=1e3).fit(z, torch.tensor([0, 1, 1]))
    assert detector.kappa[0] == 1e3 and torch.isfinite(detector.score(z)).all()


def test_nearest_class_formulas_and_prototypes():
    z_train, y_train, z_id, _ = MIXTURE
    prototypes = torch.randn(7, DIM)
    sphere = NearestClassDetector("sphere").fit(z_train, prototypes=prototypes)
    expected = 1 - (F.normalize(z_id, dim=1) @ F.normalize(prototypes, dim=1).T).max(1).values
    torch.testing.assert_close(sphere.score(z_id), expected, rtol=1e-5, atol=1e-5)
    euclid = NearestClassDetector("euclidean").fit(z_train, y_train)
    means = torch.stack([z_train[y_train == c].mean(0) for c in range(10)])
    expected = torch.cdist(z_id, means).pow(2).min(1).values
    torch.testing.assert_close(euclid.score(z_id), expected, rtol=1e-4, atol=1e-5)


def test_knn_is_kth_neighbour_distance():
    z_train, _, z_id, _ = MIXTURE
    detector = KNNDetector(k=7).fit(3 * z_train)   # unnormalised input: normalised inside
    expected = torch.cdist(F.normalize(z_id.double(), dim=1),
                           F.normalize(z_train.double(), dim=1)).sort(1).values[:, 6]
    torch.testing.assert_close(detector.score(z_id).double(), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(RecipeError, match="exceeds"):
        KNNDetector(k=50).fit(z_train[:10])


def test_mahalanobis_formula_and_singular_covariance():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(300, 5, generator=g, dtype=torch.float64) * torch.tensor([1, 2, 3, 0.5, 1.5])
    y = torch.randint(0, 3, (300,), generator=g)
    means = torch.stack([z[y == c].mean(0) for c in range(3)])
    centred = z - means[y]
    precision = torch.linalg.inv(centred.T @ centred / 300)
    q = torch.randn(50, 5, generator=g, dtype=torch.float64)
    diff = q[:, None, :] - means[None]
    expected = torch.einsum("ncd,de,nce->nc", diff, precision, diff).min(1).values
    for inverse in ("ridge", "pinv"):
        got = MahalanobisDetector(inverse=inverse).fit(z.float(), y).score(q.float())
        torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)
    # a constant coordinate makes the covariance singular: both options stay finite
    singular = torch.cat([z, torch.zeros(300, 1, dtype=torch.float64)], 1).float()
    for inverse in ("ridge", "pinv"):
        scores = MahalanobisDetector(inverse=inverse).fit(singular, y).score(singular)
        assert torch.isfinite(scores).all()


def test_msp_and_energy_formulas():
    weight = torch.randn(4, DIM)
    classifier = lambda z: 3 * z @ weight.T  # noqa: E731
    z = MIXTURE[2]
    logits = classifier(z)
    msp = build_detector("msp", classifier=classifier).fit(z)
    torch.testing.assert_close(msp.score(z), -logits.softmax(1).max(1).values)
    energy = build_detector("energy", classifier=classifier, temperature=2.0).fit(z)
    torch.testing.assert_close(energy.score(z), -2.0 * torch.logsumexp(logits / 2.0, 1))


def _all_detectors():
    classifier = lambda z: z[:, :3]  # noqa: E731
    return [cls(classifier) if name in ("msp", "energy") else cls()
            for name, cls in DETECTORS.items()]


@pytest.mark.parametrize("detector", _all_detectors(), ids=lambda d: d.name)
def test_unfitted_use_raises(detector):
    z = MIXTURE[2]
    for call in (lambda: detector.score(z), lambda: detector.threshold(z),
                 lambda: detector.predict_unseen(z, 0.0)):
        with pytest.raises(NotFittedError, match="fit"):
            call()


@pytest.mark.parametrize("name", ["nearest_class", "knn", "mahalanobis"])
def test_score_sign_larger_is_more_ood(name):
    z_train, y_train, z_id, _ = MIXTURE
    detector = build_detector(name).fit(z_train, y_train)
    means = F.normalize(torch.stack([z_train[y_train == c].mean(0) for c in range(10)]), dim=1)
    basis = torch.linalg.qr(means.T.double(), mode="complete")[0]
    orthogonal = basis[:, 10:].T.float()   # 6 unit vectors orthogonal to every class mean
    assert detector.score(means).max() < detector.score(z_id).median()
    assert detector.predict_unseen(orthogonal, detector.threshold(z_id, tpr=0.99)).all()


def test_threshold_keeps_tpr_of_id_and_drops_ood_labels():
    z_train, y_train, z_id, _ = MIXTURE
    detector = build_detector("nearest_class", geometry="sphere").fit(z_train, y_train)
    scores = detector.score(z_id)
    tau = detector.threshold(z_id, tpr=0.9)
    assert (scores <= tau).float().mean() >= 0.9
    assert tau == scores.sort().values[899].item()   # 900 of 1000: the 900th smallest
    # rows labelled -1 (OOD) are ignored by fit
    noisy = build_detector("knn", k=5).fit(torch.cat([z_train, -z_train[:5]]),
                                          torch.cat([y_train, -torch.ones(5, dtype=torch.long)]))
    assert noisy.index.ntotal == len(z_train)


def test_registry_errors():
    with pytest.raises(RecipeError, match="did you mean 'knn'"):
        build_detector("knnn")
    with pytest.raises(RecipeError, match="did you mean 'mahalanobis'"):
        build_detector("mahalanobish")
    with pytest.raises(RecipeError, match="did you mean 'k'"):
        build_detector("knn", kk=5)
    with pytest.raises(RecipeError, match="prototypes"):
        build_detector("knn").fit(MIXTURE[0], prototype=torch.zeros(2, DIM))
    with pytest.raises(RecipeError, match="labels"):
        build_detector("mahalanobis").fit(MIXTURE[0])
    assert sorted(DETECTORS) == ["energy", "knn", "mahalanobis", "msp", "nearest_class", "vmf"]


def test_gate_known_answer():
    seen, unseen = torch.tensor([0, 2, 4]), torch.tensor([1, 3])
    scores = torch.tensor([0.1, 0.9, 0.5, 0.6, 0.2, 0.8])
    seen_logits = torch.tensor([[5., 0, 0], [0, 9, 0], [0, 0, 1], [1, 0, 0], [0, 3, 0], [2, 1, 0]])
    unseen_logits = torch.tensor([[0., 1], [4, 0], [1, 0], [0, 2], [9, 0], [0, 1]])
    labels = torch.tensor([0, 1, 4, 2, 1, 3])
    result = gated_predictions(scores, 0.5, seen_logits, unseen_logits, seen, unseen, labels)
    assert result.routed_unseen.tolist() == [False, True, False, True, False, True]
    assert result.predictions.tolist() == [0, 1, 4, 3, 2, 3]
    assert result.seen_to_seen == pytest.approx(2 / 3)     # labels 0, 4 kept; 2 routed away
    assert result.unseen_to_unseen == pytest.approx(2 / 3)  # labels 1, 3 routed; one 1 kept
    assert gated_predictions(scores, 0.5, seen_logits, unseen_logits, seen,
                             unseen).seen_to_seen is None


def test_per_class_thresholds_known_answer():
    """tau_c is the tpr-quantile of class c's own ID scores; the gate applies tau of the
    seen class the seen expert predicts; small classes fall back to the global tau."""
    from hyperzsl.stage.gate import per_class_thresholds
    scores = torch.cat([torch.arange(1, 21, dtype=torch.float64) / 100,   # class 0: 0.01..0.20
                        torch.arange(1, 21, dtype=torch.float64),          # class 2: 1..20
                        torch.tensor([100.0, 200.0], dtype=torch.float64)])  # class 4: 2 rows
    labels = torch.tensor([0] * 20 + [2] * 20 + [4] * 2)
    taus = per_class_thresholds(scores, labels, torch.tensor([0, 2, 4]), tpr=0.95)
    overall = float(torch.sort(scores).values[39])  # 40th of 42 = ceil(0.95 * 42)
    assert taus.tolist() == pytest.approx([0.19, 19.0, overall])
    seen, unseen = torch.tensor([0, 2, 4]), torch.tensor([1])
    test_scores = torch.tensor([0.5, 0.5, 15.0])
    seen_logits = torch.tensor([[9.0, 0, 0], [0, 9, 0], [0, 0, 9]])
    result = gated_predictions(test_scores, taus, seen_logits, torch.zeros(3, 1), seen, unseen)
    # 0.5 > tau_0 = 0.19 -> unseen; 0.5 <= tau_2 = 19 -> seen 2; 15 <= tau_4 = 20 -> seen 4
    assert result.predictions.tolist() == [1, 2, 4]
    with pytest.raises(RecipeError, match="per-class thresholds"):
        gated_predictions(test_scores, taus[:2], seen_logits, torch.zeros(3, 1), seen, unseen)


def test_boundary_gate_with_attribute_prototypes():
    """Seen centres = 'attribute codes' e1, e2 on S^2; test points near e3 are unseen."""
    eye = torch.eye(3)
    g = torch.Generator().manual_seed(5)
    z_seen = F.normalize(eye[[0, 1]].repeat(50, 1) + 0.1 * torch.randn(100, 3, generator=g), dim=1)
    detector = NearestClassDetector("sphere").fit(z_seen, prototypes=eye[:2])
    tau = detector.threshold(z_seen, 0.95)          # on ID latents only, never test ones
    result = gated_predictions(detector.score(eye), tau, eye[:, :2], eye[:, 2:], [0, 1], [2],
                               labels=[0, 1, 2])
    assert result.predictions.tolist() == [0, 1, 2]
    assert result.seen_to_seen == 1.0 and result.unseen_to_unseen == 1.0
