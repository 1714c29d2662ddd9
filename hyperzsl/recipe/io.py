"""Reading and writing recipes: YAML files with ``extends``, ``--set`` overrides, the
resolved dump written next to a run, and the identity that says whether two runs are the
same run."""
from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any

import yaml

from ..errors import RecipeError
from ..report import read_yaml
from .resolve import resolve
from .schema import Recipe, _build


def _set_path(raw: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for k in keys[:-1]:
        if not isinstance(node.get(k, {}), dict):
            raise RecipeError(f"--set {dotted}: '{k}' is not a section")
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """``key.sub=value`` strings -> (path, YAML-parsed value)."""
    out = []
    for pair in pairs or []:
        if "=" not in pair:
            raise RecipeError(f"--set expects key.sub=value, got {pair!r}")
        key, text = pair.split("=", 1)
        out.append((key.strip(), yaml.safe_load(text)))
    return out


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_recipe_file(path: str, _chain: tuple[str, ...] = ()) -> dict:
    """A recipe file as a mapping, with ``extends: BASE.yaml`` (relative to the file)
    resolved: the file's keys are merged over its base's, so a variant states only what
    it changes (e.g. ``model: {family: vmf}``)."""
    if not os.path.isfile(path):
        where = f" (extended by {_chain[-1]})" if _chain else ""
        raise RecipeError(f"recipe not found: {path}{where}")
    real = os.path.realpath(path)
    if real in _chain:
        raise RecipeError(f"{path}: 'extends' loops back to itself via {' -> '.join(_chain)}")
    raw = read_yaml(path, RecipeError, "") or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {raw!r}")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise RecipeError(f"{path}: 'extends' must be a path to another recipe, got {base!r}")
    base_path = os.path.join(os.path.dirname(os.path.abspath(path)), base)
    base_raw = read_recipe_file(base_path, _chain + (real,))
    _pin_beside(base_raw, os.path.dirname(os.path.abspath(base_path)))
    return deep_merge(base_raw, raw)


def _pin_beside(raw: dict, recipe_dir: str) -> None:
    """A base recipe's data.path and ood.sets[].path that exist only beside the base made
    absolute, so they do not resolve against the extending recipe's folder instead."""
    def pinned(value):
        if not isinstance(value, str) or os.path.isabs(value) or os.path.exists(value):
            return value
        beside = os.path.join(recipe_dir, value)
        return beside if os.path.exists(beside) else value

    data = raw.get("data")
    if isinstance(data, dict) and "path" in data:
        data["path"] = pinned(data["path"])
    sets = raw.get("ood", {}).get("sets") if isinstance(raw.get("ood"), dict) else None
    for s in sets if isinstance(sets, list) else []:
        if isinstance(s, dict) and "path" in s:
            s["path"] = pinned(s["path"])


def load_recipe(path: str, overrides: list[str] | None = None) -> Recipe:
    """Read (following ``extends``), override, validate and resolve a recipe file."""
    raw = read_recipe_file(path)
    recipe = recipe_from_dict(raw, overrides)
    recipe.recipe_dir = os.path.dirname(os.path.abspath(path))
    return recipe


def recipe_from_dict(raw: dict, overrides: list[str] | None = None) -> Recipe:
    raw = copy.deepcopy(raw)
    for key, value in parse_overrides(overrides or []):
        _set_path(raw, key, value)
    recipe = _build(Recipe, raw, "")
    return resolve(recipe)


def recipe_to_dict(recipe: Recipe) -> dict:
    out = dataclasses.asdict(recipe)
    out.pop("recipe_dir", None)
    out["train"]["terms"] = dict(out["train"]["terms"])   # a plain mapping for YAML
    return out


def recipe_identity(recipe: "Recipe | dict", *ignore: str) -> dict:
    """What makes two runs the same run: the resolved recipe without its name (and the
    ``ignore`` sections), with data and OOD paths absolute (a recipe run by hand from the
    repository root records them relative, a grid absolute)."""
    d = copy.deepcopy(recipe if isinstance(recipe, dict) else recipe_to_dict(recipe))
    for key in ("name",) + ignore:
        d.pop(key, None)
    if d.get("data", {}).get("path"):
        d["data"]["path"] = os.path.abspath(d["data"]["path"])
    for s in d.get("ood", {}).get("sets", []):
        s["path"] = os.path.abspath(s["path"])
    return d


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)
