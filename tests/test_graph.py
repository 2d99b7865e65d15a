"""The answer graph driven end to end: real tools on a tiny random encoder, a scripted chat
model at the model boundary, the deterministic policy, budgets, topology, streaming."""

from __future__ import annotations

import re

import pytest
from agent_helpers import COLLECTION, build_collection, passed_and_failed
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.messages.tool import invalid_tool_call
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from evident.agent.llm.fake import ScriptedChatModel, call
from evident.graphs.answer import graph, run_config, with_checkpointer
from evident.graphs.context import Budgets, Ctx
from evident.graphs.verify import check
from evident.tools.pipeline import Retrieval
from evident.tools.store import Store

MERMAID = """\
graph TD;
	__start__([<p>__start__</p>]):::first
	plan(plan)
	agent(agent)
	tools(tools<hr/><small><em>__tools = search_images, explain_results, compare_results, similar_to, filter_results</em></small>)
	write(write)
	verify(verify)
	repair(repair)
	__end__([<p>__end__</p>]):::last
	__start__ --> plan;
	agent -.-> tools;
	agent -.-> write;
	plan --> agent;
	repair --> verify;
	tools --> agent;
	verify -.-> __end__;
	verify -.-> repair;
	write --> verify;
"""  # noqa: W191, E101, E501


@pytest.fixture(scope="module")
def db(tmp_path_factory, tiny_encoder):
    return build_collection(tmp_path_factory.mktemp("graph"), tiny_encoder)


@pytest.fixture
def make_ctx(db, tiny_encoder, tmp_path):
    stores = []

    def make(llm=None, **options):
        store = Store.open(db)
        stores.append(store)
        retrieval = Retrieval(store, COLLECTION, tiny_encoder)
        return Ctx(retrieval, llm=llm, out_dir=tmp_path / "out", **options)

    yield make
    for s in stores:
        s.close()


def run(ctx, question, *, thread="t", saver=None):
    g = with_checkpointer(saver or InMemorySaver())
    return g.invoke({"question": question}, run_config(ctx, thread), context=ctx)


def tool_calls(state) -> list[tuple[str, dict]]:
    return [(s["tool"], s["arguments"]) for s in state["steps"] if s["node"] == "tools"]


def nodes(state) -> list[str]:
    return [s["node"] for s in state["steps"] if s["turn"] == state["turn"]]


def test_the_topology_is_pinned():
    text = graph.get_graph().draw_mermaid()
    assert text[text.index("graph TD;") :].split("\tclassDef")[0] == MERMAID


def test_the_policy_answers_offline_with_checked_evidence(make_ctx):
    state = run(make_ctx(), "find red circles and tell me why")
    assert tool_calls(state) == [
        ("search_images", {"query": "red circles", "k": 5}),
        ("explain_results", {"ranks": [1, 2, 3]}),
    ]
    assert nodes(state) == [
        "plan", "agent", "tools", "agent", "tools", "agent", "write", "verify",
    ]  # fmt: skip
    assert state["answer"].startswith("I ranked 5 images for 'red circles'")
    g = state["grounding"]
    assert g["cited"] == g["valid"] == g["supported"] and g["removed"] == []
    assert all(c["supported"] for c in state["citations"])


