"""First-stage retrieval: a query (words, an image, or both) -> ranked `Hit`s.

Image side: the encoder's query embedding against the image collection (cosine).
Caption side, when the collection has captions and the query has words: the text
embedder against the caption collection. Hybrid score = weighted sum of the two,
each min-max normalised over the union of candidates, because raw cosines of two
different models live on different scales. A candidate without a caption scores 0
on the caption side. With one modality, `score` is that modality's raw cosine.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from chromadb.errors import InvalidArgumentError

from evident.tools.encoders import Encoder
from evident.tools.errors import InputError, StoreError
from evident.tools.ingest.images import read_image
from evident.tools.limits import check_k
from evident.tools.records import Hit, Query
from evident.tools.store import Store

CAPTION_WEIGHT = 0.5


@dataclass(frozen=True)
class SearchResult:
    query: Query
    model: str
    collection: str
    hits: tuple[Hit, ...]
    scoring: str
    query_embedding: np.ndarray = field(repr=False, compare=False)
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    reranker: str | None = None  # the reranker that ordered `hits`, if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query.to_dict(),
            "model": self.model,
            "collection": self.collection,
            "scoring": self.scoring,
            "results": [h.to_dict() for h in self.hits],
            "rerank": self.reranker,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


def embed_query(query: Query, encoder: Encoder) -> np.ndarray:
    """The normalised query vector; words and an image together are averaged."""
    parts = []
    if query.text:
        parts.append(encoder.encode_texts([query.text])[0])
    if query.image:
        try:
            image = read_image(query.image)
        except InputError as exc:
            raise InputError(f"cannot use query image {query.image!r}: {exc}") from exc
        parts.append(encoder.encode_images([image])[0])
    if not parts:
        raise InputError("a search needs words, an image (--image PATH), or both")
    q = np.mean(parts, axis=0)
    return (q / max(np.linalg.norm(q), 1e-12)).astype(np.float32)


def search_images(
    query: Query,
    k: int = 5,
    where: dict | None = None,
    *,
    store: Store,
    collection: str,
    encoder: Encoder,
    text_embedder=None,
    caption_weight: float = CAPTION_WEIGHT,
) -> SearchResult:
    """Rank the collection's images for `query`; `where` is a Chroma metadata filter."""
    try:
        check_k(k)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if not query.text and not query.image:
        raise InputError("a search needs words, an image (--image PATH), or both")
    images = store.images(collection, model=encoder.spec, dim=encoder.dim)
    t0 = time.perf_counter()
    q = embed_query(query, encoder)
    captions = store.captions(collection) if query.text and text_embedder else None
    qt = text_embedder.encode([query.text])[0] if captions is not None else None
    t1 = time.perf_counter()
    # Chroma returns what it has when asked for more, so no count() on the hot path
    # (about 12 ms at 100k entries); an empty answer without a filter means an empty collection.
    pool = max(4 * k, 32) if captions is not None else k
    img_scores, metas = _query(images, q, pool, where)
    if not img_scores and not where:
        raise StoreError(f"collection {collection!r} is empty; index some images into it first.")
    if captions is None:
        order = sorted(img_scores, key=lambda i: -img_scores[i])[:k]
        hits = [
            _hit(r, i, img_scores[i], metas[i], {"image": img_scores[i]})
            for r, i in enumerate(order, 1)
        ]
        scoring = "cosine"
    else:
        cap_scores, cap_metas = _query(captions, qt, pool, where)
        for i, m in cap_metas.items():
            metas.setdefault(i, m)
        missing = [i for i in cap_scores if i not in img_scores]
        img_scores.update(_exact(images, q, missing))
        cap_scores.update(_exact(captions, qt, [i for i in img_scores if i not in cap_scores]))
        ids = list(img_scores)
        fused = (1 - caption_weight) * _minmax(
            [img_scores[i] for i in ids]
        ) + caption_weight * _minmax([cap_scores.get(i, np.nan) for i in ids])
        order = np.argsort(-fused, kind="stable")[:k]
        hits = [
            _hit(r, ids[j], float(fused[j]), metas[ids[j]], _both(img_scores, cap_scores, ids[j]))
            for r, j in enumerate(order, 1)
        ]
        scoring = f"hybrid: min-max per modality, caption weight {caption_weight:g}"
    t2 = time.perf_counter()
    return SearchResult(
        query,
        encoder.spec,
        collection,
        tuple(hits),
        scoring,
        q,
        {"encode_query": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3},
    )


def _query(col, vec: np.ndarray, n: int, where: dict | None) -> tuple[dict, dict]:

    try:
        got = col.query(
            query_embeddings=[vec.tolist()],
            n_results=max(1, n),
            where=where or None,
            include=["metadatas", "distances"],
        )
    except (ValueError, InvalidArgumentError) as exc:  # Chroma rejects a malformed filter
        raise InputError(f"invalid --where filter {where!r}: {exc}") from exc
    ids, dists, metas = got["ids"][0], got["distances"][0], got["metadatas"][0]
    scores = {i: 1.0 - float(d) for i, d in zip(ids, dists, strict=True)}
    return scores, {i: m or {} for i, m in zip(ids, metas, strict=True)}


def _exact(col, vec: np.ndarray, ids: list[str]) -> dict[str, float]:
    if not ids:
        return {}
    got = col.get(ids=ids, include=["embeddings"])
    embs = np.asarray(got["embeddings"], dtype=np.float32)
    return {i: float(e @ vec) for i, e in zip(got["ids"], embs, strict=True)}


def _minmax(values: list[float]) -> np.ndarray:
    """Scale to [0, 1]; missing values (NaN) become 0, a constant column becomes 1.

    >>> _minmax([0.2, 0.4, float("nan")]).tolist()
    [0.0, 1.0, 0.0]
    """
    a = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(a)
    out = np.zeros_like(a)
    if ok.any():
        lo, hi = a[ok].min(), a[ok].max()
        out[ok] = (a[ok] - lo) / (hi - lo) if hi > lo else 1.0
    return out


def _both(img: dict, cap: dict, i: str) -> dict[str, float]:
    return {"image": img[i]} | ({"caption": cap[i]} if i in cap else {})


def _hit(rank: int, id_: str, score: float, meta: dict, scores: dict) -> Hit:
    extra = {k: v for k, v in meta.items() if k not in ("uri", "caption", "size", "mtime_ns")}
    return Hit(rank, id_, meta.get("uri", ""), float(score), meta.get("caption"), scores, extra)
