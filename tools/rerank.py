"""Reranking: a second, closer look at the first stage's top hits.

`Reranker` is the interface (a vision-language-model reranker can implement it later):
given the query, its embedding, the hits and their images, return the hits in their new
order with the final `rank` and `score` set and `first_stage={"rank": r, "score": s}`
recorded (`rerank_by` does that part for any scores).

`MultiScaleReranker` ("multiscale"): a whole-image embedding averages everything in the
picture, so a small object in a busy image scores low. This reranker also embeds a grid
of overlapping crops of each image (by default 3 x 3 crops of half the side, at a stride
of a quarter; all crops of all hits in one batch, cut from the original pixels so a small
object keeps its detail) and fuses the best crop with the whole image and the caption:

    visual = (1 - crop_weight) * whole + crop_weight * best_crop
    score  = (1 - caption_weight) * visual + caption_weight * caption   (if the hit has one)

`evident.tools.fusion.LearnedReranker` (`learned:FILE`) scores the same features, and the
heatmap's concentration, with weights fitted by `evident.eval.ltr`.

`rerank_by_place`: for a query that names a place ("a legend in the upper left",
`tools.places`), where the named thing's patch contributions peak and, for a figure's text
part, where its words were read; `tools.pipeline.search` runs it on every such query when
the model's patches add up to its score or the part's words were read.

Not handled: reporting the best crop as evidence (the heatmap and
its regions do that, checked by counterfactuals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from evident.tools.counts import WEIGHT as COUNT_WEIGHT
from evident.tools.errors import InputError
from evident.tools.evidence.contribution import contribution
from evident.tools.evidence.heatmaps import as_rgb, query_rows
from evident.tools.hybrid import FLOORS, minmax
from evident.tools.places import (
    WEIGHT,
    WORDS_SHARE,
    Place,
    place_scores,
    role_of,
    words_places,
)
from evident.tools.records import Hit, Query

if TYPE_CHECKING:
    from evident.tools.ingest.ocr import Reading


class Reranker(Protocol):
    name: str

    def rerank(
        self,
        query: Query,
        query_embedding: np.ndarray,
        hits: Sequence[Hit],
        images: Sequence[Image.Image],
    ) -> list[Hit]: ...


def rerank_by(hits: Sequence[Hit], scores: Sequence[float]) -> list[Hit]:
    """Hits sorted by `scores` (ties keep the first-stage order), ranks 1.., first stage kept.

    >>> hits = [Hit(1, "a", "a.png", 0.3), Hit(2, "b", "b.png", 0.2)]
    >>> [(h.id, h.rank, h.first_stage["rank"]) for h in rerank_by(hits, [0.1, 0.5])]
    [('b', 1, 2), ('a', 2, 1)]
    """
    order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), hits[i].rank))
    first = [h.first_stage or {"rank": h.rank, "score": float(h.score)} for h in hits]
    return [
        replace(
            hits[i],
            rank=new_rank,
            score=float(scores[i]),
            first_stage=first[i],
        )
        for new_rank, i in enumerate(order, start=1)
    ]


def crop_boxes(size: tuple[int, int], sides: Sequence[float]) -> list[tuple[int, int, int, int]]:
    """Overlapping square-ish crops, `side` of the image each, at a stride of half a side.

    >>> crop_boxes((8, 4), [0.5])[:4]
    [(0, 0, 4, 2), (2, 0, 6, 2), (4, 0, 8, 2), (0, 1, 4, 3)]
    """
    w, h = size
    boxes = []
    for side in sides:
        n = max(1, round((1 - side) / (side / 2)) + 1)
        starts = np.linspace(0.0, 1.0 - side, n)
        for y in starts:
            for x in starts:
                box = (round(x * w), round(y * h), round((x + side) * w), round((y + side) * h))
                boxes.append((box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1)))
    return boxes


def view_embeddings(encoder: Any, images: Sequence, sides: Sequence[float]) -> list[np.ndarray]:
    """For each image, `(1 + crops, dim)`: the whole image, then `crop_boxes`' crops."""
    views, owners = [], []
    for i, image in enumerate(images):
        image = as_rgb(image)
        crops = [image] + [image.crop(b) for b in crop_boxes(image.size, sides)]
        views += crops
        owners += [i] * len(crops)
    emb, owners = encoder.encode_images(views), np.asarray(owners)
    return [emb[owners == i] for i in range(len(images))]


