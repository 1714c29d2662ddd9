"""hyperzsl: generalized zero-/few-shot learning and OOD detection with multimodal VAEs
whose latent family (Gaussian, von Mises-Fisher, ...) is pluggable.

The Python API (hyperzsl.api): ``train``, ``load_run``, ``run_grid``, ``compare_runs``,
``list_families``, ``list_detectors``, ``list_strategies``; distributions in
``hyperzsl.distributions``."""

__version__ = "0.1.0"

_API = ("train", "load_run", "run_grid", "compare_runs", "list_families", "list_detectors",
        "list_strategies", "Run")


def __getattr__(name):          # the API imports torch: only when it is used
    if name in _API:
        from . import api
        return getattr(api, name)
    if name == "distributions":
        import importlib
        return importlib.import_module(".distributions", __name__)
    raise AttributeError(f"module 'hyperzsl' has no attribute {name!r}")


__all__ = list(_API) + ["distributions", "__version__"]
