"""The deterministic policy and template writer: the agent when the LLM spec is `none`, and
the fallback when a model's tool calls stay malformed. Always available offline.

The policy reads only the person's question and the tools' artifacts, never captions or
file names, so text inside the collection cannot steer it. It plans one first call from
the question (search, compare, explain, another method, similar images, filter), then
explains the top results of any new search, then stops. The writer turns the artifacts
into sentences that cite only regions whose counterfactual check passed, and names the
results it has no checked evidence for.

Not handled: questions in other languages, several requests in one question (the first
recognised one wins), rank words ("the second one") instead of `#2`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import AIMessage, ToolMessage

from evident.graphs.state import (
    artifacts,
    call_key,
    calls_this_turn,
    errors_this_turn,
    evidence_by_rank,
    latest_search,
    turn_messages,
)
from evident.graphs.verify import is_supported
from evident.tools.counts import counted, counted_by
from evident.tools.evidence.methods import ALTERNATIVES, HEATMAP_METHODS
from evident.tools.places import applied, read_from

IntentKind = Literal["search", "compare", "why", "method", "similar", "filter"]

_RANK = re.compile(r"#\s*(\d+)|\b(?:result|image|number|no\.)\s*(\d+)\b", re.I)
_LIKE = re.compile(r"\b(like|similar|resembl\w*|looks? like)\b", re.I)
_CONTRAST = re.compile(r"\b(why|compare|differ\w*|vs|versus|below|above|over|under|better|worse|"
                       r"higher|lower|instead)\b", re.I)  # fmt: skip
_OTHER = re.compile(r"\b(another|other|different|second|alternative)\s+(method|cam|heatmap)", re.I)
_EXPLAIN = re.compile(r"\b(why|explain|evidence|show|how)\b", re.I)
_FILTER = re.compile(r"^\W*(?:only|just)\b.*?\b(?:with|having|that have|showing)\s+(.+?)\W*$", re.I)
_ASKING = re.compile(
    r"^\W*(?:(?:please|can you|could you|find|show|search|look|give|get|list|fetch|"
    r"i want|i need|are there|do i have|which|what)\b\s*(?:me|for|up|us)?\s*)+",
    re.I,
)
_TAIL = re.compile(r"\s*(?:,|\band\b)\s*(?:tell|explain|say|show)\b.*$|[?.!]+$", re.I)


@dataclass(frozen=True)
class Intent:
    kind: IntentKind
    ranks: tuple[int, ...] = ()
    text: str = ""
    method: str | None = None


def parse_intent(question: str, *, has_results: bool) -> Intent:
    """What the question asks for; follow-ups need results from an earlier turn.

    >>> parse_intent("why is #2 below #1?", has_results=True)
    Intent(kind='compare', ranks=(1, 2), text='', method=None)
    >>> parse_intent("only the ones with a legend", has_results=True).text
    'legend'
    >>> parse_intent("find red circles and tell me why", has_results=False).text
    'red circles'
    """
    ranks = tuple(dict.fromkeys(int(a or b) for a, b in _RANK.findall(question)))
    method = next(
        (m for m in HEATMAP_METHODS if re.search(rf"\b{re.escape(m)}(?!\+)", question, re.I)), None
    )
    if has_results:
        if len(ranks) == 1 and _LIKE.search(question):
            return Intent("similar", ranks)
        if len(ranks) >= 2 and _CONTRAST.search(question):
            return Intent("compare", tuple(sorted(ranks[:2])))
        if len(ranks) == 1 and (method or _OTHER.search(question)):
            return Intent("method", ranks, method=method)
        if len(ranks) == 1:
            return Intent("why", ranks)
        if m := _FILTER.match(question):
            words = [w for w in m.group(1).split() if w.lower() not in ("a", "an", "the")]
            return Intent("filter", text=" ".join(words))
    return Intent("search", text=search_text(question))


def search_text(question: str) -> str:
    """The words to search for: the request around them taken off.

    >>> search_text("Find the figures where the error bars overlap and tell me why you picked them")
    'the figures where the error bars overlap'
    """
    text = _TAIL.sub("", _ASKING.sub("", question.strip())).strip()
    return text or question.strip()


def plan(intent: Intent, *, k: int, evidence: dict[int, dict]) -> list[dict]:
    """The first tool calls for an intent, as `{"name", "args"}`."""
    match intent.kind:
        case "compare":
            return [_call("compare_results", a=intent.ranks[0], b=intent.ranks[1])]
        case "why":
            return [_call("explain_results", ranks=[intent.ranks[0]])]
        case "method":
            used = evidence.get(intent.ranks[0], {}).get("method")
            method = intent.method or next(m for m in ALTERNATIVES if m != used)
            return [_call("explain_results", ranks=[intent.ranks[0]], method=method)]
        case "similar":
            return [_call("similar_to", rank=intent.ranks[0], k=k)]
        case "filter":
            return [_call("filter_results", contains=intent.text)]
        case _:
            return [_call("search_images", query=intent.text, k=k)]


def next_calls(messages: list, first: list[dict], *, explain_top: int) -> list[dict]:
    """The policy's next tool calls: the plan (unless nothing it did this turn worked and
    the plan itself was tried), then one call explaining a new search's top results not
    yet explained (or tried) this turn, then nothing. A model's refused calls before a
    take-over do not count as the plan done."""
    made = calls_this_turn(messages)
    if not made:
        return first
    worked = [m for m in turn_messages(messages) if isinstance(m, ToolMessage) and
              m.status != "error"]  # fmt: skip
    tried = {call_key(c["name"], c["args"]) for c in made}
    if not worked and not tried & {call_key(c["name"], c["args"]) for c in first}:
        return first
    new = latest_search(turn_messages(messages))
    if new is None:
        return []
    tried = {r for c in made if c["name"] == "explain_results" for r in c["args"].get("ranks", [])}
    known = evidence_by_rank(messages)
    top = range(1, min(explain_top, len(new["results"])) + 1)
    todo = [r for r in top if r not in known and r not in tried]
    return [_call("explain_results", ranks=todo)] if todo else []


def as_message(calls: list[dict]) -> AIMessage:
    """The policy's calls as the tool-calling message a model would have sent."""
    return AIMessage(
        content="",
        tool_calls=[{"name": c["name"], "args": c["args"], "id": _id()} for c in calls],
        name="policy",
    )


