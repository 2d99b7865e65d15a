"""Tool calls as small models write them: found, repaired, validated, clamped."""

import json

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.messages.tool import invalid_tool_call, tool_call

from evident.agent.llm.schema import ArgumentError
from evident.agent.llm.toolcalls import (
    coerce_args,
    final_chunk,
    new_call_id,
    parse_tool_calls,
    repair_json,
    tool_call_start,
)


def _tool(name, properties, required=()):
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} tool",
            "parameters": {"type": "object", "properties": properties, "required": list(required)},
        },
    }


SEARCH = _tool(
    "search_images",
    {
        "query": {"type": "string"},
        "k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 8},
        "min_score": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]},
    },
    required=["query"],
)
EXPLAIN = _tool(
    "explain_result",
    {
        "rank": {"type": "integer", "minimum": 1},
        "method": {"type": "string", "enum": ["gradcam", "scorecam"]},
        "counterfactual": {"type": "boolean"},
        "ranks": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 20}},
    },
    required=["rank"],
)
TOOLS = [SEARCH, EXPLAIN]


def _tagged(name: str, arguments: str) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {arguments}}}</tool_call>'


def test_hermes_tagged_call_with_prose():
    call = '{"name": "search_images", "arguments": {"query": "cats", "k": 5}}'
    text = f"Let me search.\n<tool_call>\n{call}\n</tool_call>"
    out = parse_tool_calls(text, TOOLS)
    assert out.content == "Let me search."
    assert [(c["name"], c["args"]) for c in out.tool_calls] == [
        ("search_images", {"query": "cats", "k": 5})
    ]
    assert out.invalid_tool_calls == [] and out.notes == []
    assert out.tool_calls[0]["id"].startswith("call_") and out.tool_calls[0]["type"] == "tool_call"


def test_multiple_calls_get_distinct_ids_and_keep_order():
    text = (
        '<tool_call>{"name": "search_images", "arguments": {"query": "bars"}}</tool_call>\n'
        '<tool_call>{"name": "explain_result", "arguments": {"rank": 1}}</tool_call>\n'
        '<tool_call>{"name": "explain_result", "arguments": {"rank": 2}}</tool_call>'
    )
    out = parse_tool_calls(text, TOOLS)
    assert [c["name"] for c in out.tool_calls] == [
        "search_images",
        "explain_result",
        "explain_result",
    ]
    assert [c["args"].get("rank") for c in out.tool_calls] == [None, 1, 2]
    assert len({c["id"] for c in out.tool_calls}) == 3
    assert out.content == ""


def test_json_list_of_calls_and_openai_wire_format():
    text = json.dumps(
        [
            {
                "type": "function",
                "function": {"name": "search_images", "arguments": '{"query": "x"}'},
            },
            {"tool": "explain_result", "parameters": {"rank": 3}},
        ]
    )
    out = parse_tool_calls(text, TOOLS)
    assert [(c["name"], c["args"]) for c in out.tool_calls] == [
        ("search_images", {"query": "x"}),
        ("explain_result", {"rank": 3}),
    ]


def test_fenced_json_and_bare_json():
    fenced = (
        'I will search.\n```json\n{"name": "search_images", "arguments": {"query": "dogs"}}\n```'
    )
    out = parse_tool_calls(fenced, TOOLS)
    assert out.content == "I will search." and out.tool_calls[0]["args"] == {"query": "dogs"}
    bare = '  {"name": "search_images", "args": {"query": "dogs"}}'
    assert parse_tool_calls(bare, TOOLS).tool_calls[0]["args"] == {"query": "dogs"}


def test_repairs_single_quotes_trailing_commas_unquoted_keys_and_literals():
    text = "<tool_call>{'name': 'explain_result', arguments: {rank = 2, counterfactual: True,},}"
    out = parse_tool_calls(text, TOOLS)
    assert out.invalid_tool_calls == []
    assert out.tool_calls[0]["args"] == {"rank": 2, "counterfactual": True}


