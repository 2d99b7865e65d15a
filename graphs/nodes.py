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
from evident.graphs.calls import CallFailed, ask_model, remaining
from evident.graphs.context import Ctx
from evident.graphs.state import (
    State,
    call_key,
    calls_this_turn,
    evidence_by_rank,
    latest_search,
    turn_messages,
)
from evident.graphs.verify import (
    check,
    citations,
    clean_draft,
    grounding,
    is_supported,
    remove_failing,
)
from evident.tools.agent_tools import metadata_fields, tool_specs
from evident.tools.limits import MAX_K

log = logging.getLogger(__name__)

NOTHING_LEFT = "I could not write an answer whose claims the evidence supports."
K_FOR_MODELS = 20  # the largest `k` a model may ask for (more if the person set a larger k)


def plan(state: State, runtime: Runtime[Ctx]) -> dict:
    """Start a turn: the question joins the conversation, counters reset, and the
    policy's first calls are planned from the question alone."""
    t0, ctx, messages = time.perf_counter(), runtime.context, state.get("messages", [])
    intent = policy.parse_intent(state["question"], has_results=bool(latest_search(messages)))
    first = policy.plan(intent, k=ctx.k, evidence=evidence_by_rank(messages))
    turn = state.get("turn", 0) + 1
    fields = metadata_fields(ctx.retrieval) if ctx.llm is not None else {}
    return {
        "messages": [*_close_dangling(messages), HumanMessage(state["question"])],
        "turn": turn, "started": time.time(), "plan": first, "fields": fields,
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
    if remaining(ctx, state["started"]) <= 0:
        return _stop(runtime, state, steps, t0, f"the {budgets.seconds:g} s time budget ran out")
    new, update, info = _propose(state, ctx)
    if update.get("note"):  # the time budget ran out while the model was thinking
        return _stop(runtime, state, steps, t0, update["note"], new, update, info)
    reply = new[-1] if new and isinstance(new[-1], AIMessage) else None
    if reply is not None and reply.tool_calls:
        room = budgets.tool_calls - len(made)
        seen = {call_key(c["name"], c["args"]) for c in made}
        repeats = state["repeats"] + sum(
            call_key(c["name"], c["args"]) in seen for c in reply.tool_calls
        )
        if room <= 0:
            why = f"the budget of {budgets.tool_calls} tool calls was used up"
            return _stop(runtime, state, steps, t0, why, new[:-1], update, info)
        if repeats > budgets.repeats:
            if update.get("mode", state["mode"]) == "llm":
                why = "the model asked for the same tool call again"
                new, more = _take_over(state, ctx, new[:-1])
                update, info = update | more, info | {"takeover": why}
                return update | {"messages": new, "steps": [*steps, _agent_step(
                    runtime, state, t0, update, info)]}  # fmt: skip
            why = "the same tool call was asked for again"
            return _stop(runtime, state, steps, t0, why, new[:-1], update, info)
        update["repeats"] = repeats
        if len(reply.tool_calls) > room:
            update["note"] = f"the budget of {budgets.tool_calls} tool calls was used up"
            new[-1] = reply.model_copy(update={"tool_calls": reply.tool_calls[:room]})
    step = _agent_step(runtime, state, t0, update, info)
    return update | {"messages": new, "steps": [*steps, step]}


def _agent_step(runtime, state: State, t0: float, update: dict, info: dict) -> dict:
    return _step(runtime, state["turn"], "agent", t0, mode=update.get("mode", state["mode"]),
                 **info)  # fmt: skip


def write(state: State, runtime: Runtime[Ctx]) -> dict:
    """Draft the answer: the model writes it when there is checked evidence to cite,
    else (and when the model cannot) the template writer does."""
    t0, ctx = time.perf_counter(), runtime.context
    draft, info = None, {}
    if state["mode"] == "llm":
        draft, info = _model_draft(state, ctx, "writer")
    if draft is None:
        draft = policy.write_answer(state["messages"])
        for word in draft.split(" "):
            runtime.stream_writer({"token": word + " "})
    if state.get("note"):
        draft += (
            f" I stopped early ({state['note']}); this answer uses only what I had found by then."
        )
    return {"draft": draft.strip(), "steps": [_step(runtime, state["turn"], "write", t0, **info)]}


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
    text = clean_draft(text) or NOTHING_LEFT  # markup never reaches an answer or history
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
    draft, info = None, {}
    if state["mode"] == "llm":
        draft, info = _model_draft(state, ctx, "repair")
    if draft is None:
        draft = policy.write_answer(state["messages"])
    step = _step(runtime, state["turn"], "repair", t0, problems=len(state["problems"]), **info)
    return {"draft": draft.strip(), "repairs": state["repairs"] + 1, "steps": [step]}


def _model_draft(state: State, ctx: Ctx, kind: str) -> tuple[str | None, dict]:
    """The model's draft (or repair) with its markup cleaned off, and what to record; None
    when the template writer must write instead, and the record says why."""
    if not any(is_supported(g) for ev in evidence_by_rank(state["messages"]).values()
               for g in ev["regions"]):  # fmt: skip
        return None, {"writer": "template", "why": "no checked region to cite"}
    prompt = turns.for_writer(state, ctx) if kind == "writer" else turns.for_repair(state, ctx)
    try:
        reply, call = ask_model(ctx.llm, prompt, ctx, state["started"], kind)
    except CallFailed as e:
        log.warning("the %s call was abandoned: %s", kind, e)
        return None, {"writer": "template", "why": str(e)}
    info = {"llm": [call.to_step()]}
    draft = clean_draft(turns.text_of(reply))
    if not draft:
        return None, info | {"writer": "template", "why": "the model wrote nothing usable"}
    return draft, info


# --- the model's side ---------------------------------------------------------------------


def _propose(state: State, ctx: Ctx) -> tuple[list, dict, dict]:
    """New messages ending with the proposal, state updates, and what the step records
    (the LLM calls, and why the policy took over if it did).

    The model's call is drawn from tools narrowed to this step (`tool_specs`): ranks of
    results that exist, the collection's own metadata fields; until a tool has succeeded
    this turn it must call one (`tool_choice="required"`). Malformed calls are fed back
    once per turn. The deterministic policy takes over for the rest of the turn when the
    calls stay malformed, when the model would answer although no search succeeded this
    turn (or a follow-up got no call), when it repeats a call, or when it does not answer
    in time."""
    if state["mode"] == "policy":
        calls = policy.next_calls(state["messages"], state["plan"], explain_top=ctx.explain_top)
        return ([policy.as_message(calls)] if calls else []), {}, {}

    messages = state["messages"]
    search = latest_search(messages)
    specs = tool_specs(
        results=len(search["results"]) if search else 0,
        fields=state.get("fields") or {},
        k_max=min(MAX_K, max(K_FOR_MODELS, ctx.k)),
    )
    required = _why_not_answer(state, messages) is not None
    model = ctx.llm.bind_tools(specs, tool_choice="required" if required else None)
    prompt, new, records = turns.for_agent(state, ctx), [], []
    for attempt in range(2 - state["retried"]):
        try:
            reply, call = ask_model(model, prompt + new, ctx, state["started"], "tool")
        except CallFailed as e:
            return _call_failed(state, ctx, new, records, str(e))
        records.append(call.to_step())
        if call.finish == "timeout":
            return _call_failed(state, ctx, new, records, "the LLM's step ran out of time")
        reply = turns.with_ids(reply)
        if reply.tool_calls or not reply.invalid_tool_calls:
            if reply.invalid_tool_calls:  # run the good calls; drop the bad ones, said in the log
                log.info("dropped %d malformed tool call(s)", len(reply.invalid_tool_calls))
                reply = reply.model_copy(update={"invalid_tool_calls": []})
            why = None if reply.tool_calls else _why_not_answer(state, messages + new)
            if why is None:
                return [*new, reply], ({"retried": 1} if attempt else {}), {"llm": records}
            log.warning("%s; the deterministic policy takes over", why)
            new, update = _take_over(state, ctx, new)
            return new, update, {"llm": records, "takeover": why}
        new += [reply, *turns.feedback(reply)]
    why = "the model's tool calls stayed malformed"
    log.warning("%s; the deterministic policy takes over", why)
    new, update = _take_over(state, ctx, new)
    return new, update, {"llm": records, "takeover": why}


def _why_not_answer(state: State, messages: list) -> str | None:
    """Why the model may not answer yet, or None: a search question needs a search that
    succeeded this turn, a follow-up at least one tool call that did."""
    current = turn_messages(messages)
    if state["plan"] and state["plan"][0]["name"] == "search_images":
        return None if latest_search(current) else "no search succeeded this turn"
    if not any(isinstance(m, ToolMessage) and m.status != "error" for m in current):
        return f"the follow-up ({state['plan'][0]['name']}) got no tool call"
    return None


def _call_failed(state: State, ctx: Ctx, new: list, records: list, why: str) -> tuple:
    info = {"llm": records, "takeover": why}
    if remaining(ctx, state["started"]) <= 0:  # the turn's budget is spent: write now
        return new, {"note": f"the {ctx.budgets.seconds:g} s time budget ran out"}, info
    log.warning("%s; the deterministic policy takes over", why)
    new, update = _take_over(state, ctx, new)
    return new, update, info


def _take_over(state: State, ctx: Ctx, new: list) -> tuple[list, dict]:
    messages = state["messages"] + new
    calls = policy.next_calls(messages, state["plan"], explain_top=ctx.explain_top)
    return [*new, *([policy.as_message(calls)] if calls else [])], {"mode": "policy", "retried": 1}


# --- bookkeeping ----------------------------------------------------------------------------


def _stop(runtime, state, steps, t0, why: str, new=(), update=None, info=None) -> dict:
    log.info("stopping the tool loop: %s", why)
    step = _step(runtime, state["turn"], "agent", t0, stopped=why, **(info or {}))
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
