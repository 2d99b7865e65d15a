"""One query end to end: first-stage search, optional rerank, evidence for the top k.

This is what `evident search` runs and what the agent's search tool calls, so the two
can never disagree. The reranker sees a larger first-stage pool (`rerank_pool`) than
the k it returns, since reordering only the top k could never bring a lower hit up.
A result whose image file cannot be read any more (moved or deleted since indexing)
keeps its place with `evidence_error` set, instead of failing the whole search.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evident.tools.errors import InputError
from evident.tools.ingest.images import read_image
from evident.tools.records import Evidence, Hit, Query
from evident.tools.retrieve import SearchResult, search_images


@dataclass(frozen=True)
class QueryResult:
    """A search with its evidence; `to_dict()` is `evident search --json`."""

    search: SearchResult
    hits: tuple[Hit, ...]
    evidence: Mapping[str, Evidence] = field(default_factory=dict)  # by hit id
    errors: Mapping[str, str] = field(default_factory=dict)  # by hit id
    reranker: str | None = None
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = self.search.to_dict()
        results = []
        for h in self.hits:
            r = h.to_dict()
            if h.id in self.evidence:
                r |= self.evidence[h.id].to_dict()
            if h.id in self.errors:
                r["evidence_error"] = self.errors[h.id]
            results.append(r)
        out["results"] = results
        out["rerank"] = self.reranker
        out["timings_ms"] = {k: round(v, 2) for k, v in self.timings_ms.items()}
        return out


def run_query(
    query: Query,
    k: int = 5,
    where: dict | None = None,
    *,
    store,
    collection: str,
    encoder,
    text_embedder=None,
    cam: str | None = None,
    rerank: str | None = None,
    rerank_pool: int = 20,
    out_dir: str | Path | None = None,
    explain: bool = True,
) -> QueryResult:
    """Search, rerank (`rerank` names a reranker, None/"none" skips), explain the top k.

    `cam` picks the heatmap method (None: the encoder's default); `explain=False` or
    `cam="none"` returns the ranking alone.
    """
    from evident.tools.evidence.explain import explain_results
    from evident.tools.rerank import make_reranker

    reranker = make_reranker(rerank, encoder)
    pool = max(k, rerank_pool) if reranker else k
    first = search_images(
        query,
        pool,
        where,
        store=store,
        collection=collection,
        encoder=encoder,
        text_embedder=text_embedder,
    )
    timings = dict(first.timings_ms)
    hits = list(first.hits)
    images, errors = _load(hits)
    if reranker:
        t = time.perf_counter()
        readable = [h for h in hits if h.id in images]
        moved = reranker.rerank(
            query, first.query_embedding, readable, [images[h.id] for h in readable]
        )
        # unreadable hits cannot be rescored: they follow the reranked ones, in order
        tail = [h for h in hits if h.id not in images]
        hits = moved + [h.with_rank(len(moved) + i + 1) for i, h in enumerate(tail)]
        timings["rerank"] = (time.perf_counter() - t) * 1e3
    hits = hits[:k]
    evidence: dict[str, Evidence] = {}
    if explain and cam != "none":
        shown = [h for h in hits if h.id in images]
        if shown:
            ex = explain_results(
                encoder,
                first.query_embedding,
                shown,
                [images[h.id] for h in shown],
                query=query,
                method=cam,
                out_dir=out_dir,
            )
            evidence = {e.hit_id: e for e in ex.evidence}
            timings |= {k: v for k, v in ex.timings_ms.items()}
    return QueryResult(
        first,
        tuple(hits),
        evidence,
        {h.id: errors[h.id] for h in hits if h.id in errors},
        reranker.name if reranker else None,
        timings,
    )


def _load(hits: list[Hit]) -> tuple[dict, dict[str, str]]:
    images, errors = {}, {}
    for h in hits:
        try:
            images[h.id] = read_image(Path(h.uri))
        except InputError as exc:
            errors[h.id] = f"cannot read {h.uri!r}: {exc} (re-index with --prune?)"
    return images, errors