def test_clamps_huge_and_tiny_numbers_and_notes_it():
    text = _tagged("search_images", '{"query": "q", "k": 10**15, "min_score": -3}')
    out = parse_tool_calls(text, TOOLS)
    assert out.tool_calls[0]["args"] == {"query": "q", "k": 50, "min_score": 0}
    assert "search_images.k: 1000000000000000 clamped to 50" in out.notes
    assert any(n.startswith("search_images.min_score: -3 clamped to 0") for n in out.notes)
    absurd = _tagged("search_images", '{"query": "q", "k": 10**100000}')
    assert parse_tool_calls(absurd, TOOLS).tool_calls[0]["args"]["k"] == 50
    assert (
        parse_tool_calls(absurd.replace("10**100000", "1e300"), TOOLS).tool_calls[0]["args"]["k"]
        == 50
    )


def test_coerces_strings_to_numbers_booleans_lists_and_enums():
    text = (
        '<tool_call>{"name": "explain_result", "arguments": {"rank": "5", "method": "GradCAM", '
        '"counterfactual": "yes", "ranks": "3"}}</tool_call>'
    )
    out = parse_tool_calls(text, TOOLS)
    assert out.tool_calls[0]["args"] == {
        "rank": 5,
        "method": "gradcam",
        "counterfactual": True,
        "ranks": [3],
    }
    assert "explain_result.rank: '5' read as 5" in out.notes


def test_drops_unknown_arguments_and_fixes_near_miss_tool_names():
    text = _tagged("Search-Image", '{"query": "q", "colour": "red"}')
    out = parse_tool_calls(text, TOOLS)
    assert out.tool_calls[0]["name"] == "search_images"
    assert out.tool_calls[0]["args"] == {"query": "q"}
    assert "tool name 'Search-Image' read as 'search_images'" in out.notes
    assert "search_images.colour: unknown argument dropped" in out.notes


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('<tool_call>{"name": "delete_everything", "arguments": {}}</tool_call>', "unknown tool"),
        (
            '<tool_call>{"name": "search_images", "arguments": {"k": 3}}</tool_call>',
            "missing required",
        ),
        (
            '<tool_call>{"name": "explain_result", "arguments": {"rank": "first"}}</tool_call>',
            "integer",
        ),
        (
            _tagged("explain_result", '{"rank": 1, "method": "magic"}'),
            "not one of",
        ),
        ('<tool_call>{"arguments": {"query": "q"}}</tool_call>', 'no "name"'),
        ("<tool_call>this is not json at all</tool_call>", "not JSON"),
        ('<tool_call>["search_images", "q"]</tool_call>', "JSON object"),
        ('<tool_call>{"name": "search_images", "arguments": "[1, 2]"}</tool_call>', "JSON object"),
    ],
)
def test_unusable_calls_become_invalid_tool_calls_with_an_error(text, error):
    out = parse_tool_calls(text, TOOLS)
    assert out.tool_calls == []
    [bad] = out.invalid_tool_calls
    assert error in bad["error"]
    assert bad["id"].startswith("call_") and bad["type"] == "invalid_tool_call"
    assert bad["args"]  # the raw text, to show the model what it sent


def test_valid_and_invalid_calls_in_one_reply():
    text = (
        '<tool_call>{"name": "search_images", "arguments": {"query": "a"}}</tool_call>'
        '<tool_call>{"name": "search_images", "arguments": {"query": </tool_call>'
    )
    out = parse_tool_calls(text, TOOLS)
    assert [c["args"] for c in out.tool_calls] == [{"query": "a"}]
    [bad] = out.invalid_tool_calls  # the cut-off value is dropped, so `query` is missing
    assert bad["name"] == "search_images" and "missing required argument(s): query" in bad["error"]


def test_unclosed_tag_at_the_end_still_counts():
    text = 'Searching now <tool_call>{"name": "search_images", "arguments": {"query": "x"}'
    out = parse_tool_calls(text, TOOLS)
    assert out.content == "Searching now"
    assert out.tool_calls[0]["args"] == {"query": "x"}


