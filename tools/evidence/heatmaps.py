"""Heatmaps of the retrieval score: where in each image `cos(image, query)` comes from.

The explained quantity is the score the search ranked by: the cosine between the
normalised image embedding and a normalised query embedding (a text, an image, or a
combination), one target per image, batched over the top-k in one forward.

The Grad-CAM family (gradcam, gradcam++, hirescam, layercam, eigencam, scorecam) follows
pytorch-grad-cam's formulas, computed here in one batch: a forward hook detaches the
explained layer's output and makes it a leaf that requires grad, so autograd builds no
graph below it and frozen parameters never get gradients (pytorch-grad-cam itself fails
on a frozen model). The tests hold these maps to the library's, which is the reference.
ScoreCAM is restricted to the `top_n` channels with the largest first-order contribution
`sum(grad * activation)` (full ScoreCAM costs one forward per channel). EigenCAM ignores
the query and its sign is arbitrary (an SVD): kept for comparison, not recommended.
`legrad` (`relevance.py`) is the default for class-token ViTs, `contribution`
(`contribution.py`, exact) for towers that pool by the mean of their patches.

An image identical to the query (cosine 1, as the query image itself among the results of
an image search) gets an all-zero map and so no regions: the cosine is at its maximum
there, its gradient vanishes, and any map would be numerical noise.

Maps come back at the model's input resolution `S x S`, in [0, 1]. Images are squashed,
not cropped, to `S x S`, so `Heatmap.at_image_size(i)` is a plain resize to `(W, H)`.
Not handled: several explained layers at once, aug/eigen smoothing, timm towers other
than those with `trunk.stages` (ConvNeXt).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from evident.tools.errors import InputError
from evident.tools.evidence.backward import autograd_enabled
from evident.tools.evidence.contribution import contribution, pools_by_mean
from evident.tools.evidence.relevance import RawMaps, image_scores, legrad


def as_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as RGB; transparency is composited over white, not dropped to black."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class Tower:
    """Where a vision tower is explained, and how its activations become `(B, C, h, w)`."""

    kind: Literal["vit", "cnn"]
    layer: nn.Module
    grid: tuple[int, int] | None = None  # ViT patch grid; CNN maps carry their own

    def to_grid(self, act: torch.Tensor) -> torch.Tensor:
        if self.kind == "cnn":
            return act
        gh, gw = self.grid
        prefix = act.shape[1] - gh * gw  # class/register tokens, counted not assumed
        if prefix < 0:
            raise InputError(f"{act.shape[1]} tokens cannot hold a {gh}x{gw} patch grid.")
        return act[:, prefix:].reshape(act.shape[0], gh, gw, -1).permute(0, 3, 1, 2)


def tower_of(model: nn.Module) -> Tower:
    visual = model.visual
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is not None:
        return Tower("vit", blocks[-1].ln_1, tuple(visual.grid_size))
    if hasattr(visual, "layer4") and hasattr(visual, "attnpool"):
        return Tower("cnn", visual.layer4)
    stages = getattr(getattr(visual, "trunk", None), "stages", None)
    if stages is not None:
        return Tower("cnn", stages[-1])
    raise InputError(
        f"Cannot explain a {type(visual).__name__!r} vision tower: evident knows open_clip "
        "ViTs, ModifiedResNets and timm towers with stages."
    )


def reshape_transform(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """pytorch-grad-cam's `reshape_transform` for this tower (None for CNNs)."""
    tower = tower_of(model)
    return tower.to_grid if tower.kind == "vit" else None


def default_method(encoder: Any) -> str:
    """`contribution` for towers that pool by the mean of their patches (exact, one
    forward); `legrad` for other ViTs; `hirescam` for CNNs (element-wise, so it does not
    smear the heat across the map the way Grad-CAM's averaged gradients can)."""
    if pools_by_mean(encoder.model):
        return "contribution"
    return "legrad" if tower_of(encoder.model).kind == "vit" else "hirescam"


