"""A GGUF model run in-process by llama.cpp (llama-cpp-python), as a LangChain chat model.

    load_llm("gguf:/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    load_llm("gguf:/models/qwen2.5-vl-3b.gguf", mmproj="/models/mmproj-qwen2.5-vl-3b.gguf")

(loading the file: `agent.llm.gguf_loading`)

Why this backend: on a CPU, llama.cpp runs a quantised model several times faster than
transformers de-quantised to float32, and it constrains decoding natively.

- **Tool steps are constrained.** With tools bound, the next step is drawn from a GBNF
  grammar made from `steps.step_schema` (llama.cpp's JSON-schema converter; integer
  ranges become enumerations, which it does not otherwise enforce): one call with
  arguments that fit the narrowed schemas, or `{"name": "answer"}`. The model cannot write
  an invalid call. `constrain=False` falls back to free text, parsed and repaired.
- **KV-cache reuse.** llama.cpp keeps the previous call's tokens and evaluates only what
  differs after their common prefix, so each agent step of a turn (the same prompt with
  the latest tool result appended) costs only the new tokens.
- **Limits**: every call stops at its `max_tokens` (per step kind, from the graph), at its
  `timeout`, or when the text starts to loop (`guards.Limits`), and says which in
  `response_metadata["finish_reason"]`.
- **Images**: with a multimodal projector (`mmproj`, or one `mmproj*.gguf` beside the
  model) images go to llama.cpp's MTMD chat handler as OpenAI-style `image_url` parts.

Not handled: several sequences at once, speculative decoding, a GPU build's offload
settings beyond `n_gpu_layers`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

from evident.agent.llm.chat_inputs import openai_messages, to_chat
from evident.agent.llm.guards import (
    Limits,
    cut_at_stops,
    cut_repeats,
    limits_from,
    token_usage,
)
from evident.agent.llm.steps import describe_tools, read_step, step_schema
from evident.agent.llm.toolcalls import final_chunk, parse_tool_calls
from evident.prompts.render import render
from evident.tools.errors import ModelLoadError, PromptTooLong

log = logging.getLogger(__name__)

MAX_ENUM = 64  # an integer range up to this wide becomes an enumeration in the grammar


class GGUFChatModel(BaseChatModel):
    """A `llama_cpp.Llama` as a chat model that calls tools through a grammar."""

    llama: Any
    model_name: str = "gguf"
    max_new_tokens: int = 300
    """The default budget; the graph passes one per step kind (`max_tokens`)."""
    temperature: float = 0.0
    """0 decodes greedily (reproducible); above 0 samples."""
    constrain: bool = True
    """Draw tool steps from a grammar (True) or parse free text (False)."""
    multimodal: bool = False
    """Whether images are shown to the model (a projector was loaded)."""

    @property
    def _llm_type(self) -> str:
        return "gguf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; `tool_choice="required"` (or "any") leaves "answer" out of the grammar,
        "none" binds none."""
        if tool_choice == "none":
            return self.bind(**kwargs)
        specs = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    # --- prompt ------------------------------------------------------------------------

    def _chat(self, messages: list[BaseMessage], tools: list[dict] | None) -> list[dict]:
        chat, _ = to_chat(
            messages, protocol=self._protocol(tools),
            tool_role=_knows_tool_role(self._template()), calls_as="json",
        )  # fmt: skip
        return chat

    def _protocol(self, tools: list[dict] | None) -> str | None:
        return render("tool_protocol", tools=describe_tools(tools)) if tools else None

    def _template(self) -> str:
        template = self.llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelLoadError(f"{self.model_name!r} has no chat template; use an instruct model")
        return template

    def render_prompt(self, messages: list[BaseMessage], tools: Sequence[Any] = ()) -> str:
        """The prompt text the model is given, to debug or to count."""
        specs = [convert_to_openai_tool(t) for t in tools] or None
        return _formatter(self._template(), *self._special())(messages=self._chat(messages, specs))

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _special(self) -> tuple[str, str]:
        ll = self.llama
        piece = lambda t: ll.detokenize([t], special=True).decode("utf-8", "ignore")  # noqa: E731
        return piece(ll.token_eos()), piece(ll.token_bos()) if ll.token_bos() >= 0 else ""

    # --- generation --------------------------------------------------------------------

    def _grammar(self, tools: list[dict] | None, tool_choice: Any) -> Any:
        if not (tools and self.constrain):
            return None
        required = tool_choice in ("required", "any")
        return _compiled(json.dumps(enumerate_ranges(step_schema(tools, required=required))))

    def _pieces(
        self, messages: list[BaseMessage], limits: Limits, grammar: Any, stats: dict
    ) -> Iterator[str]:
        """Text pieces as generated, within `limits`; `stats` gets the token counts."""
        if self.multimodal:
            yield from self._pieces_multimodal(messages, limits, grammar, stats)
            return
        prompt = _formatter(self._template(), *self._special())(
            messages=self._chat(messages, stats.get("tools"))
        )
        ll = self.llama
        tokens = ll.tokenize(prompt.encode("utf-8"), add_bos=_adds_bos(ll, prompt), special=True)
        if len(tokens) + limits.max_tokens > ll.n_ctx():
            raise PromptTooLong(
                f"the prompt ({len(tokens)} tokens) and the reply ({limits.max_tokens}) do not "
                f"fit the context of {ll.n_ctx()} tokens: load with a larger n_ctx"
            )
        stats["prompt_tokens"] = len(tokens)
        reused = _common_prefix(ll, tokens)
        stats["cached_tokens"] = reused
        out: list[int] = []
        text = ""
        for token in ll.generate(tokens, grammar=grammar, **_sampling(self.temperature)):
            if _is_eog(ll, token):  # end of turn (a grammar ends with it too)
                break
            out.append(token)
            new = ll.detokenize(out).decode("utf-8", "ignore")  # whole: multi-byte safe
            if len(new) > len(text):
                yield new[len(text) :]
                text = new
            if limits.stop(text, len(out)):
                break
        stats["tokens"] = len(out)

    def _pieces_multimodal(self, messages, limits: Limits, grammar: Any, stats: dict):
        chat = openai_messages(messages, protocol=self._protocol(stats.get("tools")))
        sampling = _sampling(self.temperature)
        sampling["temperature"] = sampling.pop("temp")
        stream = self.llama.create_chat_completion(
            messages=chat, grammar=grammar, max_tokens=limits.max_tokens, stream=True,
            **sampling,
        )  # fmt: skip
        text, n = "", 0
        for chunk in stream:
            piece = chunk["choices"][0]["delta"].get("content") or ""
            if not piece:
                continue
            n += 1
            text += piece
            yield piece
            if limits.stop(text, n):
                break
        stats["tokens"] = n
        stats["prompt_tokens"] = len(self.llama._input_ids) - n

    def _call(self, messages, kwargs) -> tuple[Iterator[str], dict, Limits, Any]:
        tools = kwargs.get("tools")
        limits = limits_from(kwargs, self.max_new_tokens, guard=not (tools and self.constrain))
        grammar = self._grammar(tools, kwargs.get("tool_choice"))
        stats: dict[str, Any] = {"tools": tools, "constrained": grammar is not None}
        return self._pieces(messages, limits, grammar, stats), stats, limits, grammar

    def _finish(self, text: str, stats: dict, limits: Limits, started: float) -> AIMessage:
        tools = stats["tools"]
        meta = {
            "model_name": self.model_name,
            "constrained": stats["constrained"],
            "finish_reason": limits.why or "stop",
            "seconds": round(time.perf_counter() - started, 3),
            "cached_tokens": stats.get("cached_tokens", 0),
        }
        usage = token_usage(stats.get("prompt_tokens", 0), stats.get("tokens", 0))
        if limits.why == "repetition":
            text = cut_repeats(text)
        if not tools:
            return AIMessage(text.strip(), response_metadata=meta, usage_metadata=usage)
        parsed = read_step(text, tools) if stats["constrained"] else parse_tool_calls(text, tools)
        if parsed.notes:
            meta["tool_call_repairs"] = parsed.notes
        content = "" if stats["constrained"] else parsed.content
        return AIMessage(
            content, tool_calls=parsed.tool_calls, invalid_tool_calls=parsed.invalid_tool_calls,
            response_metadata=meta, usage_metadata=usage,
        )  # fmt: skip

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        started = time.perf_counter()
        pieces, stats, limits, _ = self._call(messages, kwargs)
        text = cut_at_stops("".join(pieces), stop)
        message = self._finish(text, stats, limits, started)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        started = time.perf_counter()
        pieces, stats, limits, _ = self._call(messages, kwargs)
        text, sent = "", ""
        for piece in pieces:
            text += piece
            if stats["tools"]:
                continue  # a step is one JSON value: sent whole at the end
            visible = cut_at_stops(text, stop)
            if visible != text:
                break
            # hold back what may become a loop: repeats are cut at the end
            if len(visible) > len(sent) + 24:
                yield ChatGenerationChunk(message=AIMessageChunk(content=visible[len(sent) :]))
                sent = visible
        message = self._finish(cut_at_stops(text, stop), stats, limits, started)
        content = message.content if isinstance(message.content, str) else ""
        rest = content[len(sent) :] if content.startswith(sent) else ""
        last = final_chunk(
            message.tool_calls, message.invalid_tool_calls, rest,
            response_metadata=message.response_metadata, usage_metadata=message.usage_metadata,
            chunk_position="last",
        )  # fmt: skip
        yield ChatGenerationChunk(message=last)


