"""From an image file to the square RGB tensor a backbone sees, with the exact steps that
built tinyimagenet-zsl-dev: PIL decode, ``convert("RGB")``, bilinear ``interpolate``
(``align_corners=False``) on 0..255 float values. Scaling is the backbone's job."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CorruptImageError


def load_rgb(path: str) -> np.ndarray:
    """H x W x 3 uint8 pixels. Grayscale, palette and alpha images become RGB; the EXIF
    orientation is applied (a phone photo is embedded the way it is seen). A file that
    does not decode is a :class:`CorruptImageError`."""
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode == "P":  # palette with transparency: through RGBA, no PIL warning
                img = img.convert("RGBA")
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's decoders raise all three
        raise CorruptImageError(f"{path}: cannot decode image ({exc})") from exc


def square_tensor(rgb: np.ndarray, resolution: int):
    """3 x R x R float32 on 0..255. A square image is resized straight to R x R (the
    tinyimagenet-zsl-dev recipe); another is resized so its shorter side is R, then
    centre-cropped. Shrinking is antialiased (plain bilinear would alias); enlarging is
    plain bilinear, bit for bit the recipe."""
    h, w = rgb.shape[:2]
    scale = resolution / min(h, w)
    size = (resolution, resolution) if h == w else (max(resolution, round(h * scale)),
                                                    max(resolution, round(w * scale)))
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                          antialias=scale < 1)
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return x[0, :, top:top + resolution, left:left + resolution].contiguous()
