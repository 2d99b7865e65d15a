"""Transformer relevance: LeGrad-style attention-gradient maps of the retrieval score.

LeGrad (Bousselham et al., 2024) asks, for each explained attention layer l, how the
score `s_l = cos(head(z_l), q)` changes with that layer's attention weights `A_l`, where
`head` is the model's own pooling, final norm and projection applied to the layer's
output `z_l`: `R_l = mean over heads and query rows of ReLU(d s_l / d A_l)`, keeping the
columns of the image patches. The map is the sum of `R_l` over the last `layers` blocks;
for the last block `s_l` is exactly the retrieval score being explained.

Plumbing. open_clip's attention uses a fused kernel that returns no weights, so a forward
hook on each explained `nn.MultiheadAttention` recomputes its output from the detached
normalised input with `A_l` as a leaf that requires grad, and a forward pre-hook detaches
each explained block's input. Autograd builds a graph only inside the explained blocks
and the head, each layer's gradient reaches only its own `A_l`, and the frozen parameters
get none. The fused output is computed and then replaced: one attention of waste per
explained block, small beside the backward it saves.

CNN towers (open_clip's ModifiedResNet) end in an attention pool, one attention whose
query is the mean token; the same rule on it gives the map at the last stage's grid.

Not handled: custom attention blocks (`CustomResidualAttentionBlock`), cross-attention,
timm towers. They raise `InputError`, naming the Grad-CAM family, which covers them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tools.errors import InputError


class RawMaps(NamedTuple):
    """One method's unnormalised maps `(B, h, w)` with the scores they explain `(B,)` and
    the normalised image embeddings `(B, dim)` of the same forward."""

    maps: torch.Tensor
    scores: torch.Tensor
    embeddings: torch.Tensor


@contextmanager
def autograd_enabled() -> Iterator[None]:
    """Gradients on even inside a caller's `no_grad` or `inference_mode`."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def image_scores(model: nn.Module, pixels: torch.Tensor, query: torch.Tensor):
    """`(embeddings, cosines)`: one target per image, `(emb * q).sum(-1)`."""
    emb = model.encode_image(pixels, normalize=True).float()
    return emb, (emb * query).sum(-1)


def default_layers(n_blocks: int) -> int:
    """Blocks LeGrad explains by default: the last two (all of a 2-block test model).

    Each explained block costs about one block of backward and one of attention, so two
    keep a ViT-B heatmap near 1.2x a plain forward, and less for deeper towers."""
    return min(2, n_blocks)


@dataclass
class _Capture:
    weights: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)
    grid: tuple[int, int] | None = None


def legrad(
    encoder: Any, pixels: torch.Tensor, query: torch.Tensor, *, layers: int | None = None
) -> RawMaps:
    """LeGrad maps of `cos(image, query)` at the tower's patch (or last-stage) grid."""
    visual = encoder.model.visual
    if hasattr(visual, "attnpool"):
        return _legrad_attnpool(encoder.model, pixels, query)
    blocks = _vit_blocks(visual)
    explained = blocks[-min(layers or default_layers(len(blocks)), len(blocks)) :]
    cap = _Capture()
    with _vit_hooks(explained, cap), autograd_enabled():
        emb, scores = image_scores(encoder.model, pixels, query)
        total = scores.sum()
        for z in cap.outputs[:-1]:  # earlier layers: the model's own head on their output
            total = total + (_head(visual, z) * query).sum()
        grads = torch.autograd.grad(total, cap.weights)
    gh, gw = visual.grid_size
    maps = sum(_patch_relevance(g, gh, gw) for g in grads)
    return RawMaps(maps, scores.detach(), emb.detach())


def _vit_blocks(visual: nn.Module) -> list[nn.Module]:
    blocks = list(getattr(getattr(visual, "transformer", None), "resblocks", []))
    ok = blocks and all(
        isinstance(getattr(b, "attn", None), nn.MultiheadAttention)
        and b.attn.batch_first
        and b.attn.in_proj_weight is not None
        for b in blocks
    )
    if not ok:
        raise InputError(
            f"'legrad' needs open_clip's standard ViT blocks (batch-first nn.MultiheadAttention); "
            f"this {type(visual).__name__!r} tower has none. Use 'gradcam' or 'hirescam'."
        )
    return blocks


