"""Chat models for the agent, chosen by one spec string.

    load_llm("gguf:/models/SmolLM2-135M-Instruct.Q4_1.gguf")       # llama.cpp, in-process
    load_llm("transformers:HuggingFaceTB/SmolLM2-360M-Instruct")   # cached id or folder
    load_llm("transformers:/models/smollm2.Q4_1.gguf")             # a GGUF file, de-quantised
    load_llm("openai:http://localhost:11434/v1#qwen2.5:7b")        # any OpenAI-compatible server
    load_llm("none")                                               # None: deterministic policy

Backends load their heavy packages on first use, so `import evident.agent.llm` stays light.
For tests, `evident.agent.llm.fake.ScriptedChatModel` replays scripted replies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evident.tools.errors import ModelLoadError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["BACKENDS", "load_llm", "parse_spec"]

BACKENDS = ("gguf", "transformers", "openai", "none")
"""The spec prefixes `load_llm` knows."""


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """`(backend, target, model)`: where the model is, and for servers which model.

    >>> parse_spec("openai:http://localhost:8000/v1#qwen2.5")
    ('openai', 'http://localhost:8000/v1', 'qwen2.5')
    >>> parse_spec("transformers:/models/a.gguf")
    ('transformers', '/models/a.gguf', None)
    """
    spec = spec.strip()
    if spec.lower() in ("none", ""):
        return "none", "", None
    backend, sep, target = spec.partition(":")
    backend = backend.strip().lower()
    if not sep or backend not in BACKENDS:
        raise ModelLoadError(
            f"unknown LLM spec {spec!r}; use gguf:<file.gguf>, transformers:<model id, folder "
            "or .gguf file>, openai:<base url>#<model>, or none"
        )
    target = target.strip()
    if backend == "openai":
        url, sep, model = target.rpartition("#")
        if not sep or not url or not model.strip():
            raise ModelLoadError(
                f"{spec!r} names no model: write openai:<base url>#<model>, "
                "e.g. openai:http://localhost:11434/v1#qwen2.5"
            )
        return backend, url.strip(), model.strip()
    if not target:
        raise ModelLoadError(f"{spec!r} names no model: write {backend}:<model id or path>")
    return backend, target, None


def load_llm(spec: str, *, api_key: str = "not-needed", **opts: Any) -> BaseChatModel | None:
    """The chat model a spec names, or `None` for `none`; raises `ModelLoadError`.

    `api_key` is for openai servers that check one (local ones ignore it). `opts` go to
    the backend: `n_threads`, `n_ctx`, `mmproj`, `constrain`, ... for gguf;
    `max_new_tokens`, `temperature`, `device`, `tool_protocol`, ... for transformers;
    `constrain`, `multimodal` and `ChatOpenAI` settings for openai."""
    backend, target, model = parse_spec(spec)
    if backend == "none":
        return None
    # noqa below: backends need optional extras; specs are parsed on the CLI's light path
    if backend == "gguf":
        from evident.agent.llm.gguf_loading import load_gguf_chat  # noqa: PLC0415

        return load_gguf_chat(target, **opts)
    if backend == "openai":
        try:
            from evident.agent.llm.openai_chat import load_openai_chat  # noqa: PLC0415
        except ImportError:
            raise ModelLoadError(
                "the openai backend needs langchain-openai: pip install 'evident[openai]'"
            ) from None
        return load_openai_chat(target, model or "", api_key=api_key, **opts)
    from evident.agent.llm.loading import load_transformers_chat  # noqa: PLC0415

    return load_transformers_chat(target, **opts)
