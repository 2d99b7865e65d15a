"""Any OpenAI-compatible server (Ollama, llama.cpp's server, vLLM) as a chat model that
calls tools through a constrained step.

    load_llm("openai:http://localhost:11434/v1#qwen2.5")       # Ollama
    load_llm("openai:http://localhost:8080/v1#any")             # llama.cpp's llama-server

- **Tool steps** are sent with `response_format` `json_schema` (`steps.step_schema` of the
  bound tools, our one-line tool list in the system prompt): Ollama, llama.cpp's server
  and vLLM all decode it under a grammar, so the model cannot write an invalid call, and
  no server flag (`--jinja`, `--enable-auto-tool-choice`) is needed. A server that refuses
  `response_format` (HTTP 400/422) is asked again without it, and from then on its
  free-text replies are parsed and repaired (`constrain="json_schema"` is the default;
  `"none"` never constrains).
- **Budgets**: every request carries `max_tokens` (the graph's budget for the step kind)
  and a timeout; the answer is streamed and abandoned at the deadline or when it loops.
- **Errors** a person can act on become one `LLMUnavailable` (an `EvidentError`): a server
  that is down, unreachable, or accepts the connection and never answers. No retries.
- **Images** (a writer turn with overlays) go as `image_url` parts with data URLs; only
  models the server runs with vision see them.

Nothing is contacted until the first call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import openai
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

from evident.agent.llm.chat_inputs import openai_messages
from evident.agent.llm.guards import Limits, cut_repeats, limits_from
from evident.agent.llm.steps import describe_tools, read_step, step_schema
from evident.agent.llm.toolcalls import final_chunk, parse_tool_calls
from evident.prompts.render import render
from evident.tools.errors import EvidentError, ModelLoadError

log = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0


class LLMUnavailable(EvidentError):
    """The LLM server cannot be reached, or did not answer in time."""


def load_openai_chat(
    base_url: str,
    model: str,
    *,
    api_key: str = "not-needed",
    constrain: Literal["json_schema", "none"] = "json_schema",
    max_new_tokens: int = 300,
    multimodal: bool = False,
    **settings: Any,
) -> OpenAIChatModel:
    """A chat model for `model` at `base_url` (e.g. http://localhost:11434/v1).

    `api_key` comes from the settings (`OPENAI_API_KEY`; local servers ignore it).
    `multimodal`: the server's model sees images (the writer then sends the overlays).
    `settings`: `temperature` (default 0), `max_retries` (default 0)."""
    if not base_url.startswith(("http://", "https://")):
        raise ModelLoadError(
            f"the server address must start with http:// or https://, got {base_url!r}"
        )
    if not model:
        raise ModelLoadError(
            f"no model name for the server at {base_url!r}: write openai:<url>#<model>"
        )
    unknown = sorted(set(settings) - {"temperature", "max_retries"})
    if unknown:
        raise ModelLoadError(f"unknown option(s) for the openai backend: {unknown}")
    retries = settings.get("max_retries", 0)  # a local server is up or it is not: say so now
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=retries)
    return OpenAIChatModel(client=client, model_name=model, base_url=base_url,
                           constrain=constrain, max_new_tokens=max_new_tokens,
                           multimodal=multimodal, temperature=settings.get("temperature", 0.0),
                           )  # fmt: skip


class OpenAIChatModel(BaseChatModel):
    """An `openai.OpenAI` client, with constrained tool steps, budgets and plain errors."""

    client: Any
    model_name: str
    base_url: str
    temperature: float = 0.0
    constrain: Literal["json_schema", "none"] = "json_schema"
    max_new_tokens: int = 300
    multimodal: bool = False
    """Whether the writer sends overlays (only for a vision model on the server)."""

    @property
    def _llm_type(self) -> str:
        return "openai-compatible"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        if tool_choice == "none":
            return self.bind(**kwargs)
        specs = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    def _request(self, kwargs: dict, limits: Limits) -> dict[str, Any]:
        left = None if limits.deadline is None else max(0.1, limits.deadline - time.monotonic())
        timeout = None if left is None else openai.Timeout(left, connect=min(CONNECT_SECONDS, left))
        return {"model": self.model_name, "max_tokens": limits.max_tokens, "timeout": timeout,
                "temperature": self.temperature}  # fmt: skip

    def _messages(self, messages: list[BaseMessage], tools: list[dict] | None) -> list[dict]:
        protocol = render("tool_protocol", tools=describe_tools(tools)) if tools else None
        return openai_messages(messages, protocol=protocol)

    def _unavailable(self, e: Exception) -> LLMUnavailable:
        if isinstance(e, openai.APITimeoutError):
            why = "did not answer in time"
        elif isinstance(e, openai.APIConnectionError):
            why = "cannot be reached"
        else:
            why = f"refused the request: {e}"
        return LLMUnavailable(
            f"the LLM server at {self.base_url!r} {why}; start it (e.g. `ollama serve` or "
            f"`llama-server -m MODEL.gguf`), check the address, or use --llm none"
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = kwargs.get("tools")
        if not tools:  # an answer: streamed, so a deadline and a loop can cut it short
            chunks = list(self._stream(messages, stop, run_manager, **kwargs))
            merged = chunks[0].message
            for chunk in chunks[1:]:
                merged += chunk.message
            reply = AIMessage(merged.content, response_metadata=merged.response_metadata,
                              usage_metadata=merged.usage_metadata)  # fmt: skip
            return ChatResult(generations=[ChatGeneration(message=reply)])
        started, limits = time.perf_counter(), limits_from(kwargs, self.max_new_tokens)
        request = self._request(kwargs, limits)
        chat, constrained = self._messages(messages, tools), self.constrain == "json_schema"
        if constrained:
            required = kwargs.get("tool_choice") in ("required", "any")
            schema = step_schema(tools, required=required)
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "next_step", "schema": schema, "strict": True},
            }
        try:
            reply = self.client.chat.completions.create(messages=chat, stop=stop, **request)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            if not constrained:
                raise self._unavailable(e) from None
            log.warning("%s refused response_format (%s); parsing free text", self.base_url, e)
            self.constrain = "none"  # this server cannot constrain: remembered
            return self._generate(messages, stop, run_manager, **kwargs)
        except (openai.APIConnectionError, openai.APIStatusError) as e:
            raise self._unavailable(e) from None
        choice = reply.choices[0]
        text = choice.message.content or ""
        parsed = read_step(text, tools) if constrained else parse_tool_calls(text, tools)
        meta = {
            "model_name": self.model_name,
            "constrained": constrained,
            "finish_reason": choice.finish_reason,
            "seconds": round(time.perf_counter() - started, 3),
        }
        message = AIMessage(
            "" if constrained else parsed.content, tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls, response_metadata=meta,
            usage_metadata=_usage(reply.usage),
        )  # fmt: skip
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if kwargs.get("tools"):  # a step is one JSON value: not streamed
            result = self._generate(messages, stop, run_manager, **kwargs)
            m = result.generations[0].message
            yield ChatGenerationChunk(message=final_chunk(
                m.tool_calls, m.invalid_tool_calls, m.content, chunk_position="last",
                response_metadata=m.response_metadata, usage_metadata=m.usage_metadata,
            ))  # fmt: skip
            return
        started, limits = time.perf_counter(), limits_from(kwargs, self.max_new_tokens)
        request = self._request(kwargs, limits)
        text, sent, n, usage = "", "", 0, None
        try:
            stream = self.client.chat.completions.create(
                messages=self._messages(messages, None), stop=stop, stream=True,
                stream_options={"include_usage": True}, **request,
            )  # fmt: skip
        except (openai.APIConnectionError, openai.APIStatusError) as e:
            raise self._unavailable(e) from None
        try:
            for chunk in stream:
                usage = _usage(chunk.usage) or usage
                piece = (chunk.choices[0].delta.content or "") if chunk.choices else ""
                if not piece:
                    continue
                text, n = text + piece, n + 1
                if limits.stop(text, n):
                    break
                if len(text) > len(sent) + 24:  # hold back what may become a loop
                    yield ChatGenerationChunk(message=AIMessageChunk(content=text[len(sent) :]))
                    sent = text
        except (openai.APIConnectionError, openai.APIStatusError) as e:
            raise self._unavailable(e) from None
        finally:
            stream.close()
        final = cut_repeats(text) if limits.why == "repetition" else text
        rest = final[len(sent) :] if final.startswith(sent) else ""
        meta = {
            "model_name": self.model_name,
            "constrained": False,
            "finish_reason": limits.why or "stop",
            "seconds": round(time.perf_counter() - started, 3),
        }
        yield ChatGenerationChunk(message=AIMessageChunk(
            content=rest, response_metadata=meta, usage_metadata=usage, chunk_position="last",
        ))  # fmt: skip


def _usage(usage: Any) -> dict[str, int] | None:
    if usage is None:
        return None
    n_in, n_out = usage.prompt_tokens or 0, usage.completion_tokens or 0
    return {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}
