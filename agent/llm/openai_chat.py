"""Any OpenAI-compatible server (Ollama, vLLM, llama.cpp's server) through langchain-openai.

Tool calling is the server's job: vLLM needs `--enable-auto-tool-choice --tool-call-parser
hermes`, llama.cpp's server `--jinja`. Nothing is contacted until the first call.
"""

from __future__ import annotations

from typing import Any

from evident.tools.errors import ModelLoadError


def load_openai_chat(
    base_url: str, model: str, *, api_key: str = "not-needed", **settings: Any
) -> Any:
    """A streaming `ChatOpenAI` for `model` at `base_url` (e.g. http://localhost:11434/v1).

    `api_key` comes from the settings (`OPENAI_API_KEY`; local servers ignore it).
    `settings` go to `ChatOpenAI` (`temperature`, `max_tokens`, `timeout`, ...)."""
    if not base_url.startswith(("http://", "https://")):
        raise ModelLoadError(
            f"the server address must start with http:// or https://, got {base_url!r}"
        )
    if not model:
        raise ModelLoadError(
            f"no model name for the server at {base_url!r}: write openai:<url>#<model>"
        )
    try:
        from langchain_openai import ChatOpenAI  # noqa: PLC0415 - the optional `openai` extra
    except ImportError:
        raise ModelLoadError(
            "the openai backend needs langchain-openai: pip install 'evident[openai]'"
        ) from None
    settings["api_key"] = api_key
    settings.setdefault("streaming", True)
    settings.setdefault("temperature", 0)
    return ChatOpenAI(base_url=base_url, model=model, **settings)
