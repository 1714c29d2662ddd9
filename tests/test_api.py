"""The README's Python API example runs as written (paths moved to a temporary folder)."""
import os
import re

from conftest import REPO


def test_readme_api_example_runs(tmp_path, capsys):
    text = open(os.path.join(REPO, "README.md")).read()
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('"recipes/demo.yaml"', repr(os.path.join(REPO, "recipes", "demo.yaml")))
    code = code.replace('"runs/api-demo"', repr(str(tmp_path / "api-demo")))
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "'S'" in out and "gaussian" in out and "softmax" in out and "'per_seed'" in out
    assert os.path.isfile(tmp_path / "api-demo" / "metrics.json")


def test_api_errors_are_named(tmp_path):
    import pytest

    import hyperzsl
    from hyperzsl.errors import HyperzslError
    with pytest.raises(HyperzslError, match="not a hyperzsl run folder"):
        hyperzsl.load_run(str(tmp_path))
