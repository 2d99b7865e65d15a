"""The answer graph's nodes: plain functions `(state, runtime) -> partial update`.

`agent` asks the model (or the deterministic policy) for tool calls and enforces the
budgets; `write` drafts the answer; `verify` holds it to the grounding contract; `repair`
gets one more draft. Each node records a step (node, tool, arguments, ms) and streams it as
a custom event `{"step": ...}`; the template writer streams its draft as `{"token": ...}`.
"""

from __future__ import annotations

import logging
import time

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.runtime import Runtime

from evident.graphs import policy, turns
from evident.graphs.context import Ctx
from evident.graphs.state import (
    State,
    call_key,
    calls_this_turn,
    evidence_by_rank,
    latest_search,
    turn_messages,
)
from evident.graphs.verify import check, citations, grounding, remove_failing
from evident.tools.agent_tools import TOOLS

log = logging.getLogger(__name__)

NOTHING_LEFT = "I could not write an answer whose claims the evidence supports."


def plan(state: State, runtime: Runtime[Ctx]) -> dict:
    """Start a turn: the question joins the conversation, counters reset, and the
    policy's first calls are planned from the question alone."""
    t0, ctx, messages = time.perf_counter(), runtime.context, state.get("messages", [])
    intent = policy.parse_intent(state["question"], has_results=bool(latest_search(messages)))
    first = policy.plan(intent, k=ctx.k, evidence=evidence_by_rank(messages))
    turn = state.get("turn", 0) + 1
    return {
        "messages": [*_close_dangling(messages), HumanMessage(state["question"])],
        "turn": turn, "started": time.time(), "plan": first,
        "mode": "llm" if ctx.llm is not None else "policy",
        "retried": 0, "repeats": 0, "note": None, "draft": "", "problems": [], "repairs": 0,
        "answer": "", "citations": [], "grounding": {},
        "steps": [_step(runtime, turn, "plan", t0, intent=intent.kind)],
    }  # fmt: skip


def agent(state: State, runtime: Runtime[Ctx]) -> dict:
    """The next tool calls, within the budgets; none means: write the answer."""
    t0, ctx, turn = time.perf_counter(), runtime.context, state["turn"]
    steps = _tool_steps(state["messages"], turn)
    for step in steps:
        runtime.stream_writer({"step": step})
    budgets, made = ctx.budgets, calls_this_turn(state["messages"])
    if time.time() - state["started"] > budgets.seconds:
        return _stop(runtime, state, steps, t0, f"the {budgets.seconds:g} s time budget ran out")
    new, update = _propose(state, ctx)
    reply = new[-1] if new and isinstance(new[-1], AIMessage) else None
    if reply is not None and reply.tool_calls:
        room = budgets.tool_calls - len(made)
        seen = {call_key(c["name"], c["args"]) for c in made}
        repeats = state["repeats"] + sum(
            call_key(c["name"], c["args"]) in seen for c in reply.tool_calls
        )
        if room <= 0:
            why = f"the budget of {budgets.tool_calls} tool calls was used up"
            return _stop(runtime, state, steps, t0, why, new[:-1], update)
        if repeats > budgets.repeats:
            why = "the same tool call was asked for again"
            return _stop(runtime, state, steps, t0, why, new[:-1], update)
        update["repeats"] = repeats
        if len(reply.tool_calls) > room:
            update["note"] = f"the budget of {budgets.tool_calls} tool calls was used up"
            new[-1] = reply.model_copy(update={"tool_calls": reply.tool_calls[:room]})
    step = _step(runtime, turn, "agent", t0, mode=update.get("mode", state["mode"]))
    return update | {"messages": new, "steps": [*steps, step]}


def write(state: State, runtime: Runtime[Ctx]) -> dict:
    t0, ctx = time.perf_counter(), runtime.context
    if state["mode"] == "llm":
        draft = turns.text_of(ctx.llm.invoke(turns.for_writer(state, ctx)))
    else:
        draft = policy.write_answer(state["messages"])
        for word in draft.split(" "):
            runtime.stream_writer({"token": word + " "})
    if state.get("note"):
        draft += (
            f" I stopped early ({state['note']}); this answer uses only what I had found by then."
        )
    return {"draft": draft.strip(), "steps": [_step(runtime, state["turn"], "write", t0)]}


def verify(state: State, runtime: Runtime[Ctx]) -> dict:
    """Check the draft; ask for one repair, or remove what still fails and finish."""
    t0, ctx = time.perf_counter(), runtime.context
    evidence = evidence_by_rank(state["messages"])
    result = check(state["draft"], evidence)
    step = _step(runtime, state["turn"], "verify", t0, problems=len(result.problems))
    if not result.ok and state["repairs"] < ctx.budgets.repairs:
        return {"problems": [p.to_dict() for p in result.problems], "steps": [step]}
    text, removed = state["draft"], []
    while not result.ok:  # each round removes at least one sentence
        text, more = remove_failing(result)
        removed += more
        result = check(text, evidence)
    if removed:
        log.info("removed %d unsupported sentence(s) from the answer", len(removed))
    text = text or NOTHING_LEFT
    return {
        "answer": text,
        "problems": [],
        "grounding": grounding(text, evidence, removed),
        "citations": citations(text, evidence),
        "messages": [AIMessage(text, name="evident")],
        "steps": [step],
    }