@dataclass
class MultiScaleReranker:
    """Best of multi-scale crops, fused with the whole image and the caption cosine."""

    encoder: Any
    crop_sides: tuple[float, ...] = (0.5,)
    crop_weight: float = 0.5
    caption_weight: float = 0.25
    name: str = "multiscale"

    def rerank(
        self,
        query: Query,
        query_embedding: np.ndarray,
        hits: Sequence[Hit],
        images: Sequence[Image.Image],
    ) -> list[Hit]:
        if len(hits) != len(images):
            raise InputError(f"{len(hits)} hits but {len(images)} images to rerank.")
        if not hits:
            return []
        q = np.asarray(query_embedding, dtype=np.float32).reshape(-1)
        q = q / (np.linalg.norm(q) or 1.0)
        views = view_embeddings(self.encoder, images, self.crop_sides)
        scores = []
        for hit, embedded in zip(hits, views, strict=True):
            mine = embedded @ q
            visual = (1 - self.crop_weight) * mine[0] + self.crop_weight * mine[1:].max()
            caption = hit.scores.get("caption")
            if caption is not None:
                visual = (1 - self.caption_weight) * visual + self.caption_weight * caption
            scores.append(float(visual))
        return rerank_by(hits, scores)


def rerank_by_place(
    encoder: Any,
    place: Place,
    hits: Sequence[Hit],
    images: Sequence[Image.Image] | None,
    *,
    readings: Mapping[str, Reading] | None = None,
    plots: Mapping[str, dict] | None = None,
) -> list[Hit]:
    """`hits` reordered by `(1 - WEIGHT) x their score + WEIGHT x how much of the thing
    `place` names lies at the place` (min-max scaled over the hits, floored like a cosine).
    With `images`, the place score is how much of the map of `place.part` peaks there;
    with `readings` (the words read in the hits' images, by id) and a part that is a
    figure's text (`places.role_of`), where that part's lines lie counts for `WORDS_SHARE`
    of it (all of it without `images`: a model whose patches do not add up to its score),
    judged against the plot's span where `plots` has it (by id, `ingest.frame`); where
    the span puts the part's words on the other side of the plot's edge than the place
    asks, the place scores 0, whatever the patches say.
    Each hit keeps `scores["place"]` (the map's) and `scores["place_words"]`, and
    `first_stage` its rank and score before."""
    role = role_of(place.part) if readings is not None else None
    if images is None and role is None:
        raise InputError(f"Nothing places {place.part!r}: no images and no words read.")
    if images is not None and len(hits) != len(images):
        raise InputError(f"{len(hits)} hits but {len(images)} images to rerank.")
    if not hits:
        return []
    kept: list[dict[str, float]] = [{} for _ in hits]
    signals: list[tuple[float, np.ndarray]] = []
    if images is not None:
        part = encoder.encode_texts([place.part])[0]
        pixels = encoder.pixels([as_rgb(im) for im in images])
        maps = contribution(encoder, pixels, query_rows(part, len(hits), encoder.device)).maps
        at = place_scores(maps.float().cpu().numpy(), place)
        signals.append((1 - WORDS_SHARE if role else 1.0, minmax(at.tolist(), FLOORS["image"])))
        for k, a in zip(kept, at, strict=True):
            k["place"] = round(float(a), 6)
    if role is not None:
        spans = [(plots or {}).get(h.id) for h in hits]
        said, overruled = words_places([readings.get(h.id) for h in hits], place, role, spans)
        signals.append((WORDS_SHARE if images is not None else 1.0, said))
        for k, a in zip(kept, said, strict=True):
            k["place_words"] = round(float(a), 6)
    there = sum(share * signal for share, signal in signals)
    if role is not None:  # the plot's span says the part is on the other side of its edge
        there = np.where(overruled, 0.0, there)
    final = (1 - WEIGHT) * minmax([h.score for h in hits], FLOORS["image"]) + WEIGHT * there
    placed = [replace(h, scores=h.scores | k) for h, k in zip(hits, kept, strict=True)]
    return rerank_by(placed, final.tolist())


def rerank_by_count(hits: Sequence[Hit], said: np.ndarray) -> list[Hit]:
    """`hits` reordered by `(1 - WEIGHT) x their score + WEIGHT x whether what was read in
    them numbers what the query asks` (`said`: `counts.count_scores` or `series_scores`;
    the score min-max scaled over the hits, floored like a cosine); each hit keeps
    `scores["count"]`."""
    if not hits:
        return []
    first = minmax([h.score for h in hits], FLOORS["image"])
    final = (1 - COUNT_WEIGHT) * first + COUNT_WEIGHT * said
    counted = [
        replace(h, scores=h.scores | {"count": round(float(a), 6)})
        for h, a in zip(hits, said, strict=True)
    ]
    return rerank_by(counted, final.tolist())
