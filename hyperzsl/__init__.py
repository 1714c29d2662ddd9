"""hyperzsl: generalized zero-/few-shot learning and OOD detection with multimodal VAEs
whose latent family (Gaussian, von Mises-Fisher, ...) is pluggable."""

__version__ = "0.1.0"
