"""The `Assistant`: one object behind `evident ask`, `evident chat` and notebooks.

    from evident.agent.assistant import Assistant
    with Assistant(db="~/evident-db", llm="none") as assistant:
        answer = assistant.ask("red circles on a dark background")
        answer                      # in Jupyter: thumbnails, overlays, the cited answer
        answer.to_dict()            # the search JSON + answer, citations, grounding, steps, llm
        assistant.ask("why is #2 below #1?")   # the same thread: a follow-up

Conversations live in a SQLite checkpointer (`history`, default
`$XDG_DATA_HOME/evident/chat.sqlite`; `":memory:"` keeps nothing), one thread per
`Assistant` unless `thread=` names one. The database is opened (and locked) only while a
question is answered; the encoder and LLM are loaded on the first question and kept.
Everything runs synchronously, so `ask` works inside a running event loop (Jupyter)
without `asyncio.run`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evident.agent.answer_html import Answer, answer_from_state

log = logging.getLogger(__name__)

__all__ = ["Answer", "Assistant", "default_history", "run_ask"]


def default_history() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return os.environ.get("EVIDENT_HISTORY") or str(Path(base) / "evident" / "chat.sqlite")


class Assistant:
    """Ask questions about an image collection; answers cite checked evidence regions."""

    def __init__(
        self,
        db: str | Path | None = None,
        model=None,
        llm="none",
        collection: str | None = None,
        *,
        history: str | Path | None = None,
        thread: str | None = None,
        out_dir: str | Path | None = None,
        k: int = 5,
        method: str | None = None,
        budgets=None,
        text_embedder="auto",
        lock_timeout: float = 10.0,
    ):
        from evident.agent.config import Settings

        settings = Settings()
        self.db = str(db or settings.db)
        self.collection = collection or settings.collection
        self.k, self.method, self.budgets = k, method, budgets
        self.thread = thread or uuid.uuid4().hex[:12]
        self.out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="evident-"))
        self.history = str(history or default_history())
        self.lock_timeout = lock_timeout
        self._model, self._llm, self._text = model, llm, text_embedder
        self.llm_name = llm if isinstance(llm, str) else type(llm).__name__ if llm else "none"
        self._model_lock = threading.Lock()  # shared by runs: a cancelled tool may still run
        self._graph = None
        self._conn: sqlite3.Connection | None = None

    def ask(
        self, question: str, image: str | None = None, thread: str | None = None, **options
    ) -> Answer:
        """Answer one question (a follow-up when the thread has earlier ones)."""
        answer = None
        for kind, value in self.stream(question, image, thread, **options):
            if kind == "answer":
                answer = value
        return answer

    def stream(
        self,
        question: str,
        image: str | None = None,
        thread: str | None = None,
        *,
        k: int | None = None,
        method: str | None = None,
    ) -> Iterator[tuple[str, Any]]:
        """Answer while it happens: `("step", dict)`, `("status", str)`, `("token", str)`
        for the draft as it is written, `("update", node)`, then `("answer", Answer)`."""
        from evident.graphs.answer import run_config
        from evident.graphs.context import build_context
        from evident.tools.store import Store

        thread = thread or self.thread
        with Store.open(self.db, lock_timeout=self.lock_timeout) as store:
            ctx = build_context(
                store, collection=self.collection, model=self._model, llm=self._llm,
                text_embedder=self._text, out_dir=self.out_dir, k=k or self.k,
                method=method or self.method, budgets=self.budgets, model_lock=self._model_lock,
            )  # fmt: skip
            self._model, self._llm, self._text = ctx.encoder, ctx.llm, ctx.text_embedder
            graph, config = self._compiled(), run_config(ctx, thread)
            inputs = {"question": question, "image": str(image) if image else None}
            modes = ["messages", "updates", "custom"]
            for mode, chunk in graph.stream(inputs, config, context=ctx, stream_mode=modes):
                yield from _events(mode, chunk)
            state = graph.get_state(config).values
        yield "answer", answer_from_state(state, llm=self.llm_name, thread=thread)

    def turns(self, thread: str | None = None) -> list[tuple[str, str]]:
        """The thread's (question, answer) pairs so far."""
        from langchain_core.messages import AIMessage, HumanMessage

        config = {"configurable": {"thread_id": thread or self.thread}}
        messages = self._compiled().get_state(config).values.get("messages", [])
        out, question = [], None
        for m in messages:
            if isinstance(m, HumanMessage):
                question = m.content
            elif isinstance(m, AIMessage) and m.name == "evident" and question is not None:
                out.append((question, m.content))
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn, self._graph = None, None

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _compiled(self):
        if self._graph is None:
            from langgraph.checkpoint.sqlite import SqliteSaver

            from evident.graphs.answer import with_checkpointer

            if self.history != ":memory:":
                Path(self.history).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.history, check_same_thread=False)
            self._graph = with_checkpointer(SqliteSaver(self._conn))
        return self._graph


def _events(mode: str, chunk) -> Iterator[tuple[str, Any]]:
    if mode == "custom":
        for kind in ("step", "status", "token"):
            if kind in chunk:
                yield kind, chunk[kind]
    elif mode == "messages":
        message, meta = chunk
        text = message.content if isinstance(message.content, str) else ""
        if text and meta.get("langgraph_node") in ("write", "repair"):
            yield "token", text
    elif mode == "updates":
        for node in chunk:
            yield "update", node


def run_ask(args) -> int:
    """`evident ask QUESTION [--image] [--llm SPEC] [--json] [--db --collection --model --k]`."""
    from rich.console import Console

    from evident.agent.cli import emit_json

    thread = getattr(args, "thread", None)  # only a named thread is worth keeping
    history = getattr(args, "history", None) or (default_history() if thread else ":memory:")
    with Assistant(
        db=args.db, model=args.model, llm=getattr(args, "llm", None) or "none",
        collection=args.collection, history=history, thread=thread,
        out_dir=getattr(args, "out", None), k=getattr(args, "k", 5),
        method=getattr(args, "cam", None), lock_timeout=getattr(args, "lock_timeout", 10.0),
    ) as assistant:  # fmt: skip
        answer = assistant.ask(args.question, image=getattr(args, "image", None))
    if args.json:
        emit_json(answer.to_dict())
    else:
        from evident.agent.repl import render_answer

        render_answer(Console(), answer)
    return 0
