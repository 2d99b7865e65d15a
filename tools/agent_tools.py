"""The agent's tools: thin LangChain wrappers over evident's tool functions.

Each returns `(content, artifact)` (`response_format="content_and_artifact"`): a short
text for the model, with every caption, file name and metadata value fenced as data, and a
plain-dict artifact for people (the REPL, notebooks, JSON) and for the grounding verifier.
Heavy objects come from the run context (`runtime.context`, a `evident.graphs.context.Ctx`);
earlier results come from the tool messages in `runtime.state`. Errors a model can fix
are `EvidentError`s; the graph's `ToolNode` returns them to the model as error messages.

`TOOLS` is the registry the graph binds. Region ids `R<rank>.<n>` name ranks of the latest
search; a new search (`search_images`, `similar_to`, `filter_results`) starts a new
namespace.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime
from pydantic import Field

from evident.graphs.context import MAX_K
from evident.graphs.state import evidence_by_rank, latest_search
from evident.tools.errors import InputError
from evident.tools.records import Hit, Query

# Bounds in the schema: local backends clamp to them, other models get a validation error.
K = Annotated[int, Field(ge=1, le=MAX_K)]
Rank = Annotated[int, Field(ge=1, le=MAX_K)]


@tool(response_format="content_and_artifact", parse_docstring=True)
def search_images(
    query: str, runtime: ToolRuntime[Any, Any], k: K = 5, where: dict | None = None
) -> tuple[str, dict]:
    """Rank the collection's images for a description in words.

    Args:
        query: what to look for, in words.
        k: how many results to return (1 to 50).
        where: optional metadata filter, e.g. {"kind": "bar"}.
    """
    ctx, t0 = runtime.context, time.perf_counter()
    image = (runtime.state or {}).get("image")
    art = _search(ctx, Query(text=query or None, image=image), k, where)
    return _search_content(art), art | {"ms": _ms(t0)}


@tool(response_format="content_and_artifact", parse_docstring=True)
def similar_to(rank: Rank, runtime: ToolRuntime[Any, Any], k: K = 5) -> tuple[str, dict]:
    """Find images that look like result #rank of the latest search (itself left out).

    Args:
        rank: the result to use as the query image.
        k: how many results to return (1 to 50).
    """
    ctx, t0 = runtime.context, time.perf_counter()
    source = _hit(_need_search(runtime), rank)
    art = _search(ctx, Query(image=source.uri), k, None, leave_out=source.id)
    art["like"] = {"rank": rank, "id": source.id}
    return _search_content(art), art | {"ms": _ms(t0)}


@tool(response_format="content_and_artifact", parse_docstring=True)
def filter_results(contains: str, runtime: ToolRuntime[Any, Any]) -> tuple[str, dict]:
    """Keep the latest search's results whose caption, file name or metadata mention
    every given word; they are ranked again from 1.

    Args:
        contains: the words to look for, e.g. "legend".
    """
    t0 = time.perf_counter()
    search = _need_search(runtime)
    words = [w for w in contains.lower().split() if w not in ("a", "an", "the")]
    kept = [r for r in search["results"] if words and all(w in _text_of(r) for w in words)]
    if not kept:
        raise InputError(
            f"none of the {len(search['results'])} results mention {contains!r}; "
            "the results are unchanged."
        )
    results = [
        r | {"rank": i, "first_stage": {"rank": r["rank"], "score": r["score"]}}
        for i, r in enumerate(kept, 1)
    ]
    art = search | {"results": results, "filtered": {"contains": contains, "from": search["k"]}}
    return _search_content(art), art | {"ms": _ms(t0)}


@tool(response_format="content_and_artifact", parse_docstring=True)
def explain_result(
    rank: Rank, runtime: ToolRuntime[Any, Any], method: str | None = None
) -> tuple[str, dict]:
    """Evidence for result #rank: heatmap regions R<rank>.<n>, each checked by removing
    it and re-scoring (only supported regions may be cited), and the query words that
    carried the match.

    Args:
        rank: the result to explain.
        method: heatmap method (legrad, gradcam, gradcam++, hirescam, layercam, eigencam,
            scorecam); leave empty for the default.
    """
    t0 = time.perf_counter()
    (ev,) = _explain(runtime, _need_search(runtime), [rank], method)
    return _evidence_content(ev), ev | {"ms": _ms(t0)}


@tool(response_format="content_and_artifact", parse_docstring=True)
def compare_results(a: Rank, b: Rank, runtime: ToolRuntime[Any, Any]) -> tuple[str, dict]:
    """Why result #a ranks where it does against result #b: the score margin and the
    checked evidence of both.

    Args:
        a: one result's rank.
        b: the other result's rank.
    """
    t0 = time.perf_counter()
    if a == b:
        raise InputError(f"compare two different results, not #{a} with itself")
    search = _need_search(runtime)
    known = evidence_by_rank(runtime.state["messages"])
    missing = [r for r in (a, b) if r not in known]
    fresh = (
        dict(zip(missing, _explain(runtime, search, missing, None), strict=True)) if missing else {}
    )
    ea, eb = (fresh.get(r) or known[r] for r in (a, b))
    art = {"kind": "comparison", "a": ea, "b": eb, "margin": ea["score"] - eb["score"]}
    content = (
        f"#{a} scores {ea['score']:.4f} and #{b} {eb['score']:.4f}: margin "
        f"{art['margin']:+.4f} for #{a}.\n" + _evidence_content(ea) + "\n" + _evidence_content(eb)
    )
    return content, art | {"ms": _ms(t0)}


TOOLS = [search_images, explain_result, compare_results, similar_to, filter_results]


# --- the work behind the wrappers -------------------------------------------------------


def _search(ctx, query: Query, k: int, where, leave_out: str | None = None) -> dict:
    from evident.tools.retrieve import search_images as run

    wanted = max(1, min(int(k), MAX_K))
    with ctx.model_lock:  # never beside an explanation's hooks on the same encoder
        result = run(
            query, wanted + (leave_out is not None), where or None, store=ctx.store,
            collection=ctx.collection, encoder=ctx.encoder, text_embedder=ctx.text_embedder,
        )  # fmt: skip
    hits = [h for h in result.hits if h.id != leave_out][:wanted]
    art = result.to_dict() | {"kind": "search", "k": len(hits), "where": where or None}
    art["results"] = [h.with_rank(i).to_dict() for i, h in enumerate(hits, 1)]
    if int(k) != wanted:
        art["clamped"] = {"k": int(k), "to": wanted}
    return art


def _explain(runtime, search: dict, ranks: list[int], method: str | None) -> list[dict]:
    from evident.tools.evidence.explain import explain_results
    from evident.tools.evidence.heatmaps import default_method
    from evident.tools.ingest.images import read_image
    from evident.tools.retrieve import embed_query

    ctx = runtime.context
    hits = [_hit(search, r) for r in ranks]
    method = method or ctx.method or default_method(ctx.encoder)
    if runtime.stream_writer:
        runtime.stream_writer({"status": f"explaining {', '.join(f'#{r}' for r in ranks)}"})
    query = Query(**search["query"])
    out = ctx.out_dir / method if ctx.out_dir is not None else None
    images = [read_image(Path(h.uri)) for h in hits]
    with ctx.model_lock:
        explained = explain_results(
            ctx.encoder, embed_query(query, ctx.encoder), hits, images, query=query,
            method=method, out_dir=out,
        )  # fmt: skip
    scores = [r["score"] for r in search["results"]]
    return [_evidence(h, e, scores) for h, e in zip(hits, explained.evidence, strict=True)]


def _evidence(hit: Hit, ev, scores: list[float]) -> dict:
    """The evidence artifact; `rank_after` re-counted against every result of the search
    (the engine only saw the hits it explained)."""
    out = ev.to_dict() | {"kind": "evidence", "rank": hit.rank, "id": hit.id, "uri": hit.uri}
    out |= {"score": hit.score, "cosine": ev.score, "method": ev.method}
    others = [s for i, s in enumerate(scores, 1) if i != hit.rank]
    for region in out["regions"]:
        cf = region.get("counterfactual")
        if cf is not None:
            cf["rank_after"] = 1 + sum(s > hit.score - cf["score_drop"] for s in others)
    return out


def _need_search(runtime) -> dict:
    search = latest_search(runtime.state["messages"])
    if search is None:
        raise InputError("there are no results yet; call search_images first")
    return search


def _hit(search: dict, rank: int) -> Hit:
    results = search["results"]
    if not 1 <= int(rank) <= len(results):
        raise InputError(f"there is no result #{rank}; the latest search has {len(results)}")
    r = results[int(rank) - 1]
    return Hit(
        r["rank"], r["id"], r["uri"], r["score"], r.get("caption"), r.get("scores", {}),
        r.get("metadata", {}), r.get("first_stage"),
    )  # fmt: skip


def _text_of(result: dict) -> str:
    meta = " ".join(f"{k} {v}" for k, v in result.get("metadata", {}).items() if v)
    return f"{result.get('caption') or ''} {Path(result['uri']).name} {meta}".lower()


def _ms(t0: float) -> float:
    return round(1000 * (time.perf_counter() - t0), 1)


# --- what the model reads ---------------------------------------------------------------


def _search_content(art: dict) -> str:
    from evident.prompts.render import fence

    q = art["query"]
    what = f"like #{art['like']['rank']}" if "like" in art else repr(q.get("text") or "")
    head = f"search {what}: {len(art['results'])} results"
    if "filtered" in art:
        head += (
            f", the ones of {art['filtered']['from']} mentioning {art['filtered']['contains']!r}"
        )
    if "clamped" in art:
        head += f" (k={art['clamped']['k']} clamped to {art['clamped']['to']})"
    lines = [f"#{r['rank']} score {r['score']:.4f}" for r in art["results"]]
    data = "\n".join(
        f"#{r['rank']} {Path(r['uri']).name} | {r.get('caption') or ''} | "
        + json.dumps(r.get("metadata") or {}, ensure_ascii=False)
        for r in art["results"]
    )
    return "\n".join([head, *lines, "File names, captions and metadata:", fence(data, "results")])


def _evidence_content(ev: dict) -> str:
    lines = [f"#{ev['rank']} (score {ev['score']:.4f}; cosine {ev['cosine']:.4f}; {ev['method']})"]
    for r in ev["regions"]:
        cf = r.get("counterfactual") or {}
        where = f"{r['id']} box {r['box']}, {100 * r['mass']:.0f}% of the heat"
        if cf.get("supported"):
            lines.append(
                f"{where}: supported: removing it lowers the cosine by {cf['score_drop']:.4f} "
                f"(rank {ev['rank']} -> {cf['rank_after']})"
            )
        else:
            drop = cf.get("score_drop", float("nan"))
            lines.append(f"{where}: NOT supported (drop {drop:.4f}); do not cite it")
    if not ev["regions"]:
        lines.append("no evidence regions were found; cite nothing for this result")
    if ev.get("query_terms"):
        words = ", ".join(f"{t['term']!r} {t['contribution']:+.3f}" for t in ev["query_terms"])
        lines.append(f"query words: {words}")
    return "\n".join(lines)


def tool_summary(name: str, args: dict[str, Any]) -> str:
    """One line for step displays.

    >>> tool_summary("explain_result", {"rank": 2, "method": None})
    'explain_result(rank=2)'
    """
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if v is not None)
    return f"{name}({shown})"
