"""One query of an evaluation run -> its record for `results.jsonl`.

`search_record`: the first-stage search, the product's explanation of the top
`explain_top` hits (default method, regions, counterfactuals and curves, as `evident
search --cam` shows them; query-word attribution is left out) and the localization of the
query's targets. `ask_record`: the assistant's answer instead of the search (each query in
its own thread, never a follow-up), with its grounding figures. Every record holds the
ranked list (paths relative to the suite's folder), the retrieval scores, and the
milliseconds of each stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evident.eval.localize import (
    chosen_images,
    image_reader,
    localize,
    localize_colour,
    localize_text,
    named_parts,
)
from evident.eval.metrics import retrieval_scores
from evident.eval.suite import SuiteQuery
from evident.tools.evidence.colour_regions import placeable
from evident.tools.ingest.ocr import Reading
from evident.tools.pipeline import Retrieval, readings_of, run_query
from evident.tools.records import Query
from evident.tools.retrieve import embed_query

CURVE_STEPS = 5


@dataclass
class RunContext:
    """What every query of a run shares: the encoder, settings, and the retrieval (search
    mode) or the assistant (ask mode)."""

    encoder: Any
    methods: list[str]
    k: int
    explain_top: int
    per_query: int | None
    seed: int
    suite_dir: Path
    retrieval: Retrieval | None = None
    assistant: Any = None  # anything with ask(question, image=None, thread=None)
    read: Callable = field(default_factory=image_reader)
    randomized: dict[str, Any] = field(default_factory=dict)  # `eval.sanity` copies by level


def _ms(start: float) -> float:
    return round(1000 * (time.perf_counter() - start), 3)


def search_record(ctx: RunContext, q: SuiteQuery) -> dict:
    """The product's own path (`tools.pipeline.run_query`, as `evident search` runs it,
    without the query-word attribution), timed, then the localization of the targets."""
    query = Query(text=q.text, image=q.image)
    start = time.perf_counter()
    result = run_query(
        query, ctx.k, ctx=ctx.retrieval, explain_top=ctx.explain_top, attribution=None,
    )  # fmt: skip
    elapsed = _ms(start)
    timings = result.to_dict()["timings_ms"]
    record = _base(ctx, q, [h.uri for h in result.hits], {"search": elapsed})
    if ctx.explain_top:
        explain_ms = sum(v for k, v in timings.items() if k not in ("encode_query", "search"))
        record["latency_ms"]["explain"] = round(explain_ms, 3)
        regions = [r for ev in result.explanation.evidence.values() for r in ev.regions]
        supported = sum(r.supported for r in regions)
        shown = [[r.id, list(r.box), r.kind, r.supported] for r in regions]
        record["explained"] = {"regions": len(regions), "supported": supported, "shown": shown}
    return _localized(ctx, q, result.search.query_embedding, record)


def ask_record(ctx: RunContext, q: SuiteQuery) -> dict:

    start = time.perf_counter()
    answer = ctx.assistant.ask(q.text or "", image=q.image, thread=f"eval-{q.id}")
    elapsed = _ms(start)
    out = answer.to_dict() if hasattr(answer, "to_dict") else dict(answer)
    hits = out.get("results") or []
    record = _base(ctx, q, [h["uri"] for h in hits], {"ask": elapsed})
    record["ask"] = _grounding(out, hits, {q.paths[r] for r in q.relevant})
    if not q.targets:
        return record
    embedding = embed_query(Query(text=q.text, image=q.image), ctx.encoder)
    return _localized(ctx, q, embedding, record)


def _grounding(out: dict, hits: list[dict], relevant: set[str]) -> dict:
    """The answer's grounding figures, and how many valid citations point at relevant images."""
    g = out.get("grounding") or {}
    by_rank = {h.get("rank"): h.get("uri") for h in hits}
    cites = out.get("citations") or []
    steps = out.get("steps") or []
    return {
        "sentences": int(g.get("sentences", 0)),
        "cited": int(g.get("cited", 0)),
        "valid": int(g.get("valid", 0)),
        "supported": int(g.get("supported", 0)),
        "removed": len(g.get("removed") or []),
        "relevant_cited": sum(by_rank.get(c.get("rank")) in relevant for c in cites),
        # the LLM's side: did the deterministic policy have to take over, and why
        "takeover": next((s["takeover"] for s in steps if s.get("takeover")), None),
        "llm_calls": sum(len(s.get("llm") or []) for s in steps),
    }


def _base(ctx: RunContext, q: SuiteQuery, uris: list[str], latency: dict) -> dict:
    relevant = {q.paths[r] for r in q.relevant}
    ranked = [str(Path(u).resolve()) if u else u for u in uris]
    shown = [os.path.relpath(u, ctx.suite_dir) if u else u for u in ranked]
    return {
        "id": q.id,
        "level": q.level,
        "ranked": shown,
        "retrieval": {k: round(v, 6) for k, v in retrieval_scores(ranked, relevant).items()},
        "latency_ms": latency,
    }


def _localized(ctx: RunContext, q: SuiteQuery, embedding, record: dict) -> dict:
    if not q.targets:
        return record
    start = time.perf_counter()
    record["localization"] = localize(
        ctx.encoder, embedding, q, ctx.methods, read=ctx.read, per_query=ctx.per_query,
        seed=ctx.seed, curve_steps=CURVE_STEPS, randomized=ctx.randomized,
    )  # fmt: skip
    if ctx.retrieval is not None and named_parts(q.text):
        readings = _readings(ctx.retrieval, q, chosen_images(q, ctx.per_query, ctx.seed))
        if readings:  # words were read in this collection
            record["text_localization"] = {
                "parts": named_parts(q.text),
                "images": localize_text(q, readings, per_query=ctx.per_query, seed=ctx.seed),
            }
    if colours := placeable(q.text or ""):
        record["colour_localization"] = {
            "colours": list(colours),
            "images": localize_colour(q, ctx.read, per_query=ctx.per_query, seed=ctx.seed),
        }
    record["latency_ms"]["localize"] = _ms(start)
    return record


def _readings(ctx: Retrieval, q: SuiteQuery, chosen: list[str]) -> dict[str, Reading]:
    """What indexing read in the chosen images, by suite path (empty when the collection
    has no words at all; an image read with nothing in it maps to an empty reading)."""
    if ctx.store.words(ctx.collection) is None:
        return {}
    by_uri = {str(Path(q.paths[r]).resolve()): r for r in chosen}
    images = ctx.store.images(ctx.collection)
    got = images.get(where={"uri": {"$in": list(by_uri)}}, include=["metadatas"])
    ids = {i: by_uri[m["uri"]] for i, m in zip(got["ids"], got["metadatas"], strict=True)}
    read = readings_of(ctx, list(ids))
    return {rel: read.get(i, Reading()) for i, rel in ids.items()}
