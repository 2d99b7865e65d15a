"""Tool calls read from a local model's text: find, repair, validate and clamp them.

A small model calls a tool by writing text, and the text is often almost right. This
module turns it into LangChain tool calls that a `ToolNode` can run:

    >>> tools = [{"type": "function", "function": {"name": "search_images", "parameters": {
    ...     "type": "object", "required": ["query"], "properties": {
    ...     "query": {"type": "string"}, "k": {"type": "integer", "minimum": 1, "maximum": 50}}}}}]
    >>> out = parse_tool_calls("<tool_call>{'name': 'search_images', "
    ...                        "'arguments': {query: 'cats', k: 10**15,}}</tool_call>", tools)
    >>> out.tool_calls[0]["args"], out.notes
    ({'query': 'cats', 'k': 50}, ['search_images.k: 1000000000000000 clamped to 50'])

Found: `<tool_call>{json}</tool_call>` (hermes/Qwen templates and our own protocol, see
`prompts/tool_protocol.j2`; an unclosed tag at the end counts), fenced `json` blocks, and a
bare JSON object or list. Repaired: single quotes, trailing commas, unquoted keys, `=` for
`:`, Python literals, `10**15`, unclosed brackets. Validated against each tool's JSON
schema: strings coerced to numbers/booleans, numbers clamped to minimum/maximum, unknown
arguments dropped, enums matched case-insensitively, a near-miss tool name corrected.
Anything still wrong goes to `invalid_tool_calls` with an `error` to feed back to the model.

Deliberately not handled: `$ref`/`allOf` schemas (LangChain inlines refs), string
patterns/formats, and calls written in prose ("I will now call search with...").
"""

from __future__ import annotations

import difflib
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.tool import InvalidToolCall, ToolCall, invalid_tool_call, tool_call
from langchain_core.messages.tool import tool_call_chunk as make_tool_call_chunk
from langchain_core.utils.json import parse_partial_json

from evident.agent.llm.schema import ArgumentError, coerce

__all__ = [
    "ArgumentError",
    "ParsedCalls",
    "coerce_args",
    "final_chunk",
    "new_call_id",
    "parse_tool_calls",
    "repair_json",
    "tool_call_start",
]

_TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
_FENCED = re.compile(
    r"```[ \t]*(?:json|tool_call|tool|javascript|js)?[ \t]*\n?(.*?)(?:```|$)", re.S
)
_TOKEN = re.compile(
    r"""(?P<dq>"(?:[^"\\]|\\.)*"?)
      | (?P<sq>'(?:[^'\\]|\\.)*'?)
      | (?P<pow>-?\d+\s*\*\*\s*\d+)
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<word>[A-Za-z_][\w.-]*)
      | (?P<ws>\s+)
      | (?P<other>.)""",
    re.X | re.S,
)
_LITERALS = {"true": "true", "false": "false", "null": "null", "none": "null", "nan": "null"}
_BIG = 10**30  # `10**1000000` is parsed as this, then clamped by the schema


