"""Benchmarks of the evidence engine (issue 3), and pytorch-grad-cam's own way as reference.

`bench_evidence()` times, on the same preprocessed top-k images and query:
- `cam_top5_s`: the engine's heatmaps (default method) with regions, one batched pass;
- `naive_cam_top5_s`: the per-image way of pytorch-grad-cam's examples (one GradCAM
  object per image, parameters requiring grad, a full backward each);
- `forward_top5_s`: a plain batched forward with no gradients, the floor;
- `counterfactual_5x3_s`: the counterfactual check of 3 regions for each of the 5 results
  (15 masked images, batched), no curves;
each the median of `repeats` rounds after a warm-up, the contenders interleaved within a
round so that load from other processes hits them alike. Ratios come with the figures.

`ImageTower`, `SimilarityTarget` and `library_cam` run pytorch-grad-cam on an open_clip
model with the retrieval target; the tests use them as the reference implementation.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytorch_grad_cam.score_cam as score_cam
import torch
from pytorch_grad_cam import GradCAM
from torch import nn

from evident.eval.scenes import make_scenes
from evident.tools.encoders import load_encoder
from evident.tools.evidence.counterfactuals import verify
from evident.tools.evidence.heatmaps import (
    compute_heatmaps,
    query_rows,
    reshape_transform,
    tower_of,
)
from evident.tools.evidence.regions import find_regions
from evident.tools.records import Region

log = logging.getLogger(__name__)


class ImageTower(nn.Module):
    """`model(x)` for pytorch-grad-cam: the normalised image embedding."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(x, normalize=True)


class SimilarityTarget:
    """pytorch-grad-cam target: the cosine of one output row with a normalised query."""

    def __init__(self, query: np.ndarray | torch.Tensor) -> None:
        self.query = torch.as_tensor(np.asarray(query, dtype=np.float32))

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output * self.query.to(output.device)).sum(-1)


@contextmanager
def params_requiring_grad(model: nn.Module) -> Iterator[None]:
    """What pytorch-grad-cam needs (it fails on a frozen model); frozen again, no grads kept."""
    model.requires_grad_(True)
    try:
        yield
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)


@contextmanager
def quiet_library() -> Iterator[None]:
    """Silence ScoreCAM's tqdm bars (the only output on the paths used here)."""
    real = score_cam.tqdm
    score_cam.tqdm = type("NoBars", (), {"tqdm": staticmethod(lambda it, **kw: it)})
    try:
        yield
    finally:
        score_cam.tqdm = real


def library_cam(
    cam_class: type,
    encoder: Any,
    pixels: torch.Tensor,
    queries: Sequence[np.ndarray],
    *,
    reshape: Callable | None = None,
) -> np.ndarray:
    """pytorch-grad-cam's maps `(B, S, S)`, one CAM object for the batch, one target per item."""

    layer = tower_of(encoder.model).layer
    reshape = reshape or reshape_transform(encoder.model)
    tower = ImageTower(encoder.model)
    with (
        params_requiring_grad(encoder.model),
        quiet_library(),
        cam_class(tower, [layer], reshape_transform=reshape) as cam,
    ):
        return cam(pixels, targets=[SimilarityTarget(q) for q in queries])


def naive_cam(encoder: Any, pixels: torch.Tensor, queries: Sequence[np.ndarray]) -> list:
    """The examples' way: a GradCAM object and a full backward per image."""
    return [
        library_cam(GradCAM, encoder, pixels[i : i + 1], queries[i : i + 1])
        for i in range(len(pixels))
    ]


def _three_regions(heatmap, sizes, n: int = 3) -> list[tuple]:
    """The top `n` regions of each map, padded with quadrant boxes where fewer were found."""

    out = []
    for i, (w, h) in enumerate(sizes):
        found = list(find_regions(heatmap.maps[i], (w, h), rank=i + 1, max_regions=n))
        quads = [(0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h)]
        for j in range(len(found), n):
            found.append(Region(f"R{i + 1}.{j + 1}", quads[j], 0.0, 0.0))
        out.append(tuple(found))
    return out


def bench_evidence(
    spec: str = "random:ViT-B-32", *, k: int = 5, repeats: int = 3, encoder: Any = None
) -> dict[str, float]:
    """Seconds for the engine, the per-image library way, the floor, and counterfactuals."""

    encoder = encoder or load_encoder(spec)
    images = [s.image for s in make_scenes(k, seed=0, size=encoder.image_size, clutter=True)]
    query = encoder.encode_texts(["a red circle"])[0]
    pixels = encoder.pixels(images)
    sizes = [im.size for im in images]
    q = query_rows(query, k, encoder.device)

    def engine():
        heat = compute_heatmaps(encoder, images, query, pixels=pixels)
        return [find_regions(heat.maps[i], sizes[i], rank=i + 1) for i in range(k)]

    def forward():
        with torch.inference_mode():
            encoder.model.encode_image(pixels, normalize=True)

    heat = compute_heatmaps(encoder, images, query, pixels=pixels)
    regions = _three_regions(heat, sizes)

    def counterfactual():
        verify(encoder, pixels, q, heat.scores, regions, sizes, steps=0)

    runs = {
        f"cam_top{k}_s": engine,
        f"naive_cam_top{k}_s": lambda: naive_cam(encoder, pixels, [query] * k),
        f"forward_top{k}_s": forward,
        f"counterfactual_{k}x3_s": counterfactual,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeats + 1):  # round 0 warms up
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - start)
    out = {name: statistics.median(t) for name, t in times.items()}
    floor = out[f"forward_top{k}_s"]
    out["cam_over_forward"] = out[f"cam_top{k}_s"] / floor
    out["naive_over_cam"] = out[f"naive_cam_top{k}_s"] / out[f"cam_top{k}_s"]
    out["counterfactual_over_forward"] = out[f"counterfactual_{k}x3_s"] / floor
    log.info("evidence bench on %s: %s", encoder.spec, out)
    return out