# --- helpers ------------------------------------------------------------------------------


def enumerate_ranges(schema: Any) -> Any:
    """`schema` made for llama.cpp's schema converter: each bounded integer range up to
    `MAX_ENUM` wide written as an `enum` (the converter ignores `minimum`/`maximum`), and
    string lengths dropped (a `maxLength` of 100 becomes 100 nested optional rules, which
    slows every sampled token; the token budget bounds a string anyway).

    >>> enumerate_ranges({"type": "integer", "minimum": 1, "maximum": 3})
    {'enum': [1, 2, 3]}
    """
    if isinstance(schema, list):
        return [enumerate_ranges(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") == "string":
        return {k: v for k, v in schema.items() if k not in ("minLength", "maxLength")}
    low, high = schema.get("minimum"), schema.get("maximum")
    bounded = schema.get("type") == "integer" and low is not None and high is not None
    if bounded and high - low < MAX_ENUM:
        return {"enum": list(range(int(low), int(high) + 1))}
    return {k: enumerate_ranges(v) for k, v in schema.items()}


@lru_cache(maxsize=64)
def _compiled(schema_json: str) -> Any:
    import llama_cpp  # noqa: PLC0415 - the optional `gguf` extra (loaded by now)

    return llama_cpp.LlamaGrammar.from_json_schema(schema_json, verbose=False)


@lru_cache(maxsize=8)
def _formatter(template: str, eos: str, bos: str) -> Any:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # noqa: PLC0415 - the extra

    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    return lambda messages: formatter(messages=messages).prompt


def _is_eog(llama: Any, token: int) -> bool:
    import llama_cpp  # noqa: PLC0415 - the optional `gguf` extra (loaded by now)

    return bool(llama_cpp.llama_vocab_is_eog(llama._model.vocab, token))


def _knows_tool_role(template: str) -> bool:
    return bool(re.search(r"""['"]tool['"]""", template))


def _adds_bos(llama: Any, prompt: str) -> bool:
    """Whether to put BOS before the prompt: when the model wants one and the chat
    template did not write it already."""
    bos = llama.token_bos()
    if bos < 0 or llama.metadata.get("tokenizer.ggml.add_bos_token") == "false":
        return False
    return not prompt.startswith(llama.detokenize([bos], special=True).decode("utf-8", "ignore"))


def _common_prefix(llama: Any, tokens: list[int]) -> int:
    n = 0
    for a, b in zip(llama._input_ids[: llama.n_tokens], tokens, strict=False):
        if a != b:
            break
        n += 1
    return n


def _sampling(temperature: float) -> dict[str, Any]:
    if temperature <= 0:  # greedy: only the best token survives
        return {"temp": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}
    return {"temp": temperature, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}
