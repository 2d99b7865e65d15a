"""Patch contributions: each patch's exact share of the cosine, for towers that pool by the
mean of their patch tokens (the bundled figure model).

Such a tower's embedding is `e = mean_j f_j`, where `f_j` is patch j's token after the
final norm and projection. So the score it is ranked by splits exactly:

    cos(e, q) = <e, q> / |e| = sum_j <f_j, q> / (n |e|) = sum_j c_j

and `c_j` is how much patch j adds to (or, when negative, takes from) the score: the
class-activation map of a global-average-pooled network (Zhou et al., 2016), with nothing
approximated. It costs one forward pass. A region cut from this map is a set of patches
whose tokens carry the match; the counterfactual check then asks whether removing them
from the image (not only from the sum) lowers the score.

Not handled: towers that pool by a class token or an attention pool (use legrad or the
Grad-CAM family; `default_method` picks for you).
"""

from __future__ import annotations

from typing import Any

import torch

from evident.tools.errors import InputError
from evident.tools.evidence import tokens
from evident.tools.evidence.relevance import RawMaps


def pools_by_mean(model: Any) -> bool:
    visual = getattr(model, "visual", None)
    return getattr(visual, "pool_type", None) == "avg" and not getattr(visual, "attn_pool", None)


@torch.inference_mode()
def contribution(
    encoder: Any, pixels: torch.Tensor, query: torch.Tensor, *, hidden: torch.Tensor | None = None
) -> RawMaps:
    """`(B, h, w)` maps whose cells sum to each image's cosine with its query row.

    `hidden` is the batch's `tokens.prefix` at `tokens.split(model)`, when the caller
    has it already (the counterfactual check reuses the same tensor)."""
    visual = encoder.model.visual
    if not pools_by_mean(encoder.model):
        raise InputError(
            "the contribution map needs a tower that pools by the mean of its patch tokens; "
            "this one does not: use legrad or a Grad-CAM method"
        )
    start = tokens.split(encoder.model)
    if hidden is None:
        hidden = tokens.prefix(visual, pixels, start)
    _, feats = tokens.finish(visual, hidden, start)
    feats = feats.float()  # (B, n, dim)
    pooled = feats.mean(1)
    norm = pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    emb = pooled / norm
    q = query.to(feats.dtype).expand(len(feats), -1)
    shares = torch.einsum("bnd,bd->bn", feats, q) / (feats.shape[1] * norm)
    gh, gw = visual.grid_size
    return RawMaps(shares.view(-1, gh, gw), (emb * q).sum(-1), emb)
