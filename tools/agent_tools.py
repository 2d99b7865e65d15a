"""The agent's tools: thin LangChain wrappers over `tools.pipeline`.

Each returns `(content, artifact)` (`response_format="content_and_artifact"`): a short
text for the model, with every caption, file name and metadata value fenced as data, and a
plain-dict artifact for people (the REPL, notebooks, JSON) and for the grounding verifier.
Heavy objects come from the run context (`runtime.context`, a `graphs.context.Ctx`, whose
`retrieval` is a `tools.pipeline.Retrieval`); earlier results come from the tool messages
in `runtime.state` (`tools.artifacts`). Errors a model can fix are `EvidentError`s; the
graph's `ToolNode` returns them to the model as error messages.

`TOOLS` is the registry the graph binds. Region ids `R<rank>.<n>` name ranks of the latest
search; a new search (`search_images`, `similar_to`, `filter_results`) starts a new
namespace. `explain_results` explains several results in one batched pass.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.prebuilt import ToolRuntime
from pydantic import Field

from evident.prompts.render import fence
from evident.tools.artifacts import evidence_by_rank, latest_search
from evident.tools.counts import counted, counted_by
from evident.tools.errors import InputError
from evident.tools.evidence.methods import HEATMAP_METHODS
from evident.tools.ingest.metadata import OWN as RESERVED
from evident.tools.limits import LLM_RESULTS, MAX_K
from evident.tools.pipeline import explain, search
from evident.tools.places import applied, read_from
from evident.tools.records import Hit, Query, result_dict

# Bounds in the schema: local backends clamp to them, other models get a validation error.
K = Annotated[int, Field(ge=1, le=MAX_K)]
Rank = Annotated[int, Field(ge=1, le=MAX_K)]
Ranks = Annotated[list[Rank], Field(min_length=1, max_length=10)]


@tool(response_format="content_and_artifact", parse_docstring=True)
def search_images(
    query: str, runtime: ToolRuntime[Any, Any], k: K = 5, where: dict | None = None
) -> tuple[str, dict]:
    """Rank the collection's images for a description in words.

    Args:
        query: what to look for, in words.
        k: how many results.
        where: metadata filter, e.g. {"kind": "bar"}.
    """
    t0 = time.perf_counter()
    if where:
        _check_where(where, metadata_fields(runtime.context.retrieval))
    image = (runtime.state or {}).get("image")
    art = _search(runtime.context, Query(text=query or None, image=image), k, where)
    return _search_content(art), art | {"ms": _ms(t0)}


@tool(response_format="content_and_artifact", parse_docstring=True)
def similar_to(rank: Rank, runtime: ToolRuntime[Any, Any], k: K = 5) -> tuple[str, dict]:
    """Find images that look like result #rank.

    Args:
        rank: the result to use as the query image.
        k: how many results.
    """
    t0 = time.perf_counter()
    source = _hit(_need_search(runtime), rank)
    art = _search(runtime.context, Query(image=source.uri), k, None, leave_out=source.id)
    art["like"] = {"rank": rank, "id": source.id}
    return _search_content(art), art | {"ms": _ms(t0)}


@tool(response_format="content_and_artifact", parse_docstring=True)
def filter_results(contains: str, runtime: ToolRuntime[Any, Any]) -> tuple[str, dict]:
    """Keep the results whose caption, file name or metadata mention these words.

    Args:
        contains: the words to look for, e.g. "legend".
    """
    t0 = time.perf_counter()
    search_art = _need_search(runtime)
    words = [w for w in contains.lower().split() if w not in ("a", "an", "the")]
    kept = [r for r in search_art["results"] if words and all(w in _text_of(r) for w in words)]
    if not kept:
        raise InputError(
            f"none of the {len(search_art['results'])} results mention {contains!r}; "
            "the results are unchanged."
        )
    results = [
        r | {"rank": i, "first_stage": {"rank": r["rank"], "score": r["score"]}}
        for i, r in enumerate(kept, 1)
    ]
    filtered = {"contains": contains, "from": search_art["k"]}
    art = search_art | {"results": results, "k": len(results), "filtered": filtered}
    return _search_content(art), art | {"ms": _ms(t0)}


@tool(response_format="content_and_artifact", parse_docstring=True)
def explain_results(
    ranks: Ranks, runtime: ToolRuntime[Any, Any], method: str | None = None
) -> tuple[str, dict]:
    """Evidence regions R<rank>.<n> for results, each checked by removing it.

    Args:
        ranks: the results to explain, e.g. [1, 2, 3].
        method: heatmap method; leave empty for the default.
    """
    t0 = time.perf_counter()
    ranks = list(dict.fromkeys(int(r) for r in ranks))
    evidence = _explain(runtime, _need_search(runtime), ranks, method)
    art = {"kind": "explanation", "ranks": ranks, "evidence": evidence}
    return "\n".join(_evidence_content(e) for e in evidence), art | {"ms": _ms(t0)}


@tool(response_format="content_and_artifact", parse_docstring=True)
def compare_results(a: Rank, b: Rank, runtime: ToolRuntime[Any, Any]) -> tuple[str, dict]:
    """Why result #a ranks where it does against result #b, with evidence for both.

    Args:
        a: one result's rank.
        b: the other result's rank.
    """
    t0 = time.perf_counter()
    if a == b:
        raise InputError(f"compare two different results, not #{a} with itself")
    search_art = _need_search(runtime)
    known = evidence_by_rank(runtime.state["messages"])
    missing = [r for r in (a, b) if r not in known]
    fresh = {e["rank"]: e for e in _explain(runtime, search_art, missing, None)} if missing else {}
    ea, eb = (fresh.get(r) or known[r] for r in (a, b))
    art = {"kind": "comparison", "a": ea, "b": eb, "margin": ea["score"] - eb["score"]}
    content = (
        f"#{a} scores {ea['score']:.4f} and #{b} {eb['score']:.4f}: margin "
        f"{art['margin']:+.4f} for #{a}.\n" + _evidence_content(ea) + "\n" + _evidence_content(eb)
    )
    return content, art | {"ms": _ms(t0)}


TOOLS = [search_images, explain_results, compare_results, similar_to, filter_results]
NEEDS_RESULTS = ("explain_results", "compare_results", "similar_to", "filter_results")
"""Tools that work on the latest search's results: useless before a search."""

