"""A local Hugging Face model as a LangChain chat model that can call tools.

`ChatHuggingFace` cannot call tools with a local model, and many vision-language chat
templates have no tool section, so this wraps `generate()` directly:

- tools reach the model through the chat template's own tool support where it has one
  (`tools=` to `apply_chat_template`, hermes-style `<tool_call>` output), otherwise through
  our JSON protocol appended to the system prompt (`prompts/tool_protocol.j2`);
- **tool steps are constrained**: with tools bound, the next step is drawn from a grammar
  made from `steps.step_schema` by llguidance (a logits processor: one of the tools with
  arguments that fit its schema, ranges included, or `{"name": "answer"}`), and the
  tools are described by our JSON protocol; `constrain=False` (or llguidance missing)
  falls back to free text;
- free text is parsed, repaired, validated and clamped by `evident.agent.llm.toolcalls`;
  what cannot be used lands in `AIMessage.invalid_tool_calls`, with each repair noted in
  `response_metadata["tool_call_repairs"]`;
- `_stream` yields tokens as they are generated, holding back text that may be the start
  of a tool call; leaving the stream early stops generation.

Control tokens inside user or tool text (`<|im_end|>` in a caption) are encoded as plain
text (`sanitize_control_tokens`; for vision-language processors, which lack it, they are
broken up with a word joiner). Untrusted text should still be fenced as data
(`evident.prompts.render.fence`) by whoever writes it into a message.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    TextIteratorStreamer,
)

from evident.agent.llm.chat_inputs import escape_control_tokens, to_chat
from evident.agent.llm.guards import cut_at_stops, token_usage
from evident.agent.llm.steps import describe_tools, read_step, step_schema
from evident.agent.llm.toolcalls import final_chunk, parse_tool_calls, tool_call_start
from evident.prompts.render import render

log = logging.getLogger(__name__)

ToolProtocol = Literal["auto", "template", "json"]
# Call options LangChain passes along that `generate()` would reject.
_NOT_FOR_GENERATE = {
    "tools", "tool_choice", "parallel_tool_calls", "strict", "stream", "max_tokens", "timeout",
}  # fmt: skip


class TransformersChatModel(BaseChatModel):
    """A loaded `transformers` model and its tokenizer or processor, as a chat model.

    Build one with `evident.agent.llm.load_llm("transformers:<path or id>")`, or directly from
    objects you already have: `TransformersChatModel(model=m, processor=tokenizer)`."""

    model: Any
    """A `PreTrainedModel` with `generate()` (causal LM or image-text-to-text)."""
    processor: Any
    """Its tokenizer, or for a vision-language model its processor."""
    model_name: str = "local"
    max_new_tokens: int = 512
    temperature: float = 0.0
    """0 decodes greedily (reproducible); above 0 samples."""
    top_p: float = 1.0
    tool_protocol: ToolProtocol = "auto"
    """"template": the chat template's tool support; "json": our protocol in the system
    prompt; "auto": the template's when it mentions tools, else ours."""
    max_image_side: int = 768
    """Images are shrunk to this many pixels on their longer side before the processor."""
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Passed on to `generate()` (e.g. `repetition_penalty`, `logits_processor`)."""
    constrain: bool = True
    """Draw tool steps from a grammar (llguidance) when it is installed; False: free text."""
    _lltokenizer: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def multimodal(self) -> bool:
        """Whether the model is shown images (its processor has an image processor)."""
        return getattr(self.processor, "image_processor", None) is not None

    @property
    def chat_template(self) -> str:
        template = getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template
        if isinstance(template, dict):  # several named templates: the default one
            template = template.get("default") or next(iter(template.values()))
        if not template:
            raise ValueError(f"{self.model_name!r} has no chat template; use an instruct model")
        return template

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (functions, LangChain tools, pydantic models or OpenAI dicts).
        `tool_choice="none"` sends no tools; "required" (or "any") leaves "answer" out of a
        constrained step's grammar."""
        if tool_choice == "none":
            return self.bind(**kwargs)
        specs = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    def _protocol(self, tools: list[dict] | None) -> Literal["template", "json"] | None:
        if not tools:
            return None
        if self._grammar_module() is not None:  # the grammar writes our protocol's JSON
            return "json"
        if self.tool_protocol == "auto":
            return "template" if "tools" in self.chat_template else "json"
        return self.tool_protocol

    def _inputs(self, messages: list[BaseMessage], tools: list[dict] | None) -> tuple[Any, str]:
        """Token tensors for `generate()`, on the model's device, and the tool protocol."""
        protocol = self._protocol(tools)
        chat, images = to_chat(
            messages,
            protocol=render("tool_protocol", tools=describe_tools(tools))
            if protocol == "json"
            else None,
            template_tools=protocol == "template",
            tool_role=bool(re.search(r"""['"]tool['"]""", self.chat_template)),
            multimodal=self.multimodal,
            max_image_side=self.max_image_side,
        )
        template_kw = {"tools": tools if protocol == "template" else None}
        if self.multimodal:  # processors cannot sanitize control tokens: escape them here
            added = [t.content for t in self.tokenizer.added_tokens_decoder.values()]
            escape_control_tokens(chat, [*added, *self.tokenizer.all_special_tokens])
            prompt = self.processor.apply_chat_template(
                chat, add_generation_prompt=True, tokenize=False, **template_kw
            )
            inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt")
        else:
            inputs = self.tokenizer.apply_chat_template(
                chat,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                sanitize_control_tokens=True,
                **template_kw,
            )
        return inputs.to(self.model.device), protocol or "none"

    def _grammar_module(self) -> Any:
        """llguidance when tool steps are to be constrained and it is installed."""
        if not self.constrain:
            return None
        try:
            import llguidance.hf  # noqa: PLC0415 - optional: without it, free text is parsed
            import llguidance.torch  # noqa: PLC0415
        except ImportError:
            return None
        return llguidance

    def _constraint(self, tools: list[dict] | None, tool_choice: Any) -> LogitsProcessor | None:
        """A logits processor that holds one generation to the step grammar, or None."""
        llg = self._grammar_module() if tools else None
        if llg is None:
            return None
        if self._lltokenizer is None:  # about a second to build: once per model
            rows = self.model.get_output_embeddings().weight.shape[0]
            self._lltokenizer = llg.hf.from_tokenizer(
                self.tokenizer, n_vocab=max(rows, len(self.tokenizer))
            )
        schema = step_schema(tools, required=tool_choice in ("required", "any"))
        grammar = llg.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), overrides={"whitespace_flexible": False}
        )
        return _Grammar(llg, self._lltokenizer, grammar)

    def render_prompt(self, messages: list[BaseMessage], tools: Sequence[Any] = ()) -> str:
        """The prompt text the model would be given (special tokens included), to debug."""
        specs = [convert_to_openai_tool(t) for t in tools] or None
        inputs, _ = self._inputs(messages, specs)
        return self.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=False)

    def _generate_kwargs(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        budget = int(kwargs.get("max_tokens") or self.max_new_tokens)  # the graph's, per step
        gen: dict[str, Any] = {"max_new_tokens": budget, "pad_token_id": pad}
        if kwargs.get("timeout") is not None:
            gen["max_time"] = float(kwargs["timeout"])
        gen["do_sample"] = self.temperature > 0
        if gen["do_sample"]:
            gen.update(temperature=self.temperature, top_p=self.top_p)
        if stop:
            gen.update(stop_strings=list(stop), tokenizer=tok)
        gen.update(self.generation_kwargs)
        gen.update(
            {k: v for k, v in kwargs.items() if k not in _NOT_FOR_GENERATE and k[:3] != "ls_"}
        )
        grammar = self._constraint(kwargs.get("tools"), kwargs.get("tool_choice"))
        if grammar is not None:  # after the caller's own processors
            gen["logits_processor"] = LogitsProcessorList(
                [*gen.get("logits_processor", []), grammar]
            )
        return gen

    def _finish(
        self, text: str, stop: list[str] | None, tools: list[dict] | None, protocol: str,
        constrained: bool = False,
    ) -> tuple[str, list, list, dict[str, Any]]:  # fmt: skip
        """Content, tool calls, invalid tool calls and metadata from the generated text."""
        text = cut_at_stops(text, stop)
        meta: dict[str, Any] = {
            "model_name": self.model_name, "tool_protocol": protocol, "constrained": constrained,
        }  # fmt: skip
        if not tools:
            return text.strip(), [], [], meta
        parsed = read_step(text, tools) if constrained else parse_tool_calls(text, tools)
        if parsed.notes:
            meta["tool_call_repairs"] = parsed.notes
        if parsed.invalid_tool_calls:
            log.info(
                "unusable tool call(s) from %s: %s", self.model_name, parsed.invalid_tool_calls
            )
        content = "" if constrained else parsed.content
        return content, parsed.tool_calls, parsed.invalid_tool_calls, meta

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:

        tools = kwargs.get("tools")
        inputs, protocol = self._inputs(messages, tools)
        gen = self._generate_kwargs(stop, kwargs)
        constrained = _constrained(gen)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **gen)
        new = out[0, inputs["input_ids"].shape[1] :]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        content, calls, invalid, meta = self._finish(text, stop, tools, protocol, constrained)
        budget = int(kwargs.get("max_tokens") or self.max_new_tokens)
        meta["finish_reason"] = "length" if len(new) >= budget else "stop"
        message = AIMessage(
            content=content,
            tool_calls=calls,
            invalid_tool_calls=invalid,
            response_metadata=meta,
            usage_metadata=token_usage(inputs["input_ids"].shape[1], len(new)),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:

        tools = kwargs.get("tools")
        inputs, protocol = self._inputs(messages, tools)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:

                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        gen = self._generate_kwargs(stop, kwargs)
        gen["stopping_criteria"] = [*gen.get("stopping_criteria", []), Cancelled()]
        constrained = _constrained(gen)
        errors: list[BaseException] = []
        thread = threading.Thread(
            target=_generate_into, args=(self.model, inputs, gen, streamer, errors), daemon=True
        )
        thread.start()
        text, sent = "", ""
        try:
            for piece in streamer:
                text += piece
                held = 0 if constrained else tool_call_start(text) if tools else None
                visible = cut_at_stops(text[:held], stop).strip()
                if len(visible) > len(sent) and visible.startswith(sent):
                    yield ChatGenerationChunk(message=AIMessageChunk(content=visible[len(sent) :]))
                    sent = visible
        finally:
            cancelled.set()  # the consumer stopped early (or we are done): stop generating
            thread.join()
        if errors:
            raise errors[0]
        content, calls, invalid, meta = self._finish(text, stop, tools, protocol, constrained)
        if not content.startswith(sent):
            log.debug("streamed content %r is not a prefix of the parsed content %r", sent, content)
        rest = content[len(sent) :] if content.startswith(sent) else ""
        n_new = len(self.tokenizer.encode(text, add_special_tokens=False))
        usage = token_usage(inputs["input_ids"].shape[1], n_new)
        last = final_chunk(
            calls,
            invalid,
            rest,
            response_metadata=meta,
            usage_metadata=usage,
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)


def _constrained(gen: dict[str, Any]) -> bool:
    return any(isinstance(p, _Grammar) for p in gen.get("logits_processor", []))


class _Grammar(LogitsProcessor):
    """Masks every token the step grammar does not allow next (one generation's worth)."""

    def __init__(self, llg: Any, tokenizer: Any, grammar: str):
        self.llg, self.matcher = llg, llg.LLMatcher(tokenizer, grammar)
        self.mask = llg.torch.allocate_token_bitmask(1, tokenizer.vocab_size)
        self.started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.started and not self.matcher.is_stopped():
            self.matcher.consume_token(int(input_ids[0, -1]))
        self.started = True
        self.llg.torch.fill_next_token_bitmask(self.matcher, self.mask, 0)
        self.llg.torch.apply_token_bitmask_inplace(scores, self.mask.to(scores.device))
        return scores


def _generate_into(model: Any, inputs: Any, gen: dict, streamer: Any, errors: list) -> None:

    try:
        with torch.inference_mode():
            model.generate(**inputs, **gen, streamer=streamer)
    except Exception as e:  # re-raised in the consuming thread
        errors.append(e)
        streamer.end()
