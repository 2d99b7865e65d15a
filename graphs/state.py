"""The answer graph's state: what changes per step, as plain data.

State is checkpointed with msgpack (the conversation lives in a SQLite checkpointer), so
it holds only messages, strings, numbers, lists, dicts and file paths. Heavy objects
(store, encoder, LLM) live in `evident.graphs.context.Ctx`.

Results and evidence are not copied into the state: they are the artifacts of the tool
messages, read back by `tools.artifacts` (re-exported here), so the message log is the one
record of what the tools found.
"""

from __future__ import annotations

import json
import operator
import re
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph.message import add_messages

from evident.tools.artifacts import artifacts, evidence_by_rank, latest_search

__all__ = ["State", "artifacts", "evidence_by_rank", "latest_search", "turn_messages"]

Mode = Literal["llm", "policy"]
_FENCED = re.compile(r"<<<data [^\n]*>>>\n(.*?)\n<<<end data>>>", re.S)


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    image: str | None  # a query image path given with the question
    turn: int  # 1 for the first question of a thread
    started: float  # time.time() when this turn began (wall-clock budget)
    plan: list[dict]  # the policy's first tool calls for this turn: [{"name", "args"}]
    fields: dict[str, list]  # the collection's metadata fields, for `where` (LLM mode)
    mode: Mode  # "policy" once the deterministic policy has taken over
    retried: int  # invalid tool calls fed back to the model this turn
    repeats: int  # identical tool calls asked for again this turn
    note: str | None  # why the run stopped early; the answer says so
    draft: str
    problems: list[dict]  # what the verifier found wrong with the draft
    repairs: int
    answer: str
    citations: list[dict]
    grounding: dict
    steps: Annotated[list[dict], operator.add]  # every turn's steps, each tagged with "turn"


def turn_messages(messages: list[AnyMessage]) -> list[AnyMessage]:
    """The messages since the latest question."""
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return messages[i + 1 :]
    return list(messages)


def call_key(name: str, args: dict[str, Any]) -> str:
    """A tool call's identity, to spot a model asking for the same thing again.

    >>> call_key("explain_results", {"ranks": [1], "method": None})
    'explain_results {"method": null, "ranks": [1]}'
    """
    return f"{name} {json.dumps(args, sort_keys=True, default=str)}"


def calls_this_turn(messages: list[AnyMessage]) -> list[dict]:
    """Every tool call the model (or the policy) made since the latest question."""
    return [c for m in turn_messages(messages) if isinstance(m, AIMessage) for c in m.tool_calls]


def errors_this_turn(messages: list[AnyMessage]) -> list[str]:
    """What the tools refused this turn (the fenced reason when there is one)."""
    out = []
    for m in turn_messages(messages):
        if isinstance(m, ToolMessage) and m.status == "error":
            found = _FENCED.search(str(m.content))
            out.append(f"{m.name}: {(found.group(1) if found else str(m.content)).strip()}")
    return out
