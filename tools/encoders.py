"""Image and text encoders: any open_clip model from one spec string.

The spec forms are `tools.specs`'s (`ARCH:TAG`, `ARCH:/path/file`, `local-dir:/path`,
`random:ARCH`, `bundled:NAME`).

Images are resized by squashing to the model's square input, never cropped: every
pixel of the original is seen, and a heatmap maps back to the original by a plain
resize. Not handled: multi-crop test-time augmentation, text towers that need
tokenizer files from the Hub (SigLIP with HF tokenizers) when offline.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from open_clip import image_transform
from open_clip.model import CLIP
from open_clip.transformer import text_global_pool
from PIL import Image

from evident.tools import towers
from evident.tools.errors import ModelLoadError
from evident.tools.specs import (
    Spec,
    has_parts,
    model_folder,
    parse_spec,
    read_config,
    text_band,
    weights_id,
)

log = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"


@dataclass
class Encoder:
    """An open_clip model ready for batched, normalised embeddings (eval mode, frozen)."""

    spec: str
    model: torch.nn.Module
    preprocess: Any  # PIL image -> (3, S, S) tensor
    tokenizer: Any  # list[str] -> (N, context) token ids
    device: torch.device
    dim: int
    image_size: int
    batch_size: int = 32
    info: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # a folder model's weights fingerprint (`specs.weights_id`)
    text_band: tuple[float, float] | None = None  # `specs.text_band`: its in-domain queries

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess PIL images into one batch tensor on the encoder's device."""
        return torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings of an already preprocessed batch."""
        return self.model.encode_image(pixels.to(self.device), normalize=True).float()

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Normalised image embeddings, `(len(images), dim)` float32."""
        out = [
            self.embed_pixels(self.pixels(images[i : i + self.batch_size])).cpu()
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised text embeddings, `(len(texts), dim)` float32."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[i : i + self.batch_size])).to(self.device)
            out.append(encode_text_trimmed(self.model, tokens).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text(tokens, normalize=True)`, without the padding's cost.

    CLIP's text tower is causal and pools at the end-of-text token, so the padding after
    the longest text in the batch cannot change the result: cutting it off gives the
    same embedding (a test checks it) about 10x faster for a short query at context 77.
    Other text towers (Hugging Face, non-causal) take the full path.
    """

    hf = getattr(getattr(model, "text", None), "config", None)
    if hf is not None:  # a Hugging Face tower masks its padding: cutting it changes nothing
        used = (tokens != hf.pad_token_id).any(0).nonzero()
        n = int(used.max()) + 1 if len(used) else 1
        return model.encode_text(tokens[:, :n], normalize=True)
    mask = getattr(model, "attn_mask", None)
    if type(model) is not CLIP or mask is None or model.text_pool_type != "argmax":
        return model.encode_text(tokens, normalize=True)
    n = max(1, int((tokens != 0).sum(dim=1).max()))
    t = tokens[:, :n]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(t).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=mask[:n, :n]))
    x = text_global_pool(x, t, model.text_pool_type)
    proj = model.text_projection
    x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return torch.nn.functional.normalize(x, dim=-1)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


CONFIG_DIR = Path(__file__).parent / "model_configs"


def register_configs() -> None:
    """Make evident's own architectures (`tools/model_configs/*.json`) known to open_clip."""

    if "evident-tiny-vit" not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def load_encoder(
    spec: str,
    *,
    device: str | torch.device | None = None,
    init_seed: int | None = None,
    offline: bool = False,
) -> Encoder:
    """Build an encoder from a spec string; every failure is a `ModelLoadError`.

    `random:` specs are seeded with 0, so every process builds the same model (and its
    index stays searchable); training passes its own `init_seed` and gets no warning.
    `offline` (the `HF_HUB_OFFLINE` setting) loads a pretrained tag from the local
    cache only. Folders whose config names evident's own parts (`tools.towers`) are
    assembled by `towers.build`."""

    register_configs()
    parsed = parse_spec(spec)
    dev = torch.device(device) if device is not None else default_device()
    folder = model_folder(parsed)
    if folder is not None and has_parts(config := read_config(folder)):
        return _with_parts(parsed, folder, config, dev)
    kwargs: dict[str, Any] = {"device": dev, "image_resize_mode": "squash"}
    if folder is not None:
        name, pretrained = f"local-dir:{folder}", None
    else:
        _check_arch(parsed.arch)
        name, pretrained = parsed.arch, parsed.source
        if parsed.kind == "file" and not Path(parsed.source).is_file():
            raise ModelLoadError(f"Weights file {parsed.source!r} does not exist.")
        if parsed.kind == "tag":
            _check_tag(parsed.arch, parsed.source, offline)
    if parsed.kind == "random" and init_seed is None:
        log.warning(
            "RANDOM WEIGHTS: encoder %r is randomly initialised; its results are meaningless "
            "(use it for smoke tests and timing only).",
            str(parsed),
        )
    if parsed.kind == "random":
        torch.manual_seed(0 if init_seed is None else init_seed)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, **kwargs
        )
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"Could not build encoder {str(parsed)!r}: {exc}") from exc
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(name)
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else int(size)
    dim = _embed_dim(model, dev, size)
    return Encoder(
        str(parsed), model, preprocess, tokenizer, dev, dim, size, info={"arch": name},
        weights=weights_id(str(parsed)),
    )  # fmt: skip


def _with_parts(parsed: Spec, folder: Path, config: dict, device: torch.device) -> Encoder:
    """A model with evident's own parts (a stem, the installed text tower), its
    preprocessing from the folder's `preprocess_cfg` and its tokenizer."""

    model = towers.build(config)
    towers.load_weights(model, folder)
    model = model.to(device).eval().requires_grad_(False)
    pp = config.get("preprocess_cfg", {})
    size = int(config["model_cfg"]["vision_cfg"]["image_size"])
    preprocess = image_transform(
        size, is_train=False, mean=tuple(pp.get("mean", ())) or None,
        std=tuple(pp.get("std", ())) or None, resize_mode="squash",
        interpolation=pp.get("interpolation", "bicubic"),
    )  # fmt: skip
    dim = int(config["model_cfg"]["embed_dim"])
    info = {"arch": f"local-dir:{folder}", "parts": config["evident"]}
    return Encoder(
        str(parsed), model, preprocess, towers.tokenizer(config), device, dim, size, info=info,
        weights=weights_id(str(parsed)), text_band=text_band(config),
    )  # fmt: skip


def _embed_dim(model: torch.nn.Module, device: torch.device, size: int) -> int:
    proj = getattr(model.visual, "output_dim", None)
    if isinstance(proj, int):
        return proj
    with torch.inference_mode():
        return int(model.encode_image(torch.zeros(1, 3, size, size, device=device)).shape[-1])


def _check_arch(arch: str | None) -> None:

    if arch not in open_clip.list_models():
        raise ModelLoadError(
            f"Unknown open_clip architecture {arch!r}. Known ones include "
            f"{', '.join(open_clip.list_models()[:8])}, … (open_clip.list_models() has all)."
        )


def _check_tag(arch: str, tag: str, offline: bool) -> None:

    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        raise ModelLoadError(
            f"{arch!r} has no pretrained tag {tag!r}; known tags: {', '.join(tags) or 'none'}."
        )
    if not offline and not _reachable(HUB_HOST, 443):
        raise ModelLoadError(
            f"Cannot download the weights for {arch}:{tag}: {HUB_HOST} is not reachable from "
            "this machine. If you have the weights, point at them instead: "
            f"--model {arch}:/path/to/open_clip_model.safetensors, or --model local-dir:/path "
            "for a folder with open_clip_config.json and open_clip_model.safetensors. If they "
            "are already in your Hugging Face cache, set HF_HUB_OFFLINE=1 to load from it."
        )


def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