FIELD_VALUES = 20  # distinct values of a metadata field listed in a schema; more: free text
FIELD_SAMPLE = 500  # entries read to find a collection's metadata fields


def metadata_fields(retrieval, *, sample: int = FIELD_SAMPLE) -> dict[str, list]:
    """The collection's own metadata fields and their values (up to `FIELD_VALUES` each;
    an empty list: too many to list), from its first `sample` entries.

    What a `where` filter can name: a model given these cannot invent a field."""
    col = retrieval.store.images(retrieval.collection)
    got = col.get(include=["metadatas"], limit=sample)
    values: dict[str, dict] = {}
    for meta in got["metadatas"] or []:
        for key, value in (meta or {}).items():
            if key not in RESERVED and isinstance(value, str | int | float | bool):
                values.setdefault(key, {})[value] = None
    return {k: list(v)[:FIELD_VALUES] if len(v) <= FIELD_VALUES else [] for k, v in values.items()}


def tool_specs(*, results: int, fields: dict[str, list], k_max: int) -> list[dict]:
    """The tools as OpenAI-format dicts, their schemas narrowed to this step: ranks only
    of the `results` that exist (tools on results left out when there are none), `k` up
    to `k_max`, `where` naming only the collection's metadata `fields` (left out when it
    has none), a heatmap method from the known ones.

    A constrained backend draws the model's call from these schemas, so every call it
    makes is one the tools accept."""
    specs = [convert_to_openai_tool(t) for t in TOOLS]
    if results < 1:
        specs = [s for s in specs if s["function"]["name"] not in NEEDS_RESULTS]
    rank = {"type": "integer", "minimum": 1, "maximum": max(results, 1)}
    for spec in specs:
        props = spec["function"]["parameters"]["properties"]
        for name in ("rank", "a", "b"):
            if name in props:
                props[name] = {**props[name], **rank}
        if "ranks" in props:
            props["ranks"] = {**props["ranks"], "items": rank, "maxItems": min(10, results)}
        if "k" in props:
            props["k"] = {**props["k"], "maximum": k_max}
        if "method" in props:
            props["method"] = {"description": props["method"]["description"],
                               "enum": list(HEATMAP_METHODS)}  # fmt: skip
        for name in ("query", "contains"):
            if name in props:
                props[name] = {**props[name], "minLength": 1, "maxLength": 100}
        if "where" in props:
            if fields:
                props["where"] = {"description": props["where"]["description"], **_where(fields)}
            else:
                del props["where"]
    return specs