@dataclass(frozen=True)
class ParsedCalls:
    """What a model's reply amounts to: prose `content` (tool-call text removed), valid
    `tool_calls`, `invalid_tool_calls` (with `error`), and `notes` on every repair made."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def new_call_id() -> str:
    """A fresh tool-call id, `call_<32 hex digits>`."""
    return f"call_{uuid.uuid4().hex}"


def repair_json(text: str) -> Any:
    """Parse JSON the way a small model writes it, or raise `ValueError`.

    >>> repair_json("```json\\n{'k': 10**3, query: \\"cats\\", ok: True,}\\n```")
    {'k': 1000, 'query': 'cats', 'ok': True}
    """
    text = text.strip()
    if text.startswith("```"):
        text = _FENCED.sub(r"\1", text, count=1).strip()
    try:
        return json.loads(text, strict=False)
    except json.JSONDecodeError:
        pass
    normalised = _normalise(text)
    try:
        return json.loads(normalised, strict=False)
    except json.JSONDecodeError:
        pass
    try:
        value = parse_partial_json(normalised)  # closes unclosed strings and brackets
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON even after repair: {e.msg} at character {e.pos}") from None
    if not isinstance(value, dict | list):
        raise ValueError("not JSON even after repair: no object or list")
    return value


def _normalise(text: str) -> str:
    """Rewrite near-JSON token by token: quotes, literals, keys, `=`, trailing commas."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return text  # nothing object-like: let the JSON parser say what is wrong
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text[start:])]
    out: list[str] = []
    for i, (kind, tok) in enumerate(tokens):
        after = next((t for k, t in tokens[i + 1 :] if k != "ws"), "")
        if kind == "dq":
            out.append(tok if len(tok) > 1 and tok.endswith('"') else tok + '"')
        elif kind == "sq":
            inner = tok[1:-1] if len(tok) > 1 and tok.endswith("'") else tok[1:]
            out.append(json.dumps(inner.replace("\\'", "'")))
        elif kind == "pow":
            base, exp = (int(p) for p in tok.split("**"))
            too_big = exp * math.log10(max(abs(base), 1)) > 30
            out.append(str(math.copysign(_BIG, base) if too_big else base**exp).split(".")[0])
        elif kind == "word":
            if tok.lower() in _LITERALS and after not in (":", "="):
                out.append(_LITERALS[tok.lower()])
            else:
                out.append(json.dumps(tok))  # a bare key, or a bare string value
        elif tok == "=":
            out.append(":")
        elif tok in "}]" and out and out[-1] == ",":
            out[-1] = tok  # trailing comma
        elif kind != "ws":
            out.append(tok)
    return "".join(out)


