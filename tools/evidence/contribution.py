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

The patch vectors of the last `CACHED` images a tower has seen are kept (keyed by the
tower and the image's pixels): a query that names a place asks for the maps of the same
candidates as the one before it, for another thing, and pays one einsum instead of a
forward pass for those it has seen.

Not handled: towers that pool by a class token or an attention pool (use legrad or the
Grad-CAM family; `default_method` picks for you).
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

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
        feats = _patch_vectors(visual, pixels, start)
    else:
        feats = tokens.finish(visual, hidden, start)[1].float()  # (B, n, dim)
    pooled = feats.mean(1)
    norm = pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    emb = pooled / norm
    q = query.to(feats.dtype).expand(len(feats), -1)
    shares = torch.einsum("bnd,bd->bn", feats, q) / (feats.shape[1] * norm)
    gh, gw = visual.grid_size
    return RawMaps(shares.view(-1, gh, gw), (emb * q).sum(-1), emb)


CACHED = 256  # images per tower (about 220 KB each for the bundled model)
# per tower: the version of its weights (torch counts each in-place change: an optimizer
# step, `load_state_dict`) and the vectors computed with them
_SEEN: weakref.WeakKeyDictionary[nn.Module, tuple[int, OrderedDict[bytes, torch.Tensor]]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def forget() -> None:
    """Drop every kept patch vector (the benchmark times a placed search without them)."""
    with _LOCK:
        _SEEN.clear()


def _patch_vectors(visual: nn.Module, pixels: torch.Tensor, start: int) -> torch.Tensor:
    """`(B, n, dim)` float patch vectors of `pixels`, those of images seen before from the
    cache, the rest computed in one batch. A tower in training mode is never cached, and
    one whose weights changed since starts afresh."""
    if visual.training:
        return tokens.finish(visual, tokens.prefix(visual, pixels, start), start)[1].float()
    keys = [_key(p) for p in pixels]
    version = sum(p._version for p in visual.parameters())
    with _LOCK:
        if visual not in _SEEN or _SEEN[visual][0] != version:
            _SEEN[visual] = (version, OrderedDict())
        seen = _SEEN[visual][1]
        missing = [i for i, k in enumerate(keys) if k not in seen]
    if missing:
        todo = pixels if len(missing) == len(pixels) else pixels[missing]
        hidden = tokens.prefix(visual, todo, start)
        fresh = tokens.finish(visual, hidden, start)[1].float()
    with _LOCK:
        for i, f in zip(missing, fresh if missing else (), strict=True):
            seen[keys[i]] = f
        out = torch.stack([seen[k] for k in keys])
        for k in keys:
            seen.move_to_end(k)
        while len(seen) > CACHED:
            seen.popitem(last=False)
    return out


def _key(pixels: torch.Tensor) -> bytes:
    """A digest of one image's pixels and where they are (a tower moved to another device
    keeps apart the vectors it computed there)."""
    data = pixels.detach().cpu().contiguous()
    digest = hashlib.blake2b(str(pixels.device).encode(), digest_size=16)
    digest.update(data.view(torch.uint8).numpy() if data.dtype == torch.bfloat16 else data.numpy())
    return digest.digest()
