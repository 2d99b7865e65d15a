"""Transformer relevance: LeGrad-style attention-gradient maps of the retrieval score.

LeGrad (Bousselham et al., 2024) asks, for each explained attention layer l, how the
score `s_l = cos(head(z_l), q)` changes with that layer's attention weights `A_l`, where
`head` is the model's own pooling, final norm and projection applied to the layer's
output `z_l`: `R_l = mean over heads and query rows of ReLU(d s_l / d A_l)`, keeping the
columns of the image patches. The map is the sum of `R_l` over the explained blocks (by
default all of them, as in LeGrad: on the bundled figure model, pointing at the named
chart component rose from 0.39 with the last two blocks to 0.46 with all six); for the
last block `s_l` is exactly the retrieval score being explained.

Plumbing. `s_l` depends on `A_l` only through block l's own output (the block's input is
held fixed), and with open_clip's usual class-token pooling only through that output's
class token. So the fast path runs one plain forward without autograd in which each
explained block's attention keeps its keys, values, class-token query and the block's
class-token input (it computes the same fused attention it would anyway), then rebuilds
for every explained layer only the class token's path: its attention row `A_l[cls]` as a
leaf that requires grad, the output projection, the MLP and the head, one token each.
Explaining every block then costs about one forward and a few single-token passes; the
frozen parameters get no gradient, and no graph reaches the earlier blocks.

Towers that pool otherwise (mean of tokens) take the general path: a forward hook on each
explained `nn.MultiheadAttention` recomputes its output from the detached normalised
input with the whole `A_l` as a leaf, and a forward pre-hook detaches each explained
block's input, so each layer's gradient reaches only its own `A_l`. Both paths give the
same maps (a test holds them to 1e-5).

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

from evident.tools.errors import InputError
from evident.tools.evidence.backward import autograd_enabled, head, head_grad, pull


class RawMaps(NamedTuple):
    """One method's unnormalised maps `(B, h, w)` with the scores they explain `(B,)` and
    the normalised image embeddings `(B, dim)` of the same forward."""

    maps: torch.Tensor
    scores: torch.Tensor
    embeddings: torch.Tensor


def image_scores(model: nn.Module, pixels: torch.Tensor, query: torch.Tensor):
    """`(embeddings, cosines)`: one target per image, `(emb * q).sum(-1)`."""
    emb = model.encode_image(pixels, normalize=True).float()
    return emb, (emb * query).sum(-1)


def default_layers(n_blocks: int) -> int:
    """Blocks LeGrad explains by default: all of them (class-token pooling makes each
    one cost a single-token pass, see the module notes)."""
    return n_blocks


@dataclass
class _Capture:
    weights: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)
    grid: tuple[int, int] | None = None


def legrad(
    encoder: Any,
    pixels: torch.Tensor,
    query: torch.Tensor,
    *,
    layers: int | None = None,
    cls_path: bool | None = None,
) -> RawMaps:
    """LeGrad maps of `cos(image, query)` at the tower's patch (or last-stage) grid.

    `cls_path` picks the implementation (default: the fast one wherever the tower pools
    its class token); both give the same maps."""
    visual = encoder.model.visual
    if hasattr(visual, "attnpool"):
        return _legrad_attnpool(encoder.model, pixels, query)
    blocks = _vit_blocks(visual)
    explained = blocks[-min(layers or default_layers(len(blocks)), len(blocks)) :]
    if cls_path is None:
        cls_path = _class_token_pooled(visual, explained)
    if cls_path:
        return _legrad_class_token(encoder.model, explained, pixels, query)
    cap = _Capture()
    with _vit_hooks(explained, cap), autograd_enabled():
        emb, scores = image_scores(encoder.model, pixels, query)
        total = scores.sum()
        for z in cap.outputs[:-1]:  # earlier layers: the model's own head on their output
            total = total + (head(visual, z) * query).sum()
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


def _class_token_pooled(visual: nn.Module, blocks: list[nn.Module]) -> bool:
    """Whether the fast path applies: class-token pooling, and blocks whose MLP is
    open_clip's `Linear -> activation -> Linear` (any activation, any LayerScale)."""
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "") != "tok":
        return False
    return all(
        isinstance(b.mlp, nn.Sequential)
        and len(b.mlp) == 3
        and isinstance(b.mlp[0], nn.Linear)
        and isinstance(b.mlp[2], nn.Linear)
        for b in blocks
    )


@dataclass
class _Taps:
    """The forward's class-token values of the block running now: its input, attention
    query, keys, values and output, and its MLP's pre-activation; then each explained
    layer's gradient `d s_l / d A_l[cls]` `(B, heads, 1, T)`, in block order."""

    query: torch.Tensor
    now: dict[str, Any] = field(default_factory=dict)
    grads: list[torch.Tensor] = field(default_factory=list)


