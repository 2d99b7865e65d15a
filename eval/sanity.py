"""Sanity checks of the heatmap methods: does a map depend on what the model learned?

The model parameter randomization test (Adebayo et al., "Sanity Checks for Saliency
Maps", NeurIPS 2018): explain the same image and query again with the image tower's
weights re-drawn, and compare the two maps by Spearman rank correlation. A method whose
map barely changes when the weights that made the score are gone shows the image's
structure (where the ink is), not the model's evidence. Two steps of their cascade are
measured: the last block and the head re-drawn (`LEVELS["top"]`), and the whole tower
(`LEVELS["all"]`). Lower is better; the model-independent baselines (`random`, `centre`)
would score 1 and are not measured.

A tower is re-drawn the way it was first built: every module's own `reset_parameters`
(convolutions, linear layers, norms, attention; a BatchNorm's running statistics too), and
the tensors a ViT holds directly (class token, position embeddings, projection) from a
normal of standard deviation `width ** -0.5`, as open_clip draws them (the projection
alone when only the top is re-drawn). The copy shares
the text tower and everything else outside the image tower with the original, which is
left untouched; the draw is seeded, so a resumed run compares with the same weights.

Not handled: the blocks of towers other than open_clip's ViTs (for a ModifiedResNet `top`
re-draws its attention pool, the head, and no stage), the data randomization test
(retraining on permuted labels: too costly to run inside an evaluation).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

LEVELS = {"top": 1, "all": None}
"""The cascade's steps: how many of the last blocks are re-drawn (None: every block and
the stem), the head (final norm and projection) always."""

SANITY_KEYS = tuple(f"randomized_{level}_rank_corr" for level in LEVELS)

OWN = ("class_embedding", "positional_embedding", "proj")
"""What a ViT tower holds directly, outside its modules."""


def randomized(encoder: Any, blocks: int | None = None, *, seed: int = 0) -> Any:
    """A copy of `encoder` whose image tower's last `blocks` blocks and head are re-drawn
    (`blocks=None`: the whole image tower). The original is not changed; only the
    re-drawn tensors are new, the copy shares every other one with it (the text tower,
    the blocks below)."""
    model = encoder.model
    own = OWN if blocks is None else ("proj",)  # the tower's own tensors re-drawn
    drawn = {id(t) for m in _redrawn(model.visual, blocks) for t in _tensors(m)}
    drawn |= {id(t) for name, t in model.visual._parameters.items() if name in own}
    # every other tensor is "already copied" as itself: shared, not copied
    shared = itertools.chain(model.parameters(), model.buffers())
    clone = copy.deepcopy(model, {id(t): t for t in shared if id(t) not in drawn})
    visual = clone.visual
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"][:1]
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for module in _redrawn(visual, blocks):
            _reset(module)
        for name in own:
            tensor = visual._parameters.get(name)
            if tensor is not None:  # open_clip's scale: width ** -0.5
                tensor.normal_(0.0, tensor.shape[0 if name == "proj" else -1] ** -0.5)
    clone.requires_grad_(False).eval()
    return dataclasses.replace(encoder, model=clone)


def _tensors(module: nn.Module):
    return itertools.chain(module.parameters(recurse=False), module.buffers(recurse=False))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation of two maps; None when either is constant.

    >>> m = np.arange(16.0).reshape(4, 4)
    >>> rank_correlation(m, m ** 2), rank_correlation(m, -m), rank_correlation(m, 0 * m)
    (1.0, -1.0, None)
    """
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def _redrawn(visual: nn.Module, blocks: int | None) -> list[nn.Module]:
    """The modules of `visual` whose tensors are re-drawn."""
    if blocks is None:
        return list(visual.modules())
    resblocks = list(getattr(getattr(visual, "transformer", None), "resblocks", []))
    head = [getattr(visual, name, None) for name in ("ln_post", "attnpool", "attn_pool")]
    chosen = [*resblocks[len(resblocks) - blocks :], *(m for m in head if m is not None)]
    return [m for top in chosen for m in top.modules()]


def _reset(module: nn.Module) -> None:
    """Re-draw `module`'s tensors as its class first drew them (a BatchNorm's running
    statistics too); modules with nothing of their own to draw are left."""
    if isinstance(module, nn.MultiheadAttention):
        module._reset_parameters()
    elif hasattr(module, "reset_parameters"):
        module.reset_parameters()