def mixed_support(monkeypatch):
    """Every explained result has two regions, the first passing its check and the second
    failing, whatever the random encoder's maps look like: these tests are about how the
    graph handles evidence (the evidence engine is tested on trained models elsewhere)."""
    from evident.tools import agent_tools
    from evident.tools.evidence import explain
    from evident.tools.records import Region

    def two_regions(heat, size, *, rank, **_):
        w, h = size
        return (
            Region(f"R{rank}.1", (0, 0, w // 3, h // 3), 1.0, 0.5),
            Region(f"R{rank}.2", (2 * w // 3, 2 * h // 3, w, h), 0.6, 0.2),
        )

    monkeypatch.setattr(explain, "find_regions", two_regions)

    real = agent_tools._evidence

    def mixed(hit, ev, scores):
        out = real(hit, ev, scores)
        for i, region in enumerate(out["regions"]):
            region["counterfactual"]["supported"] = region["supported"] = i == 0
        return out

    monkeypatch.setattr(agent_tools, "_evidence", mixed)


def test_a_scripted_model_runs_tools_write_verify_and_repair(make_ctx, monkeypatch):
    mixed_support(monkeypatch)

    def draft(messages):  # cites a failed region (if any) and an id no tool produced
        passed, failed = passed_and_failed(messages[-1].content)
        assert passed and f"e.g. [{passed[0]}]" in messages[-1].content
        bad = f" #1 also shows [{failed[0]}]." if failed else ""
        return f"The decisive part is R9.9 [R9.9].{bad}"

    def repaired(messages):
        valid = re.search(r"Region ids you may cite: (.*)\.", messages[-1].content).group(1)
        rid = valid.split(", ")[0]
        return f"#{rid[1:].split('.')[0]} matches in {rid} [{rid}]."

    llm = ScriptedChatModel(responses=[
        AIMessage("", tool_calls=[call("search_images", query="red circle", k=4)]),
        AIMessage("", tool_calls=[call("explain_results", ranks=[1, 2])]),
        "I have what I need.",
        draft,
        repaired,
    ])  # fmt: skip
    state = run(make_ctx(llm), "red circles please")
    assert tool_calls(state) == [
        ("search_images", {"query": "red circle", "k": 4}),
        ("explain_results", {"ranks": [1, 2]}),
    ]
    assert nodes(state)[-5:] == ["agent", "write", "verify", "repair", "verify"]
    complaints = llm.calls[4].messages[-1].content
    assert "R9.9 is not a region" in complaints
    assert state["grounding"]["removed"] == [] and state["repairs"] == 1
    assert state["grounding"]["cited"] == state["grounding"]["supported"] == 1
    first = llm.calls[0]
    assert first.messages[0].type == "system" and "[R1.2]" in first.messages[0].content
    assert [t["function"]["name"] for t in first.tools] == ["search_images"]  # nothing to rank yet
    assert first.kwargs["tool_choice"] == "required" and first.kwargs["max_tokens"] == 100
    second = {t["function"]["name"]: t["function"]["parameters"] for t in llm.calls[1].tools}
    assert second["explain_results"]["properties"]["ranks"]["items"]["maximum"] == 4
    assert llm.calls[3].kwargs["max_tokens"] == 300 and llm.calls[4].kwargs["max_tokens"] == 200


def test_what_still_fails_after_the_repair_is_removed_and_reported(make_ctx, monkeypatch):
    mixed_support(monkeypatch)
    bad = "#2 is a red circle [R1.1]. The search ran [R7.7]. I looked at five images."
    llm = ScriptedChatModel(responses=[
        AIMessage("", tool_calls=[call("search_images", query="red", k=3)]),
        AIMessage("", tool_calls=[call("explain_results", ranks=[1])]), "done", bad, bad,
    ])  # fmt: skip
    state = run(make_ctx(llm), "red")
    removed = [r["sentence"] for r in state["grounding"]["removed"]]
    assert "The search ran [R7.7]." in removed and "#2 is a red circle [R1.1]." in removed
    assert state["answer"] == "I looked at five images."
    assert check(state["answer"], {}).ok


def test_malformed_tool_calls_are_fed_back_once(make_ctx):
    broken = AIMessage("", invalid_tool_calls=[
        invalid_tool_call(name="search_images", args="{query: 'red'", id=None, error="bad JSON"),
    ])  # fmt: skip
    llm = ScriptedChatModel(responses=[
        broken,
        AIMessage("", tool_calls=[call("search_images", query="red circle", k=3)]),
        "done",
        "I ranked three images; no region is cited because none was explained.",
    ])  # fmt: skip
    state = run(make_ctx(llm), "red circles")
    fed_back = [m for m in llm.calls[1].messages if isinstance(m, ToolMessage)]
    assert len(fed_back) == 1 and "bad JSON" in fed_back[0].content
    assert fed_back[0].status == "error" and state["mode"] == "llm"
    assert tool_calls(state) == [("search_images", {"query": "red circle", "k": 3})]


def test_malformed_twice_and_the_policy_takes_over(make_ctx):
    broken = AIMessage("", invalid_tool_calls=[
        invalid_tool_call(name="search", args="{{{", id=None, error="not JSON"),
    ])  # fmt: skip
    llm = ScriptedChatModel(responses=[broken, broken.model_copy()])
    state = run(make_ctx(llm), "find blue squares")
    assert len(llm.calls) == 2 and state["mode"] == "policy"
    assert tool_calls(state)[0] == ("search_images", {"query": "blue squares", "k": 5})
    assert state["answer"].startswith("I ranked 5 images")


def _runaway(same: bool):
    def reply(messages):
        n = 0 if same else len(messages)
        return AIMessage("", tool_calls=[call("search_images", query=f"red {n}", k=2)])

    return ScriptedChatModel(default=reply)


def test_a_runaway_loop_stops_at_the_tool_call_budget(make_ctx):
    ctx = make_ctx(_runaway(same=False), budgets=Budgets(tool_calls=3))
    state = run(ctx, "red")
    assert len(tool_calls(state)) == 3
    assert state["note"] == "the budget of 3 tool calls was used up"
    assert "I stopped early (the budget of 3 tool calls was used up)" in state["answer"]


def test_a_model_repeating_its_call_hands_over_to_the_policy(make_ctx):
    state = run(make_ctx(_runaway(same=True)), "red")
    # the first repeat runs, the second hands the turn to the policy, which explains
    assert [name for name, _ in tool_calls(state)] == [
        "search_images", "search_images", "explain_results",
    ]  # fmt: skip
    assert state["mode"] == "policy" and state["note"] is None
    agent = [s for s in state["steps"] if s["node"] == "agent" and s.get("takeover")]
    assert agent[0]["takeover"] == "the model asked for the same tool call again"


def test_the_wall_clock_budget(make_ctx):
    llm = ScriptedChatModel(responses=["Nothing found, so I cite nothing."])
    state = run(make_ctx(llm, budgets=Budgets(seconds=0)), "red")
    assert tool_calls(state) == [] and len(llm.calls) == 0  # no time: the template writes
    assert "time budget ran out" in state["answer"]


def test_every_run_passes_an_explicit_recursion_limit(make_ctx):
    ctx = make_ctx(budgets=Budgets(tool_calls=4, repairs=1))
    assert run_config(ctx, "x") == {"recursion_limit": 18, "configurable": {"thread_id": "x"}}


def test_follow_ups_in_one_thread(make_ctx, tmp_path):
    ctx = make_ctx(explain_top=2)
    with SqliteSaver.from_conn_string(str(tmp_path / "chat.sqlite")) as saver:
        first = run(ctx, "red circles", saver=saver)
        compared = run(ctx, "why is #2 below #1?", saver=saver)
        other = run(ctx, "explain #2 with another method", saver=saver)
        like = run(ctx, "show me images like #1", saver=saver)
    assert tool_calls(compared)[-1] == ("compare_results", {"a": 1, "b": 2})
    assert compared["answer"].startswith("#1 ranks above #2 by a margin of")
    assert tool_calls(other)[-1] == ("explain_results", {"ranks": [2], "method": "hirescam"})
    assert "hirescam heatmap" in other["answer"]
    assert tool_calls(like)[-2:] == [
        ("similar_to", {"rank": 1, "k": 5}), ("explain_results", {"ranks": [1, 2]}),
    ]  # fmt: skip
    assert tool_calls(first)[0] == ("search_images", {"query": "red circles", "k": 5})
    with SqliteSaver.from_conn_string(str(tmp_path / "chat.sqlite")) as saver:
        again = run(ctx, "why #1?", saver=saver)  # a new process would see the same history
    assert tool_calls(again)[-1] == ("explain_results", {"ranks": [1]}) and again["turn"] == 5


def test_an_interrupted_turn_leaves_no_dangling_tool_call(make_ctx):
    saver, ctx = InMemorySaver(), make_ctx()
    run(ctx, "red circles", saver=saver)
    g, config = with_checkpointer(saver), run_config(ctx, "t")
    cut = AIMessage(
        "", tool_calls=[{"name": "explain_results", "args": {"ranks": [4]}, "id": "cut"}]
    )
    g.update_state(config, {"messages": [cut]}, as_node="agent")
    state = run(ctx, "why #2?", saver=saver)
    closed = [
        m for m in state["messages"] if isinstance(m, ToolMessage) and m.tool_call_id == "cut"
    ]
    assert closed and closed[0].status == "error"
    assert tool_calls(state)[-1] == ("explain_results", {"ranks": [2]})


def test_tokens_and_steps_stream(make_ctx, monkeypatch):
    mixed_support(monkeypatch)
    llm = ScriptedChatModel(responses=[
        AIMessage("", tool_calls=[call("search_images", query="red", k=2)]),
        AIMessage("", tool_calls=[call("explain_results", ranks=[1])]), "done",
        "I ranked two images and #1 matches in R1.1 [R1.1].",
    ])  # fmt: skip
    ctx = make_ctx(llm)
    g = with_checkpointer(InMemorySaver())
    events = list(g.stream({"question": "red"}, run_config(ctx, "s"), context=ctx,
                           stream_mode=["messages", "updates", "custom"]))  # fmt: skip
    tokens = [
        c[0].content for m, c in events if m == "messages" and c[1]["langgraph_node"] == "write"
    ]
    assert "".join(tokens).startswith("I ranked two images") and len(tokens) > 5
    steps = [c["step"]["node"] for m, c in events if m == "custom" and "step" in c]
    assert steps[0] == "plan" and steps[-1] == "verify" and "tools" in steps
    assert [next(iter(c)) for m, c in events if m == "updates"][-2:] == ["write", "verify"]


def test_a_first_question_answered_without_searching_gets_the_policy(make_ctx):
    llm = ScriptedChatModel(responses=["Cats are lovely."])
    state = run(make_ctx(llm), "find red circles")
    assert len(llm.calls) == 1 and state["mode"] == "policy"
    assert tool_calls(state)[0] == ("search_images", {"query": "red circles", "k": 5})
    assert state["answer"].startswith("I ranked 5 images")
