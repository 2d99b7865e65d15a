"""A scripted chat model for tests: replies come from a list, and every call is recorded.

    from langchain_core.messages import AIMessage
    from evident.agent.llm.fake import ScriptedChatModel, call

    llm = ScriptedChatModel(responses=[
        AIMessage("", tool_calls=[call("search_images", query="cats", k=5)]),
        lambda messages: AIMessage(f"I saw {len(messages)} messages [R1.1]."),
        "A plain string becomes an AIMessage.",
    ])
    bound = llm.bind_tools([search_images])   # a RunnableBinding over the same recorder
    bound.invoke("find cats")                 # -> the first response
    llm.calls[0].messages                     # what the model was sent
    llm.calls[0].tools                        # the OpenAI-format tool dicts it was bound with
    llm.enqueue("more", "replies")            # add replies later

A response is an `AIMessage`, a string, or a callable `messages -> AIMessage | str` (to
answer with ids from the conversation). Tool calls without an id (`call(...)`, or a dict
with `"id": None`) get `call_<n>`, numbered per model, so `ToolNode` can pair results with
calls. `invalid_tool_calls` survive `invoke` and streaming alike; when streamed, their
`error` is folded into `args` as `"(<error>) <raw>"` (see `toolcalls.final_chunk`).

When the script runs out it raises `ScriptExhausted` (naming the call and showing the last
message it was sent), unless `default` is set, which then answers every further call.
Streaming (`stream`, or LangGraph's `stream_mode="messages"`) yields the content word by
word, then one chunk with the tool calls.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import ToolCall, tool_call
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from evident.agent.llm.toolcalls import final_chunk

Response = AIMessage | str | Callable[[list[BaseMessage]], AIMessage | str]


def call(name: str, /, **args: Any) -> ToolCall:
    """A tool call for a scripted reply; its id is filled in when the reply is sent."""
    return tool_call(name=name, args=args, id=None)


class ScriptExhausted(AssertionError):
    """The scripted model was called more often than the test scripted."""


@dataclass(frozen=True)
class Call:
    """One call the model received: the messages, the bound tools, and other kwargs."""

    messages: list[BaseMessage]
    tools: list[dict[str, Any]] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    stop: list[str] | None = None


class ScriptedChatModel(BaseChatModel):
    """A chat model whose replies are scripted; see the module docstring."""

    responses: list[Any] = Field(default_factory=list)
    """The replies, consumed in order: `AIMessage`, `str`, or `messages -> reply`."""
    default: Any = None
    """The reply once `responses` is used up; `None` raises `ScriptExhausted`."""
    calls: list[Call] = Field(default_factory=list)
    """Every call received, in order."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _next_id: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def enqueue(self, *responses: Response) -> ScriptedChatModel:
        """Append replies to the script; returns the model for chaining."""
        with self._lock:
            self.responses.extend(responses)
        return self

    @property
    def remaining(self) -> int:
        """How many scripted replies have not been used yet."""
        return len(self.responses)

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the way real chat models do (`tools=` OpenAI-format dicts)."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _next(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> AIMessage:
        with self._lock:
            tools = kwargs.pop("tools", None) or []
            self.calls.append(Call(list(messages), list(tools), dict(kwargs), stop))
            if self.responses:
                response = self.responses.pop(0)
            elif self.default is not None:
                response = self.default
            else:
                last = messages[-1].content if messages else None
                raise ScriptExhausted(
                    f"ScriptedChatModel has no reply scripted for call {len(self.calls)}; "
                    f"the last message it was sent: {last!r}"
                )
        if callable(response):
            response = response(list(messages))
        message = AIMessage(response) if isinstance(response, str) else response.model_copy()
        return self._with_ids(message)

    def _with_ids(self, message: AIMessage) -> AIMessage:
        calls = []
        for tc in message.tool_calls:
            if not tc.get("id"):
                with self._lock:
                    self._next_id += 1
                    tc = {**tc, "id": f"call_{self._next_id}"}
            calls.append(tc)
        return message.model_copy(update={"tool_calls": calls})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(
            generations=[ChatGeneration(message=self._next(messages, stop, **kwargs))]
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._next(messages, stop, **kwargs)
        text = message.content if isinstance(message.content, str) else ""
        # The base class reports each chunk to the callbacks (`on_llm_new_token`): not here.
        for piece in re.findall(r"\s*\S+|\s+$", text):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece, id=message.id))
        last = final_chunk(
            message.tool_calls,
            message.invalid_tool_calls,
            content="" if text else message.content,
            id=message.id,
            response_metadata=message.response_metadata,
            usage_metadata=message.usage_metadata,
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)
