"""tools/trace_official.py skips cleanly without the official checkout (it is kept outside
the project; docs/parity.md)."""
import importlib.util
import os

from conftest import REPO


def _tool():
    spec = importlib.util.spec_from_file_location(
        "trace_official", os.path.join(REPO, "tools", "trace_official.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trace_skips_without_a_checkout(capsys, tmp_path):
    tool = _tool()
    assert tool.main([]) == 0
    assert tool.main([str(tmp_path / "missing")]) == 0
    out = capsys.readouterr().out
    assert out.count("skip: no official checkout") == 2


def test_verdict_names_the_first_divergence():
    v = _tool().Verdict()
    assert v.check("a", 1e-9, 1e-6) and not v.check("b", 1e-3, 1e-6)
    assert not v.check("c", float("nan"), 1.0)
    assert v.first.startswith("b:") and v.checked == 3