def _call(name: str, **args) -> dict:
    return {"name": name, "args": args}


def _id() -> str:
    return "policy-" + uuid.uuid4().hex[:12]


# --- the template writer ----------------------------------------------------------------


def write_answer(messages: list, *, note: str | None = None) -> str:
    """A grounded answer from the artifacts alone: every sentence about a result cites a
    supported region, or says that it has none."""
    turn = turn_messages(messages)
    new = latest_search(turn)
    evidence = evidence_by_rank(messages)
    done = [
        e
        for a in artifacts(turn)
        for e in (a["evidence"] if a.get("kind") == "explanation" else [a])
        if e.get("kind") in ("evidence", "comparison")
    ]
    parts: list[str] = []
    if new is not None:
        parts.append(_describe_search(new))
        explained = sorted(r for r in evidence if r <= len(new["results"]))
        parts += [_describe_evidence(evidence[r]) for r in explained]
        parts.append(_unexplained([r["rank"] for r in new["results"] if r["rank"] not in evidence]))
    for art in done if new is None else ():
        if art["kind"] == "comparison":
            parts += _describe_comparison(art["a"], art["b"])
        else:
            parts.append(_describe_evidence(art))
    if errors := errors_this_turn(messages):
        parts.append("Some steps could not be done: " + "; ".join(errors).rstrip(".") + ".")
    if note:
        parts.append(f"I stopped early ({note}); this answer uses only what I had found by then.")
    text = " ".join(p for p in parts if p)
    return text or "I found nothing to show for that question."


def _describe_search(art: dict) -> str:
    n = len(art["results"])
    if n == 0:
        return "The search returned no images."
    scores = f"scores {art['results'][0]['score']:.3f} to {art['results'][-1]['score']:.3f}"
    if "like" in art:
        return (
            f"I ranked {n} images by how much they look like the image you pointed at ({scores})."
        )
    if "filtered" in art:
        f = art["filtered"]
        return f"Of the previous {f['from']} results, {n} mention {f['contains']!r} ({scores})."
    place = applied(art.get("fusion"))
    placed = (
        f", a third of each score from where {place['part']!r} lies"
        f" ({place['where']}{read_from(place)})"
        if place
        else ""
    )
    if count := counted(art.get("fusion")):
        placed += (
            f", a third of each score from whether {counted_by(count)} number"
            f" {count['n']} ({count['where']})"
        )
    if read := (art.get("fusion") or {}).get("marks"):
        placed += f", weighing the marks read in each figure ({', '.join(read['names'])})"
    if shown := (art.get("fusion") or {}).get("printed"):
        placed += (
            f", weighing what the words read in each figure show ({', '.join(shown['names'])})"
        )
    return (
        f"I ranked {n} images for {art['query'].get('text') or 'your image'!r} ({scores}{placed})."
    )


