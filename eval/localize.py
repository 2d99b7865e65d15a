"""Localization of one query's target boxes by every heatmap method and baseline.

Localization is measured on the relevant images of a query that has target boxes, with
the query's own embedding, whether or not the search ranked those images high: a method
is judged on where it puts the heat, not on the retriever's misses, and every method sees
exactly the same (query, image) pairs, so the comparison is paired. With many relevant
images, at most `per_query` are used, chosen by a seeded hash of their paths (not by
position, which could follow file order).

For each method, one batch per query: the heatmaps, the regions (`tools.evidence.regions`), and one
counterfactual pass for the regions and the deletion/insertion curves
(`tools.evidence.counterfactuals.verify`). Pointing is measured on the map as the product
shows it, resized to the image (where the target boxes live) and drawn on the image's ink
(`tools.evidence.ink`; the baselines' maps too), twice: the peak inside a box, and within
`TOLERANCE` (15) pixels of one (`eval.metrics.pointing_game`); and once more, strictly, on
the map resized without the ink (`pointing_game_patches`), the model's patches alone.
With `randomized` copies of the encoder (`eval.sanity`), each method's map is also drawn
by each copy and compared with its own (`randomized_<level>_rank_corr`: the model
parameter randomization test; None for the baselines, which know no model).
Text regions (`localize_text`) are judged apart, on the queries that name a part of a
figure that is words (a title, an axis label, the legend, an annotation): the strongest
text region the product would cite in each chosen image, from the words read there at
index time, scores a point when its centre lies in a target box. Colour regions
(`localize_colour`) the same way, on the queries that name a colour they place ("the red
markers in a scatter plot"), with the share whose colour check passed.
Not handled: targets on images that are not relevant, query images with targets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evident.eval.baselines import BASELINES, baseline_heatmap
from evident.eval.metrics import best_iou, energy_pointing_game, pointing_game
from evident.eval.sanity import rank_correlation
from evident.eval.suite import SuiteQuery, stable_seed
from evident.tools.evidence.colour_regions import colour_regions
from evident.tools.evidence.counterfactuals import verify
from evident.tools.evidence.heatmaps import (
    CAM_METHODS,
    Heatmap,
    as_rgb,
    compute_heatmaps,
    query_rows,
)
from evident.tools.evidence.ink import drawn, weighted
from evident.tools.evidence.regions import find_regions
from evident.tools.evidence.text_regions import PARTS, text_regions
from evident.tools.ingest.images import read_image
from evident.tools.ingest.ocr import Reading

TOLERANCE = 15  # pixels: the pointing game's tolerance in Zhang et al. (2016) and TorchRay
LOCALIZATION_KEYS = (
    "pointing_game",
    "pointing_game_15px",
    "pointing_game_patches",
    "energy_pointing_game",
    "iou",
    "deletion_auc",
    "insertion_auc",
    "supported_share",
)


def image_reader(size: int = 64) -> Callable[[str], Image.Image]:
    """A reader of RGB images that keeps the last `size` decoded (queries share images)."""

    @lru_cache(maxsize=size)
    def read(path: str) -> Image.Image:
        return as_rgb(read_image(Path(path)))

    return read


def chosen_images(query: SuiteQuery, per_query: int | None, seed: int = 0) -> list[str]:
    """The relevant images with targets that localization uses, in suite order."""
    with_targets = [r for r in query.relevant if r in query.targets]
    if per_query is None or len(with_targets) <= per_query:
        return with_targets
    keep = set(sorted(with_targets, key=lambda r: stable_seed(seed, f"{query.id}:{r}"))[:per_query])
    return [r for r in with_targets if r in keep]


def heatmap_of(method: str, encoder: Any, images, query_embedding, pixels, keys, seed) -> Heatmap:
    if method in BASELINES:
        return baseline_heatmap(
            method, encoder, images, query_embedding, keys=keys, pixels=pixels, seed=seed
        )
    return compute_heatmaps(encoder, images, query_embedding, method=method, pixels=pixels)


def localize(
    encoder: Any,
    query_embedding: np.ndarray,
    query: SuiteQuery,
    methods: Sequence[str],
    *,
    read: Callable[[str], Image.Image],
    per_query: int | None = 5,
    seed: int = 0,
    curve_steps: int = 5,
    max_regions: int = 3,
    randomized: Mapping[str, Any] | None = None,
) -> dict[str, list[dict]]:
    """Per method, one record per chosen image: the scores (`LOCALIZATION_KEYS` but the
    supported share) plus region counts, and with `randomized` (`{level: encoder}`, see
    `eval.sanity`) each level's rank correlation with the map that copy draws."""
    chosen = chosen_images(query, per_query, seed)
    if not chosen:
        return {}
    images = [read(query.paths[r]) for r in chosen]
    sizes = [im.size for im in images]
    pixels = encoder.pixels(images)
    q = query_rows(query_embedding, len(images), encoder.device)
    keys = [f"{query.id}:{r}" for r in chosen]
    ink = [drawn(im) for im in images]  # one mask an image, for every method's map
    out = {}
    for method in methods:
        heat = heatmap_of(method, encoder, images, query_embedding, pixels, keys, seed)
        regions = [
            find_regions(heat.maps[i], sizes[i], rank=i + 1, max_regions=max_regions)
            for i in range(len(images))
        ]
        checked, faith = verify(
            encoder, pixels, q, heat.scores, regions, sizes, maps=heat.maps, steps=curve_steps
        )
        out[method] = [
            _record(rel, heat.at_image_size(i), ink[i], query.targets[rel], checked[i], faith[i])
            for i, rel in enumerate(chosen)
        ]
        if method in BASELINES:
            continue
        for level, redrawn in (randomized or {}).items():
            other = heatmap_of(method, redrawn, images, query_embedding, pixels, keys, seed)
            for i, record in enumerate(out[method]):
                corr = rank_correlation(heat.maps[i], other.maps[i])
                record[f"randomized_{level}_rank_corr"] = None if corr is None else round(corr, 6)
    return out


