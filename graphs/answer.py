"""The answer graph, read top to bottom like its diagram:

    plan -> agent <-> tools
            agent -> write -> verify -> (repair -> verify) -> end

`agent` asks the model (or the deterministic policy) for tool calls; `tools` runs them
(`ToolNode`: content for the model, artifacts for people); `write` drafts the answer from
the artifacts; `verify` enforces the grounding contract and sends the draft to `repair`
once before removing what still fails. Routers are pure functions of the state.

Every run gets an explicit recursion limit (`run_config`); the budgets in the context stop
a run long before it. Stream with `stream_mode=["messages", "updates", "custom"]`.
"""

from typing import Literal

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolInvocationError

from evident.graphs.context import Ctx
from evident.graphs.nodes import agent, plan, repair, verify, write
from evident.graphs.state import State
from evident.prompts.render import fence
from evident.tools.agent_tools import TOOLS
from evident.tools.errors import EvidentError


def tool_error(exc: EvidentError | ToolInvocationError) -> str:
    """What the model reads when a tool refuses its call; other exceptions are bugs and
    raise. The message may quote file names, so it is fenced like any other data."""
    reason = fence(str(exc), "error")
    return f"The tool refused the call:\n{reason}\nFix the arguments or try another tool."


def after_agent(state: State) -> Literal["tools", "write"]:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else "write"


def after_verify(state: State) -> Literal["repair", "__end__"]:
    return "repair" if state.get("problems") else END


builder = StateGraph(State, context_schema=Ctx)
builder.add_node("plan", plan)
builder.add_node("agent", agent)
builder.add_node("tools", ToolNode(TOOLS, handle_tool_errors=tool_error))
builder.add_node("write", write)
builder.add_node("verify", verify)
builder.add_node("repair", repair)

builder.add_edge(START, "plan")
builder.add_edge("plan", "agent")
builder.add_conditional_edges("agent", after_agent)
builder.add_edge("tools", "agent")
builder.add_edge("write", "verify")
builder.add_conditional_edges("verify", after_verify)
builder.add_edge("repair", "verify")

graph = builder.compile(name="evident")


def run_config(ctx: Ctx, thread: str) -> dict:
    """The config every run needs: the recursion limit and the conversation's thread."""
    return {"recursion_limit": ctx.budgets.recursion_limit, "configurable": {"thread_id": thread}}


def with_checkpointer(checkpointer):
    """The compiled graph, keeping conversations in `checkpointer` (compiled once above)."""
    return graph.copy({"checkpointer": checkpointer})
