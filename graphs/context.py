"""The run context: settings and heavy objects, constant for one run.

Nodes read it as `runtime.context`, tools as `runtime.context` of their `ToolRuntime`;
nothing heavy is a module global and nothing heavy enters the checkpointed state. The
caller (`agent.Assistant`) builds the retrieval (`tools.pipeline.open_retrieval`) and the
chat model (`agent.llm.load_llm`) and hands them in: the graph never resolves a spec.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from evident.tools.limits import check_k

if TYPE_CHECKING:  # the types, without importing torch or chromadb
    from langchain_core.language_models import BaseChatModel

    from evident.tools.pipeline import Retrieval


@dataclass(frozen=True)
class Budgets:
    """Limits of one answer. On exhaustion the graph answers with what it has and says so.

    `repeats` is how many identical tool calls (same name and arguments within one turn)
    are run again before the policy takes over; `repairs` the verifier's repair rounds.
    Each LLM call gets a token budget for its kind (a tool step is one short JSON value,
    an answer a few sentences) and at most `call_seconds`, never past the turn's
    `seconds`: a call still running then is abandoned and the turn goes on without it."""

    tool_calls: int = 8
    seconds: float = 300.0
    repeats: int = 1
    repairs: int = 1
    tool_tokens: int = 100
    writer_tokens: int = 300
    repair_tokens: int = 200
    call_seconds: float = 120.0

    @property
    def recursion_limit(self) -> int:
        """Graph steps a run may take: every tool round is two (agent, tools), and
        plan, write, verify and the repair rounds come on top. The budgets above stop a
        run first; this limit is the backstop."""
        return 2 * self.tool_calls + 2 * self.repairs + 8


@dataclass(frozen=True)
class Ctx:
    retrieval: Retrieval  # store (open for the run), collection, encoder, embedders, reranker
    llm: BaseChatModel | None = None  # None: the deterministic policy
    llm_name: str = "none"
    out_dir: Path | None = None  # where heatmap and overlay PNGs go
    k: int = 5
    method: str | None = None  # heatmap method; None: the encoder's default
    explain_top: int = 3
    budgets: Budgets = field(default_factory=Budgets)
    # The evidence engine hooks the encoder's modules: parallel tool calls take turns.
    model_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # the query vectors of this run's searches, so explaining their hits encodes no query again
    query_vectors: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_k(self.k)
