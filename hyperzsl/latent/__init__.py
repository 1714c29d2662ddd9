"""Latent families by name: one module per family behind :class:`LatentFamily`, the
distributions apart from the plug-ins (``sphere``, ``wood``, ``von_mises_fisher``,
``power_spherical``), and ``bessel`` the pure-torch core. Each family registers itself
where it is defined (``@register_family``); third parties do the same."""
from __future__ import annotations

from typing import Any, Mapping

from ..registry import FAMILIES
from .base import LatentFamily
from .gaussian import GaussianFamily
from .power_spherical import PowerSphericalFamily
from .vmf import SphericalFamily, VMFFamily

register_family = FAMILIES.register      # a decorator: @register_family above the class
family_class = FAMILIES.get
available_families = FAMILIES.names


def build_family(name: str, latent_dim: int, mode: str = "clean",
                 options: Mapping[str, Any] | None = None) -> LatentFamily:
    cls = family_class(name)
    return cls(latent_dim, **cls.resolve_options(mode, dict(options or {})))


__all__ = ["LatentFamily", "GaussianFamily", "VMFFamily", "SphericalFamily",
           "PowerSphericalFamily", "FAMILIES", "register_family", "build_family",
           "family_class", "available_families"]