def _check_where(where: dict, fields: dict[str, list]) -> None:
    """Refuse a filter that names no metadata field of the collection (a model that
    copied a schema into `where`, say); Chroma's `$and`/`$or` are looked into."""
    for key, value in where.items():
        if key in ("$and", "$or") and isinstance(value, list):
            for part in value:
                _check_where(part if isinstance(part, dict) else {}, fields)
        elif key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise InputError(f"no metadata field {key!r} to filter on; fields: {known}")


def _where(fields: dict[str, list]) -> dict:
    def one(values: list) -> dict:
        if not values:
            return {"type": "string", "maxLength": 40}
        return {"enum": values}

    props = {k: one(v) for k, v in sorted(fields.items())}
    return {"type": "object", "properties": props, "additionalProperties": False}


# --- the work behind the wrappers -------------------------------------------------------


def _search(ctx, query: Query, k: int, where, leave_out: str | None = None) -> dict:
    with ctx.model_lock:  # never beside an explanation's hooks on the same encoder
        result = search(query, int(k), where or None, ctx=ctx.retrieval, leave_out=leave_out)
    ctx.query_vectors[query.text, query.image] = result.query_embedding
    art = result.to_dict() | {"kind": "search", "k": len(result.hits), "where": where or None}
    art["results"] = [result_dict(h, None) for h in result.hits]
    return art


def _explain(runtime, search_art: dict, ranks: list[int], method: str | None) -> list[dict]:
    ctx = runtime.context
    if method is not None and method not in HEATMAP_METHODS:
        raise InputError(f"unknown heatmap method {method!r}; known: {', '.join(HEATMAP_METHODS)}")
    hits = [_hit(search_art, r) for r in ranks]
    if runtime.stream_writer:
        runtime.stream_writer({"status": f"explaining {', '.join(f'#{r}' for r in ranks)}"})
    query = Query(**search_art["query"])
    vector = ctx.query_vectors.get((query.text, query.image))  # from this run's search
    with ctx.model_lock:
        done = explain(
            query, hits, ctx=ctx.retrieval, embedding=vector,
            method=method or ctx.method, out_dir=ctx.out_dir, fusion=search_art.get("fusion"),
        )  # fmt: skip
    if not done.evidence:
        raise InputError("; ".join(done.errors.values()))
    scores = [r["score"] for r in search_art["results"]]
    return [
        _evidence(h, done.evidence[h.id], scores)
        if h.id in done.evidence
        else result_dict(h, None, done.errors[h.id]) | {"kind": "evidence", "cosine": None}
        for h in hits
    ]


def _evidence(hit: Hit, ev, scores: list[float]) -> dict:
    """The evidence record of one result; `rank_after` re-counted against every result
    of the search (the engine only saw the hits it explained)."""
    out = result_dict(hit, ev) | {"kind": "evidence", "cosine": ev.score, "method": ev.method}
    others = [s for i, s in enumerate(scores, 1) if i != hit.rank]
    for region in out["regions"]:
        cf = region.get("counterfactual")
        if cf is not None:
            cf["rank_after"] = 1 + sum(s > hit.score - cf["score_drop"] for s in others)
    return out