@contextmanager
def gradient_start(layer: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Make `layer`'s output a leaf that requires grad: the backward stops there."""
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        store["act"] = out = output.detach().requires_grad_(True)
        return out

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def activations_and_gradients(encoder: Any, pixels: torch.Tensor, query: torch.Tensor):
    """`(activations, gradients, scores, embeddings)` at the explained layer, `(B, C, h, w)`."""
    tower = tower_of(encoder.model)
    with gradient_start(tower.layer) as store, autograd_enabled():
        emb, scores = image_scores(encoder.model, pixels, query)
        (grad,) = torch.autograd.grad(scores.sum(), store["act"])
    act = tower.to_grid(store["act"].detach()).float()
    return act, tower.to_grid(grad).float(), scores.detach(), emb.detach()


def _weighted(weights: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    return (weights[:, :, None, None] * act).sum(1)


def _gradcam_pp(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    g2 = grad**2
    aij = g2 / (2 * g2 + act.sum((2, 3), keepdim=True) * g2 * grad + 1e-6)  # eq. 19
    aij = torch.where(grad != 0, aij, torch.zeros_like(aij))
    return _weighted((grad.clamp(min=0) * aij).sum((2, 3)), act)


def _eigencam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Projection on the first principal component, as pytorch-grad-cam's
    `get_2d_projection` (same NumPy SVD, so the same arbitrary sign; its module would
    import scikit-learn, seconds on a small CPU)."""
    maps = []
    acts = act.cpu().numpy()
    for a in np.where(np.isnan(acts), 0, acts):
        flat = a.reshape(a.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        vt = np.linalg.svd(flat, full_matrices=True)[2]
        maps.append((flat @ vt[0]).reshape(a.shape[1:]))
    return torch.from_numpy(np.float32(maps))


GRAD_FORMULAS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": lambda act, grad: _weighted(grad.mean((2, 3)), act),
    "gradcam++": _gradcam_pp,
    "hirescam": lambda act, grad: (grad * act).sum(1),
    "layercam": lambda act, grad: (grad.clamp(min=0) * act).sum(1),
    "eigencam": _eigencam,
}


def _grad_method(name: str) -> Callable[..., RawMaps]:
    def run(encoder: Any, pixels: torch.Tensor, query: torch.Tensor) -> RawMaps:
        act, grad, scores, emb = activations_and_gradients(encoder, pixels, query)
        return RawMaps(GRAD_FORMULAS[name](act, grad), scores, emb)

    run.__name__ = name
    return run


def top_channels(act: torch.Tensor, grad: torch.Tensor, n: int) -> torch.Tensor:
    """Indices `(B, n)` of the channels contributing most to the score, `sum(grad * act)`."""
    return (grad * act).sum((2, 3)).topk(min(n, act.shape[1]), dim=1).indices


def scorecam(encoder: Any, pixels: torch.Tensor, query: torch.Tensor, *, top_n: int = 32):
    """ScoreCAM (pytorch-grad-cam's weights: softmax of masked-input scores) on the `top_n`
    most relevant channels, all masked inputs scored in batches."""
    act, grad, scores, emb = activations_and_gradients(encoder, pixels, query)
    idx = top_channels(act, grad, top_n)
    act = torch.gather(act, 1, idx[:, :, None, None].expand(-1, -1, *act.shape[2:]))
    b, n = idx.shape
    up = F.interpolate(act, size=pixels.shape[-2:], mode="bilinear", align_corners=True)
    lo, hi = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
    masks = (up - lo) / (hi - lo + 1e-8)
    masked = (pixels[:, None] * masks[:, :, None]).flatten(0, 1)
    queries = query.expand(b, -1).repeat_interleave(n, 0)
    weights = score_pixels(encoder, masked, queries).view(b, n).softmax(-1)
    return RawMaps(_weighted(weights, act), scores, emb)


@torch.inference_mode()
def score_pixels(encoder: Any, pixels: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Cosine of each preprocessed image with its query row, in batches, no gradients."""
    size = max(1, getattr(encoder, "batch_size", 32))
    out = [
        image_scores(encoder.model, pixels[i : i + size], queries[i : i + size])[1]
        for i in range(0, len(pixels), size)
    ]
    return torch.cat(out) if out else torch.zeros(0)


CAM_METHODS: dict[str, Callable[..., RawMaps]] = {
    "contribution": contribution,
    "legrad": legrad,
    **{name: _grad_method(name) for name in GRAD_FORMULAS},
    "scorecam": scorecam,
}


SELF_MATCH = 1 - 1e-4  # the cosine's maximum: an image equal to the query has no gradient


def normalise_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU, min-max to [0, 1], bilinear resize to `size` (as pytorch-grad-cam does)."""

    def minmax(m: torch.Tensor) -> torch.Tensor:
        m = m - m.amin((1, 2), keepdim=True)
        return m / (1e-7 + m.amax((1, 2), keepdim=True))

    up = F.interpolate(minmax(maps.float().clamp(min=0))[:, None], size=size, mode="bilinear")
    return minmax(up[:, 0])


@dataclass(frozen=True)
class Heatmap:
    """Heatmaps of a batch: `maps[i]` is `(S, S)` float32 in [0, 1] at model resolution;
    `scores[i]` the cosine it explains; `image_sizes[i]` the original `(W, H)`."""

    method: str
    maps: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray
    image_sizes: tuple[tuple[int, int], ...]

    def at_image_size(self, i: int) -> np.ndarray:
        """`maps[i]` resized to the original image, `(H, W)`."""
        img = Image.fromarray(self.maps[i].astype(np.float32))  # float32 -> mode "F"
        return np.asarray(img.resize(self.image_sizes[i], Image.BILINEAR), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """A summary (the maps themselves go to PNGs, not JSON)."""
        return {
            "method": self.method,
            "resolution": list(self.maps.shape[1:]),
            "scores": [round(float(s), 6) for s in self.scores],
            "image_sizes": [list(s) for s in self.image_sizes],
        }


def query_rows(query: np.ndarray | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """A normalised query `(dim,)` for all images, or `(n, dim)` one per image."""
    if isinstance(query, torch.Tensor):
        q = query.detach().float().to(device)
    else:
        q = torch.as_tensor(np.asarray(query, dtype=np.float32), device=device)
    q = q[None] if q.ndim == 1 else q
    if q.ndim != 2 or q.shape[0] not in (1, n):
        raise InputError(f"Query embedding of shape {tuple(q.shape)} for {n} images.")
    return F.normalize(q, dim=-1)


def compute_heatmaps(
    encoder: Any,
    images: Sequence[Image.Image],
    query: np.ndarray | torch.Tensor,
    *,
    method: str | None = None,
    pixels: torch.Tensor | None = None,
    top_n: int = 32,
    layers: int | None = None,
    hidden: torch.Tensor | None = None,
) -> Heatmap:
    """Heatmaps of `cos(image, query)` for all `images` in one batched pass.

    `top_n` is the number of channels scorecam scores, `layers` the number of last blocks
    legrad explains (default: `relevance.default_layers`), `hidden` the tokens the
    contribution map may start from (`tokens.prefix`). Pass `pixels` when the images are
    already preprocessed, to skip doing it twice.
    """
    method = method or default_method(encoder)
    if method not in CAM_METHODS:
        raise InputError(f"Unknown CAM method {method!r}; known: {', '.join(CAM_METHODS)}.")
    options = {
        "scorecam": {"top_n": top_n},
        "legrad": {"layers": layers},
        "contribution": {"hidden": hidden},
    }.get(method, {})
    if not images and pixels is None:
        size = (0, encoder.image_size, encoder.image_size)
        empty = np.zeros((0,), np.float32)
        return Heatmap(method, np.zeros(size, np.float32), empty, np.zeros((0, encoder.dim)), ())
    with torch.inference_mode(False):  # a caller's inference tensors cannot enter autograd
        if pixels is None:
            pixels = encoder.pixels([as_rgb(im) for im in images])
        elif pixels.is_inference():
            pixels = pixels.clone()
        q = query_rows(query, len(pixels), encoder.device)
        raw = CAM_METHODS[method](encoder, pixels, q, **options)
    maps = normalise_maps(raw.maps, tuple(pixels.shape[-2:]))
    maps[raw.scores.to(maps.device) >= SELF_MATCH] = 0.0
    return Heatmap(
        method=method,
        maps=maps.cpu().numpy(),
        scores=raw.scores.float().cpu().numpy(),
        embeddings=raw.embeddings.float().cpu().numpy(),
        image_sizes=tuple(im.size for im in images),
    )
