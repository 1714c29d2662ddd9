"""The package's layout: no import cycles among its modules, nothing loose at the top, and
run folders written before the layout moved still load and reproduce their numbers. The
layer order itself is checked by ``lint-imports`` (pyproject.toml) in CI."""
import json
import os
import shutil

import pytest
from conftest import REPO

import hyperzsl
from hyperzsl.cli import eval_main

FIXTURE = os.path.join(REPO, "tests", "data", "run_before_layout")
TOP_LEVEL = {"__init__", "__main__", "api", "cli", "compare", "conformance", "distributions",
             "errors", "registry", "report"}


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), imports inside
    functions included."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return out


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the dev extra)")
    graph = grimp.build_graph("hyperzsl")
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    class Graph:                      # a -> b -> c -> a, and d alone
        modules = {"a", "b", "c", "d"}
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges[m]
    assert _cycles(Graph()) == [["a", "b", "c"]]


def test_nothing_loose_at_the_top():
    root = os.path.dirname(hyperzsl.__file__)
    modules = {name[:-3] for name in os.listdir(root) if name.endswith(".py")}
    assert modules <= TOP_LEVEL, f"loose modules: {sorted(modules - TOP_LEVEL)}"


def test_a_run_folder_from_before_the_move_loads_and_reproduces(tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(FIXTURE, run)
    with open(os.path.join(run, "metrics.json")) as fh:
        saved = json.load(fh)["result"]
    loaded = hyperzsl.load_run(run, device="cpu")
    assert loaded.recipe.model.latent_dim == 16 and loaded.info["status"] == "done"
    assert eval_main([run, "--device", "cpu"]) == 0
    with open(os.path.join(run, "eval.json")) as fh:
        again = json.load(fh)["result"]
    # bit for bit on the CPU that wrote the folder; another CPU may round the stage's
    # arithmetic differently, and flip a few of its 300 test decisions
    assert again == pytest.approx(saved, abs=0.01)