def test_json_that_names_no_tool_stays_in_the_content():
    text = 'The legend reads:\n```json\n{"series": ["a", "b"]}\n```\nSee [R1.1].'
    out = parse_tool_calls(text, TOOLS)
    assert out.content == text and out.tool_calls == [] and out.invalid_tool_calls == []
    assert parse_tool_calls('{"answer": 42}', TOOLS).content == '{"answer": 42}'
    broken = parse_tool_calls('{"name": "search_images", "arguments": {"query": "x"', TOOLS)
    assert broken.tool_calls[0]["args"] == {"query": "x"}  # closed by the repair
    attempt = parse_tool_calls("```json\n{{{ nope\n```", TOOLS)
    assert attempt.content == "" and "not JSON" in attempt.invalid_tool_calls[0]["error"]


def test_prose_without_calls_is_just_content():
    text = "Result #1 shows overlapping error bars [R1.1]. {not a call} either."
    out = parse_tool_calls(text, TOOLS)
    assert out.content == text and out.tool_calls == [] and out.invalid_tool_calls == []
    assert parse_tool_calls("", TOOLS).content == ""


def test_repair_json_examples():
    assert repair_json("```json\n{'a': [1, 2,], b: None}\n```") == {"a": [1, 2], "b": None}
    assert repair_json('{"text": "it\'s fine", "n": -2**3}') == {"text": "it's fine", "n": -8}
    assert repair_json('{"a": {"b": [1, {"c": "d"') == {"a": {"b": [1, {"c": "d"}]}}
    assert repair_json('{"multi": "line\nbreak"}') == {"multi": "line\nbreak"}
    with pytest.raises(ValueError, match="not JSON"):
        repair_json("hello there")


def test_coerce_args_directly():
    schema = SEARCH["function"]["parameters"]
    assert coerce_args({"query": 42, "k": 7.6}, schema) == (
        {"query": "42", "k": 8},
        [".query: 42 read as '42'", ".k: 7.6 read as 8"],
    )
    assert coerce_args({"query": "q", "min_score": None}, schema)[0] == {
        "query": "q",
        "min_score": None,
    }
    assert coerce_args({"query": "q", "min_score": "0.5"}, schema)[0]["min_score"] == 0.5
    assert coerce_args({"query": "q", "k": None}, schema) == (
        {"query": "q"},
        [".k: null dropped (the default applies)"],
    )
    with pytest.raises(ArgumentError, match="null where string is expected"):
        coerce_args({"query": None}, schema)
    with pytest.raises(ArgumentError, match="expected a number"):
        coerce_args({"query": "q", "min_score": "high"}, schema)
    with pytest.raises(ArgumentError, match="expected true or false"):
        coerce_args({"rank": 1, "counterfactual": "maybe"}, EXPLAIN["function"]["parameters"])
    nested = {
        "type": "object",
        "properties": {
            "ranks": {"type": "array", "maxItems": 2, "items": {"type": "integer", "maximum": 20}}
        },
    }
    assert coerce_args({"ranks": [1, 99, 3]}, nested)[0] == {"ranks": [1, 20]}


def test_tool_call_start_for_streaming():
    assert tool_call_start("Let me look.") is None
    assert tool_call_start("Let me look. <tool_call>{") == 13
    assert tool_call_start("Let me look. <tool") == 13
    assert tool_call_start("Let me look. `") == 13
    assert tool_call_start('\n {"name"') == 2
    assert tool_call_start("a < b") is None


def test_final_chunk_keeps_invalid_calls_invalid_through_a_stream_merge():
    good = tool_call(name="search_images", args={"query": "q"}, id=new_call_id())
    bad = invalid_tool_call(
        name="nope", args='{"x": 1}', id="call_bad", error="unknown tool 'nope'"
    )
    merged = AIMessageChunk(content="Looking") + final_chunk([good], [bad], content=".")
    assert merged.content == "Looking."
    assert merged.tool_calls == [good]
    [still_bad] = merged.invalid_tool_calls
    assert still_bad["id"] == "call_bad" and still_bad["name"] == "nope"
    assert still_bad["args"] == "(unknown tool 'nope') {\"x\": 1}"
