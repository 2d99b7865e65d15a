"""First-stage retrieval: a query (words, an image, or both) -> ranked `Hit`s.

Signals, each used when the collection and the query have it:
- image: the encoder's query embedding against the image embeddings (cosine);
- caption: the text embedder's query embedding against the captions (cosine);
- words: what was read in the images (OCR) — a blend of BM25 over the words
  (`tools.lexical`, exact tokens such as "Struve" or "968") and the text embedder's
  cosine with them (paraphrases), `Weights.lexical` of the first;
- colour: when the query names colours ("red boxes"), the share of each image's ink in
  them, counted at indexing time (`tools.colours`), on a log scale (`SPECK`). The bundled
  model knows chart types, not what colour something is drawn in; on the figure
  benchmark this signal lifts attribute precision@5 from 0.218 to 0.314 (README). A
  named colour makes search look deeper (`pool`): it can lift an image the model ranks
  lower.
With one signal, `score` is that signal's raw cosine (`scoring: "cosine"`). With several,
each is min-max normalised over the union of the candidates (raw cosines of different
models live on different scales; BM25 has none), with a floor under each range (`FLOORS`:
0.1 for a cosine, 2 for BM25) so that a signal whose candidates all score alike — noise,
such as a random encoder's cosines — cannot be stretched into a strong one; `score` is the
weighted sum, the weights summing to 1 (`Weights`; the JSON's `fusion` gives each signal's
weight and range, every hit's `contributions` what each added). A candidate without a
caption or words scores 0 on that side.

The image signal's weight follows how well the model knows the query, when the model says
what that looks like (`specs.text_band`; the bundled figure model does): the cosine of
the query's best image against the band of best cosines the model reaches on its own
validation queries (their 1st and 5th percentiles). Below the band the image side counts
nothing (the query is outside what the model learnt, and its ranking is noise), above it
in full, linearly between (`confidence`; the JSON's `fusion.image` gives the best
cosine, the band and the confidence). The best cosine, not its distance from the
collection's mean: in a folder of line charts alone a line-chart query's best image does
not stand out from the rest, yet the model knows it. On the Debian documentation figures,
queried by what people wrote, the bundled model's image side ranks at chance (1.2x) and
drowned the words; on the figure benchmark the gate changes no retrieval metric (README).
The words' embedding half is gated the same way, on the best MiniLM cosine between the
query and any image's words (`WORDS_BAND`): a query whose words resemble no figure's
("a line chart with a red dashed line" against titles and tick labels) gets noise from
it, which min-max scaling would stretch to full range (figure benchmark, attribute
precision@5 0.159 -> 0.197; the documentation figures and caption queries unchanged).
The lexical half follows both gates: it counts `1 - image x (1 - words)` of itself (a
model without a band, whose knowledge of the query is unknown, counts as image 0). When
the model knows the query (image gate open) and its words resemble nothing read in the
images (words gate shut), an exact word they share is incidental: "line" of "a line chart
with a green dashed line" matches the few figures where OCR read a "line" (misreadings,
mostly), "5" of "a bar chart with 5 bars" a tick label (figure benchmark: attribute
precision@5 0.202 -> 0.218, caption recall@5 0.978 -> 0.976).
When the model does not know the query, the exact words are the evidence that is left,
even where the sentence as a whole resembles none of them: gating the lexical half by the
words gate alone cost the documentation figures' words row a tenth of its recall (20.0x
-> 18.3x chance); this way it is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.errors import InvalidArgumentError

from evident.tools.colours import decode, named_colours
from evident.tools.errors import InputError, StoreError
from evident.tools.ingest.images import read_image
from evident.tools.lexical import WordIndex, word_index
from evident.tools.limits import check_k
from evident.tools.minilm import QueryTextEmbedder, minilm, query_encoder
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


FLOORS = {"image": 0.1, "caption": 0.1, "embedding": 0.1, "lexical": 2.0, "colour": 1.0}
SPECK = 0.005
"""Colour column: `log(1 + share / SPECK)` of the ink in the named colours, so half a
percent of the ink (a line, a few markers) already counts and a whole-figure colour does
not drown every other signal."""
WORDS_BAND = (0.4, 0.5)
"""all-MiniLM-L6-v2 cosines of a query with an image's words: below 0.4 they resemble
nothing there (the best cosine of the figure benchmark's attribute queries is 0.24-0.33,
of its caption queries, which name titles, 0.55-0.76); set by hand, and any band from
(0.3, 0.4) to (0.45, 0.51) gives the same results within 0.005 on both benchmarks."""


@dataclass(frozen=True)
class Weights:
    """How much each signal counts in a hybrid score (renormalised over the signals a
    query has), and the share of the words signal that is lexical. Beside captions the
    words count `words_beside_captions`: what people wrote about a figure says what it
    shows better than the labels and ticks read in it (on the Debian documentation
    figures with their pages' text, recall@10 0.68 with the words at 0.5, 0.78 at 0.15,
    against 0.78 for the pages' text alone)."""

    image: float = 0.5
    caption: float = 0.5
    words: float = 0.5
    lexical: float = 0.5
    words_beside_captions: float = 0.15
    colour: float = 0.2


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
    t1 = time.perf_counter()
    # Chroma returns what it has when asked for more, so no count() on the hot path
    # (about 12 ms at 100k entries); an empty answer without a filter means an empty collection.
    hybrid = captions is not None or words is not None
    # a named colour can lift an image the model ranks lower: look deeper for it (figure
    # benchmark, validation split: attribute precision@5 0.307 at 32, 0.331 at 64, 0.332 at 128)
    pool = max(8 * k, 64) if colours else max(4 * k, 32) if hybrid else k
    img, metas = _query(images, q, pool, where)
    if not img and not where:
        raise StoreError(f"collection {collection!r} is empty; index some images into it first.")
    shares = {i: decode(m.get("colours")) for i, m in metas.items()} if colours else {}
    if not hybrid and not any(shares.values()):
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
    if any(shares.values()):
        raw["colour"] = _colour(colours, {i: decode(metas.get(i, {}).get("colours")) for i in ids})
    band = getattr(encoder, "text_band", None)
    gates = {}
    if band is not None and query.text and not query.image and img:
        gates["image"] = confidence(max(img.values()), band)
    if raw.get("embedding"):
        gates["embedding"] = confidence(max(raw["embedding"].values()), WORDS_BAND)
    fused, parts, fusion = _fuse(ids, raw, weights, gates)
    if "colour" in fusion:
        fusion["colour"]["names"] = list(colours)
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
    collection's lexical index when the caller has it (`tools.lexical.word_index`)."""
    if query.image or not query.text:
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


def confidence(best: float, band: tuple[float, float]) -> dict[str, Any]:
    """How much a signal counts for a query whose best candidate has cosine `best`, given
    the band of best cosines its in-domain queries reach (see the module's docstring).

    >>> confidence(0.30, (0.47, 0.51))["confidence"], confidence(0.49, (0.47, 0.51))
    (0.0, {'best': 0.49, 'band': [0.47, 0.51], 'confidence': 0.5})
    """
    low, high = band
    share = float(np.clip((best - low) / max(high - low, 1e-9), 0.0, 1.0))
    return {"best": round(best, 4), "band": [low, high], "confidence": round(share, 4)}


def _fuse(ids: list[str], raw: dict, w: Weights, gates: dict):
    """`(fused scores, per-candidate contributions, the fusion record)`; `gates` holds a
    `confidence` for the image signal (scaling its weight) and for the words' embedding
    (scaling its column, and with the image's the lexical column), where they apply."""
    # how well the model knows the query; None without a band: the image side then counts
    # in full, and the exact words too (nothing says the model sees what the query asks)
    known = gates["image"]["confidence"] if "image" in gates else None
    signals = {"image": w.image * (1.0 if known is None else known)}
    if "caption" in raw:
        signals["caption"] = w.caption
    if "embedding" in raw:
        signals["words"] = w.words_beside_captions if "caption" in raw else w.words
    if "colour" in raw:
        signals["colour"] = w.colour
    total = sum(signals.values()) or 1.0
    columns = {
        "image": _minmax([raw["image"].get(i, np.nan) for i in ids], FLOORS["image"]),
        "caption": _minmax([raw.get("caption", {}).get(i, np.nan) for i in ids], FLOORS["caption"]),
    }
    lexical_gate = 1.0
    if "words" in signals:
        lex = _minmax([raw["lexical"].get(i, 0.0) for i in ids], FLOORS["lexical"])
        emb = _minmax([raw["embedding"].get(i, np.nan) for i in ids], FLOORS["embedding"])
        if "embedding" in gates:
            emb = emb * gates["embedding"]["confidence"]
            lexical_gate = 1 - (known or 0.0) * (1 - gates["embedding"]["confidence"])
        columns["words"] = w.lexical * lexical_gate * lex + (1 - w.lexical) * emb
    if "colour" in signals:
        inked = np.array([raw["colour"].get(i, np.nan) for i in ids])
        columns["colour"] = _minmax(np.log1p(inked / SPECK).tolist(), FLOORS["colour"])
    fused = np.zeros(len(ids))
    parts = [{} for _ in ids]
    for name, weight in signals.items():
        share = weight / total * columns[name]
        fused += share
        for j, v in enumerate(share):
            parts[j][name] = round(float(v), 6)
    fusion = {
        name: {"weight": round(weight / total, 4)} | _range(raw, name)
        for name, weight in signals.items()
    }
    if "words" in signals:
        fusion["words"]["lexical_share"] = w.lexical
        fusion["words"]["lexical_gate"] = round(lexical_gate, 4)
    if "image" in gates:
        fusion["image"] |= gates["image"]
    if "words" in fusion and "embedding" in gates:
        fusion["words"]["embedding"] = gates["embedding"]
    return fused, parts, fusion


def _colour(names: tuple[str, ...], shares: dict[str, dict | None]) -> dict[str, float]:
    """Per image indexed with colours, the mean share of its ink in the named colours."""
    return {
        i: float(np.mean([s.get(n, 0.0) for n in names]))
        for i, s in shares.items()
        if s is not None
    }


def _range(raw: dict, name: str) -> dict:
    """The raw range a signal was normalised over (image and caption: cosines)."""
    values = [v for v in raw.get(name, {}).values() if np.isfinite(v)]
    return (
        {"range": [round(min(values), 6), round(max(values), 6)]}
        if values and name != "words"
        else {}
    )


def _scores(raw: dict, i: str) -> dict[str, float]:
    names = {
        "image": "image", "caption": "caption", "embedding": "words", "lexical": "lexical",
        "colour": "colour",
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


def _minmax(values: list[float], floor: float = 0.0) -> np.ndarray:
    """Scale to [0, 1] by the range, or by `floor` when the range is smaller (then the top
    stays below 1); missing values (NaN) become 0, a constant column becomes 1.

    >>> _minmax([0.2, 0.4, float("nan")]).tolist()
    [0.0, 1.0, 0.0]
    >>> _minmax([0.30, 0.32], floor=0.1).round(2).tolist()
    [0.0, 0.2]
    """
    a = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(a)
    out = np.zeros_like(a)
    if ok.any():
        lo, hi = a[ok].min(), a[ok].max()
        out[ok] = (a[ok] - lo) / max(hi - lo, floor) if hi > lo else 1.0
    return out


def _hit(rank: int, id_: str, score: float, meta: dict, scores: dict, parts: dict | None) -> Hit:
    hidden = ("uri", "caption", "size", "mtime_ns", "ocr", "colours")
    extra = {k: v for k, v in meta.items() if k not in hidden}
    uri, caption = meta.get("uri", ""), meta.get("caption")
    return Hit(rank, id_, uri, float(score), caption, scores, extra, contributions=parts or {})
