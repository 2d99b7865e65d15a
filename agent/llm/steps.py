"""The model's next step as one JSON value, so that it can be drawn from a grammar.

A step is a call of one bound tool, `{"name": "search_images", "arguments": {...}}`, or
`{"name": "answer"}`: the tool results are enough, write the answer. `step_schema` turns
the bound tools (OpenAI format) into one JSON schema for that choice, which a backend
hands to its constrained decoder (llama.cpp's grammar, xgrammar, a server's
`response_format`); the model then cannot write a call to an unknown tool, a missing
argument or a number out of range. `tool_choice="required"` leaves `answer` out.

    >>> tools = [{"type": "function", "function": {"name": "similar_to", "parameters": {
    ...     "type": "object", "required": ["rank"], "properties": {
    ...     "rank": {"type": "integer", "minimum": 1, "maximum": 3, "title": "Rank"}}}}}]
    >>> schema = step_schema(tools)
    >>> schema["anyOf"][0]["properties"]["arguments"]["properties"]
    {'rank': {'type': 'integer', 'minimum': 1, 'maximum': 3}}
    >>> [o["properties"]["name"]["const"] for o in schema["anyOf"]]
    ['similar_to', 'answer']
    >>> print(describe_tools(tools))
    - similar_to(rank: 1-3)
    >>> read_step('{"name": "answer"}', tools).tool_calls
    []

Schemas are made strict for the grammar: titles, descriptions and defaults dropped (the
prompt says what a tool does, in one line), a nullable optional argument loses its null
branch (leaving it out means the default), and objects admit no other keys. A free-form
object (`dict`, `additionalProperties: true`) becomes a map of strings, numbers and
booleans: the graph narrows it to the collection's own metadata fields before binding.

Not handled: `$ref`/`allOf` (LangChain inlines references), string patterns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from evident.agent.llm.toolcalls import ParsedCalls, parse_tool_calls, repair_json

ANSWER = "answer"
"""The step that ends the tool loop: write the answer now."""

_DROP = ("title", "description", "default", "examples")
_SCALAR = {"type": ["string", "number", "boolean"]}


def functions(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `function` part of OpenAI-format tools (bare function dicts pass through)."""
    return [t.get("function", t) for t in tools]


def step_schema(tools: Sequence[dict[str, Any]], *, required: bool = False) -> dict[str, Any]:
    """One JSON schema for the next step: a call of one of `tools`, or (unless `required`)
    `{"name": "answer"}`."""
    options = []
    for f in functions(tools):
        params = strict(f.get("parameters") or {"type": "object", "properties": {}})
        options.append(_object({"name": {"const": f["name"]}, "arguments": params}))
    if not required or not options:
        options.append(_object({"name": {"const": ANSWER}}))
    return {"anyOf": options}


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` reduced to what constrains a value (see the module docstring)."""
    out = {k: v for k, v in schema.items() if k not in _DROP}
    branches = out.pop("anyOf", None) or out.pop("oneOf", None)
    if branches:
        kept = [strict(b) for b in branches if b.get("type") != "null"]
        if len(kept) == 1:
            return kept[0]
        out["anyOf"] = kept
    if out.get("type") == "object":
        props = out.get("properties") or {}
        if props:
            out["properties"] = {k: strict(v) for k, v in props.items()}
            out["additionalProperties"] = False
        elif out.get("additionalProperties", True) is True:
            out["additionalProperties"] = _SCALAR
    if isinstance(out.get("items"), dict):
        out["items"] = strict(out["items"])
    return out


def _object(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def describe_tools(tools: Sequence[dict[str, Any]]) -> str:
    """One line per tool: its name, arguments with their ranges, and its description's
    first sentence. Short on purpose: a small model's prompt is mostly its context."""
    lines = []
    for f in functions(tools):
        params = strict(f.get("parameters") or {})
        required = set(params.get("required") or [])
        args = ", ".join(
            f"{name}: {_brief(spec)}" + ("" if name in required else " (optional)")
            for name, spec in (params.get("properties") or {}).items()
        )
        about = (f.get("description") or "").split("\n\n")[0].replace("\n", " ").strip()
        about = about.split(". ")[0].rstrip(".")
        lines.append(f"- {f['name']}({args})" + (f": {about}" if about else ""))
    return "\n".join(lines)


def _brief(spec: dict[str, Any]) -> str:
    """A schema as a few words: `1-5`, `text`, `list of 1-5`, `legrad|gradcam`.

    >>> _brief({"type": "object", "properties": {"kind": {"enum": ["bar", "line"]}}})
    '{kind: bar|line}'
    """
    if "enum" in spec:
        return "|".join(str(v) for v in spec["enum"])
    if "const" in spec:
        return json.dumps(spec["const"])
    if "anyOf" in spec:
        return " or ".join(_brief(b) for b in spec["anyOf"])
    kind = spec.get("type")
    if kind == "integer" and "minimum" in spec and "maximum" in spec:
        low, high = spec["minimum"], spec["maximum"]
        return str(low) if low == high else f"{low}-{high}"
    if kind == "array":
        return f"list of {_brief(spec.get('items') or {})}"
    if kind == "object" and spec.get("properties"):
        return "{" + ", ".join(f"{k}: {_brief(v)}" for k, v in spec["properties"].items()) + "}"
    return {"string": "text", "integer": "number", "object": "object"}.get(str(kind), str(kind))


def read_step(text: str, tools: Sequence[dict[str, Any]]) -> ParsedCalls:
    """The step a reply holds: no call for `{"name": "answer"}`, else the tool call, read
    (and, for unconstrained text, repaired) by `toolcalls.parse_tool_calls`."""
    try:
        value = repair_json(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and value.get("name") == ANSWER:
        return ParsedCalls(content="")
    if isinstance(value, dict) and "name" in value:
        return parse_tool_calls(f"<tool_call>{json.dumps(value)}</tool_call>", tools)
    return parse_tool_calls(text, tools)