def _describe_evidence(ev: dict) -> str:
    if ev.get("evidence_error"):
        return f"#{ev['rank']} could not be explained: its image could not be read."
    rank, supported = ev["rank"], [r for r in ev["regions"] if _supported(r)]
    head = f"#{rank} (score {ev['score']:.3f}, {ev['method']} heatmap)"
    if not supported:
        return f"{head}: no region passed the counterfactual check, so I cite no evidence for it."
    heat = [
        r for r in supported
        if r.get("kind", "heat") == "heat" and (r.get("counterfactual") or {}).get("supported")
    ]  # fmt: skip
    words = [r for r in supported if r.get("kind") == "text"]
    colours = [r for r in supported if (r.get("colour_check") or {}).get("supported")]
    if heat:
        text = _heat_sentence(head, rank, heat[0], ev) + "".join(
            f" Removing {r['id']} at {r['box']} lowers it by "
            f"{_cosine(r['counterfactual']['score_drop'])} too [{r['id']}]."
            for r in heat[1:2]
        )
    elif words:
        text = f"{head} matches on the words read in it."
    else:
        text = f"{head} matches on the colour the query names."
    for r in words:
        text += f" {_reads(r)} [{r['id']}]."
    for r in colours[:1]:
        text += " " + _drawn(r)
    return text


def _drawn(region: dict) -> str:
    """Where a colour the query names is drawn, and what its check measured."""
    cc = region["colour_check"]
    null = max(cc["null"]["drops"] or [0.0])
    elsewhere = (
        f"boxes of its size elsewhere lower it by {null:.0%} at most"
        if null > 0
        else "boxes of its size elsewhere do not lower it"
    )
    return (
        f"Its {region['colour']} is drawn in {region['id']} at {region['box']}: painted over, "
        f"the {region['colour']} share of its ink falls from {cc['score_before']:.0%} to "
        f"{cc['score_after']:.0%}, where {elsewhere} [{region['id']}]."
    )


def _heat_sentence(head: str, rank: int, top: dict, ev: dict) -> str:
    cf = top["counterfactual"]
    null = max(cf.get("null", {}).get("drops") or [0.0])
    text = (
        f"{head} matches mostly in {top['id']} at {top['box']}, {100 * top['mass']:.0f}% of the "
        f"heat: removing it lowers the image's cosine by {_cosine(cf['score_drop'])}, where boxes "
        f"of its size elsewhere lower it by {_cosine(null)} at most"
    )
    if cf["rank_after"] != rank:
        text += f", and would move it to rank {cf['rank_after']}"
    if top.get("text"):
        text += f"; it reads {_quoted(top['text'])} there"
    helped = [t for t in ev.get("query_terms") or [] if t["contribution"] > 0]
    if terms := sorted(helped, key=lambda t: -t["contribution"])[:2]:
        text += "; the query words that added most to the score were " + " and ".join(
            f"{t['term']!r} ({t['contribution']:+.3f})" for t in terms
        )
    return text + f" [{top['id']}]."


def _cosine(drop: float) -> str:
    """A change of cosine to two significant digits (drops are often thousandths).

    >>> _cosine(0.000653), _cosine(0.01255), _cosine(-0.0001)
    ('0.00065', '0.013', '0')
    """
    return f"{drop:.2g}" if drop > 0 else "0"


ROLE_WORDS = {
    "title": "its title reads", "legend": "its legend reads", "xlabel": "its x-axis label reads",
    "ylabel": "its y-axis label reads", "tick": "a tick label reads", "label": "it reads",
}  # fmt: skip


def _reads(region: dict) -> str:
    """What a text region says, as a sentence start: "Its legend reads “a” and “b”"."""
    saying = ROLE_WORDS.get(region.get("role") or "label", "it reads")
    return saying[0].upper() + saying[1:] + " " + _quoted(region["text"]) + f" ({region['id']})"


def _quoted(text: str) -> str:
    """Lines read in an image, each in quotes.

    >>> _quoted("circmean | mean")
    '“circmean” and “mean”'
    """
    parts = [f"“{p.strip()}”" for p in text.split("|") if p.strip()][:4]
    return " and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _describe_comparison(a: dict, b: dict) -> list[str]:
    hi, lo = (a, b) if a["score"] >= b["score"] else (b, a)
    cited = [f"[{_top(e)['id']}]" for e in (hi, lo) if _top(e)]
    lacking = [f"#{e['rank']}" for e in (hi, lo) if not _top(e)]
    text = (
        f"#{hi['rank']} ranks above #{lo['rank']} by a margin of {hi['score'] - lo['score']:.3f} "
        f"({hi['score']:.3f} against {lo['score']:.3f})"
    )
    if lacking:
        verb, it = ("has", "it") if len(lacking) == 1 else ("have", "them")
        text += (
            f"; {' and '.join(lacking)} {verb} no supported region, so nothing is cited for {it}"
        )
    return [
        text + (" " + "".join(cited) if cited else "") + ".",
        *map(_describe_evidence, (hi, lo)),
    ]


def _unexplained(ranks: list[int]) -> str:
    if not ranks:
        return ""
    if len(ranks) == 1:
        return f"Result #{ranks[0]} was ranked but not explained."
    return f"Results #{ranks[0]} to #{ranks[-1]} were ranked but not explained."


def _supported(region: dict) -> bool:
    return is_supported(region)


def _top(ev: dict) -> dict | None:
    return next((r for r in ev["regions"] if _supported(r)), None)
