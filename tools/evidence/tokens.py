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
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(embeddings (V, dim) normalised, patch vectors (V, n, dim) or None)` of `hidden`
    `(V, T, C)` run through blocks `start...`, with `keep` `(V, n)` the patch tokens each
    row keeps (None: all). `rows` `(V,)`, when given, picks each variant's image from a
    `hidden` of `(B, T, C)`: what the variants share (the first block's normalised input
    and its query, key and value projections) is then computed once per image. Patch
    vectors are the per-patch terms of a mean-pooling tower's embedding (before
    normalising); None for class-token towers, and when `keep` is given (a dropped
    token's vector is never computed past its attention)."""
    t = hidden.shape[1]
    v = len(rows) if rows is not None else hidden.shape[0]
    gh, gw = visual.grid_size
    first = t - gh * gw  # class (and register) tokens, counted not assumed
    blocks = visual.transformer.resblocks[start:]
    keys = None
    if keep is not None:
        always = torch.ones(v, first, dtype=torch.bool, device=keep.device)
        keys = torch.cat([always, keep], 1)
    avg = visual.pool_type == "avg"
    need = None  # the tokens whose output is used, when some are dropped
    if keys is not None:
        need = torch.zeros_like(keys)
        if avg:
            need[:, first:] = keep
        else:
            need[:, 0] = True
    x = hidden
    for n, block in enumerate(blocks):
        x = _block(block, x, keys, rows if n == 0 else None, need if n == len(blocks) - 1 else None)
    if not len(blocks):
        x = x if rows is None else x[rows]
        x = x if need is None else x[need]
    if need is not None:  # x is (used tokens, C): the kept patches, or the class tokens
        if not avg:
            return F.normalize(visual.ln_post(x) @ visual.proj, dim=-1), None
        kept = visual.ln_post(x) @ visual.proj
        pooled = torch.zeros(v, kept.shape[-1], dtype=kept.dtype, device=kept.device)
        pooled.index_add_(0, need.nonzero()[:, 0], kept)
        pooled = pooled / keep.sum(1, keepdim=True).clamp(min=1).to(kept.dtype)
        return F.normalize(pooled, dim=-1), None
    if not avg:
        return F.normalize(visual.ln_post(x[:, 0]) @ visual.proj, dim=-1), None
    patches = visual.ln_post(x[:, first:]) @ visual.proj
    return F.normalize(patches.mean(1), dim=-1), patches


def _block(
    block: nn.Module,
    x: torch.Tensor,
    keys: torch.Tensor | None,
    rows: torch.Tensor | None,
    need: torch.Tensor | None = None,
) -> torch.Tensor:
    """open_clip's `ResidualAttentionBlock` on `x` (`x[rows]` when `rows` is given), each
    row attending only to its `keys` `(V, T)` (None: all). `need` `(V, T)`, when given,
    names the tokens whose output is used: only those are computed past the attention,
    and only they are returned, as `(count, C)` in row-major order. Attention goes
    through `scaled_dot_product_attention` with a mask broadcast over heads and queries,
    not the `(V * heads, T, T)` one `nn.MultiheadAttention` would need, a group of
    variants of one image at a time, sharing its query, key and value projections."""
    attn = block.attn
    plain = attn.batch_first and attn.in_proj_weight is not None and not hasattr(block, "ln_1_kv")
    if not plain:  # another attention layout: the block's own forward, its own mask shape
        x = x if rows is None else x[rows]
        if keys is None:
            return block(x)
        blocked = torch.zeros(keys.shape, device=x.device, dtype=x.dtype)
        blocked[~keys] = float("-inf")
        t, heads = x.shape[1], attn.num_heads
        mask = blocked[:, None, None, :].expand(-1, heads, t, t).reshape(-1, t, t)
        x = block(x, attn_mask=mask)
        return x if need is None else x[need]
    b, t, c = x.shape
    heads = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, val = qkv.view(b, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)  # (B, h, T, d)
    mask = None if keys is None else keys[:, None, None, :]
    if rows is None:
        out = F.scaled_dot_product_attention(q, k, val, attn_mask=mask)
    else:  # each run of variants of one image against that image's projections
        image, counts = torch.unique_consecutive(rows, return_counts=True)
        parts, s = [], 0
        for i, n in zip(image.tolist(), counts.tolist(), strict=True):
            one = (q[i : i + 1].expand(n, -1, -1, -1), k[i : i + 1].expand(n, -1, -1, -1),
                   val[i : i + 1].expand(n, -1, -1, -1))  # fmt: skip
            parts.append(F.scaled_dot_product_attention(*one, attn_mask=mask[s : s + n]))
            s += n
        out, x = torch.cat(parts), x[rows]
    out = out.transpose(1, 2).reshape(len(x), t, c)
    if keys is None:
        x = x + block.ls_1(attn.out_proj(out))
        return x + block.ls_2(block.mlp(block.ln_2(x)))
    # the token-wise rest only for the tokens that are used: a dropped one is never
    # attended to again nor pooled, so its new value would go unused
    sel = keys if need is None else need
    kept = x[sel] + block.ls_1(attn.out_proj(out[sel]))
    kept = kept + block.ls_2(block.mlp(block.ln_2(kept)))
    return kept if need is not None else x.masked_scatter(sel[..., None], kept)
