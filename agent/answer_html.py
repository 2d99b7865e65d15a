"""The `Answer` record and its notebook view.

`Answer.to_dict()` is what `evident ask --json` prints: the search JSON (each result with
its evidence when it was explained) plus `answer`, `citations`, `grounding`, `steps` and
`llm`. `_repr_html_` is what Jupyter shows: ranked thumbnails (inline base64 PNG, at most
256 px) with the evidence overlays and their numbered boxes, the answer with its citations
marked, the grounding figures and the step trace. Every caption, file name and answer
text is HTML-escaped. Not handled: overlays for images that were never explained (the plain
thumbnail is shown).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from evident.graphs.state import evidence_by_rank, latest_search
from evident.graphs.verify import is_supported
from evident.tools.errors import InputError
from evident.tools.ingest.images import read_image

THUMB = 256
ENGINE_KEYS = ("heatmap", "regions", "query_terms", "faithfulness")
SEARCH_KEYS = ("query", "model", "collection", "scoring", "timings_ms")


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str
    results: tuple[Mapping[str, Any], ...]  # search results, with their evidence if explained
    search: Mapping[str, Any]  # query, model, collection, scoring of the latest search
    citations: tuple[Mapping[str, Any], ...]
    grounding: Mapping[str, Any]
    steps: tuple[Mapping[str, Any], ...]
    llm: str
    thread: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **dict(self.search),
            "results": [dict(r) for r in self.results],
            "question": self.question,
            "answer": self.answer,
            "citations": [dict(c) for c in self.citations],
            "grounding": dict(self.grounding),
            "steps": [dict(s) for s in self.steps],
            "llm": self.llm,
            "thread": self.thread,
            "note": self.note,
        }

    def _repr_html_(self) -> str:
        return render_html(self)


def answer_from_state(state: Mapping[str, Any], *, llm: str, thread: str) -> Answer:
    """The record of the latest turn of a graph state."""
    messages = state.get("messages", [])
    search, evidence = latest_search(messages) or {}, evidence_by_rank(messages)
    results = []
    for r in search.get("results", []):
        ev = evidence.get(r["rank"], {})
        results.append(r | {k: ev[k] for k in ENGINE_KEYS if k in ev})
    turn = state.get("turn")
    steps = tuple(
        {k: v for k, v in s.items() if k != "turn"}
        for s in state.get("steps", [])
        if s.get("turn") == turn
    )
    return Answer(
        question=state.get("question", ""),
        answer=state.get("answer", ""),
        results=tuple(results),
        search={k: search[k] for k in SEARCH_KEYS if k in search},
        citations=tuple(state.get("citations", [])),
        grounding=dict(state.get("grounding", {})),
        steps=steps,
        llm=llm,
        thread=thread,
        note=state.get("note"),
    )


def render_html(a: Answer) -> str:
    e = html.escape
    cited = {c["id"]: c for c in a.citations}
    text = re.sub(r"R\d+\.\d+", lambda m: _mark(m.group(0), cited), e(a.answer))
    figures = "".join(_figure(r, cited) for r in a.results)
    g = a.grounding
    ground = (
        f"{g.get('sentences', 0)} sentences, {g.get('cited', 0)} regions cited, "
        f"{g.get('valid', 0)} valid, {g.get('supported', 0)} supported, "
        f"{len(g.get('removed', []))} sentences removed"
    )
    removed = "".join(
        f"<li><s>{e(r['sentence'])}</s> — {e('; '.join(r['why']))}</li>"
        for r in g.get("removed", [])
    )
    rows = "".join(
        f"<tr><td>{e(str(s.get('node')))}</td><td>{e(str(s.get('tool') or ''))}</td>"
        f"<td><code>{e(str(s.get('arguments') or ''))}</code></td>"
        f"<td>{s.get('ms') or 0:.0f}</td><td>{e(_llm_cell(s))}</td></tr>"
        for s in a.steps
    )
    total = sum(s.get("ms") or 0 for s in a.steps)
    return (
        '<div class="evident-answer" style="font-family:sans-serif">'
        f"<p><b>{e(a.question)}</b></p><p>{text}</p>"
        f'<div style="display:flex;flex-wrap:wrap;gap:8px">{figures}</div>'
        f'<p class="evident-grounding">Grounding: {ground}.</p>'
        + (f"<ul>{removed}</ul>" if removed else "")
        + f"<details><summary>{len(a.steps)} steps, {total:.0f} ms (llm: {e(a.llm)})</summary>"
        "<table><tr><th>node</th><th>tool</th><th>arguments</th><th>ms</th><th>llm</th></tr>"
        f"{rows}</table></details></div>"
    )


def _llm_cell(step: Mapping[str, Any]) -> str:
    """The step's LLM calls (tokens in and out, seconds, constrained) and any take-over."""
    parts = [
        f"{c.get('prompt_tokens')}→{c.get('tokens')} tok, {c.get('seconds') or 0:.1f} s"
        + (", constrained" if c.get("constrained") else "")
        for c in step.get("llm") or []
    ]
    if step.get("takeover"):
        parts.append(f"policy took over: {step['takeover']}")
    return "; ".join(parts)


def _mark(rid: str, cited: Mapping[str, Mapping]) -> str:
    c = cited.get(rid)
    if c is None:
        return rid
    title = f"result #{c['rank']}, box {c['box']}, score drop {c.get('score_drop') or 0:.2g}"
    return f'<mark title="{html.escape(title)}">{rid}</mark>'


def _figure(r: Mapping[str, Any], cited: Mapping[str, Mapping]) -> str:
    e = html.escape
    overlay = (r.get("heatmap") or {}).get("overlay")
    src = _thumbnail(overlay) or _thumbnail(r["uri"])
    img = f'<img src="{src}" style="max-width:{THUMB}px"/>' if src else "<i>(image unavailable)</i>"
    marks = " ".join(
        f"{g['id']}{'' if is_supported(g) else ' ?'}"
        + (f" “{g['text']}”" if g.get("text") else "")
        + (f" ({g['colour']})" if g.get("colour") else "")
        + (" ✓" if g["id"] in cited else "")
        for g in r.get("regions", [])
    )
    return (
        f'<figure style="margin:0;max-width:{THUMB}px">{img}<figcaption>'
        f"<b>#{r['rank']}</b> {r['score']:.3f} {e(Path(r['uri']).name)}<br/>"
        f"<small>{e(r.get('caption') or '')}</small><br/><small>{e(marks)}</small>"
        "</figcaption></figure>"
    )


def _thumbnail(path: str | None) -> str | None:
    """A data URI of the image at `path`, at most `THUMB` px a side (small images are
    enlarged by whole pixels so their boxes and labels can be read); None if unreadable."""
    if not path:
        return None
    try:  # the file may have changed since it was indexed: into a FIFO, a bomb, nothing
        im = read_image(path)
    except InputError:
        return None
    im.thumbnail((THUMB, THUMB))
    if (times := THUMB // 2 // max(im.size)) > 1:
        im = im.resize((im.width * times, im.height * times), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
