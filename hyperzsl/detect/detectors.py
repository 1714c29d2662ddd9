"""OOD detectors on latent codes, all behind one protocol (reference/ood.md sections 1, 4).

* ``fit(z, y=None, **extra) -> self`` on in-distribution (seen-class) latents; rows with
  ``y < 0`` (pytorch-ood's OOD marker) are dropped. The only extra is ``prototypes``
  (class codes from the side-information encoder); detectors that do not use it ignore it.
* ``score(z) -> Tensor[N]``: an **outlier score, larger = more OOD**, for every detector.
* ``threshold(z_id_val, tpr=0.95) -> float``: the score tau that keeps ``tpr`` of the ID
  validation latents (``score <= tau``); compute it on ID training/validation data, never
  on test data.
* Using a detector before ``fit`` raises :class:`hyperzsl.errors.NotFittedError`.

Fitting and scoring stay on the latents' device; only ``threshold`` brings the ID scores
to the host (one sort).
"""
from __future__ import annotations

import abc
import inspect
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import NotFittedError, RecipeError
from ..registry import DETECTORS as REGISTRY  # every detector by name
from ..registry import check_options
from .index import NearestNeighborIndex
from .metrics import score_threshold

GEOMETRIES = ("euclidean", "sphere")
EXTRA_FIT_KEYS = ("prototypes",)
ROW_CHUNK = 8192  # rows per block where a detector forms (rows x classes) matrices


def _latents(z: Tensor, name: str = "z") -> Tensor:
    if not isinstance(z, Tensor) or z.dim() != 2 or not z.is_floating_point():
        raise RecipeError(f"{name} must be a 2-D floating-point torch tensor (n, dim)")
    return z.detach()


def _class_index(y: Tensor) -> tuple[Tensor, Tensor]:
    """(sorted class ids, per-row position in them), for arbitrary integer labels."""
    return torch.unique(y, return_inverse=True)


