"""Latent families by name. Third parties add their own with ``register_family``."""
from __future__ import annotations

import difflib
from typing import Any, Mapping

from ..errors import RecipeError
from .base import LatentFamily
from .gaussian import GaussianFamily
from .power_spherical import PowerSphericalFamily
from .vmf import VMFFamily

_FAMILIES: dict[str, type[LatentFamily]] = {}


def register_family(cls: type[LatentFamily]) -> type[LatentFamily]:
    """Register a LatentFamily subclass under ``cls.name`` (usable as a decorator)."""
    _FAMILIES[cls.name] = cls
    return cls


def family_class(name: str) -> type[LatentFamily]:
    if name not in _FAMILIES:
        close = difflib.get_close_matches(name, list(_FAMILIES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(
            f"unknown latent family '{name}'{hint}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def available_families() -> list[str]:
    return sorted(_FAMILIES)


def build_family(name: str, latent_dim: int, mode: str = "clean",
                 options: Mapping[str, Any] | None = None) -> LatentFamily:
    cls = family_class(name)
    return cls(latent_dim, **cls.resolve_options(mode, dict(options or {})))


register_family(GaussianFamily)
register_family(VMFFamily)
register_family(PowerSphericalFamily)

__all__ = ["LatentFamily", "GaussianFamily", "VMFFamily", "PowerSphericalFamily",
           "register_family", "build_family",
           "family_class", "available_families"]
