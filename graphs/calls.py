"""One LLM call of the graph, within its budgets, and the record of what it cost.

Every call gets the token budget of its kind (`max_tokens`) and a timeout (`timeout`, in
seconds): `call_seconds`, cut to what is left of the turn's wall-clock budget. Backends
stop generating at both; the graph does not trust them to, and waits for the reply in a
worker thread for no longer than the timeout (plus a moment), then goes on without it
(`CallTimeout`). An abandoned call's thread ends when its backend honours the timeout.

The record (`to_step`) is what the step trace, `ask --json` and the evaluator show:
prompt and generated tokens, seconds, whether the call was constrained, and why it ended.
"""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage

from evident.graphs.context import Ctx
from evident.tools.errors import PromptTooLong

Kind = Literal["tool", "writer", "repair"]
GRACE = 2.0  # seconds the graph waits past a call's timeout for the backend to stop


class CallFailed(Exception):
    """An LLM call that produced no reply to use: the step goes to the policy (or the
    template writer), and the reason to the step record."""


class CallTimeout(CallFailed):
    """An LLM call that did not return within its timeout."""

    def __init__(self, seconds: float):
        super().__init__(f"the LLM did not answer within {seconds:.0f} s")
        self.seconds = seconds


@dataclass(frozen=True)
class Call:
    """What one LLM call cost: a step record."""

    kind: Kind
    seconds: float
    prompt_tokens: int | None = None
    tokens: int | None = None
    constrained: bool = False
    finish: str | None = None
    calls: tuple[str, ...] = ()  # the tools a tool step called ("answer": none)
    invalid: int = 0  # malformed calls in the reply

    def to_step(self) -> dict[str, Any]:
        out = {
            "kind": self.kind, "prompt_tokens": self.prompt_tokens, "tokens": self.tokens,
            "seconds": round(self.seconds, 3), "constrained": self.constrained,
            "finish": self.finish,
        }  # fmt: skip
        if self.kind == "tool":
            out |= {"calls": list(self.calls) or ["answer"], "invalid": self.invalid}
        return out


def remaining(ctx: Ctx, started: float) -> float:
    """Seconds left of the turn's wall-clock budget (`started` is time.time())."""
    return ctx.budgets.seconds - (time.time() - started)


def ask_model(model: Any, messages: list, ctx: Ctx, started: float, kind: Kind) -> tuple:
    """`(reply, Call)` from `model` (a chat model or a tool-bound one) within the budgets;
    raises `CallTimeout` when it does not answer in time, `CallFailed` when the prompt
    does not fit the model's context."""
    budgets = ctx.budgets
    tokens = {"tool": budgets.tool_tokens, "writer": budgets.writer_tokens,
              "repair": budgets.repair_tokens}[kind]  # fmt: skip
    timeout = min(budgets.call_seconds, remaining(ctx, started))
    if timeout <= 0:
        raise CallTimeout(0)
    t0 = time.perf_counter()
    try:
        reply = _within(lambda: model.invoke(messages, max_tokens=tokens, timeout=timeout), timeout)
    except PromptTooLong as e:
        raise CallFailed(str(e)) from e
    return reply, _record(reply, kind, time.perf_counter() - t0)


def _within(fn, seconds: float) -> Any:
    """`fn()` in a worker thread that carries this context (LangGraph's streaming
    callbacks live in context variables), waited for at most `seconds` + `GRACE`."""
    context = contextvars.copy_context()
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = context.run(fn)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="evident-llm-call").start()
    if not done.wait(seconds + GRACE):
        raise CallTimeout(seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _record(reply: AIMessage, kind: Kind, seconds: float) -> Call:
    usage = getattr(reply, "usage_metadata", None) or {}
    meta = getattr(reply, "response_metadata", None) or {}
    return Call(
        kind, seconds, usage.get("input_tokens"), usage.get("output_tokens"),
        bool(meta.get("constrained")), meta.get("finish_reason"),
        tuple(c["name"] for c in reply.tool_calls), len(reply.invalid_tool_calls),
    )  # fmt: skip
