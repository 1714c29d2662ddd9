"""The documentation is tested like code: every recipe, grid, tool and source path the
README and docs/ name exists, every dotted ``hyperzsl.`` name resolves, every ``python``
block in docs/ runs, the generated recipe key reference lists exactly the keys the schema
accepts, and the site builds with ``mkdocs build --strict``."""
import glob
import importlib
import importlib.util
import itertools
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

DOCS = os.path.join(REPO, "docs")
PAGES = sorted(glob.glob(os.path.join(DOCS, "*.md")))
NAMED_IN = [os.path.join(REPO, "README.md"), *PAGES]

# A repository path in prose or code: not preceded by a path character, so "../recipes/..."
# (relative to a grid file) and "runs/grids/..." (an output folder) are not taken.
PATH = re.compile(r"(?<![\w./-])(?:recipes|grids|tools|tests|docs|hyperzsl)/[\w{},*./-]*[\w}*]")
DOTTED = re.compile(r"(?<![\w./-])hyperzsl(?:\.[A-Za-z_]\w*)+")
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _expand_braces(pattern: str) -> list[str]:
    """``a/{b,c}_d.yaml`` -> [``a/b_d.yaml``, ``a/c_d.yaml``] (any number of groups)."""
    parts = re.split(r"\{([^{}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def named_paths() -> dict[str, set[str]]:
    """Path pattern -> the files that name it."""
    found: dict[str, set[str]] = {}
    for path in NAMED_IN:
        for match in PATH.findall(_text(path)):
            found.setdefault(match, set()).add(os.path.relpath(path, REPO))
    return found


def test_every_named_path_exists():
    paths = named_paths()
    assert any(p.startswith("recipes/") for p in paths) and any(p.startswith("tools/") for p in paths)
    missing = {}
    for pattern, where in sorted(paths.items()):
        for concrete in _expand_braces(pattern):
            if not glob.glob(os.path.join(REPO, concrete)):
                missing[concrete] = sorted(where)
    assert not missing, f"paths named in the docs that do not exist: {missing}"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_name_resolves():
    names = {m for path in NAMED_IN for m in DOTTED.findall(_text(path))}
    assert "hyperzsl.api" in names
    assert not sorted(n for n in names if not _resolves(n))


def _python_pages() -> list[str]:
    return [os.path.basename(p) for p in PAGES if PYTHON_BLOCK.search(_text(p))]


@pytest.mark.parametrize("page", _python_pages())
def test_python_examples_run(page, tmp_path, monkeypatch, capsys):
    """A page's ``python`` blocks run in order in one namespace, as a reader would type them
    at the repository root: from a scratch folder that sees the repository's recipes,
    grids, tools and tests, so their runs/ land there. A block that only includes a file
    (``--8<--``) is skipped: that file is tested where it lives."""
    for name in ("recipes", "grids", "tools", "tests"):
        os.symlink(os.path.join(REPO, name), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace: dict = {"__name__": "__docs__"}
    blocks = PYTHON_BLOCK.findall(_text(os.path.join(DOCS, page)))
    ran = 0
    for i, code in enumerate(blocks):
        if "--8<--" in code:
            continue
        exec(compile(code, f"docs/{page} (python block {i + 1})", "exec"), namespace)
        ran += 1
    assert ran, f"docs/{page}: no runnable python block"
    assert capsys.readouterr().out.strip(), f"docs/{page}: the examples printed nothing"


# ----------------------------------------------------------------- the key reference
def schema_keys() -> set[str]:
    """Every key of a parsed recipe, walked from its dict form: each optional section and
    list filled once so that their keys appear, and each loss term's declared options set
    (the parser accepts them). Independent of hyperzsl.recipe.reference."""
    from hyperzsl.recipe import recipe_from_dict, recipe_to_dict
    from hyperzsl.registry import LOSS_TERMS
    raw = {
        "classifier": {"gate": {"detector": "knn"}},
        "ood": {"sets": [{"name": "other", "path": "other.npz"}],
                "detectors": [{"name": "knn", "label": "knn50"}]},
        "train": {"terms": {name: {"options": dict(term.options)}
                            for name, term in LOSS_TERMS.as_dict().items() if term.options}},
    }
    keys: set[str] = set()

    def walk(value, prefix: str) -> None:
        if prefix:
            keys.add(prefix)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{prefix}.{k}" if prefix else k)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                for k, v in item.items():
                    walk(v, f"{prefix}[].{k}")

    walk(recipe_to_dict(recipe_from_dict(raw)), "")
    return keys


def missing_from_reference(rows) -> list[str]:
    return sorted(schema_keys() - {r.key for r in rows})


def test_reference_lists_exactly_the_keys_the_schema_accepts():
    from hyperzsl.recipe.reference import reference_rows
    rows = reference_rows()
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys)), "a key is listed twice"
    assert missing_from_reference(rows) == []
    assert sorted(set(keys) - schema_keys()) == [], "the reference lists keys the parser rejects"
    assert not [r.key for r in rows if not r.doc], "keys without a line in schema.py"
    assert {"train.precision", "calibration.ensemble", "data.side_info[].key",
            "train.terms.contrastive.options.temperature", "ood.detectors[].label"} <= set(keys)


def test_the_comparison_fails_when_a_key_is_missing():
    from hyperzsl.recipe.reference import reference_rows
    rows = [r for r in reference_rows() if r.key not in ("train.precision", "ood.sets[].path")]
    assert missing_from_reference(rows) == ["ood.sets[].path", "train.precision"]


def test_reference_takes_allowed_values_from_the_schema_and_the_registries():
    from hyperzsl.recipe.reference import reference_rows
    from hyperzsl.registry import DETECTORS, FAMILIES, STRATEGIES
    rows = {r.key: r for r in reference_rows()}
    assert rows["mode"].allowed == "`faithful`, `clean`"
    assert rows["train.precision"].default == "fp32"
    for key, registry in (("model.family", FAMILIES), ("classifier.strategy", STRATEGIES),
                          ("classifier.gate.detector", DETECTORS)):
        assert rows[key].allowed == ", ".join(f"`{n}`" for n in registry.names())
    assert rows["train.terms.kl"].default == "{enabled: true, max: 0.25, start: 0, end: 93}"


def test_the_hook_writes_the_reference_into_its_page():
    spec = importlib.util.spec_from_file_location("docs_hooks", os.path.join(DOCS, "hooks.py"))
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = _text(os.path.join(DOCS, "reference.md"))
    assert hooks.MARKER in page
    out = hooks.on_page_markdown(page, None, None, None)
    assert hooks.MARKER not in out and "| `train.precision` |" in out
    assert hooks.on_page_markdown("# no marker", None, None, None) == "# no marker"


# ------------------------------------------------------------------------ the build
def test_site_builds_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip('mkdocs is not installed (pip install -e ".[docs]"); .ci/run builds the '
                    'site with mkdocs build --strict after the tests')
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.isfile(tmp_path / "site" / "reference" / "index.html")
