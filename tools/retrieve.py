"""First-stage retrieval: a query (words, an image, or both) -> ranked `Hit`s.

Signals, each used when the collection and the query have it:
- image: the encoder's query embedding against the image embeddings (cosine);
- caption: the text embedder's query embedding against the captions (cosine);
- words: what was read in the images (OCR) — a blend of BM25 over the words
  (`tools.lexical`, exact tokens such as "Struve" or "968") and the text embedder's
  cosine with them (paraphrases), `Weights.lexical` of the first;
- colour: when the query names colours ("red boxes"), the share of each image's ink in
  them, counted at indexing time (`tools.colours`), on a log scale (`hybrid.SPECK`). The
  bundled model knows chart types, not what colour something is drawn in; on the figure
  benchmark this signal lifts attribute precision@5 from 0.218 to 0.314 (README). A
  named colour makes search look deeper (`pool`): it can lift an image the model ranks
  lower.
- marks: when the query names marker shapes or line styles ("cyan circle markers", "a red
  dashed line"), the marks reader's probability that the image shows them, read at
  indexing time (`tools.marks`); the figure model sees its figures too small to tell a
  circle from a square. It looks as deep as a named colour.
- printed: when the query asks for what a chart's words show ("a logarithmic x axis",
  "percentage labels"), the share of it read in each image's words at indexing time
  (`tools.printed`). It looks as deep as a named colour.
How they become one score — normalised over the candidates, weighed, gated by how well
each knows the query — is `tools.hybrid`; this module finds the candidates and reads
their signals from the store. With one signal (the image alone), `score` is its raw
cosine (`scoring: "cosine"`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.errors import InvalidArgumentError

from evident.tools import marks, printed
from evident.tools.colours import ONE_COLOUR, decode, named_colours, part_colours
from evident.tools.counts import named_count
from evident.tools.errors import InputError, StoreError
from evident.tools.hybrid import WORDS_BAND, Weights, colour_scores, confidence, fuse
from evident.tools.ingest.images import read_image
from evident.tools.ingest.metadata import LOOKS
from evident.tools.lexical import WordIndex, word_index
from evident.tools.limits import check_k
from evident.tools.minilm import QueryTextEmbedder, minilm, query_encoder
from evident.tools.places import named_place
from evident.tools.records import Hit, Query
from evident.tools.store import Store

if TYPE_CHECKING:  # the first stage runs on any encoder of texts (tools.minilm's too)
    from evident.tools.encoders import Encoder


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
    fusion: Mapping[str, Any] = field(default_factory=dict)  # per signal: weight, range

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query.to_dict(),
            "model": self.model,
            "collection": self.collection,
            "scoring": self.scoring,
            "fusion": dict(self.fusion),
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
    word_index: WordIndex | None = None,
    weights: Weights = Weights(),
) -> SearchResult:
    """Rank the collection's images for `query`; `where` is a Chroma metadata filter.
    `word_index` is the collection's lexical index (`tools.lexical`), when it has words."""
    try:
        check_k(k)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if not query.text and not query.image:
        raise InputError("a search needs words, an image (--image PATH), or both")
    images = store.images(
        collection, model=encoder.spec, dim=encoder.dim, weights=getattr(encoder, "weights", None)
    )
    t0 = time.perf_counter()
    q = embed_query(query, encoder)
    texty = bool(query.text) and text_embedder is not None
    captions = store.captions(collection) if texty else None
    words = store.words(collection) if texty else None
    qt = text_embedder.encode([query.text])[0] if captions or words else None
    colours = named_colours(query.text) if query.text else ()
    small = part_colours(query.text) if query.text else ()
    lone = part_colours(query.text, ONE_COLOUR) if small else ()
    wanted = marks.named_marks(query.text) if query.text else ()
    shown = printed.named(query.text) if query.text else ()
    t1 = time.perf_counter()
    # Chroma returns what it has when asked for more, so no count() on the hot path
    # (about 12 ms at 100k entries); an empty answer without a filter means an empty collection.
    hybrid = captions is not None or words is not None
    # a named colour can lift an image the model ranks lower: look deeper for it (figure
    # benchmark, validation split: attribute precision@5 0.307 at 32, 0.331 at 64, 0.332 at 128)
    pool = max(8 * k, 64) if colours or wanted or shown else max(4 * k, 32) if hybrid else k
    img, metas = _query(images, q, pool, where)
    if not img and not where:
        raise StoreError(f"collection {collection!r} is empty; index some images into it first.")
    coloured = bool(colours) and any(decode(m.get("colours")) for m in metas.values())
    marked = bool(wanted) and any(decode(m.get("marks")) for m in metas.values())
    read = bool(shown) and any("printed" in m for m in metas.values())
    if not hybrid and not coloured and not marked and not read:
        order = sorted(img, key=lambda i: -img[i])[:k]
        hits = [
            _hit(r, i, img[i], metas[i], {"image": img[i]}, None) for r, i in enumerate(order, 1)
        ]
        return _result(query, encoder, collection, hits, "cosine", q, t0, t1, {})
    raw: dict[str, dict[str, float]] = {"image": img}
    if captions is not None:
        raw["caption"], cap_metas = _query(captions, qt, pool, where)
        metas |= {i: m for i, m in cap_metas.items() if i not in metas}
    if words is not None:
        raw["embedding"], _ = _query(words, qt, pool, None)
        raw["lexical"] = word_index.scores(query.text) if word_index is not None else {}
    ids = _candidates(images, raw, where)
    raw["image"] |= _exact(images, q, [i for i in ids if i not in img])
    if captions is not None:
        have = raw["caption"]
        have |= _exact(captions, qt, [i for i in ids if i not in have])
    if words is not None:
        have = raw["embedding"]
        have |= _exact(words, qt, [i for i in ids if i not in have])
    metas |= _metadatas(images, [i for i in ids if i not in metas])
    if coloured:
        raw["colour"] = colour_scores(
            colours, {i: decode(metas.get(i, {}).get("colours")) for i in ids},
            {i: decode(metas.get(i, {}).get("fills")) for i in ids}, small, lone,
        )  # fmt: skip
    if marked:
        raw["marks"] = marks.mark_scores(
            wanted, {i: decode(metas.get(i, {}).get("marks")) for i in ids}
        )
    if read:
        raw["printed"] = printed.scores(shown, {i: metas.get(i, {}).get("printed") for i in ids})
    band = getattr(encoder, "text_band", None)
    gates = {}
    if band is not None and query.text and not query.image and img:
        gates["image"] = confidence(max(img.values()), band)
    if raw.get("embedding"):
        gates["embedding"] = confidence(max(raw["embedding"].values()), WORDS_BAND)
    fused, parts, fusion = fuse(ids, raw, weights, gates)
    if "colour" in fusion:
        fusion["colour"]["names"] = list(colours)
        if small:
            fusion["colour"]["parts"] = list(small)
    if "marks" in fusion:
        fusion["marks"]["names"] = [" ".join(filter(None, pair)) for pair in wanted]
    if "printed" in fusion:
        fusion["printed"]["names"] = [printed.SAYS[s] for s in shown]
    order = np.argsort(-fused, kind="stable")[:k]
    hits = [
        _hit(r, ids[j], float(fused[j]), metas.get(ids[j], {}), _scores(raw, ids[j]), parts[j])
        for r, j in enumerate(order, 1)
    ]
    return _result(query, encoder, collection, hits, "hybrid", q, t0, t1, fusion)


