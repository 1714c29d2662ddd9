"""Grid files -> validated run specs.

A grid file declares base recipes, named variants (override sets), sweeps (keys over
values, crossed or zipped), seeds and the metrics to collect; ``load_grid`` expands it to
one :class:`RunSpec` per run and checks every expanded recipe against the recipe schema
before anything runs. Runs that differ only in classifier-stage keys share one trained
VAE: they form one :class:`Task`, whose first run trains and whose others rerun only the
classifier stage (the stage is seeded on its own, so the numbers are those of a full run).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
from dataclasses import dataclass, field

from ..data.prepare import pin_paths
from ..errors import GridError, RecipeError
from ..recipe import load_recipe, recipe_to_dict
from ..recipe.schema import _terms_factory
from ..registry import suggestion
from ..report import read_yaml

GRID_KEYS = ("name", "out", "recipes", "variants", "sweeps", "seeds", "set", "metrics",
             "ood", "retries", "resources")
RESOURCE_KEYS = ("cpus", "gpus")
LABEL = re.compile(r"[A-Za-z0-9_.+-]+")
DEFAULT_METRICS = ("S", "U", "H")
# Metrics a run can write: metrics.json's result (GZSL / ZSL), the calibrated run's
# uncalibrated result, and any path into ood.json (``ood.detectors.knn.auroc``)
RESULT_METRICS = ("S", "U", "H", "zsl_accuracy")


@dataclass
class RunSpec:
    id: str                  # base/variant[/point]/seedS: also the folder below the grid's out
    base: str
    variant: str
    point: dict              # swept key -> value ({} without sweeps)
    point_label: str
    sweep: str               # the sweep block's name ("" without sweeps)
    seed: int
    recipe: dict             # the resolved recipe (paths absolute), as run.json's recipe.yaml
    dir: str                 # absolute run folder
    ood: bool = False        # also run the OOD evaluation of hyperzsl-eval --ood

    @property
    def calibrated(self) -> bool:
        return bool(self.recipe["calibration"]["enabled"])


@dataclass
class Task:
    """Runs that share one VAE: ``runs[0]`` trains it, the others rerun the stage."""
    id: str
    runs: list[RunSpec] = field(default_factory=list)


@dataclass
class Grid:
    name: str
    path: str
    out: str
    runs: list[RunSpec]
    tasks: list[Task]
    metrics: list[str]
    retries: int
    resources: dict
    cwd: str


def _where(path: str, key: str) -> str:
    return f"grid {path}: {key}"


def _label(path: str, kind: str, text) -> str:
    if not isinstance(text, str) or not LABEL.fullmatch(text):
        raise GridError(f"{_where(path, kind)} label {text!r}: use letters, digits and "
                        f"'_' '.' '+' '-' (it names a folder)")
    return text


def _mapping(path: str, key: str, value, default=None) -> dict:
    if value is None:
        return {} if default is None else default
    if not isinstance(value, dict):
        raise GridError(f"{_where(path, key)} must be a mapping, got {value!r}")
    return value


def _seeds(path: str, value) -> list[int]:
    """``[0, 1, 2]``, ``3`` (seeds 0-2) or ``"0-4"``."""
    if value is None:
        return [0]
    if isinstance(value, bool):
        raise GridError(f"{_where(path, 'seeds')}: expected a list, a count or 'A-B', got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise GridError(f"{_where(path, 'seeds')}: a count must be >= 1, got {value}")
        return list(range(value))
    if isinstance(value, str) and re.fullmatch(r"\d+-\d+", value):
        a, b = map(int, value.split("-"))
        if b < a:
            raise GridError(f"{_where(path, 'seeds')}: empty range {value!r}")
        return list(range(a, b + 1))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool)
                                                 for s in value):
        if len(set(value)) != len(value):
            raise GridError(f"{_where(path, 'seeds')}: a seed is listed twice: {value}")
        return list(value)
    raise GridError(f"{_where(path, 'seeds')}: expected a list of integers, a count or "
                    f"'A-B', got {value!r}")


def _sweep_blocks(path: str, value) -> list[tuple[str, list[dict]]]:
    """(block name, its points); blocks are unioned, a block crosses or zips its keys."""
    if value is None:
        return [("", [{}])]
    blocks = value if isinstance(value, list) else [value]
    out, names = [], set()
    for i, block in enumerate(blocks):
        where = f"sweeps[{i}]"
        if not isinstance(block, dict):
            raise GridError(f"{_where(path, where)} must be a mapping with 'cross' or 'zip'")
        unknown = set(block) - {"name", "cross", "zip"}
        if unknown:
            key = sorted(unknown)[0]
            raise GridError(f"{_where(path, where)}: unknown key '{key}'"
                            f"{suggestion(key, ('name', 'cross', 'zip'))}")
        if ("cross" in block) == ("zip" in block):
            raise GridError(f"{_where(path, where)}: give exactly one of 'cross' or 'zip'")
        how = "cross" if "cross" in block else "zip"
        keys = _mapping(path, f"{where}.{how}", block[how])
        if not keys:
            raise GridError(f"{_where(path, where)}.{how}: no keys to sweep")
        for key, values in keys.items():
            if not isinstance(values, list) or not values:
                raise GridError(f"{_where(path, where)}.{how}.{key}: expected a non-empty "
                                f"list of values, got {values!r}")
        if how == "zip":
            lengths = {len(v) for v in keys.values()}
            if len(lengths) > 1:
                raise GridError(f"{_where(path, where)}.zip: the lists differ in length "
                                f"({', '.join(f'{k}: {len(v)}' for k, v in keys.items())})")
            points = [dict(zip(keys, combo)) for combo in zip(*keys.values())]
        else:
            points = [dict(zip(keys, combo)) for combo in itertools.product(*keys.values())]
        name = _label(path, where + ".name", block.get("name") or
                      "+".join(k.split(".")[-1] for k in keys))
        if name in names:
            raise GridError(f"{_where(path, where)}.name: '{name}' is used twice")
        names.add(name)
        out.append((name, points))
    return out


def point_label(point: dict) -> str:
    """``latent_dim=64``, ``seen_samples=50,unseen_samples=100``: a folder name."""
    lasts = [k.split(".")[-1] for k in point]
    parts = []
    for key, last in zip(point, lasts):
        name = last if lasts.count(last) == 1 else key
        value = point[key]
        text = f"{value:g}" if isinstance(value, float) else json.dumps(value) \
            if not isinstance(value, (str, int)) else str(value)
        parts.append(f"{name}={text}")
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", ",".join(parts))


def override_strings(pairs: dict) -> list[str]:
    """{dotted key: value} -> ``key=value`` strings for recipe overrides (JSON is YAML)."""
    return [f"{k}={json.dumps(v)}" for k, v in pairs.items()]


def _check_key(path: str, what: str, key: str, tree: dict) -> None:
    """A swept or overridden key must name a recipe key (free-form option mappings such
    as model.family_options accept any key below them)."""
    node = tree
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            raise GridError(f"{_where(path, what)}: '{key}': '{'.'.join(parts[:i])}' is a "
                            f"value, not a section")
        if part not in node:
            if i and parts[i - 1].endswith("options"):
                return
            raise GridError(f"{_where(path, what)}: '{key}' is not a recipe key"
                            f"{suggestion(part, node)}")
        node = node[part]


def portable(recipe: dict) -> dict:
    """The recipe without loss terms left at their registered defaults: a worker process
    fills in its own registered terms, and need not know plugins the driver imported
    (a term a run turns on must of course be importable there)."""
    defaults = {name: dataclasses.asdict(w) for name, w in _terms_factory().items()}
    terms = recipe["train"]["terms"]
    recipe["train"]["terms"] = {name: value for name, value in terms.items()
                                if defaults.get(name) != value}
    return recipe


def _absolute_paths(recipe) -> None:
    """Data and OOD paths absolute, so that a worker in another folder (a Ray worker)
    finds them."""
    pin_paths(recipe)
    if recipe.data.path:
        recipe.data.path = os.path.abspath(recipe.data.path)
    for s in recipe.ood.sets:
        s.path = os.path.abspath(s.path)


def _bases(path: str, raw) -> dict[str, tuple[str, dict]]:
    here = os.path.dirname(os.path.abspath(path))
    raw = _mapping(path, "recipes", raw)
    if not raw:
        raise GridError(f"{_where(path, 'recipes')}: name at least one base recipe "
                        f"(label: path relative to the grid file)")
    out = {}
    for label, entry in raw.items():
        _label(path, "recipes", label)
        if isinstance(entry, str):
            entry = {"recipe": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("recipe"), str):
            raise GridError(f"{_where(path, f'recipes.{label}')}: expected a path or "
                            f"{{recipe: PATH, set: {{key: value}}}}, got {entry!r}")
        unknown = set(entry) - {"recipe", "set"}
        if unknown:
            key = sorted(unknown)[0]
            raise GridError(f"{_where(path, f'recipes.{label}')}: unknown key '{key}'"
                            f"{suggestion(key, ('recipe', 'set'))}")
        file = entry["recipe"] if os.path.isabs(entry["recipe"]) else \
            os.path.normpath(os.path.join(here, entry["recipe"]))
        if not os.path.isfile(file):
            raise GridError(f"{_where(path, f'recipes.{label}')}: recipe not found: {file}")
        out[label] = (file, _mapping(path, f"recipes.{label}.set", entry.get("set")))
    return out


# Keys that only the classifier stage reads: the VAE trains on trainval alone, and the
# shots are drawn from test_unseen by their own generator (data.protocol.transfer_shots).
STAGE_ONLY = {"classifier": None, "protocol": ("shots", "shots_seed")}


def stage_only_key(recipe: dict) -> str | None:
    """Runs with equal keys share a VAE (they differ only in STAGE_ONLY keys and the
    name); a calibrated run chooses its own stage knobs and shares nothing."""
    if recipe["calibration"]["enabled"]:
        return None
    rest = {}
    for section, value in recipe.items():
        if section == "name" or (section in STAGE_ONLY and STAGE_ONLY[section] is None):
            continue
        if section in STAGE_ONLY:
            value = {k: v for k, v in value.items() if k not in STAGE_ONLY[section]}
        rest[section] = value
    return json.dumps(rest, sort_keys=True, default=str)


def load_grid(path: str, out: str | None = None, seeds=None) -> Grid:
    """Read, expand and validate a grid file; every error names the file and key.
    ``seeds`` (a list, a count or 'A-B') replaces the file's seeds."""
    if not os.path.isfile(path):
        raise GridError(f"grid file not found: {path}")
    raw = read_yaml(path, GridError, "grid ") or {}
    if not isinstance(raw, dict):
        raise GridError(f"grid {path}: expected a mapping of {', '.join(GRID_KEYS)}")
    for key in raw:
        if key not in GRID_KEYS:
            raise GridError(f"grid {path}: unknown key '{key}'{suggestion(key, GRID_KEYS)} "
                            f"(grid keys: {', '.join(GRID_KEYS)})")
    name = _label(path, "name", raw.get("name") or
                  os.path.splitext(os.path.basename(path))[0])
    out = os.path.abspath(out or raw.get("out") or os.path.join("runs", "grids", name))
    bases = _bases(path, raw.get("recipes"))
    variants = _mapping(path, "variants", raw.get("variants"), {"default": {}})
    if not variants:
        raise GridError(f"{_where(path, 'variants')}: empty; leave it out for one "
                        f"variant without overrides")
    for label, sets in variants.items():
        _label(path, "variants", label)
        _mapping(path, f"variants.{label}", sets)
    blocks = _sweep_blocks(path, raw.get("sweeps"))
    seeds = _seeds(path, raw.get("seeds") if seeds is None else seeds)
    common = _mapping(path, "set", raw.get("set"))
    metrics = raw.get("metrics") or list(DEFAULT_METRICS)
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise GridError(f"{_where(path, 'metrics')}: expected a list of metric names, got "
                        f"{metrics!r}")
    ood = raw.get("ood", False)
    if not isinstance(ood, bool):
        raise GridError(f"{_where(path, 'ood')}: expected true or false, got {ood!r}")
    for metric in metrics:
        check_metric_name(metric, ood, f"{_where(path, 'metrics')}")
    retries = raw.get("retries", 1)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise GridError(f"{_where(path, 'retries')}: expected an integer >= 0, got {retries!r}")
    resources = _mapping(path, "resources", raw.get("resources"))
    for key, value in resources.items():
        if key not in RESOURCE_KEYS:
            raise GridError(f"{_where(path, 'resources')}: unknown key '{key}'"
                            f"{suggestion(key, RESOURCE_KEYS)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise GridError(f"{_where(path, f'resources.{key}')}: expected a number >= 0, "
                            f"got {value!r}")
    resources = {"cpus": 1, "gpus": 0, **resources}

    runs: list[RunSpec] = []
    for base, (file, base_set) in bases.items():
        try:
            tree = recipe_to_dict(load_recipe(file))
        except RecipeError as exc:
            raise GridError(f"{_where(path, f'recipes.{base}')}: {exc}") from None
        for what, sets in ([(f"recipes.{base}.set", base_set), ("set", common)] +
                           [(f"variants.{v}", s) for v, s in variants.items()] +
                           [(f"sweeps '{b}'", p) for b, points in blocks for p in points[:1]]):
            for key in sets:
                _check_key(path, what, key, tree)
        for variant, sets in variants.items():
            for block, points in blocks:
                for point in points:
                    label = point_label(point)
                    for seed in seeds:
                        parts = [base, variant] + ([label] if label else []) + [f"seed{seed}"]
                        run_id = "/".join(parts)
                        pairs = {**base_set, **common, **sets, **point, "seed": seed}
                        try:
                            recipe = load_recipe(file, override_strings(pairs))
                        except RecipeError as exc:
                            raise GridError(f"grid {path}: run {run_id}: {exc}") from None
                        _absolute_paths(recipe)
                        runs.append(RunSpec(run_id, base, variant, dict(point), label, block,
                                            seed, portable(recipe_to_dict(recipe)),
                                            os.path.join(out, *parts), ood))
    ids = [r.id for r in runs]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise GridError(f"grid {path}: two runs expand to {dup}: two sweep blocks give the "
                        f"same point; drop one")
    return Grid(name, os.path.abspath(path), out, runs, group_tasks(runs), list(metrics),
                retries, resources, os.getcwd())


