"""What a data set records about how it was made: backbone, resolution, preprocessing and
package versions, so predictions on new images can embed them the same way and a reader
can tell which features a file holds."""
from __future__ import annotations

import platform
from importlib import metadata

from .backbones import Backbone
from .text import TEXT_MODEL, TEXT_PACKAGES

BASE_PACKAGES = ("torch", "numpy", "scipy", "pillow")
RESIZE = ("RGB; a square image resized bilinearly (align_corners=False) to R x R, another "
          "with its shorter side to R then centre-cropped; antialiased only when shrinking")
POOLING = "mean over the spatial grid of the last feature map"


def package_versions(names) -> dict[str, str | None]:
    """Installed versions of the named distributions (None where one is absent)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(backbone: Backbone, resolution: int, threads: int,
               batch_size: int) -> dict:
    """The record written into the data set (att_splits.mat keys, extract.json)."""
    versions = {"python": platform.python_version()}
    versions.update(package_versions(("hyperzsl",) + BASE_PACKAGES + backbone.packages
                                     + TEXT_PACKAGES))
    return {"backbone": backbone.name, "resolution": int(resolution),
            "feature_width": backbone.width, "scaling": backbone.scaling, "resize": RESIZE,
            "pooling": POOLING, "text_model": TEXT_MODEL,
            "text_template": "<name>: <description>", "threads": int(threads),
            "batch_size": int(batch_size), "versions": versions}
