"""Gradients by hand for one token per image, where autograd's round trip costs more than
the arithmetic: `pull` takes a gradient back through one of a transformer block's small
modules by torch's own backward kernels (identity LayerScale, GELU, LayerNorm), `head_grad`
through the usual CLIP image head (LayerNorm, class token, projection, unit length) to
the cosine with a query, and `vjp` through anything else by autograd. Used by the class-
token path of `tools.evidence.relevance`, which pulls each explained block's score back to
its attention row one token at a time; `autograd_enabled` is shared with the Grad-CAM
family (`tools.evidence.heatmaps`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


@contextmanager
def autograd_enabled() -> Iterator[None]:
    """Gradients on even inside a caller's `no_grad` or `inference_mode`."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def vjp(fn, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """`grad` pulled back through `fn` at `x` (for the small, cheap pieces of a block)."""
    with autograd_enabled():
        x = x.detach().requires_grad_(True)
        (out,) = torch.autograd.grad(fn(x), x, grad)
    return out


def pull(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """`vjp` through one of a block's small modules, by torch's own backward kernels for
    those open_clip's ViTs use (identity LayerScale, GELU, LayerNorm) without building a
    graph: at one token per image the autograd round trip costs more than the arithmetic
    (about 10 ms of a ViT-B/32's 12 blocks for five images). Anything else goes through
    autograd."""
    if isinstance(module, nn.Identity):
        return grad
    if isinstance(module, nn.GELU):
        return torch.ops.aten.gelu_backward(grad, x, approximate=module.approximate)
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        x = x.float()
        mean = x.mean(-1, keepdim=True)
        rstd = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + module.eps)
        pulled, _, _ = torch.ops.aten.native_layer_norm_backward(
            grad, x, list(module.normalized_shape), mean, rstd, module.weight, module.bias,
            [True, False, False],
        )  # fmt: skip
        return pulled
    return vjp(module, x, grad)


def head_grad(visual: nn.Module, z: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """`d (head(z) . query) / d z` for the class token `z` `(B, 1, C)`. For the usual head
    (LayerNorm, the class token, a projection, unit length) by hand: the cosine's gradient
    `(q - s n) / |p|` pulled back through the projection and the LayerNorm's own backward
    kernel, about 8 ms of a ViT-B/32's 12 blocks for five images less than autograd's round
    trip; any other head through autograd."""
    ln = visual.ln_post
    if (
        getattr(visual, "attn_pool", None) is not None
        or getattr(visual, "pool_type", None) != "tok"
        or not isinstance(ln, nn.LayerNorm)
        or len(ln.normalized_shape) != 1
    ):
        return vjp(lambda t: (head(visual, t) * query).sum(), z, torch.ones(()))
    x = z[:, 0].float()
    normed = F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
    pooled = normed if visual.proj is None else normed @ visual.proj
    length = pooled.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # F.normalize's floor
    n = pooled / length
    q = query.float().expand_as(n)
    g_pooled = (q - (n * q).sum(-1, keepdim=True) * n) / length
    g_normed = g_pooled if visual.proj is None else g_pooled @ visual.proj.T
    return pull(ln, x, g_normed).unsqueeze(1).to(z.dtype)


def head(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The image head on a block's output `tokens`: the tower's own pooling, projection and
    unit length (the image embedding that layer would give)."""
    pooled, _ = visual._pool(tokens)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return F.normalize(pooled.float(), dim=-1)