def group_tasks(runs: list[RunSpec]) -> list[Task]:
    """Tasks in seed order (every configuration's first seed before any second seed), so
    that a grid cut short has the widest coverage."""
    tasks: dict[str, Task] = {}
    for run in runs:
        key = stage_only_key(run.recipe)
        key = run.id if key is None else key
        if key not in tasks:
            tasks[key] = Task(run.id.replace("/", "__"))
        tasks[key].runs.append(run)
    seeds = sorted({r.seed for r in runs})
    return sorted(tasks.values(), key=lambda t: seeds.index(t.runs[0].seed))


def check_metric_name(metric: str, ood: bool, where: str) -> None:
    """A metric a grid collects must be one a run writes: a result key (``H``), the
    uncalibrated result of a calibrated run (``uncalibrated.H``), the validation result
    that chose a calibrated run's knobs (``calibration.validation.H``; an ensemble's is
    ``ensemble.validation.H``), or with ``ood: true`` a path into ood.json
    (``ood.detectors.knn.auroc``; ``*`` matches every detector)."""
    head = metric.split(".")[0]
    if metric in RESULT_METRICS or (head == "uncalibrated" and
                                    metric.split(".", 1)[-1] in RESULT_METRICS):
        return
    if head in ("calibration", "ensemble") and metric.count(".") == 2 and \
            metric.split(".")[1] == "validation" and metric.split(".")[2] in RESULT_METRICS:
        return
    if head == "ood":
        if not ood:
            raise GridError(f"{where}: '{metric}' is an OOD metric; set 'ood: true' so that "
                            f"each run writes ood.json")
        if metric.count(".") < 1:
            raise GridError(f"{where}: '{metric}': name a path into ood.json, e.g. "
                            f"ood.detectors.knn.auroc")
        return
    raise GridError(f"{where}: no run writes a metric '{metric}'"
                    f"{suggestion(metric, RESULT_METRICS)} (metrics: "
                    f"{', '.join(RESULT_METRICS)}, uncalibrated.H, calibration.validation.H, "
                    f"ensemble.validation.H, ood.PATH)")