def _legrad_class_token(
    model: nn.Module, explained: list[nn.Module], pixels: torch.Tensor, query: torch.Tensor
) -> RawMaps:
    visual = model.visual
    taps = _Taps(query)
    # not inference mode (even inside a caller's): the taps feed autograd in the hooks
    with _class_token_taps(visual, explained, taps), torch.inference_mode(False), torch.no_grad():
        emb, scores = image_scores(model, pixels, query)
    if len(taps.grads) != len(explained):
        raise InputError("'legrad' could not follow this tower's blocks; use 'gradcam'.")
    gh, gw = visual.grid_size
    # the general path averages over all T query rows, of which only the class token's
    # carries gradient: divide by T to give the same numbers
    maps = sum(_patch_relevance(g / g.shape[-1], gh, gw) for g in taps.grads)
    return RawMaps(maps, scores.detach(), emb.detach())


def _class_token_grad(visual: nn.Module, blk: nn.Module, now: dict, query) -> torch.Tensor:
    """`d s_l / d A_l[cls]` by the chain rule through block l's class token, from the
    values the forward kept. Done by hand for the three weight matrices (one product each:
    re-running a token through them would read every matrix twice more, and at one token
    a matrix costs its reading, not its arithmetic); autograd for the cheap pieces."""
    fc, act, proj = blk.mlp
    y = now["x"] + blk.ls_1(now["out"])  # after attention, before the MLP
    z = now["z"]
    g = head_grad(visual, z, query)
    g_u = pull(blk.ls_2, torch.zeros_like(z), g)  # LayerScale is linear
    g_pre = pull(act, now["pre"], g_u @ proj.weight)
    g_y = g + pull(blk.ln_2, y, g_pre @ fc.weight)
    g_out = pull(blk.ls_1, torch.zeros_like(y), g_y) @ blk.attn.out_proj.weight
    v = now["v"]
    b, h, _, d = v.shape
    return g_out.view(b, 1, h, d).transpose(1, 2) @ v.transpose(-2, -1)


@contextmanager
def _class_token_taps(visual: nn.Module, blocks: list[nn.Module], taps: _Taps) -> Iterator[None]:
    handles, patched = [], []
    try:
        for blk in blocks:
            handles += [
                blk.register_forward_pre_hook(partial(_keep_class_input, taps=taps)),
                blk.mlp[0].register_forward_hook(partial(_keep_pre_activation, taps=taps)),
                blk.register_forward_hook(partial(_layer_done, visual, taps=taps)),
            ]
            blk.attn.forward = partial(_tapped_attention, blk.attn, taps=taps)
            patched.append(blk.attn)
        yield
    finally:
        for handle in handles:
            handle.remove()
        for attn in patched:
            del attn.forward  # back to the class's own forward


def _keep_class_input(module: nn.Module, args: tuple, *, taps: _Taps) -> None:
    taps.now = {"x": args[0][:, :1]}


def _keep_pre_activation(module: nn.Module, args: tuple, output, *, taps: _Taps) -> None:
    taps.now["pre"] = output[:, :1]


def _layer_done(visual: nn.Module, module: nn.Module, args: tuple, output, *, taps: _Taps):
    """Right after block l, while its weights are still in the CPU's cache."""
    taps.now["z"] = output[:, :1]
    if set(taps.now) != {"x", "out", "v", "pre", "z"}:
        raise InputError("'legrad' could not follow this tower's blocks; use 'gradcam'.")
    taps.grads.append(_class_token_grad(visual, module, taps.now, taps.query))
    taps.now = {}


def _tapped_attention(
    attn: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    *,
    taps: _Taps,
    **_: Any,
):
    """`nn.MultiheadAttention`'s self-attention (batch-first, packed in-projection, no
    masks), with the same fused kernel, keeping the values and the class token's output."""
    if key is not query or value is not query or key_padding_mask is not None:
        raise InputError("'legrad' explains self-attention only; this block cross-attends.")
    if attn_mask is not None:
        raise InputError("'legrad' does not explain masked vision attention; use 'gradcam'.")
    b, t, c = query.shape
    h = attn.num_heads
    q, k, v = F.linear(query, attn.in_proj_weight, attn.in_proj_bias).view(b, t, 3, h, -1).unbind(2)
    q, k, v = (y.transpose(1, 2) for y in (q, k, v))  # (B, heads, T, d)
    out = attn.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, c))
    taps.now |= {"v": v, "out": out[:, :1]}
    return out, None


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
