"""A ViT's forward in two halves, so that one image's early blocks serve many variants.

`prefix` runs the patch embedding and the first `start` blocks once per image; `finish`
runs the remaining blocks for any rows of that batch, each with its own set of patch
tokens dropped (`keep`, one boolean row per variant): a dropped token is masked out of
every remaining attention (nothing attends to it) and, for a tower that pools by the mean
of its patches, out of the mean. The class token always stays. With nothing dropped,
`finish(prefix(x))` is the tower's own forward (a test holds them equal).

This is what makes the calibrated counterfactual affordable: the region and its null
placements differ only in which tokens are dropped, so each variant costs the last
`depth - start` blocks, not a forward.
Not handled: towers with attention pooling, CNNs (they take the pixel-space path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BLOCKS = 1  # the last blocks a counterfactual variant runs again (see counterfactuals.py)


def is_vit(model: nn.Module) -> bool:
    visual = getattr(model, "visual", None)
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    return blocks is not None and getattr(visual, "attn_pool", None) is None


def depth(model: nn.Module) -> int:
    return len(model.visual.transformer.resblocks)


def split(model: nn.Module, blocks: int = BLOCKS) -> int:
    """The block the second half starts at when the last `blocks` are re-run."""
    return max(0, depth(model) - blocks)


def prefix(visual: nn.Module, pixels: torch.Tensor, start: int) -> torch.Tensor:
    """`(B, T, C)`: the tokens entering block `start` (0: right after the embedding)."""
    x = visual._embeds(pixels)
    for block in visual.transformer.resblocks[:start]:
        x = block(x)
    return x


def finish(
    visual: nn.Module,
    hidden: torch.Tensor,
    start: int,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(embeddings (V, dim) normalised, patch vectors (V, n, dim) or None)` of `hidden`
    `(V, T, C)` run through blocks `start...`, with `keep` `(V, n)` the patch tokens each
    row keeps (None: all). Patch vectors are the per-patch terms of a mean-pooling tower's
    embedding (before normalising); None for class-token towers."""
    v, t, _ = hidden.shape
    gh, gw = visual.grid_size
    first = t - gh * gw  # class (and register) tokens, counted not assumed
    blocks = visual.transformer.resblocks[start:]
    mask = None
    if keep is not None and len(blocks):
        always = torch.ones(v, first, dtype=torch.bool, device=keep.device)
        keys = torch.cat([always, keep], 1)
        heads = blocks[0].attn.num_heads
        blocked = torch.zeros(v, t, device=hidden.device, dtype=hidden.dtype)
        blocked[~keys] = float("-inf")
        mask = blocked[:, None, None, :].expand(v, heads, t, t).reshape(v * heads, t, t)
    x = hidden
    for block in blocks:
        x = block(x, attn_mask=mask)
    x = visual.ln_post(x)
    if visual.pool_type == "avg":
        patches = x[:, first:] @ visual.proj
        if keep is None:
            pooled = patches.mean(1)
        else:
            weights = keep.to(patches.dtype)
            total = weights.sum(1, keepdim=True).clamp(min=1)
            pooled = (patches * weights[..., None]).sum(1) / total
        return F.normalize(pooled, dim=-1), patches
    return F.normalize(x[:, 0] @ visual.proj, dim=-1), None