def quick_search(
    query: Query,
    k: int = 5,
    where: dict | None = None,
    *,
    store: Store,
    collection: str,
    model: str,
    words: WordIndex | None = None,
) -> SearchResult | None:
    """`search_images` for a query of words, with the torch-free text side of the model
    `model` names (`tools.minilm`); None for an image query or a model without one. It
    ranks as the full encoder does (a test holds them together), so `evident search` can
    print its results before loading the models that explain them. `words` is the
    collection's lexical index when the caller has it (`tools.lexical.word_index`). None
    too for a query that names a place or asks for a number of bars: where things lie is
    read from the images' patches and words, and counts from their words
    (`tools.pipeline.search`)."""
    if query.image or not query.text or named_place(query.text) or named_count(query.text):
        return None
    encoder = query_encoder(model)
    if encoder is None:
        return None
    return search_images(
        query, k, where, store=store, collection=collection, encoder=encoder,
        text_embedder=QueryTextEmbedder(minilm()) if store.has_texts(collection) else None,
        word_index=word_index(store, collection, words),
    )  # fmt: skip


def _candidates(images, raw: dict, where: dict | None) -> list[str]:
    """The union of every signal's candidates (image ones first), filtered by `where`."""
    ids = list(dict.fromkeys(i for scores in raw.values() for i in scores))
    if where and ids:
        allowed = set(images.get(ids=ids, where=where, include=[])["ids"])
        ids = [i for i in ids if i in allowed]
    return ids


def _scores(raw: dict, i: str) -> dict[str, float]:
    names = {
        "image": "image", "caption": "caption", "embedding": "words", "lexical": "lexical",
        "colour": "colour", "marks": "marks", "printed": "printed",
    }  # fmt: skip
    return {names[k]: v[i] for k, v in raw.items() if i in v}


def _metadatas(col, ids: list[str]) -> dict[str, dict]:
    if not ids:
        return {}
    got = col.get(ids=ids, include=["metadatas"])
    return {i: m or {} for i, m in zip(got["ids"], got["metadatas"], strict=True)}


def _result(query, encoder, collection, hits, scoring, q, t0, t1, fusion) -> SearchResult:
    t2 = time.perf_counter()
    timings = {"encode_query": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3}
    return SearchResult(
        query, encoder.spec, collection, tuple(hits), scoring, q, timings, fusion=fusion
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


def _hit(rank: int, id_: str, score: float, meta: dict, scores: dict, parts: dict | None) -> Hit:
    hidden = ("uri", "caption", "size", "mtime_ns", "ocr", *LOOKS)
    extra = {k: v for k, v in meta.items() if k not in hidden}
    uri, caption = meta.get("uri", ""), meta.get("caption")
    return Hit(rank, id_, uri, float(score), caption, scores, extra, contributions=parts or {})
