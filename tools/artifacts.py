"""Reading the tools' artifacts back out of a conversation's message log.

Results and evidence are never copied into the graph state: they are the artifacts of the
tool messages (`response_format="content_and_artifact"`), so the message log is the one
record of what the tools found. The tools read it to resolve `#rank` against the latest
search; the graph reads it to write and verify the answer.

Artifact kinds: `search` (`search_images`, `similar_to`, `filter_results`), `explanation`
(`explain_results`: one evidence record per rank) and `comparison` (`compare_results`).
Region ids `R<rank>.<n>` name ranks of the latest search; evidence made before it is stale
and ignored.
"""

from __future__ import annotations

from langchain_core.messages import AnyMessage, ToolMessage


def artifacts(messages: list[AnyMessage]) -> list[dict]:
    """The structured artifacts of successful tool calls, oldest first."""
    return [
        m.artifact
        for m in messages
        if isinstance(m, ToolMessage) and m.status != "error" and isinstance(m.artifact, dict)
    ]


def latest_search(messages: list[AnyMessage]) -> dict | None:
    """The most recent search artifact."""
    found = [a for a in artifacts(messages) if a.get("kind") == "search"]
    return found[-1] if found else None


def evidence_by_rank(messages: list[AnyMessage]) -> dict[int, dict]:
    """Evidence for ranks of the latest search, the newest per rank (another method wins)."""
    out: dict[int, dict] = {}
    for a in artifacts(messages):
        if a.get("kind") == "search":
            out = {}
        elif a.get("kind") == "explanation":
            out |= {e["rank"]: e for e in a["evidence"]}
        elif a.get("kind") == "comparison":
            out[a["a"]["rank"]], out[a["b"]["rank"]] = a["a"], a["b"]
    return out
