"""The one path from a query to explained results: search -> rerank -> explain.

`evident search`, the agent's tools and `evident eval` all call these functions, so the
three can never disagree (a test runs one query through all three and compares):

- `search`: the first stage (`tools.retrieve`), then the collection's reranker when it has
  one, over a larger first-stage pool (`rerank_pool`) than the k it returns, since
  reordering only the top k could never bring a lower hit up; then, when the query names
  a place ("a legend in the upper left", `tools.places`), the first `places.POOL`
  reordered by where the named thing lies in them (`rerank.rerank_by_place`: the model's
  patches and, for a figure's text part, its words; the JSON's `fusion.place`); when it
  asks for a number of things ("with 5 bars", "with 3 lines", `tools.counts`), the first
  `counts.POOL` reordered by how many category names or series colours were read in each
  (`fusion.count`);
- `explain`: the evidence for any hits of a search, in one batched pass (heatmaps,
  regions, counterfactual checks), however many are asked for;
- `run_query`: both, for the top `explain_top` hits.

A hit whose image file cannot be read any more (moved or deleted since indexing) keeps its
place with an `evidence_error` instead of failing the whole search.
`Retrieval` holds what stays constant across queries (store, encoder, embedders,
reranker); `open_retrieval` builds it from names.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evident.tools.colours import decode
from evident.tools.counts import POOL as COUNT_POOL
from evident.tools.counts import WEIGHT as COUNT_WEIGHT
from evident.tools.counts import Count, count_scores, named_count, series_scores
from evident.tools.encoders import Encoder, load_encoder
from evident.tools.errors import InputError
from evident.tools.evidence.contribution import pools_by_mean
from evident.tools.evidence.explain import explain_results
from evident.tools.fusion import Fusion, LearnedReranker
from evident.tools.hybrid import FLOORS, Weights
from evident.tools.ingest import frame
from evident.tools.ingest.images import read_image
from evident.tools.ingest.ocr import Reading
from evident.tools.lexical import WordIndex, word_index
from evident.tools.limits import check_k
from evident.tools.places import POOL as PLACE_POOL
from evident.tools.places import WEIGHT as PLACE_WEIGHT
from evident.tools.places import Place, named_place, role_of
from evident.tools.records import Explanation, Hit, Query, QueryResult
from evident.tools.rerank import MultiScaleReranker, Reranker, rerank_by_count, rerank_by_place
from evident.tools.retrieve import SearchResult, embed_query, search_images
from evident.tools.store import Store
from evident.tools.text_embed import load_text_embedder

RERANK_POOL = 20
RERANKERS = ("none", "multiscale", "learned:FILE")


def make_reranker(name: str | None, encoder: Encoder) -> Reranker | None:
    """A reranker by name: `none` (or None), `multiscale`, or `learned:FILE` (weights
    fitted by `python -m evident.eval.ltr_data ... --save-fusion FILE`)."""
    if name in (None, "", "none"):
        return None
    if name == "multiscale":
        return MultiScaleReranker(encoder)
    if name.startswith("learned:"):
        return LearnedReranker(encoder, Fusion.load(name.partition(":")[2]))
    raise InputError(f"unknown reranker {name!r}; known: {', '.join(RERANKERS)}")


@dataclass(frozen=True)
class Retrieval:
    """Everything a search of one collection needs that does not change per query."""

    store: Store
    collection: str
    encoder: Encoder
    text_embedder: Any | None = None  # tools.text_embed.TextEmbedder: captions, words
    reranker: Reranker | None = None
    rerank_pool: int = RERANK_POOL
    word_index: WordIndex | None = None  # BM25 over the words read in the images
    weights: Weights = Weights()


def open_retrieval(
    store: Store,
    collection: str,
    *,
    model: str | Encoder | None = None,
    text_embedder: Any = "auto",
    rerank: str | None = None,
    words: WordIndex | None = None,
) -> Retrieval:
    """The `Retrieval` for `collection`: `model` is an encoder or a spec (None: the
    collection's own); `text_embedder="auto"` loads the text embedder only when the
    collection has captions or words; `rerank` names a reranker (`make_reranker`);
    `words`, a lexical index already built for this collection
    (`tools.lexical.word_index`), saves building it again."""
    encoder = model if isinstance(model, Encoder) else None
    if encoder is None:
        encoder = load_encoder(model or store.model_of(collection))
    if text_embedder == "auto":
        text_embedder = load_text_embedder() if store.has_texts(collection) else None
    reranker = make_reranker(rerank, encoder)
    index = word_index(store, collection, words)  # `words` if it is still current
    return Retrieval(store, collection, encoder, text_embedder, reranker, word_index=index)


def search(
    query: Query,
    k: int,
    where: dict | None = None,
    *,
    ctx: Retrieval,
    leave_out: str | None = None,
) -> SearchResult:
    """The ranked hits for `query`, reranked when `ctx` has a reranker; `leave_out` drops
    one id (the query image itself, for "images like #1") and ranks the rest from 1."""
    try:
        check_k(k)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    extra = leave_out is not None
    pool = max(k, ctx.rerank_pool) if ctx.reranker else k
    place, count = named_place(query.text), named_count(query.text)
    by_names = count is not None and count.by == "categories"  # counted in their words
    read = (place is not None or by_names) and _has_words(ctx)
    patches = place is not None and pools_by_mean(ctx.encoder.model)
    words = read and place is not None and role_of(place.part) is not None
    if patches or words:
        pool = max(pool, PLACE_POOL)
    if count is not None and (read or not by_names):
        pool = max(pool, COUNT_POOL)
    first = search_images(
        query, pool + extra, where, store=ctx.store, collection=ctx.collection,
        encoder=ctx.encoder, text_embedder=ctx.text_embedder, word_index=ctx.word_index,
        weights=ctx.weights,
    )  # fmt: skip
    hits, timings = [h for h in first.hits if h.id != leave_out], dict(first.timings_ms)
    if ctx.reranker is not None:
        t0 = time.perf_counter()
        hits = rerank(query, first.query_embedding, hits, ctx.reranker)
        timings["rerank"] = 1000 * (time.perf_counter() - t0)
    fusion, pooled, by = dict(first.fusion), len(hits), []
    if patches or words:
        t0 = time.perf_counter()
        hits, by = _by_place(ctx, place, hits, patches=patches, words=words)
        timings["place"] = 1000 * (time.perf_counter() - t0)
    if place is not None:
        fusion["place"] = place.to_dict() | (
            {"weight": round(PLACE_WEIGHT, 4), "pool": pooled, "by": by}
            if by
            else {"weight": 0.0, "why": _unplaced(place)}
        )
    if count is not None:
        t0 = time.perf_counter()
        hits, fusion["count"] = _by_count(ctx, count, hits, words=read)
        timings["count"] = 1000 * (time.perf_counter() - t0)
    hits = [h.with_rank(i) for i, h in enumerate(hits[:k], 1)]
    return replace(
        first, hits=tuple(hits), timings_ms=timings, reranker=_name(ctx.reranker), fusion=fusion
    )


def _by_place(
    ctx: Retrieval, place: Place, hits: Sequence[Hit], *, patches: bool, words: bool
) -> tuple[list[Hit], list[str]]:
    """`hits` reordered by where the thing `place` names lies in them (`rerank_by_place`),
    and what placed it ("patches", "words"). With `patches`, hits whose image cannot be
    read follow in their order; with `words` (a text part, the collection's words read)
    it is placed by its words too, and by them alone outside the plot."""
    readings = readings_of(ctx, [h.id for h in hits]) if words else {}
    plots = _plots(ctx, [h.id for h in hits]) if readings else {}
    if readings and place.outside:
        patches = False  # the patches' point for "outside" is a guess at the edge; words judge
    by = ["patches"] * patches + ["words"] * bool(readings)
    if not patches:
        if not readings:
            return list(hits), by
        return rerank_by_place(ctx.encoder, place, hits, None, readings=readings,
                               plots=plots), by  # fmt: skip
    images, _ = load_images(hits)
    readable = [h for h in hits if h.id in images]
    moved = rerank_by_place(
        ctx.encoder, place, readable, [images[h.id] for h in readable],
        readings=readings or None, plots=plots,
    )  # fmt: skip
    return moved + [h for h in hits if h.id not in images], by


def _by_count(
    ctx: Retrieval, count: Count, hits: Sequence[Hit], *, words: bool
) -> tuple[list[Hit], dict]:
    """`hits` reordered by whether what was read in them numbers what `count` asks for
    (`rerank_by_count`): their category names (`words`: the collection has them) or their
    series' colours (`counts.series_count`, from their metadata), and the JSON's
    `fusion.count`; unchanged where nothing was read."""
    if count.by == "series":
        metas = _metadata(ctx, [h.id for h in hits])
        if not any("fills" in m for m in metas.values()):
            why = "these images were indexed before series were counted (evident index again)"
            return list(hits), count.to_dict() | {"weight": 0.0, "why": why}
        read = [metas.get(h.id, {}) for h in hits]
        said = series_scores([(decode(m.get("marks")), decode(m.get("fills"))) for m in read],
                             count)  # fmt: skip
    else:
        readings = readings_of(ctx, [h.id for h in hits]) if words else {}
        if not readings:
            why = "no words were read in these images (evident index --ocr on)"
            return list(hits), count.to_dict() | {"weight": 0.0, "why": why}
        said = count_scores([readings.get(h.id) for h in hits], count)
    moved = rerank_by_count(hits, said)
    return moved, count.to_dict() | {"weight": round(COUNT_WEIGHT, 4), "pool": len(hits)}


def _metadata(ctx: Retrieval, ids: list[str]) -> dict[str, dict]:
    """The stored metadata of these images (what indexing read in them)."""
    if not ids:
        return {}
    got = ctx.store.images(ctx.collection).get(ids=ids, include=["metadatas"])
    return {i: m or {} for i, m in zip(got["ids"], got["metadatas"], strict=True)}


def _plots(ctx: Retrieval, ids: list[str]) -> dict[str, dict]:
    """The plot spans indexing read in these images (`ingest.frame`), where it did."""
    spans = {i: frame.decode(m.get("plot")) for i, m in _metadata(ctx, ids).items()}
    return {i: span for i, span in spans.items() if span is not None}


def _has_words(ctx: Retrieval) -> bool:
    return ctx.store.words(ctx.collection) is not None


def _unplaced(place: Place) -> str:
    why = "the model's patches do not add up to its score"
    return why + (", and no words were read" if role_of(place.part) else "")


def rerank(query: Query, embedding, hits: Sequence[Hit], reranker: Reranker) -> list[Hit]:
    """`hits` reordered by `reranker`; hits whose image cannot be read cannot be rescored,
    so they follow the reranked ones in their first-stage order."""
    images, _ = load_images(hits)
    readable = [h for h in hits if h.id in images]
    moved = reranker.rerank(query, embedding, readable, [images[h.id] for h in readable])
    tail = [h for h in hits if h.id not in images]
    return list(moved) + [h.with_rank(len(moved) + i) for i, h in enumerate(tail, 1)]


def explain(
    query: Query,
    hits: Sequence[Hit],
    *,
    ctx: Retrieval,
    embedding=None,
    method: str | None = None,
    out_dir: str | Path | None = None,
    attribution: str | None = "shapley",
    curve_steps: int = 0,
    fusion: dict | None = None,
) -> Explanation:
    """Evidence for `hits` in one batched pass: heatmaps by `method` (None: the encoder's
    default), regions (compact heat peaks, and the words read in the image that the query
    names), counterfactual checks, the deletion/insertion curves (`curve_steps >= 2`; an
    evaluation measure), query-word attribution, PNGs in `out_dir`. `embedding` is the
    query's (computed from `query` when not given); `fusion` is the search's (`rank_after`
    then counts in the ranking's own units)."""
    encoder = ctx.encoder
    if embedding is None:
        embedding = embed_query(query, encoder)
    images, errors = load_images(hits)
    shown = [h for h in hits if h.id in images]
    if not shown:
        return Explanation(method, {}, errors)
    readings = readings_of(ctx, [h.id for h in shown]) if query.text else {}
    done = explain_results(
        encoder, embedding, shown, [images[h.id] for h in shown], query=query, method=method,
        out_dir=out_dir, attribution=attribution, curve_steps=curve_steps,
        readings=readings, word_index=ctx.word_index, ranking_scale=ranking_scale(fusion),
    )  # fmt: skip
    evidence = {e.hit_id: e for e in done.evidence}
    return Explanation(done.heatmap.method, evidence, errors, done.timings_ms)


def readings_of(ctx: Retrieval, ids: list[str]) -> dict[str, Reading]:
    """The words read in these images (those that have any)."""
    words = ctx.store.words(ctx.collection)
    if words is None or not ids:
        return {}
    got = words.get(ids=ids, include=["metadatas"])
    return {
        i: Reading.from_json(m["lines"])
        for i, m in zip(got["ids"], got["metadatas"], strict=True)
        if m and m.get("lines")
    }


def ranking_scale(fusion: dict | None) -> float:
    """How much a hybrid score moves per unit of image cosine: the image signal's weight
    over the cosine range it was normalised by (floored like it; 1 for plain cosine)."""
    image = (fusion or {}).get("image")
    if not image or "range" not in image:
        return 1.0
    lo, hi = image["range"]
    return image["weight"] / max(hi - lo, FLOORS["image"]) if hi > lo else 0.0


def run_query(
    query: Query,
    k: int = 5,
    where: dict | None = None,
    *,
    ctx: Retrieval,
    method: str | None = None,
    explain_top: int | None = None,
    out_dir: str | Path | None = None,
    attribution: str | None = "shapley",
    curve_steps: int = 0,
) -> QueryResult:
    """`search`, then `explain` the top `explain_top` hits (default: all k; 0: none)."""
    found = search(query, k, where, ctx=ctx)
    top = found.hits[: k if explain_top is None else explain_top]
    if not top:
        return QueryResult(found, Explanation(method))
    explained = explain(
        query, top, ctx=ctx, embedding=found.query_embedding, method=method, out_dir=out_dir,
        attribution=attribution, curve_steps=curve_steps, fusion=dict(found.fusion),
    )  # fmt: skip
    return QueryResult(found, explained)


def load_images(hits: Sequence[Hit]) -> tuple[dict, dict[str, str]]:
    """The decoded images of `hits` by id, and for the unreadable ones the reason."""
    images, errors = {}, {}
    for h in hits:
        try:
            images[h.id] = read_image(Path(h.uri))
        except InputError as exc:
            errors[h.id] = f"cannot read {h.uri!r}: {exc} (re-index with --prune?)"
    return images, errors


def _name(reranker: Reranker | None) -> str | None:
    return None if reranker is None else reranker.name
