"""Run records: atomic JSON/text writes, the S/U/H table, plots."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys

import yaml


def atomic_write(path: str, write, suffix: str = "") -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename: a reader (or a
    Ctrl-C) never sees a half-written file, and a failed write leaves the old one."""
    tmp = f"{path}.tmp-{os.getpid()}{suffix}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write(text)
    atomic_write(path, write)


def save_figure(fig, path: str) -> None:
    """A matplotlib figure as PNG, atomically; the figure is closed."""
    import matplotlib.pyplot as plt  # only when a figure is drawn (slow to import)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90), ".png")
    finally:
        plt.close(fig)


def write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json_if_present(path: str) -> dict | None:
    """A JSON file's content, or None when it is missing or torn (a run still writing)."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read_yaml(path: str, error, what: str):
    """A YAML file's content; ``error`` (an exception class) names the file when it is
    not valid YAML."""
    with open(path) as fh:
        try:
            return yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise error(f"{what}{path}: not valid YAML ({exc})") from exc


def read_json(path: str):
    with open(path) as fh:
        return json.load(fh)


def environment() -> dict:
    """Library versions and machine facts stored with every run."""
    # imported here, not at the top: the ground floor stays light for commands that never
    # train (hyperzsl-compare, the grid driver)
    import numpy
    import scipy
    import torch
    try:
        version = importlib.metadata.version("hyperzsl")
    except importlib.metadata.PackageNotFoundError:     # run from a source tree
        version = "unknown (not installed)"
    info = {"hyperzsl": version, "python": sys.version.split()[0],
            "platform": platform.platform(), "torch": torch.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__,
            "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads()}
    try:
        import faiss
        info["faiss"] = faiss.__version__
    except ImportError:
        info["faiss"] = None
    return info


def format_table(rows: list[dict], columns: list[str], title: str = "") -> str:
    """A Markdown table; floats in [0, 1] shown as percentages."""
    def cell(v):
        if isinstance(v, float):
            return f"{100 * v:.1f}" if 0.0 <= v <= 1.0 else f"{v:.3g}"
        return str(v)
    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(([f"### {title}", ""] if title else []) + [head, sep] + body) + "\n"


def plot_training(history: list[dict], clf_history: list[dict], path: str) -> None:
    """VAE loss terms per epoch and the classifier's test metrics per epoch."""
    import matplotlib  # only when a figure is drawn: slow to import; Agg needs no display
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [r["epoch"] for r in history]
    for key in ("reconstruction", "kl", "cross_reconstruction", "alignment", "classification"):
        vals = [r.get(key) for r in history]
        if any(v is not None for v in vals):
            axes[0].plot(epochs, [float("nan") if v is None else v for v in vals], label=key)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("VAE epoch")
    axes[0].set_title("loss terms (unweighted, per batch)")
    axes[0].legend()
    for key in (clf_history[0] if clf_history else {}):
        axes[1].plot(range(1, len(clf_history) + 1), [h[key] for h in clf_history], label=key)
    axes[1].set_xlabel("classifier epoch")
    axes[1].set_title("test metrics (reported: last epoch)")
    axes[1].legend()
    save_figure(fig, path)
