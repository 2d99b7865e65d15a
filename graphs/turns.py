"""What the model is sent: the system prompt, the planning turn, the writer's turn, the
repair turn, and feedback on malformed tool calls. Templates live in `prompts/`; every
caption, file name and metadata value reaches them through `fence` (a data block).

Vision-language models (a chat model whose `multimodal` is true) also get, on the writer's
turn, each explained result's overlay: the image with its numbered evidence boxes, so they
can say what a region shows. Text-only models get words alone.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from evident.graphs.context import Ctx
from evident.graphs.state import (
    State,
    errors_this_turn,
    evidence_by_rank,
    latest_search,
    turn_messages,
)
from evident.graphs.verify import is_supported
from evident.prompts.render import fence, render

EARLIER = 2  # the last question and answer: the results block carries the rest
COMPLAINTS = 6  # repair complaints listed; more are counted


def system(ctx: Ctx) -> SystemMessage:
    return SystemMessage(render("system", max_tool_calls=ctx.budgets.tool_calls))


def for_agent(state: State, ctx: Ctx) -> list:
    """System prompt, earlier questions and answers, then this turn: the question rendered
    by the plan template (with the results already shown, fenced), and the tool calls
    and results so far."""
    messages = state["messages"]
    current = turn_messages(messages)
    before = messages[: len(messages) - len(current) - 1]
    earlier = [
        m for m in before
        if isinstance(m, HumanMessage) or (isinstance(m, AIMessage) and m.name == "evident")
    ][-EARLIER:]  # fmt: skip
    question = render(
        "plan", question=state["question"], has_image=bool(state.get("image")),
        previous=previous_results(before),
    )  # fmt: skip
    return [system(ctx), *earlier, HumanMessage(question), *current]


def previous_results(messages: list) -> str:
    """One line per result already shown, with its regions' checks (for follow-ups)."""
    search = latest_search(messages)
    if search is None:
        return ""
    evidence = evidence_by_rank(messages)
    lines = []
    for r in search["results"]:
        regions = evidence.get(r["rank"], {}).get("regions", [])
        checked = ", ".join(
            f"{g['id']} {'passed' if is_supported(g) else 'failed'}" for g in regions
        )
        lines.append(f"#{r['rank']} {Path(r['uri']).name} score {r['score']:.3f} {checked}".strip())
    return "\n".join(lines)


def for_writer(state: State, ctx: Ctx) -> list:
    """The writer's messages: the evidence as data, and overlays for vision models."""
    search = latest_search(state["messages"]) or {"results": []}
    evidence = evidence_by_rank(state["messages"])
    results = []
    for r in search["results"]:
        regions = [
            {"id": g["id"], "box": g["box"], "supported": is_supported(g),
             "score_drop": (g.get("counterfactual") or {}).get("score_drop", 0.0),
             "reads": g.get("text") or "", "role": g.get("role") or "",
             "colour": g.get("colour") or ""}
            for g in evidence.get(r["rank"], {}).get("regions", [])
        ]  # fmt: skip
        results.append({
            "rank": r["rank"], "name": Path(r["uri"]).name, "score": r["score"],
            "regions": regions, "caption": r.get("caption"), "metadata": r.get("metadata"),
        })  # fmt: skip
    # a refusal can quote a file name, text a stranger chose: data, fenced like the rest
    failed = [fence(e, "failed_step") for e in errors_this_turn(state["messages"])]
    passed = [g["id"] for r in results for g in r["regions"] if g["supported"]]
    text = render("write", question=state["question"], results=results, failed=failed,
                  example=passed[0] if passed else "", note=state.get("note") or "")  # fmt: skip
    content: list = [{"type": "text", "text": text}]
    if getattr(ctx.llm, "multimodal", False):
        content += _overlays(evidence)
    return [system(ctx), HumanMessage(content if len(content) > 1 else text)]


def for_repair(state: State, ctx: Ctx) -> list:
    evidence = evidence_by_rank(state["messages"])
    ok = [g["id"] for ev in evidence.values() for g in ev["regions"] if is_supported(g)]
    prompt = render("repair", answer=state["draft"], complaints=complaints(state["problems"]),
                    valid_ids=ok)  # fmt: skip
    return [system(ctx), HumanMessage(prompt)]


def complaints(problems: list[dict], cap: int = COMPLAINTS) -> list[str]:
    """The verifier's problems as lines for the repair prompt: each reason once (with the
    sentences it concerns), at most `cap` lines, then how many more there were.

    >>> complaints([{"sentence": i, "why": "R9.9 is not a region"} for i in range(3)])
    ['sentences 1, 2, 3: R9.9 is not a region']
    """
    by_why: dict[str, list[int]] = {}
    for p in problems:
        by_why.setdefault(p["why"], []).append(p["sentence"] + 1)
    lines = [
        f"sentence{'s' if len(n) > 1 else ''} {', '.join(map(str, dict.fromkeys(n)))}: {why}"
        for why, n in by_why.items()
    ]
    if len(lines) > cap:
        lines = [*lines[:cap], f"... and {len(lines) - cap} more problems of the same kinds"]
    return lines


def feedback(reply: AIMessage) -> list[ToolMessage]:
    """An error result for each malformed call, so the model can try again."""
    return [
        ToolMessage(
            f"Your call to {c.get('name')!r} could not be used:\n"
            f"{fence(c.get('error') or 'invalid', 'error')}\n"
            "Call the tool again with valid JSON arguments.",
            tool_call_id=c["id"],
            name=c.get("name") or "unknown",
            status="error",
        )  # fmt: skip
        for c in reply.invalid_tool_calls
    ]


def with_ids(reply: AIMessage) -> AIMessage:
    """Malformed calls get ids too, so their error results pair with them."""
    bad = [
        {**c, "id": c.get("id") or f"invalid-{uuid.uuid4().hex[:8]}"}
        for c in reply.invalid_tool_calls
    ]
    return reply.model_copy(update={"invalid_tool_calls": bad}) if bad else reply


def text_of(reply) -> str:
    """A reply's text, whether its content is a string or a list of blocks."""
    content = reply.content
    if isinstance(content, list):
        content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def _overlays(evidence: dict[int, dict]) -> list[dict]:
    blocks: list[dict] = []
    for rank in sorted(evidence):
        path = (evidence[rank].get("heatmap") or {}).get("overlay")
        if path and Path(path).is_file():
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            blocks += [
                {"type": "text", "text": f"#{rank} with its numbered evidence regions:"},
                {"type": "image", "base64": data, "mime_type": "image/png"},
            ]
    return blocks
