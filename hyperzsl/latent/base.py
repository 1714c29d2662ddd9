"""The LatentFamily interface: the one place where latent geometry lives.

The model, the objective, the classifier stage and the detectors only talk to a family
through this interface, so swapping ``family: gaussian`` for ``family: vmf`` in a recipe
is the only change a user makes. Nothing outside ``hyperzsl/latent`` may branch on a
family's name.
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor
from torch.distributions import Distribution

from ..errors import RecipeError


class LatentFamily(abc.ABC):
    """A family of posteriors q(z|x) with a prior, a KL and a cross-modal alignment term.

    Subclasses set ``name`` and ``geometry`` ("euclidean" or "sphere") and may declare
    ``options`` (name -> default) and ``mode_defaults`` (``{"faithful": {...},
    "clean": {...}}``): the recipe's ``mode`` fills the options the user did not set.
    """

    name: ClassVar[str] = "abstract"
    geometry: ClassVar[str] = "euclidean"
    options: ClassVar[Mapping[str, Any]] = {}
    mode_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    # option sets the conformance suite checks besides the defaults (hyperzsl.conformance)
    conformance_variants: ClassVar[tuple[Mapping[str, Any], ...]] = ()
    # posterior, sample, KL and alignment work over a leading replica dimension, so
    # stacked replicas (hyperzsl.runs.replicas) can train it
    stackable: ClassVar[bool] = False

    def __init__(self, latent_dim: int, **options: Any) -> None:
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise RecipeError(f"model.latent_dim must be a positive integer, got {latent_dim!r}")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise RecipeError(
                f"unknown option(s) {unknown} for latent family '{self.name}' (valid: {valid})"
            )
        self.latent_dim = latent_dim
        self.config = {**self.options, **options}

    @classmethod
    def resolve_options(cls, mode: str, user_options: Mapping[str, Any]) -> dict:
        """Options after applying the mode's defaults under the user's explicit ones."""
        return {**cls.options, **cls.mode_defaults.get(mode, {}), **user_options}

    # --- what an encoder must produce -------------------------------------------------
    @abc.abstractmethod
    def head_size(self) -> int:
        """Width of the encoder output that ``posterior`` turns into a distribution."""

    def head_blocks(self) -> tuple[int, ...]:
        """How the head splits into parameter blocks (e.g. mean and log-variance). Each
        block is initialised like a separate Linear layer, as the reference code does."""
        return (self.head_size(),)

    def init_head(self, head: "torch.nn.Linear") -> None:
        """Adjust a freshly initialised encoder head (called once by the model after the
        Xavier init), e.g. to start a concentration at a chosen value. Default: nothing."""

    @abc.abstractmethod
    def posterior(self, head: Tensor) -> Distribution:
        """The posterior q(z|x) for a batch of encoder outputs (batch, head_size())."""

    @abc.abstractmethod
    def prior(self, batch_shape: torch.Size, device=None, dtype=None) -> Distribution:
        """The prior p(z), batched to ``batch_shape``."""

    # --- loss terms, each a per-sample tensor of shape (batch,) ------------------------
    @abc.abstractmethod
    def kl(self, q: Distribution) -> Tensor:
        """KL(q || prior) per sample."""

    @abc.abstractmethod
    def align(self, q_a: Distribution, q_b: Distribution) -> Tensor:
        """Distribution-alignment distance between two modalities' posteriors, per sample."""

    # --- latents ---------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, q: Distribution, spread: float = 1.0) -> Tensor:
        """A reparameterised sample z ~ q (batch, latent_dim) used in training and in the
        classifier stage. Families may implement documented reference quirks here.
        ``spread`` > 1 draws from q widened about its code by that factor (the deviation
        from the code scales by ``spread``): the classifier stage's ``unseen_spread``."""

    def surrogate_loss(self, q: Distribution, per_sample_loss: Tensor) -> Tensor:
        """``per_sample_loss`` (a function of ``sample(q)``) with any gradient correction
        the sampler needs (e.g. the vMF rejection sampler's score term) attached. Same
        value; only gradients change. Reparameterised families return it unchanged."""
        return per_sample_loss

    @abc.abstractmethod
    def code(self, q: Distribution) -> Tensor:
        """The deterministic code of a posterior (test-time encoding, detectors)."""

    def on_support(self, z: Tensor) -> Tensor:
        """Per row: whether z lies where this family's samples and codes live (the
        conformance suite checks samples and codes with it). Default: finite."""
        return torch.isfinite(z).all(dim=-1)

    def describe(self) -> dict:
        """What a run record stores about this family."""
        return {"family": self.name, "geometry": self.geometry, "latent_dim": self.latent_dim,
                **self.config}