def _need_search(runtime) -> dict:
    found = latest_search(runtime.state["messages"])
    if found is None:
        raise InputError("there are no results yet; call search_images first")
    return found


def _hit(search_art: dict, rank: int) -> Hit:
    results = search_art["results"]
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
    q = art["query"]
    what = f"like #{art['like']['rank']}" if "like" in art else repr(q.get("text") or "")
    head = f"search {what}: {len(art['results'])} results"
    if "filtered" in art:
        head += (
            f", the ones of {art['filtered']['from']} mentioning {art['filtered']['contains']!r}"
        )
    shown = art["results"][:LLM_RESULTS]
    if len(art["results"]) > len(shown):
        head += f" (the first {len(shown)} listed)"
    if place := applied(art.get("fusion")):
        head += f"; ordered in part by where {place['part']!r} lies: {place['where']}"
        head += read_from(place)
    if count := counted(art.get("fusion")):
        head += f"; ordered in part by counting {counted_by(count)}: {count['where']}"
    if read := (art.get("fusion") or {}).get("marks"):
        head += "; weighed the marks read in each figure: " + ", ".join(read["names"])
    if words := (art.get("fusion") or {}).get("printed"):
        head += "; weighed what the words read in each figure show: " + ", ".join(words["names"])
    lines = [f"#{r['rank']} score {r['score']:.4f}" for r in shown]
    data = "\n".join(
        f"#{r['rank']} {Path(r['uri']).name} | {r.get('caption') or ''} | "
        + json.dumps(r.get("metadata") or {}, ensure_ascii=False)
        for r in shown
    )
    return "\n".join([head, *lines, "File names, captions and metadata:", fence(data, "results")])


def _evidence_content(ev: dict) -> str:
    if ev.get("evidence_error"):
        why = fence(ev["evidence_error"], "error")
        return f"#{ev['rank']} could not be explained; cite nothing for it:\n{why}"
    lines = [f"#{ev['rank']} (score {ev['score']:.4f}; cosine {ev['cosine']:.4f}; {ev['method']})"]
    for r in ev["regions"]:
        cf = r.get("counterfactual") or {}
        if r.get("kind") == "text":
            where = f"{r['id']} box {r['box']}, words read there: " + fence(r["text"], "words")
        elif r.get("kind") == "colour":
            where = f"{r['id']} box {r['box']}"
        else:
            where = f"{r['id']} box {r['box']}, {100 * r['mass']:.0f}% of the heat"
            if r.get("text"):
                where += ", words read there: " + fence(r["text"], "words")
        if r.get("colour"):
            where += f", drawn in {r['colour']}"
        wc, cc = r.get("words_check") or {}, r.get("colour_check") or {}
        if r.get("supported") and wc.get("supported"):
            null = max(wc["null"]["drops"] or [0.0])
            lines.append(
                f"{where}: supported: without these words the lexical score falls by "
                f"{wc['score_drop']:.2f} (other lines: at most {null:.2f})"
            )
        elif r.get("supported") and cc.get("supported") and not cf.get("supported"):
            null = max(cc["null"]["drops"] or [0.0])
            lines.append(
                f"{where}: supported: painted over, the {r['colour']} share of the ink falls "
                f"from {cc['score_before']:.0%} to {cc['score_after']:.0%} (boxes of its size "
                + (f"elsewhere: at most {null:.0%} less)" if null > 0 else "elsewhere: no less)")
            )
        elif r.get("supported"):
            null = max(cf.get("null", {}).get("drops") or [0.0])
            lines.append(
                f"{where}: supported: removing it lowers the cosine by {cf['score_drop']:.4f} "
                f"(boxes of its size elsewhere: at most {null:.4f}; "
                f"rank {ev['rank']} -> {cf['rank_after']})"
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

    >>> tool_summary("explain_results", {"ranks": [1, 2], "method": None})
    'explain_results(ranks=[1, 2])'
    """
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if v is not None)
    return f"{name}({shown})"