def repair(state: State, runtime: Runtime[Ctx]) -> dict:
    t0, ctx = time.perf_counter(), runtime.context
    if state["mode"] == "llm":
        draft = turns.text_of(ctx.llm.invoke(turns.for_repair(state, ctx)))
    else:
        draft = policy.write_answer(state["messages"])
    step = _step(runtime, state["turn"], "repair", t0, problems=len(state["problems"]))
    return {"draft": draft.strip(), "repairs": state["repairs"] + 1, "steps": [step]}


# --- the model's side ---------------------------------------------------------------------


def _propose(state: State, ctx: Ctx) -> tuple[list, dict]:
    """New messages ending with the proposal, and state updates. Malformed tool calls are
    fed back once per turn; after that the policy takes over for the rest of the turn. So
    it does when the model would answer a conversation's first question without searching:
    a person asking a retrieval assistant gets results."""
    if state["mode"] == "policy":
        calls = policy.next_calls(state["messages"], state["plan"], explain_top=ctx.explain_top)
        return ([policy.as_message(calls)] if calls else []), {}

    model, prompt, messages = (
        ctx.llm.bind_tools(TOOLS),
        turns.for_agent(state, ctx),
        state["messages"],
    )
    new: list = []
    for attempt in range(2 - state["retried"]):
        reply = turns.with_ids(model.invoke(prompt + new))
        if reply.tool_calls or not reply.invalid_tool_calls:
            if reply.invalid_tool_calls:  # run the good calls; drop the bad ones, said in the log
                log.info("dropped %d malformed tool call(s)", len(reply.invalid_tool_calls))
                reply = reply.model_copy(update={"invalid_tool_calls": []})
            if reply.tool_calls or latest_search(messages) or calls_this_turn(messages):
                return [*new, reply], ({"retried": 1} if attempt else {})
            log.warning("the model answered without searching; the deterministic policy takes over")
            return _take_over(state, ctx, new)
        new += [reply, *turns.feedback(reply)]
    log.warning("the model's tool calls stayed malformed; the deterministic policy takes over")
    return _take_over(state, ctx, new)


def _take_over(state: State, ctx: Ctx, new: list) -> tuple[list, dict]:
    messages = state["messages"] + new
    calls = policy.next_calls(messages, state["plan"], explain_top=ctx.explain_top)
    return [*new, *([policy.as_message(calls)] if calls else [])], {"mode": "policy", "retried": 1}


# --- bookkeeping ----------------------------------------------------------------------------


def _stop(runtime, state, steps, t0, why: str, new=(), update=None) -> dict:
    log.info("stopping the tool loop: %s", why)
    step = _step(runtime, state["turn"], "agent", t0, stopped=why)
    return (update or {}) | {"note": why, "messages": list(new), "steps": [*steps, step]}


def _step(runtime, turn: int, node: str, t0: float, **extra) -> dict:
    ms = round(1000 * (time.perf_counter() - t0), 1)
    step = {"turn": turn, "node": node, "tool": None, "arguments": None, "ms": ms, **extra}
    runtime.stream_writer({"step": step})
    return step


def _tool_steps(messages: list, turn: int) -> list[dict]:
    """Steps for the tool results that arrived since this turn's last tool-calling message."""
    current = turn_messages(messages)
    asked = [i for i, m in enumerate(current) if isinstance(m, AIMessage) and m.tool_calls]
    if not asked:
        return []
    calls = {c["id"]: c for c in current[asked[-1]].tool_calls}
    out = []
    for m in current[asked[-1] + 1 :]:
        if isinstance(m, ToolMessage) and m.tool_call_id in calls:
            art = m.artifact if isinstance(m.artifact, dict) else {}
            call = calls[m.tool_call_id]
            out.append({"turn": turn, "node": "tools", "tool": call["name"],
                        "arguments": call["args"], "ms": art.get("ms"),
                        "error": m.status == "error"})  # fmt: skip
    return out


def _close_dangling(messages: list) -> list[ToolMessage]:
    """Answers for tool calls an interrupted run (Ctrl-C) left without results, so the
    conversation stays well formed for chat APIs that require one."""
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return [
        ToolMessage("cancelled before it ran", tool_call_id=c["id"], name=c["name"], status="error")
        for m in messages if isinstance(m, AIMessage)
        for c in m.tool_calls if c["id"] not in answered
    ]  # fmt: skip
