"""The recipe key reference, generated from the schema so that it cannot drift from what the
parser accepts: one row per key (dotted path, type, default, allowed values and the line
written beside the field in :mod:`hyperzsl.recipe.schema`), and the options every
registered plug-in declares. The documentation renders it at build time (``docs/hooks.py``)
and a test compares its keys with an independent walk of a parsed recipe.

Loss terms, families, strategies and detectors come from the ground-floor registries, so a
plug-in registered before the call appears here with no other edit.
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

import yaml

from ..registry import DETECTORS, FAMILIES, LOSS_TERMS, STRATEGIES, Registry
from .schema import Recipe, Terms, WarmupConfig


@dataclass(frozen=True)
class KeyRow:
    """One recipe key. ``key`` is dotted; ``[]`` stands for every item of a list."""
    key: str
    type: str
    default: str
    allowed: str
    doc: str


@dataclass(frozen=True)
class PluginRow:
    """One registered plug-in and the options it declares (name -> default)."""
    kind: str
    name: str
    doc: str
    options: dict
    mode_defaults: dict


# --------------------------------------------------------------------------- the keys
def reference_rows() -> list[KeyRow]:
    """Every key a recipe accepts, in schema order."""
    rows: list[KeyRow] = []
    _walk(Recipe, "", rows)
    return rows


def _walk(cls, prefix: str, rows: list[KeyRow]) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "recipe_dir":
            continue
        path = f"{prefix}{f.name}"
        tp = hints[f.name]
        default = (f.default if f.default is not dataclasses.MISSING else
                   f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if tp is Terms:
            rows.append(KeyRow(path, "mapping", "", "", f.metadata.get("doc", "")))
            _terms(path, rows)
            continue
        rows.append(KeyRow(path, _type_text(tp), _default_text(default),
                           _allowed(tp, f.metadata.get("choices")), f.metadata.get("doc", "")))
        nested = _nested_dataclass(tp)
        if nested is not None:
            _walk(nested, path + ("[]." if _is_list(tp) else "."), rows)


def _terms(prefix: str, rows: list[KeyRow]) -> None:
    """``train.terms.NAME...`` for every registered term: its declared default entry and
    options, the entry's fields described once in WarmupConfig."""
    fields = {f.name: f for f in dataclasses.fields(WarmupConfig)}
    base = {name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for name, f in fields.items()}
    hints = typing.get_type_hints(WarmupConfig)
    for name, term in LOSS_TERMS.as_dict().items():
        path = f"{prefix}.{name}"
        entry = {**base, **term.default}
        rows.append(KeyRow(path, "mapping", _default_text(
            {k: v for k, v in entry.items() if k != "options"}), "", _summary(term)))
        for field_name, f in fields.items():
            rows.append(KeyRow(f"{path}.{field_name}", _type_text(hints[field_name]),
                               _default_text(entry[field_name]), "", f.metadata.get("doc", "")))
        for option, value in dict(getattr(term, "options", {})).items():
            rows.append(KeyRow(f"{path}.options.{option}", _value_type(value),
                               _default_text(value), "", f"an option of the {name} term"))


def _nested_dataclass(tp):
    """The dataclass a key's value (or its list items) is made of, if any."""
    for arg in _flat_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _flat_args(tp) -> list:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType, list):
        return [a for arg in typing.get_args(tp) for a in _flat_args(arg)]
    return [tp]


def _is_list(tp) -> bool:
    origin = typing.get_origin(tp)
    if origin is list:
        return True
    if origin in (Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(tp))
    return False


_NAMES = {int: "int", float: "float", bool: "bool", str: "str", dict: "mapping",
          type(None): "null"}


