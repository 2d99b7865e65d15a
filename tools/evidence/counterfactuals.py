"""Counterfactual checks: does removing a region lower the score, and does the heat order
matter (deletion and insertion curves)?

Removal works on the preprocessed pixels (model resolution; boxes come back from the
original image with `box_on_map`), by one of:
- `"mean"`: the box is filled with the mean colour the encoder normalises by (0 in
  normalised pixels, a neutral grey for CLIP): it carries nothing of the image, where the
  image's own mean colour would carry the colour of the very object being removed;
- `"blur"`: the box is replaced by a strongly blurred copy (sigma = S / 16), which keeps
  the colours around it and removes shape and texture.
Every masked image of every result is scored in as few batched forwards as possible.

`rank_after` is the result's rank within the returned list had the region been missing:
the drop in cosine is taken off this result's ranking score, the others keep theirs.

Noise floor: `supported` needs `score_drop > min_drop`, where
`min_drop = max(0.001, 0.05 * (score - blank))` and `blank` is the score of the same image
with everything removed (the end of the deletion curve). Any edit moves a cosine a little;
a region that carries less than 5% of what the whole image carries over a blank one is
not evidence to show a person, and 0.001 stays far above float32 batch jitter (~1e-6).
Without curves (`steps=0`) there is no blank score and only the 0.001 floor applies.

Not handled: removal by inpainting or token dropping; significance tests over noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from evident.tools.errors import InputError
from evident.tools.evidence.heatmaps import score_pixels
from evident.tools.evidence.regions import box_on_map
from evident.tools.records import Counterfactual, Faithfulness, Region

Removal = Literal["mean", "blur"]
REMOVALS = ("mean", "blur")
ABS_FLOOR = 1e-3
REL_FLOOR = 0.05


def removed(pixels: torch.Tensor, removal: Removal) -> torch.Tensor:
    """Each image of `(B, 3, S, S)` with everything removed: mean-filled, or blurred."""
    if removal == "mean":
        return torch.zeros_like(pixels)  # normalised pixels: 0 is the training set's mean
    if removal == "blur":
        sigma = pixels.shape[-1] / 16
        r = max(1, int(3 * sigma))
        k = torch.exp(-(torch.arange(-r, r + 1, dtype=pixels.dtype) ** 2) / (2 * sigma**2))
        k = (k / k.sum()).to(pixels.device)
        c = pixels.shape[1]
        x = F.pad(pixels, (r, r, r, r), mode="replicate")
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    raise InputError(f"Unknown removal {removal!r}; known: {', '.join(REMOVALS)}.")


def _region_images(pixels, blank, regions, image_sizes) -> list[torch.Tensor]:
    out = []
    for i, found in enumerate(regions):
        for region in found:
            x0, y0, x1, y1 = box_on_map(region.box, image_sizes[i], tuple(pixels.shape[-2:]))
            img = pixels[i].clone()
            img[:, y0:y1, x0:x1] = blank[i, :, y0:y1, x0:x1]
            out.append(img)
    return out


def _curve_images(pixels, blank, maps: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Per image: deletion at 1..steps-1 / steps, insertion at the same, then the blank."""
    out = []
    n = maps[0].numel()
    for i in range(len(pixels)):
        order = maps[i].flatten().argsort(descending=True, stable=True)
        for deleting in (True, False):
            for s in range(1, steps):
                hot = torch.zeros(n, dtype=torch.bool, device=pixels.device)
                hot[order[: round(n * s / steps)]] = True
                hot = hot.view(1, *maps.shape[1:])
                keep_blank = hot if deleting else ~hot
                out.append(torch.where(keep_blank, blank[i], pixels[i]))
        out.append(blank[i])
    return out


def verify(
    encoder: Any,
    pixels: torch.Tensor,
    query: torch.Tensor,
    scores: Sequence[float],
    regions: Sequence[Sequence[Region]],
    image_sizes: Sequence[tuple[int, int]],
    *,
    maps: np.ndarray | None = None,
    steps: int = 5,
    removal: Removal = "mean",
    ranking_scores: Sequence[float] | None = None,
) -> tuple[list[tuple[Region, ...]], list[Faithfulness] | None]:
    """Check every region and (with `maps` and `steps >= 2`) the deletion/insertion curves,
    all masked images in one batched scoring. `query` is `(1 | B, dim)`; `scores` the
    explained cosines of the unmasked images; `ranking_scores` what the list is ranked by
    (default: `scores`)."""
    blank = removed(pixels, removal)
    images = _region_images(pixels, blank, regions, image_sizes)
    n_regions = len(images)
    curves = maps is not None and steps >= 2
    if curves:
        images += _curve_images(pixels, blank, torch.as_tensor(maps, device=pixels.device), steps)
    owners = [i for i, found in enumerate(regions) for _ in found]
    if curves:
        owners += [i for i in range(len(pixels)) for _ in range(2 * steps - 1)]
    q = query.expand(len(pixels), -1)[owners] if owners else query
    after = score_pixels(encoder, torch.stack(images), q).cpu().numpy() if images else []
    before = np.asarray(scores, dtype=np.float64)
    faith = _faithfulness(before, after[n_regions:], steps, removal) if curves else None
    blanks = [f.deletion[-1] for f in faith] if faith else None
    checked = _counterfactuals(before, after[:n_regions], regions, removal, blanks, ranking_scores)
    return checked, faith


def _faithfulness(before, after, steps: int, removal: str) -> list[Faithfulness]:
    out = []
    for i, row in enumerate(np.asarray(after, dtype=np.float64).reshape(len(before), -1)):
        deletion = [before[i], *row[: steps - 1], row[-1]]
        insertion = [row[-1], *row[steps - 1 : 2 * steps - 2], before[i]]
        out.append(
            Faithfulness(
                deletion_auc=_auc(deletion),
                insertion_auc=_auc(insertion),
                removal=removal,
                deletion=tuple(float(v) for v in deletion),
                insertion=tuple(float(v) for v in insertion),
            )
        )
    return out


def _auc(curve: Sequence[float]) -> float:
    """Trapezoid area over evenly spaced fractions in [0, 1].

    >>> _auc([1.0, 0.5, 0.0])
    0.5
    """
    y = np.asarray(curve, dtype=np.float64)
    return float((y.sum() - (y[0] + y[-1]) / 2) / (len(y) - 1))


def _counterfactuals(before, after, regions, removal, blanks, ranking_scores):
    ranking = np.asarray(before if ranking_scores is None else ranking_scores, dtype=np.float64)
    out, k = [], 0
    for i, found in enumerate(regions):
        rel = REL_FLOOR * (before[i] - blanks[i]) if blanks is not None else 0.0
        floor = max(ABS_FLOOR, rel)
        checked = []
        for region in found:
            drop = float(before[i] - after[k])
            others = np.delete(ranking, i)
            cf = Counterfactual(
                removal=removal,
                score_before=float(before[i]),
                score_after=float(after[k]),
                score_drop=drop,
                rank_after=1 + int((others > ranking[i] - drop).sum()),
                supported=bool(drop > floor),
                min_drop=float(floor),
            )
            checked.append(replace(region, counterfactual=cf))
            k += 1
        out.append(tuple(checked))
    return out
