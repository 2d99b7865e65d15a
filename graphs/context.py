"""The run context: settings and heavy objects, constant for one run, built by one factory.

Nodes read it as `runtime.context`, tools as `runtime.context` of their `ToolRuntime`;
nothing heavy is a module global and nothing heavy enters the checkpointed state.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the types, without importing torch or chromadb
    from langchain_core.language_models import BaseChatModel

    from evident.tools.encoders import Encoder
    from evident.tools.store import Store

log = logging.getLogger(__name__)

MAX_K = 50


@dataclass(frozen=True)
class Budgets:
    """Limits of one answer. On exhaustion the graph answers with what it has and says so.

    `repeats` is how many identical tool calls (same name and arguments within one turn)
    are run again before the run stops; `repairs` the verifier's repair rounds."""

    tool_calls: int = 8
    seconds: float = 300.0
    repeats: int = 1
    repairs: int = 1

    @property
    def recursion_limit(self) -> int:
        """Graph steps a run may take: every tool round is two (agent, tools), and
        plan, write, verify and the repair rounds come on top. The budgets above stop a
        run first; this limit is the backstop."""
        return 2 * self.tool_calls + 2 * self.repairs + 8


@dataclass(frozen=True)
class Ctx:
    store: Store  # open for the run
    collection: str
    encoder: Encoder
    text_embedder: Any | None = None  # evident.tools.text_embed.TextEmbedder or alike
    llm: BaseChatModel | None = None  # None: the deterministic policy
    llm_name: str = "none"
    out_dir: Path | None = None  # where heatmap and overlay PNGs go
    k: int = 5
    method: str | None = None  # CAM method; None: the encoder's default
    explain_top: int = 3
    budgets: Budgets = field(default_factory=Budgets)
    # The evidence engine hooks the encoder's modules: parallel tool calls take turns.
    model_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def build_context(
    store,
    *,
    collection: str,
    model=None,
    llm=None,
    text_embedder="auto",
    out_dir: str | Path | None = None,
    k: int = 5,
    method: str | None = None,
    explain_top: int = 3,
    budgets: Budgets | None = None,
    model_lock: threading.Lock | None = None,
) -> Ctx:
    """The context for one run against an open `store`.

    `model` is an encoder or an encoder spec (None: the collection's own); `llm` a chat
    model, an LLM spec (`transformers:…`, `openai:URL#model`, `none`) or None;
    `text_embedder="auto"` loads the caption embedder only if the collection has captions.
    Pass the same `model_lock` to every run that shares the encoder.
    """
    from evident.tools.encoders import load_encoder

    encoder = model if hasattr(model, "encode_texts") else None
    if encoder is None:
        encoder = load_encoder(model or store.model_of(collection))
    if text_embedder == "auto":
        text_embedder = None
        if store.captions(collection) is not None:
            from evident.tools.text_embed import load_text_embedder

            text_embedder = load_text_embedder()
    name, chat = _llm(llm)
    return Ctx(
        store=store,
        collection=collection,
        encoder=encoder,
        text_embedder=text_embedder,
        llm=chat,
        llm_name=name,
        out_dir=Path(out_dir) if out_dir is not None else None,
        k=max(1, min(int(k), MAX_K)),
        method=method,
        explain_top=explain_top,
        budgets=budgets or Budgets(),
        model_lock=model_lock or threading.Lock(),
    )


def _llm(llm) -> tuple[str, Any | None]:
    """(name for reports, chat model or None) from a spec, a model, or None."""
    if llm is None or llm == "none":
        return "none", None
    if isinstance(llm, str):
        from evident.agent.llm import load_llm

        return llm, load_llm(llm)
    return type(llm).__name__, llm