def coerce_args(args: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate `args` against a tool's parameter schema, fixing what can be fixed.

    Returns the cleaned arguments and a note per change; raises `ArgumentError` when an
    argument is missing or cannot be made to fit.
    """
    notes: list[str] = []
    return coerce(args, schema, "", notes), notes


def tool_call_start(text: str) -> int | None:
    """Where a tool call may begin in a partial reply, for holding it back while streaming:
    at a `<tool_call>` tag, a code fence, a leading `{`/`[`, or a trailing prefix of these."""
    hits = [i for i in (text.find("<tool_call"), text.find("```")) if i >= 0]
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        hits.append(len(text) - len(stripped))
    for marker in ("<tool_call>", "```"):
        for n in range(len(marker) - 1, 0, -1):
            if text.endswith(marker[:n]):
                hits.append(len(text) - n)
                break
    return min(hits) if hits else None


def parse_tool_calls(text: str, tools: Sequence[dict[str, Any]]) -> ParsedCalls:
    """Split a model's reply into prose and tool calls for the given OpenAI-format tools.

    Tagged blocks are always calls. A fenced or bare JSON value counts as a call only when
    it cannot be parsed (an attempt gone wrong) or names a tool (`"name"`, `"tool"`,
    `"function"`); other JSON, such as an example in an answer, stays in the content."""
    specs = {spec["name"]: spec for spec in (t.get("function", t) for t in tools)}
    spans = []
    for start, end, raw, tagged in _call_spans(text):
        try:
            value: Any = repair_json(raw)
        except ValueError as e:
            value = e
        if tagged or isinstance(value, ValueError) or _names_a_tool(value):
            spans.append((start, end, raw, value))
    content = text
    for start, end, _, _ in reversed(spans):
        content = content[:start] + content[end:]
    out = ParsedCalls(content=re.sub(r"\n{3,}", "\n\n", content).strip())
    for _, _, raw, value in spans:
        if isinstance(value, ValueError):
            out.invalid_tool_calls.append(_invalid(None, raw, str(value)))
        elif isinstance(value, dict):
            _add_call(out, value, raw, specs)
        elif all(isinstance(item, dict) for item in value):
            for item in value:
                _add_call(out, item, json.dumps(item, ensure_ascii=False), specs)
        else:
            out.invalid_tool_calls.append(_invalid(None, raw, "a tool call must be a JSON object"))
    return out


def _names_a_tool(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    keys = ("name", "tool", "tool_name", "function")
    return bool(items) and all(isinstance(v, dict) and any(k in v for k in keys) for v in items)


def _call_spans(text: str) -> list[tuple[int, int, str, bool]]:
    """(start, end, raw JSON, tagged) of each possible call, in order."""
    tagged = [(m.start(), m.end(), m.group(1), True) for m in _TAGGED.finditer(text)]
    if tagged:
        return tagged
    fenced = [(m.start(), m.end(), m.group(1), False) for m in _FENCED.finditer(text)]
    fenced = [s for s in fenced if s[2].lstrip()[:1] in ("{", "[")]
    if fenced:
        return fenced
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        return [(len(text) - len(stripped), len(text), stripped, False)]
    return []


def _add_call(out: ParsedCalls, item: dict[str, Any], raw: str, specs: dict[str, dict]) -> None:
    fn = item.get("function")
    if isinstance(fn, dict):  # OpenAI wire format {"function": {"name", "arguments"}}
        item = fn
    name = item.get("name") or item.get("tool") or item.get("tool_name") or fn
    args = next((item[k] for k in ("arguments", "parameters", "args", "input") if k in item), {})
    if not isinstance(name, str) or not name:
        out.invalid_tool_calls.append(_invalid(None, raw, 'the call has no "name"'))
        return
    resolved = _resolve_name(name, specs)
    if resolved is None:
        known = ", ".join(sorted(specs)) or "none"
        out.invalid_tool_calls.append(_invalid(name, raw, f"unknown tool {name!r}; tools: {known}"))
        return
    if resolved != name:
        out.notes.append(f"tool name {name!r} read as {resolved!r}")
    try:
        if isinstance(args, str):
            args = repair_json(args) if args.strip() else {}
        if not isinstance(args, dict):
            raise ArgumentError(f"arguments must be a JSON object, got {type(args).__name__}")
        schema = specs[resolved].get("parameters") or {"type": "object", "properties": {}}
        clean, notes = coerce_args(args, schema)
    except (ArgumentError, ValueError) as e:
        out.invalid_tool_calls.append(_invalid(resolved, raw, f"{resolved}: {e}"))
        return
    out.notes.extend(f"{resolved}{note}" for note in notes)
    out.tool_calls.append(tool_call(name=resolved, args=clean, id=new_call_id()))


def _resolve_name(name: str, specs: dict[str, dict]) -> str | None:
    if name in specs:
        return name
    canon = {re.sub(r"[^a-z0-9]", "", n.lower()): n for n in specs}
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if key in canon:
        return canon[key]
    close = difflib.get_close_matches(key, list(canon), n=1, cutoff=0.85)
    return canon[close[0]] if close else None


def _invalid(name: str | None, raw: str, error: str) -> InvalidToolCall:
    return invalid_tool_call(name=name, args=raw.strip(), id=new_call_id(), error=error)


def final_chunk(
    tool_calls: Sequence[ToolCall],
    invalid_tool_calls: Sequence[InvalidToolCall],
    content: str = "",
    **kwargs: Any,
) -> AIMessageChunk:
    """The last streamed chunk: remaining content plus every tool call.

    LangChain rebuilds tool calls from chunks when it merges a stream, re-parsing each
    chunk's `args` and dropping `error`. To keep an invalid call invalid (its raw text may
    well be a JSON object, e.g. a call to an unknown tool), its args are streamed as
    `"(<error>) <raw text>"`, which does not parse and still tells the reader what failed.
    """
    chunks = [
        make_tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
        for i, c in enumerate(tool_calls)
    ]
    for i, c in enumerate(invalid_tool_calls, start=len(chunks)):
        args = f"({c.get('error') or 'invalid'}) {c.get('args') or ''}".rstrip()
        chunks.append(make_tool_call_chunk(name=c.get("name"), args=args, id=c.get("id"), index=i))
    return AIMessageChunk(content=content, tool_call_chunks=chunks, **kwargs)
