"""One registry helper for every pluggable part (latent families, detectors, classifier-
stage strategies): register a class where it is defined, look it up by name with the
closest valid name suggested, list what exists."""
from __future__ import annotations

import difflib
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
    """Classes by ``cls.name``; ``kind`` names them in errors ("latent family")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, cls: T) -> T:
        """Register ``cls`` under ``cls.name`` (usable as a class decorator)."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} needs a non-empty class attribute 'name'")
        self._items[name] = cls
        return cls

    def get(self, name: str) -> T:
        if name not in self._items:
            raise RecipeError(f"unknown {self.kind} '{name}'{suggestion(name, self._items)}; "
                              f"known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def as_dict(self) -> dict[str, T]:
        return dict(self._items)


def check_options(kind: str, name: str, options: dict, valid: Iterable[str]) -> None:
    """Unknown option names are a named error with the closest valid one suggested."""
    valid = list(valid)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise RecipeError(f"unknown option(s) {unknown} for {kind} '{name}'"
                          f"{suggestion(unknown[0], valid)}; valid: {', '.join(valid) or 'none'}")

