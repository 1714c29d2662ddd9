"""One registry helper for every pluggable part, and the four registries themselves
(latent families, loss terms, classifier-stage strategies, detectors): a part registers
with ``@REGISTRY.register`` where its class is defined; anyone looks it up by name with
the closest valid name suggested.

The registries live on the ground floor so that the recipe layer can check names and
options without importing the implementations above it. Each knows the module that
defines its built-in parts and imports it by name the first time it is asked, the way
entry points load plug-ins: a lookup always sees the built-ins, and a third-party part
registered later comes after them.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Generic, Iterable, TypeVar

from .errors import RecipeError

T = TypeVar("T")


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The closest of ``choices`` to ``word`` (difflib), or None: every "did you mean"."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return close[0] if close else None


def suggestion(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the closest of ``choices``, or ''."""
    close = closest(word, choices, cutoff)
    return f" (did you mean '{close}'?)" if close else ""


class Registry(Generic[T]):
    """Classes by ``cls.name``; ``kind`` names them in errors ("latent family");
    ``builtins``: the module whose import registers the built-in parts."""

    def __init__(self, kind: str, builtins: str | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._builtins = builtins
        self._loading = False

    def _load_builtins(self) -> None:
        """Import the built-ins' module once (not re-entered while it registers them;
        retried if its import failed)."""
        if self._builtins is None or self._loading:
            return
        self._loading = True
        try:
            importlib.import_module(self._builtins)
        finally:
            self._loading = False
        self._builtins = None

    def register(self, cls: T) -> T:
        """Register ``cls`` under ``cls.name`` (usable as a class decorator)."""
        self._load_builtins()
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} needs a non-empty class attribute 'name'")
        self._items[name] = cls
        return cls

    def get(self, name: str) -> T:
        self._load_builtins()
        if name not in self._items:
            raise RecipeError(f"unknown {self.kind} '{name}'{suggestion(name, self._items)}; "
                              f"known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._items

    def as_dict(self) -> dict[str, T]:
        """Name -> class in registration order (for loss terms: the order of the sum)."""
        self._load_builtins()
        return dict(self._items)


def check_options(kind: str, name: str, options: dict, valid: Iterable[str]) -> None:
    """Unknown option names are a named error with the closest valid one suggested."""
    valid = list(valid)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise RecipeError(f"unknown option(s) {unknown} for {kind} '{name}'"
                          f"{suggestion(unknown[0], valid)}; valid: {', '.join(valid) or 'none'}")



FAMILIES: Registry = Registry("latent family", builtins="hyperzsl.latent")
LOSS_TERMS: Registry = Registry("loss term", builtins="hyperzsl.training.objective")
STRATEGIES: Registry = Registry("classifier strategy", builtins="hyperzsl.stage")
DETECTORS: Registry = Registry("detector", builtins="hyperzsl.detect.detectors")