def _head(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    pooled, _ = visual._pool(tokens)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return F.normalize(pooled.float(), dim=-1)


def _patch_relevance(grad: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """`(B, heads, T, T)` gradient -> `(B, gh, gw)`; prefix tokens are counted, not assumed."""
    rel = grad.clamp(min=0).mean(dim=(1, 2))  # over heads and query rows
    prefix = rel.shape[-1] - gh * gw
    if prefix < 0:
        raise InputError(f"{rel.shape[-1]} tokens cannot hold a {gh}x{gw} patch grid.")
    return rel[:, prefix:].reshape(-1, gh, gw)


@contextmanager
def _vit_hooks(blocks: list[nn.Module], cap: _Capture) -> Iterator[None]:
    handles = []
    try:
        for blk in blocks:
            handles.append(blk.register_forward_pre_hook(_detach_input))
            handles.append(
                blk.attn.register_forward_hook(partial(_recompute, cap=cap), with_kwargs=True)
            )
            handles.append(blk.register_forward_hook(partial(_keep_output, cap=cap)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _detach_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0].detach(), *args[1:])


def _keep_output(module: nn.Module, args: tuple, output: torch.Tensor, *, cap: _Capture) -> None:
    cap.outputs.append(output)


def _recompute(module: nn.MultiheadAttention, args, kwargs, output, *, cap: _Capture):
    x = args[0]
    if any(a is not None and a is not x for a in args[1:3]):
        raise InputError("'legrad' explains self-attention only; this block cross-attends.")
    out, weights = _attention(module, x.detach(), kwargs.get("attn_mask"))
    cap.weights.append(weights)
    return out, None


def _attention(attn: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None):
    """`nn.MultiheadAttention` (batch-first, packed in-projection) with the weights as a leaf."""
    b, t, c = x.shape
    h = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(b, t, 3, h, -1).unbind(2)
    q, k, v = (y.transpose(1, 2) for y in (q, k, v))  # (B, heads, T, d)
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if mask is not None:
        logits = logits + mask.to(logits.dtype)
    weights = logits.softmax(-1).detach().requires_grad_(True)
    out = (weights @ v).transpose(1, 2).reshape(b, t, c)
    return attn.out_proj(out), weights


def _legrad_attnpool(model: nn.Module, pixels: torch.Tensor, query: torch.Tensor) -> RawMaps:
    cap = _Capture()
    handle = model.visual.attnpool.register_forward_hook(partial(_recompute_pool, cap=cap))
    try:
        with autograd_enabled():
            emb, scores = image_scores(model, pixels, query)
            (grad,) = torch.autograd.grad(scores.sum(), cap.weights)
    finally:
        handle.remove()
    rel = grad.clamp(min=0).mean(dim=1)[:, 0, 1:]  # mean-token query row, spatial keys
    return RawMaps(rel.reshape(-1, *cap.grid), scores.detach(), emb.detach())


def _recompute_pool(module: nn.Module, args: tuple, output: torch.Tensor, *, cap: _Capture):
    """ModifiedResNet's AttentionPool2d, only its output row (the mean-token query)."""
    x = args[0].detach()
    b, c, gh, gw = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], 1)
    tokens = tokens + module.positional_embedding.to(tokens.dtype)
    h = module.num_heads
    q = module.q_proj(tokens[:, :1]).view(b, 1, h, -1).transpose(1, 2)
    k = module.k_proj(tokens).view(b, -1, h, c // h).transpose(1, 2)
    v = module.v_proj(tokens).view(b, -1, h, c // h).transpose(1, 2)
    weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
    weights = weights.detach().requires_grad_(True)
    cap.weights.append(weights)
    cap.grid = (gh, gw)
    return module.c_proj((weights @ v).transpose(1, 2).reshape(b, c))