def _record(image: str, patches: np.ndarray, ink, targets, regions, faith) -> dict:
    """`patches`: the map resized to the image, before the ink; `ink`: the image's drawn
    mask (`tools.evidence.ink.drawn`)."""
    top = regions[0].box if regions else None
    supported = sum(r.supported for r in regions)
    heat = weighted(patches, ink)
    return {
        "image": image,
        "pointing_game": round(pointing_game(heat, targets), 6),
        "pointing_game_15px": round(pointing_game(heat, targets, TOLERANCE), 6),
        "pointing_game_patches": round(pointing_game(patches, targets), 6),
        "energy_pointing_game": round(energy_pointing_game(heat, targets), 6),
        "iou": round(best_iou(top, targets), 6),
        "deletion_auc": round(faith.deletion_auc, 6),
        "insertion_auc": round(faith.insertion_auc, 6),
        "regions": len(regions),
        "supported": supported,
    }


def known_methods() -> list[str]:
    return [*CAM_METHODS, *BASELINES]


def named_parts(text: str | None) -> list[str]:
    """The parts of a figure made of words that `text` names ("title", "legend", ...).

    >>> named_parts("the x-axis label of a line chart"), named_parts("the blue bars")
    (['xlabel'], [])
    """
    return [role for role, pattern in PARTS.items() if text and pattern.search(text)]


def localize_text(
    query: SuiteQuery,
    readings: dict[str, Reading],
    *,
    per_query: int | None = 5,
    seed: int = 0,
) -> list[dict]:
    """One record per chosen image (`readings` maps its suite path to what was read):
    whether the top text region's centre is in a target box, and its IoU."""
    out = []
    for rel in chosen_images(query, per_query, seed):
        reading = readings.get(rel, Reading(()))
        _, found = text_regions(query.text or "", reading, rank=1, first=1)
        out.append(_top_region(rel, found, query.targets[rel]))
    return out


def localize_colour(
    query: SuiteQuery,
    read: Callable[[str], Image.Image],
    *,
    per_query: int | None = 5,
    seed: int = 0,
) -> list[dict]:
    """One record per chosen image: whether the top colour region's centre is in a target
    box, its IoU, and whether its colour check passed (`tools.evidence.colour_regions`)."""
    out = []
    for rel in chosen_images(query, per_query, seed):
        _, found = colour_regions(query.text or "", read(query.paths[rel]), rank=1, first=1)
        checked = float(bool(found) and found[0].supported)
        out.append(_top_region(rel, found, query.targets[rel]) | {"supported": checked})
    return out


def _top_region(image: str, found, targets) -> dict:
    """One image's record of its strongest region: a point when the region's centre is in
    a target box, its best IoU with one, and how many regions there were."""
    top = found[0].box if found else None
    hit = top is not None and any(_holds(t, _centre(top)) for t in targets)
    return {
        "image": image,
        "pointing_game": float(hit),
        "iou": round(best_iou(top, targets), 6),
        "regions": len(found),
    }


def _centre(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _holds(box, point) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]
