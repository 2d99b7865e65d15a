"""Explain search results: the evidence engine behind `tools.pipeline.explain`.

Given the query embedding, the hits and their images, in order: one batched heatmap
pass, regions (the heat's, the words' the query names, the colours' it names), one
batched counterfactual pass (every region plus the deletion/insertion curves),
query-word attribution, and PNGs when `out_dir` is given (the heat drawn on the image's
ink, `ink.on_ink`; the folder keeps the newest `overlays.KEEP` of them). Each stage is
timed (`timings_ms`: cam, regions, counterfactual, attribution, render). Region ids
follow the final ranks, so `R1.1` is always the top result's strongest region.

`rank_after` takes the cosine's drop off the hit's final score: exact for first-stage
cosine ranking, an approximation after a reranker fuses other signals.
Not handled: explaining the caption side (only the image is masked), video.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evident.tools.errors import InputError
from evident.tools.evidence import tokens
from evident.tools.evidence.attribution import Estimator, query_terms
from evident.tools.evidence.colour_regions import colour_first, colour_regions
from evident.tools.evidence.counterfactuals import Removal, default_removal, verify
from evident.tools.evidence.heatmaps import (
    Heatmap,
    as_rgb,
    compute_heatmaps,
    default_method,
    query_rows,
)
from evident.tools.evidence.ink import on_ink
from evident.tools.evidence.overlays import prune, write_heatmap, write_overlay
from evident.tools.evidence.regions import find_regions
from evident.tools.evidence.text_regions import named_first, text_regions, words_checks
from evident.tools.ingest.ocr import Reading
from evident.tools.lexical import WordIndex
from evident.tools.records import Evidence, Hit, Query, Region


@dataclass(frozen=True)
class Explained:
    """Final hits, one `Evidence` per hit (same order), the maps, and stage timings."""

    hits: tuple[Hit, ...]
    evidence: tuple[Evidence, ...]
    heatmap: Heatmap
    timings_ms: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [
                h.to_dict() | e.to_dict() for h, e in zip(self.hits, self.evidence, strict=True)
            ],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + 1000 * (time.perf_counter() - start)


def explain_results(
    encoder: Any,
    query_embedding: np.ndarray,
    hits: Sequence[Hit],
    images: Sequence[Image.Image],
    *,
    query: Query | None = None,
    method: str | None = None,
    max_regions: int = 3,
    removal: Removal | None = None,
    curve_steps: int = 0,
    attribution: Estimator | None = "shapley",
    out_dir: str | Path | None = None,
    readings: Mapping[str, Reading] | None = None,
    word_index: WordIndex | None = None,
    ranking_scale: float = 1.0,
) -> Explained:
    """Explain `hits` (with their PIL `images`, same order) for a normalised query embedding.

    `query.text` drives the query-word attribution (skipped when there is no text or
    `attribution=None`); `removal` is how regions are taken out for their check (default:
    the tower's, `counterfactuals.default_removal`); `curve_steps >= 2` adds the
    deletion/insertion curves (an evaluation measure, off by default). `readings` are the
    words read in the images by hit id: lines the query names become text regions
    (`text_regions`), checked on the words too when `word_index` is given.
    `ranking_scale` converts a cosine drop into the hits' ranking units (`rank_after`).
    """
    timings: dict[str, float] = {}
    images = [as_rgb(im) for im in images]
    hits = list(hits)
    if len(hits) != len(images):
        raise InputError(f"{len(hits)} hits but {len(images)} images to explain.")
    if not hits:
        heat = compute_heatmaps(encoder, [], query_embedding, method=method)
        return Explained((), (), heat, timings)
    method = method or default_method(encoder)
    removal = removal or default_removal(encoder)
    with _timed(timings, "cam"):
        pixels = encoder.pixels(images)
        hidden = None
        if method == "contribution" and removal == "tokens":  # one prefix serves both
            hidden = tokens.prefix(encoder.model.visual, pixels, tokens.split(encoder.model))
        heat = compute_heatmaps(
            encoder, images, query_embedding, method=method, pixels=pixels, hidden=hidden
        )
    with _timed(timings, "regions"):
        regions = [
            find_regions(heat.maps[i], im.size, rank=h.rank, max_regions=max_regions)
            for i, (h, im) in enumerate(zip(hits, images, strict=True))
        ]
        texts: list[tuple[Region, ...]] = [() for _ in hits]
        readings = readings or {}
        for i, h in enumerate(hits):
            if query is not None and query.text and h.id in readings:
                regions[i], texts[i] = text_regions(
                    query.text, readings[h.id], rank=h.rank, first=len(regions[i]) + 1,
                    heat=regions[i],
                )  # fmt: skip
        regions = [h + t for h, t in zip(regions, texts, strict=True)]
        if query is not None and query.text:
            for i, (h, im) in enumerate(zip(hits, images, strict=True)):
                regions[i] = _with_colours(query.text, im, regions[i], h.rank)
            # "the title of ..." cites the title first, then "... red bars" the red
            regions = [
                named_first(query.text, colour_first(query.text, r, h.rank), h.rank)
                for r, h in zip(regions, hits, strict=True)
            ]
    # The PNGs are written on a second thread while the checks and the attribution run
    # (PIL's encoder and torch both release the GIL): the heatmaps as soon as they exist,
    # the overlays once the checks have marked their regions.
    with ThreadPoolExecutor(1) as pool:
        stems = [_stem(h) for h in hits]

        def heat_png(i: int) -> tuple[str, np.ndarray]:  # the map as shown, and its PNG
            shown = on_ink(heat.at_image_size(i), images[i])
            return write_heatmap(out_dir, stems[i], shown), shown

        heat_pngs = [pool.submit(heat_png, i) for i in range(len(hits)) if out_dir is not None]
        with _timed(timings, "counterfactual"):
            regions, faith = verify(
                encoder,
                pixels,
                query_rows(query_embedding, len(hits), encoder.device),
                heat.scores,
                regions,
                [im.size for im in images],
                maps=heat.maps,
                steps=curve_steps,
                removal=removal,
                ranking_scores=[h.score for h in hits],
                ranking_scale=ranking_scale,
                hidden=hidden,
            )
            if word_index is not None and query is not None and query.text:
                regions = [
                    _checked_words(query.text, readings.get(h.id), found, word_index)
                    for h, found in zip(hits, regions, strict=True)
                ]
        overlays = [
            pool.submit(write_overlay, out_dir, stems[i], im, heat_pngs[i].result()[1], regions[i])
            for i, im in enumerate(images) if out_dir is not None
        ]  # fmt: skip
        terms: list[tuple] = [() for _ in hits]
        if attribution and query is not None and query.text:
            with _timed(timings, "attribution"):
                terms = query_terms(encoder, query.text, heat.embeddings, method=attribution)
        pngs: list[tuple[str | None, str | None]] = [(None, None) for _ in hits]
        if out_dir is not None:
            with _timed(timings, "render"):  # what writing them added, beyond the overlap
                pngs = [
                    (a.result()[0], b.result()) for a, b in zip(heat_pngs, overlays, strict=True)
                ]
                prune(out_dir)
    return Explained(tuple(hits), _evidence(hits, heat, regions, faith, terms, pngs), heat, timings)


def _with_colours(query: str, image, found: tuple[Region, ...], rank: int) -> tuple[Region, ...]:
    """`found` with the regions of the colours the query names added after the heat's."""
    heat = tuple(r for r in found if r.kind == "heat")
    heat, colours = colour_regions(query, image, rank=rank, first=len(found) + 1, heat=heat)
    return heat + tuple(r for r in found if r.kind != "heat") + colours


def _checked_words(query: str, reading, found, index) -> tuple[Region, ...]:
    text = [r for r in found if r.kind == "text"]
    if reading is None or not text:
        return found
    checked = {r.id: r for r in words_checks(query, reading, text, index)}
    return tuple(checked.get(r.id, r) for r in found)


def _evidence(hits, heat: Heatmap, regions, faith, terms, pngs) -> tuple[Evidence, ...]:
    return tuple(
        Evidence(
            hit_id=h.id,
            rank=h.rank,
            method=heat.method,
            score=float(heat.scores[i]),
            regions=regions[i],
            query_terms=terms[i],
            faithfulness=faith[i] if faith else None,
            png=pngs[i][0],
            overlay=pngs[i][1],
        )
        for i, h in enumerate(hits)
    )


def _stem(hit: Hit) -> str:
    """A file-name-safe stem: `r01-<id>`."""
    return f"r{hit.rank:02d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", hit.id)[:60]