def _type_text(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        parts = [_type_text(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(parts)) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "str"
    if origin is list:
        return f"list[{_type_text(typing.get_args(tp)[0])}]"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _value_type(value: Any) -> str:
    return "any" if value is None else _NAMES.get(type(value), type(value).__name__)


def _allowed(tp, choices: Registry | None) -> str:
    literals = [v for a in _flat_args(tp) if typing.get_origin(a) is Literal
                for v in typing.get_args(a)]
    names = choices.names() if choices is not None else []
    return ", ".join(f"`{v}`" for v in [*literals, *names])


def _default_text(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        return ""                       # a section: its keys follow
    value = _plain(value)
    if isinstance(value, str) and value == "":
        return '""'
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
    return text.strip().removesuffix("\n...").strip()


def _plain(value: Any) -> Any:
    """Dataclass items as mappings without their unset (null) fields, for short defaults."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    return value


# ------------------------------------------------------------------------ the plug-ins
def plugin_rows() -> list[PluginRow]:
    """Every registered family, loss term, strategy and detector with its options."""
    rows = []
    for registry in (FAMILIES, LOSS_TERMS, STRATEGIES, DETECTORS):
        for name, cls in registry.as_dict().items():
            rows.append(PluginRow(registry.kind, name, _summary(cls), _options(registry, cls),
                                  {k: dict(v) for k, v in
                                   dict(getattr(cls, "mode_defaults", {}) or {}).items()}))
    return rows


def _options(registry: Registry, cls) -> dict:
    """Declared options; a detector's are its constructor's keyword parameters (minus the
    classifier the toolkit hands it), as the recipe check reads them."""
    if registry is DETECTORS:
        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in params if p.name not in ("self", "classifier")
                and p.default is not inspect.Parameter.empty}
    return dict(getattr(cls, "options", {}) or {})


def _summary(cls) -> str:
    """The first sentence of the class's own docstring, with reST roles made plain."""
    doc = " ".join((cls.__dict__.get("__doc__") or "").split())
    doc = doc.replace("``", "`")
    for role in (":mod:", ":class:", ":func:", ":data:", ":attr:", ":meth:"):
        doc = doc.replace(role, "")
    depth = 0
    for i, ch in enumerate(doc):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "." and depth == 0 and (i + 1 == len(doc) or doc[i + 1] == " "):
            return doc[:i + 1]
    return doc


# ---------------------------------------------------------------------------- markdown
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def render_markdown(heading_level: int = 2) -> str:
    """The reference as Markdown: one table per recipe section (key, default, type with
    its allowed values, description), then the plug-ins."""
    h = "#" * heading_level
    groups: dict[str, list[KeyRow]] = {}
    for row in reference_rows():
        head = row.key.split(".")[0].removesuffix("[]") if "." in row.key else ""
        if row.key.startswith("train.terms"):
            head = "train.terms"
        groups.setdefault(head, []).append(row)
    out = []
    for head, rows in groups.items():
        out.append(f"{h} {f'`{head}`' if head else 'Top level'}\n")
        out.append("| key | default | type | what it does |")
        out.append("|---|---|---|---|")
        for r in rows:
            kind = f"{r.type}: {r.allowed}" if r.allowed else r.type
            out.append(f"| `{r.key}` | {_cell(_code(r.default))} | {_cell(kind)} | "
                       f"{_cell(r.doc)} |")
        out.append("")
    out.append(f"{h} Plug-ins and their options\n")
    out.append("Options are set under `model.family_options`, `train.terms.NAME.options`, "
               "`classifier.strategy_options` and a detector entry's `options` "
               "(`ood.detectors`, `classifier.gate.options`). A family's `faithful` / `clean` "
               "column is what `mode` fills in for an option the recipe leaves out.\n")
    titles = {FAMILIES.kind: "Latent families (`model.family`)",
              LOSS_TERMS.kind: "Loss terms (`train.terms`)",
              STRATEGIES.kind: "Classifier strategies (`classifier.strategy`)",
              DETECTORS.kind: "Detectors (`ood.detectors`, gates)"}
    plugins = plugin_rows()
    for kind, title in titles.items():
        rows = [r for r in plugins if r.kind == kind]
        modes = any(r.mode_defaults for r in rows)
        out.append(f"{h}# {title}\n")
        out.append("| name | what it is | options (default) |" + (" faithful | clean |"
                                                                 if modes else ""))
        out.append("|---|---|---|" + ("---|---|" if modes else ""))
        for r in rows:
            opts = ", ".join(f"`{k}` ({_default_text(v)})" for k, v in r.options.items()) or "–"
            line = f"| `{r.name}` | {_cell(r.doc)} | {_cell(opts)} |"
            if modes:
                for mode in ("faithful", "clean"):
                    d = r.mode_defaults.get(mode, {})
                    line += " " + _cell(", ".join(f"`{k}: {_default_text(v)}`"
                                                  for k, v in d.items()) or "–") + " |"
            out.append(line)
        out.append("")
    return "\n".join(out)