def _class_sums(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-class sums of the rows of z and per-class counts, classes in sorted order."""
    classes, position = _class_index(y)
    sums = torch.zeros(len(classes), z.shape[1], dtype=z.dtype, device=z.device)
    sums.index_add_(0, position, z)
    counts = torch.bincount(position, minlength=len(classes)).to(z.dtype)
    return sums, counts


def _by_rows(fn: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    return torch.cat([fn(z[i:i + ROW_CHUNK]) for i in range(0, z.shape[0], ROW_CHUNK)])


class Detector(abc.ABC):
    """Base class: input checks, the fitted flag and the threshold live here; subclasses
    implement ``_fit`` and ``_score``."""

    name: ClassVar[str] = "abstract"
    # what fit/score use beside the latent codes: "prototypes" (the side encoder's class
    # codes, passed to fit) and/or "logits" (a classifier, passed to the constructor)
    consumes: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.fitted = False

    def fit(self, z: Tensor, y: Tensor | None = None, **extra) -> "Detector":
        unknown = sorted(set(extra) - set(EXTRA_FIT_KEYS))
        if unknown:
            raise RecipeError(f"unknown fit argument(s) {unknown} for detector '{self.name}' "
                              f"(valid extras: {', '.join(EXTRA_FIT_KEYS)})")
        z = _latents(z)
        if y is not None:
            y = torch.as_tensor(y, device=z.device).reshape(-1)
            if y.shape[0] != z.shape[0]:
                raise RecipeError(f"y has {y.shape[0]} labels for {z.shape[0]} latents")
            keep = y >= 0
            z, y = z[keep], y[keep]
        if z.shape[0] == 0:
            raise RecipeError(f"detector '{self.name}': no in-distribution latents to fit")
        self._fit(z, y, extra)
        self.fitted = True
        return self

    @torch.no_grad()
    def score(self, z: Tensor) -> Tensor:
        """Outlier score per row of z: larger = more OOD."""
        if not self.fitted:
            raise NotFittedError(f"detector '{self.name}' is not fitted: call fit() before "
                                 "score(), threshold() or predict_unseen()")
        return self._score(_latents(z))

    def threshold(self, z_id_val: Tensor, tpr: float = 0.95) -> float:
        """Score tau with ``mean(score(z_id_val) <= tau) >= tpr`` (smallest such score).
        Pass ID training/validation latents only: a threshold from test data leaks."""
        return score_threshold(self.score(z_id_val), tpr)

    def predict_unseen(self, z: Tensor, tau: float) -> Tensor:
        """True where a latent is flagged OOD (score above the ID threshold tau)."""
        return self.score(z) > tau

    def _labels(self, y: Tensor | None) -> Tensor:
        if y is None:
            raise RecipeError(f"detector '{self.name}' needs class labels y in fit()")
        return y

    @abc.abstractmethod
    def _fit(self, z: Tensor, y: Tensor | None, extra: dict) -> None:
        """Fit on ID latents (labels already filtered to y >= 0)."""

    @abc.abstractmethod
    def _score(self, z: Tensor) -> Tensor:
        """Outlier scores for checked latents."""


@REGISTRY.register
class NearestClassDetector(Detector):
    """Distance to the nearest class prototype (reference/ood.md 4.1).

    Prototypes are ``fit(..., prototypes=P)`` (C, d) -- in hyperzsl the side-information
    encoder's class codes, as in the boundary-based gate -- or else the class means of z.
    ``geometry="sphere"``: score = 1 - max_c cos(z, p_c); ``"euclidean"``: score =
    min_c ||z - p_c||^2. Searched with a :class:`NearestNeighborIndex` (torch by default:
    faiss buys nothing for C <= ~1000 prototypes).
    """

    name = "nearest_class"
    consumes = ("prototypes",)

    def __init__(self, geometry: str = "euclidean", backend: str = "torch",
                 threads: int | None = None) -> None:
        super().__init__()
        if geometry not in GEOMETRIES:
            raise RecipeError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
        self.geometry, self.backend, self.threads = geometry, backend, threads

    def _fit(self, z, y, extra):
        prototypes = extra.get("prototypes")
        if prototypes is None:
            sums, counts = _class_sums(z, self._labels(y))
            prototypes = sums / counts[:, None]
        prototypes = _latents(torch.as_tensor(prototypes, device=z.device), "prototypes")
        if prototypes.shape[1] != z.shape[1]:
            raise RecipeError(f"prototypes have dimension {prototypes.shape[1]}, "
                              f"latents {z.shape[1]}")
        metric = "cosine" if self.geometry == "sphere" else "l2"
        self.index = NearestNeighborIndex(metric, backend=self.backend, threads=self.threads)
        self.index.add(prototypes)

    def _score(self, z):
        return self.index.search(z, 1)[0][:, 0]


@REGISTRY.register
class KNNDetector(Detector):
    """Deep nearest neighbours (Sun et al., ICML 2022): score = ||z^ - z^_(k)||, the
    Euclidean distance from the normalised latent to its k-th nearest normalised training
    latent (in [0, 2]; 2 = no k-th neighbour found by an approximate index).

    Scoring the fitted latents themselves counts each as its own first neighbour: use
    held-out ID latents for thresholds. Approximate kinds ('ivf', 'hnsw') change the
    scores of off-manifold queries, so calibrate with the same index used at test time.
    """

    name = "knn"

    def __init__(self, k: int = 50, kind: str = "flat", backend: str = "auto",
                 nlist: int = 1024, nprobe: int = 16, hnsw_m: int = 32,
                 ef_search: int = 128, threads: int | None = None) -> None:
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise RecipeError(f"knn: k must be a positive integer, got {k!r}")
        self.k = k
        self.index_options = dict(kind=kind, backend=backend, nlist=nlist, nprobe=nprobe,
                                  hnsw_m=hnsw_m, ef_search=ef_search, threads=threads)

    def _fit(self, z, y, extra):
        if z.shape[0] < self.k:
            raise RecipeError(f"knn: k={self.k} exceeds the {z.shape[0]} fitted latents")
        self.index = NearestNeighborIndex("cosine", **self.index_options).add(z)

    def _score(self, z):
        one_minus_cos = self.index.search(z, self.k)[0][:, -1]
        return (2.0 * one_minus_cos).sqrt()


@REGISTRY.register
class MahalanobisDetector(Detector):
    """Minimum Mahalanobis distance to the class means under one shared covariance
    (Lee et al., NeurIPS 2018): score = min_c (z - mu_c)^T Sigma^-1 (z - mu_c), with
    Sigma = (1/N) sum_i (z_i - mu_(y_i))(z_i - mu_(y_i))^T.

    Sigma is inverted through its eigendecomposition, either with ``inverse="ridge"``
    (Sigma + ridge * I) or ``"pinv"`` (pseudo-inverse: eigenvalues <= rcond * max are
    dropped); both survive singular covariances. The score is then a
    squared Euclidean nearest-mean search in whitened coordinates.
    """

    name = "mahalanobis"

    def __init__(self, inverse: str = "ridge", ridge: float = 1e-6, rcond: float = 1e-10,
                 backend: str = "torch") -> None:
        super().__init__()
        if inverse not in ("ridge", "pinv"):
            raise RecipeError(f"mahalanobis: inverse must be 'ridge' or 'pinv', got {inverse!r}")
        self.inverse, self.ridge, self.rcond, self.backend = inverse, ridge, rcond, backend

    def _fit(self, z, y, extra):
        z, y = z.double(), self._labels(y)
        sums, counts = _class_sums(z, y)
        means = sums / counts[:, None]
        centred = z - means[_class_index(y)[1]]
        covariance = centred.T @ centred / z.shape[0]
        self.whitening = self._whitening(covariance)
        self.index = NearestNeighborIndex("l2", backend=self.backend)
        self.index.add((means @ self.whitening).float())

    def _whitening(self, covariance: Tensor) -> Tensor:
        """W with W W^T = Sigma^-1 (ridge) or pinv(Sigma), so d_M^2 = ||(z - mu) W||^2."""
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        if self.inverse == "ridge":
            scale = (eigenvalues.clamp_min(0.0) + self.ridge).rsqrt()
        else:
            keep = eigenvalues > self.rcond * eigenvalues.max()
            scale = torch.where(keep, eigenvalues.clamp_min(1e-300).rsqrt(),
                                torch.zeros_like(eigenvalues))
        return eigenvectors * scale

    def _score(self, z):
        whitened = (z.double() @ self.whitening).float()
        return self.index.search(whitened, 1)[0][:, 0]


@REGISTRY.register
class VMFLikelihoodDetector(Detector):
    """Best class log-likelihood under per-class von Mises-Fisher densities (SIREN-style):
    score = -max_c [log C_m(kappa_c) + kappa_c mu_c . z^].

    mu_c is the class mean direction of the unit latents and kappa_c Banerjee et al.'s
    estimate R(m - R^2)/(1 - R^2) from the class's mean resultant length R, capped at
    ``max_kappa`` (a single-sample class has R = 1). log C_m comes from the hyperzsl
    Bessel core (``hyperzsl.latent.bessel.vmf_log_normalizer``), imported at fit time.
    Computed in float64.
    """

    name = "vmf"

    def __init__(self, max_kappa: float = 1e5) -> None:
        super().__init__()
        self.max_kappa = max_kappa

    def _fit(self, z, y, extra):
        try:
            from ..latent.bessel import vmf_log_normalizer
        except ImportError as error:
            raise ImportError("detector 'vmf' needs hyperzsl.latent.bessel."
                              f"vmf_log_normalizer, which is not importable: {error}") from error
        m = z.shape[1]
        sums, counts = _class_sums(F.normalize(z.double(), dim=1), self._labels(y))
        mean_resultant = sums.norm(dim=1) / counts
        r = mean_resultant.clamp(max=1.0 - 1e-12)
        kappa = (r * (m - r * r) / (1.0 - r * r)).clamp(max=self.max_kappa)
        self.kappa = kappa
        self.weights = F.normalize(sums, dim=1) * kappa[:, None]
        self.log_normalizer = vmf_log_normalizer(m, kappa).to(torch.float64)

    def _score(self, z):
        def block(rows: Tensor) -> Tensor:
            unit = F.normalize(rows.double(), dim=1)
            return -(unit @ self.weights.T + self.log_normalizer).amax(dim=1)
        return _by_rows(block, z).to(z.dtype)


@REGISTRY.register
class MSPDetector(Detector):
    """Maximum softmax probability (Hendrycks & Gimpel): score = -max_c softmax(f(z))_c.
    ``classifier`` maps latents to logits (e.g. the latent softmax classifier)."""

    name = "msp"
    consumes = ("logits",)

    def __init__(self, classifier: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.classifier = classifier

    def _fit(self, z, y, extra):
        """Nothing to estimate: fitting only marks the detector ready."""

    def _score(self, z):
        return _by_rows(lambda rows: -self.classifier(rows).softmax(dim=1).amax(dim=1), z)


@REGISTRY.register
class EnergyDetector(Detector):
    """Free energy (Liu et al., NeurIPS 2020): score = E(z) = -T logsumexp(f(z) / T);
    the paper's ID score is -E."""

    name = "energy"
    consumes = ("logits",)

    def __init__(self, classifier: Callable[[Tensor], Tensor], temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise RecipeError(f"energy: temperature must be positive, got {temperature!r}")
        self.classifier, self.temperature = classifier, temperature

    def _fit(self, z, y, extra):
        """Nothing to estimate: fitting only marks the detector ready."""

    def _score(self, z):
        t = self.temperature
        return _by_rows(lambda rows: -t * torch.logsumexp(self.classifier(rows) / t, dim=1), z)


DETECTORS = REGISTRY.as_dict()   # a snapshot of the built-ins, for code that iterates them
detector_class = REGISTRY.get


def build_detector(name, **options) -> Detector:
    """A detector by registry name (or class) with its constructor options; unknown names
    and options are named errors with the closest valid name suggested."""
    cls = detector_class(name) if isinstance(name, str) else name
    check_options("detector", cls.name, options,
                  [p for p in inspect.signature(cls.__init__).parameters if p != "self"])
    return cls(**options)


def make_detector(name: str, geometry: str, classifier, options: dict | None = None) -> Detector:
    """A detector for latent codes: the ones that declare ``consumes`` "logits" get
    ``classifier`` and the ones with a ``geometry`` option get the latent family's
    (unless ``options`` set it); nothing here reads a detector's name."""
    cls = detector_class(name) if isinstance(name, str) else name
    params = inspect.signature(cls.__init__).parameters
    options = dict(options or {})
    if "logits" in cls.consumes:
        options["classifier"] = classifier
    if "geometry" in params:
        options.setdefault("geometry", geometry)
    return build_detector(cls, **options)
