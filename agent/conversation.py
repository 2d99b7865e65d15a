"""The conversation commands: `evident ask` (one question) and `evident chat` (the REPL).

Both drive the same `Assistant`; only how the answer is shown differs.
"""

from __future__ import annotations

from rich.console import Console

from evident.agent import render
from evident.agent.assistant import Assistant
from evident.agent.repl import run_chat
from evident.graphs.context import Budgets

out = Console(highlight=False)


def assistant_from(args) -> Assistant:
    """The `Assistant` that `ask` and `chat` use, from their arguments."""
    return Assistant(
        db=args.db, model=args.model, llm=args.llm, collection=args.collection,
        history=args.history, thread=args.thread,
        out_dir=args.out, k=args.k, method=args.cam, rerank=args.rerank,
        lock_timeout=args.lock_timeout, budgets=Budgets(call_seconds=args.llm_timeout),
    )  # fmt: skip


def cmd_ask(args) -> int:
    """One question. Only a named `--thread` is worth keeping, so without one the
    conversation lives in memory."""
    if args.history is None and not args.thread:
        args.history = ":memory:"
    with assistant_from(args) as assistant:
        answer = assistant.ask(args.question, image=args.image)
    if args.json:
        render.emit_json(answer.to_dict())
    else:
        render.render_answer(out, answer)
    return 0


def cmd_chat(args) -> int:
    return run_chat(assistant_from(args))
