"""Heatmap baselines that know nothing about the query, for the localization tables.

- `random`: uniform noise on the explained layer's grid (the ViT patch grid; 1/32 of the
  side for CNNs), upsampled and normalised exactly as the real methods' maps are, so its
  blobs have a real map's size. Each map is seeded by `(seed, key)` (key: query id and
  image), never by call order, so a resumed or reordered run draws the same maps.
- `centre`: an isotropic Gaussian at the centre of the model's input square (sigma a
  quarter of the side): the centre-bias prior that salient content tends to sit in the
  middle. Images are squashed to the square, so on the original image it is centred with
  sigma a quarter of each side.

Both come back as `tools.evidence.heatmaps.Heatmap` with the image's real score and
embedding (one no-grad forward), so regions, counterfactuals and pointing run through the same code
as for a real method.
Not handled: other priors (saliency, edge density).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from evident.eval.suite import stable_seed
from evident.tools.evidence.heatmaps import Heatmap, as_rgb, normalise_maps, query_rows, tower_of
from evident.tools.evidence.relevance import image_scores

BASELINES = ("random", "centre")
CENTRE_SIGMA = 0.25


def random_maps(keys: Sequence[str], grid: tuple[int, int], *, seed: int = 0) -> np.ndarray:
    """`(len(keys), gh, gw)` uniform noise in [0, 1), one independent map per key.

    >>> random_maps(["a", "b"], (2, 3)).shape
    (2, 2, 3)
    """
    return np.stack(
        [np.random.default_rng(stable_seed(seed, k)).random(grid) for k in keys]
    ).astype(np.float32)


def centre_map(shape: tuple[int, int], sigma: float = CENTRE_SIGMA) -> np.ndarray:
    """An `(h, w)` Gaussian peaking at 1 in the middle, `sigma` in units of each side.

    >>> m = centre_map((5, 5)); float(m[2, 2]), bool(m[0, 0] < m[1, 1] < m[2, 2])
    (1.0, True)
    """
    ys, xs = ((np.arange(n) + 0.5) / n - 0.5 for n in shape)
    d2 = ys[:, None] ** 2 + xs[None, :] ** 2
    return np.exp(-d2 / (2 * sigma**2)).astype(np.float32)


def _grid(encoder: Any) -> tuple[int, int]:
    tower = tower_of(encoder.model)
    if tower.grid is not None:
        return tuple(tower.grid)
    side = max(1, encoder.image_size // 32)
    return (side, side)


def baseline_heatmap(
    name: str,
    encoder: Any,
    images: Sequence[Image.Image],
    query: np.ndarray,
    *,
    keys: Sequence[str],
    pixels: torch.Tensor | None = None,
    seed: int = 0,
) -> Heatmap:
    """The `name` baseline's maps for `images` (one key per image), as a `Heatmap`."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    if pixels is None:
        pixels = encoder.pixels([as_rgb(im) for im in images])
    size = tuple(pixels.shape[-2:])
    if name == "random":
        raw = torch.from_numpy(random_maps(keys, _grid(encoder), seed=seed))
    else:
        raw = torch.from_numpy(centre_map(size)).expand(len(pixels), *size)
    with torch.inference_mode():
        emb, scores = image_scores(
            encoder.model, pixels, query_rows(query, len(pixels), encoder.device)
        )
    return Heatmap(
        method=name,
        maps=normalise_maps(raw, size).cpu().numpy(),
        scores=scores.float().cpu().numpy(),
        embeddings=emb.float().cpu().numpy(),
        image_sizes=tuple(im.size for im in images),
    )
