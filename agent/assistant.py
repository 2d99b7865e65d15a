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
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from evident.agent.answer_html import Answer, answer_from_state
from evident.agent.config import Settings
from evident.agent.llm import load_llm
from evident.graphs.answer import run_config, with_checkpointer
from evident.graphs.context import Budgets, Ctx
from evident.tools.encoders import Encoder, load_encoder
from evident.tools.errors import InputError, StoreError
from evident.tools.ingest.files import check_file
from evident.tools.lexical import word_index
from evident.tools.pipeline import Retrieval, open_retrieval
from evident.tools.store import Store

log = logging.getLogger(__name__)

__all__ = ["Answer", "Assistant"]


class Assistant:
    """Ask questions about an image collection; answers cite checked evidence regions.

    `model` is an encoder or a spec (None: the collection's own), `llm` a chat model or an
    LLM spec (`none`, `transformers:...`, `openai:URL#model`), `rerank` a reranker name;
    `out_dir` is where overlays go (default: `overlays/` in the database's folder).
    Anything not given comes from `Settings` (the environment, then defaults)."""

    def __init__(
        self,
        db: str | Path | None = None,
        model: str | Encoder | None = None,
        llm: Any = None,
        collection: str | None = None,
        *,
        history: str | Path | None = None,
        thread: str | None = None,
        out_dir: str | Path | None = None,
        k: int | None = None,
        method: str | None = None,
        rerank: str | None = None,
        budgets: Budgets | None = None,
        text_embedder: Any = "auto",
        lock_timeout: float | None = None,
        settings: Settings | None = None,
    ):
        s = settings or Settings()
        self.settings = s
        self.db = str(db or s.db)
        self.collection = collection or s.collection
        self.k, self.method, self.rerank = k or s.k, method, rerank
        self.budgets = budgets or Budgets()
        self.thread = thread or uuid.uuid4().hex[:12]
        self.out_dir = Path(out_dir) if out_dir else s.overlay_dir(self.db)
        self.history = str(history or s.history)
        self.lock_timeout = s.lock_timeout if lock_timeout is None else lock_timeout
        llm = s.llm if llm is None else llm
        self._model, self._text = model or s.model, text_embedder
        self._parts: tuple | None = None  # encoder, text embedder, reranker, once loaded
        self._words = None  # the collection's lexical index, kept while it is current
        self._llm = llm if not isinstance(llm, str) else None
        self._llm_spec = llm if isinstance(llm, str) else None
        self.llm_name = llm if isinstance(llm, str) else type(llm).__name__
        self._model_lock = threading.Lock()  # shared by runs: a cancelled tool may still run
        self._graph = None
        self._conn: sqlite3.Connection | None = None
        self._rewind: dict[str, dict] = {}  # thread -> checkpoint to resume from

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
        thread = thread or self.thread
        if image:  # a FIFO, a device or a huge file is refused before anything opens
            try:
                check_file(image, self.settings.max_image_bytes)
            except InputError as exc:
                raise InputError(f"cannot use query image {str(image)!r}: {exc}") from exc
        timeout = self.settings.chroma_timeout
        with Store.open(self.db, lock_timeout=self.lock_timeout, timeout=timeout) as store:
            ctx = Ctx(
                retrieval=self._retrieval(store), llm=self._chat_model(),
                llm_name=self.llm_name, out_dir=self.out_dir, k=k or self.k,
                method=method or self.method, budgets=self.budgets,
                model_lock=self._model_lock,
            )  # fmt: skip
            graph, config = self._compiled(), run_config(ctx, thread)
            start = self._start(thread)
            before = start or self._latest(thread)
            config["configurable"] |= start
            inputs = {"question": question, "image": str(image) if image else None}
            modes = ["messages", "updates", "custom"]
            finished = False
            try:
                for mode, chunk in graph.stream(inputs, config, context=ctx, stream_mode=modes):
                    yield from _events(mode, chunk)
                finished = True
            finally:
                if not finished:  # cancelled (Ctrl-C) or failed: the turn leaves no trace
                    self._undo(thread, before)
            config["configurable"].pop("checkpoint_id", None)
            state = graph.get_state(config).values
        yield "answer", answer_from_state(state, llm=self.llm_name, thread=thread)

    def _latest(self, thread: str) -> dict:
        """The thread's latest checkpoint as config keys (empty for a new thread)."""
        config = {"configurable": {"thread_id": thread}}
        found = self._compiled().get_state(config).config["configurable"]
        return {"checkpoint_id": found["checkpoint_id"]} if "checkpoint_id" in found else {}

    def _start(self, thread: str) -> dict:
        """Where the next turn of `thread` starts: the latest checkpoint, or, after a
        cancelled turn, the one before it (LangGraph forks the thread from there)."""
        return self._rewind.pop(thread, {})

    def _undo(self, thread: str, before: dict) -> None:
        if before:
            self._rewind[thread] = before
        else:  # the thread's first turn: nothing to keep
            self._rewind.pop(thread, None)
            self._compiled().checkpointer.delete_thread(thread)

    def _retrieval(self, store: Store) -> Retrieval:
        """The collection's retrieval on this run's open store; the encoder, embedders and
        reranker are loaded on the first question and kept."""
        if self._parts is None:
            model = self._model
            if not isinstance(model, Encoder):
                model = load_encoder(
                    model or store.model_of(self.collection),
                    device=self.settings.device, offline=self.settings.offline,
                )  # fmt: skip
            found = open_retrieval(
                store, self.collection, model=model, text_embedder=self._text, rerank=self.rerank
            )
            self._parts = (found.encoder, found.text_embedder, found.reranker)
        self._words = word_index(store, self.collection, self._words)  # rebuilt if it grew
        encoder, text, reranker = self._parts
        return Retrieval(store, self.collection, encoder, text, reranker, word_index=self._words)

    def _chat_model(self):
        if self._llm is None and self._llm_spec not in (None, "none"):
            self._llm = load_llm(self._llm_spec, api_key=self.settings.openai_api_key)
        return self._llm

    def turns(self, thread: str | None = None) -> list[tuple[str, str]]:
        """The thread's (question, answer) pairs so far."""

        thread = thread or self.thread
        config = {"configurable": {"thread_id": thread} | self._rewind.get(thread, {})}
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
            conn = None
            try:
                if self.history != ":memory:":
                    Path(self.history).expanduser().parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.history, check_same_thread=False)
                conn.execute("PRAGMA schema_version")  # a file that is not SQLite fails here
            except (sqlite3.Error, OSError) as exc:
                if conn is not None:
                    conn.close()
                raise StoreError(
                    f"cannot keep the conversation in {self.history!r} ({exc}); pass another "
                    "--history file, or ':memory:' to keep nothing."
                ) from exc
            self._conn = conn
            self._graph = with_checkpointer(SqliteSaver(conn))
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
