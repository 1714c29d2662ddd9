"""Latent families by name. Third parties add their own with ``register_family``."""
from __future__ import annotations

from typing import Any, Mapping

from ..registry import Registry
from .base import LatentFamily
from .gaussian import GaussianFamily
from .power_spherical import PowerSphericalFamily
from .vmf import VMFFamily

FAMILIES: Registry[type[LatentFamily]] = Registry("latent family")
register_family = FAMILIES.register      # a decorator: @register_family above the class
family_class = FAMILIES.get
available_families = FAMILIES.names


def build_family(name: str, latent_dim: int, mode: str = "clean",
                 options: Mapping[str, Any] | None = None) -> LatentFamily:
    cls = family_class(name)
    return cls(latent_dim, **cls.resolve_options(mode, dict(options or {})))


register_family(GaussianFamily)
register_family(VMFFamily)
register_family(PowerSphericalFamily)

__all__ = ["LatentFamily", "GaussianFamily", "VMFFamily", "PowerSphericalFamily",
           "FAMILIES", "register_family", "build_family",
           "family_class", "available_families"]
