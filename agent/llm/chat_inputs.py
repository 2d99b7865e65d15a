"""LangChain messages turned into what a Hugging Face chat template and processor expect.

`to_chat(messages, ...)` returns the conversation (a list of `{"role", "content", ...}`
dicts) and the images it shows, in order. It decides, per model:

- Tools: with `template_tools`, assistant tool calls become `tool_calls` entries for the
  template to render; otherwise they are written back as text in the protocol the model
  was taught in its system prompt (`protocol`): `<tool_call>{json}</tool_call>`, or with
  `calls_as="json"` the bare `{"name", "arguments"}` object a constrained step produces.
- Tool results: a `tool` turn when the template knows that role, otherwise a user turn
  that names the tool and call id.
- Images: content blocks with base64 data, a data URL, a `file://` URL or a file path.
  Vision-language models (`multimodal`) get `{"type": "image"}` parts plus the decoded
  images; text-only models get a short placeholder that says an image was there.

Only the first system message is sent as a system turn (many templates allow no other);
later ones become user turns. Remote image URLs are not fetched (evident runs offline).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from PIL import Image

log = logging.getLogger(__name__)

_IMAGE_TYPES = {"image", "image_url", "input_image"}


def to_chat(
    messages: list[BaseMessage],
    *,
    protocol: str | None = None,
    template_tools: bool = False,
    tool_role: bool = False,
    multimodal: bool = False,
    max_image_side: int = 768,
    calls_as: Literal["tagged", "json"] = "tagged",
) -> tuple[list[dict[str, Any]], list[Any]]:
    """The conversation for `apply_chat_template` and the images it refers to.

    `protocol` is text appended to the system turn (our tool protocol), if any."""
    chat: list[dict[str, Any]] = []
    images: list[Any] = []
    names = {
        tc["id"]: tc["name"] for m in messages if isinstance(m, AIMessage) for tc in m.tool_calls
    }
    for i, message in enumerate(messages):
        parts = _parts(message.content, images, multimodal, max_image_side)
        if isinstance(message, SystemMessage) and i == 0:
            chat.append({"role": "system", "parts": parts})
        elif isinstance(message, AIMessage):
            chat.append(_assistant(message, parts, template_tools, calls_as))
        elif isinstance(message, ToolMessage):
            name = message.name or names.get(message.tool_call_id, "tool")
            if tool_role:
                chat.append({"role": "tool", "parts": parts, "name": name})
                chat[-1]["tool_call_id"] = message.tool_call_id
            else:
                head = f"Result of tool call {name} ({message.tool_call_id}):\n"
                chat.append({"role": "user", "parts": [_text(head), *parts]})
        else:  # HumanMessage, later SystemMessages, anything else
            chat.append({"role": "user", "parts": parts})
    if protocol:
        if chat and chat[0]["role"] == "system":
            chat[0]["parts"].append(_text("\n\n" + protocol))
        else:
            chat.insert(0, {"role": "system", "parts": [_text(protocol)]})
    return [_finish(turn, multimodal) for turn in chat], images


def openai_messages(
    messages: list[BaseMessage], *, protocol: str | None = None, max_image_side: int = 768
) -> list[dict[str, Any]]:
    """The conversation as OpenAI chat messages for a server or llama.cpp's multimodal
    handler: text, and images as `image_url` parts with data URLs (read, shrunk to
    `max_image_side` and re-encoded as PNG, so a local path never leaves this process).
    Tool calls and results are written as text in our protocol, which every server reads."""
    chat, images = to_chat(
        messages, protocol=protocol, multimodal=True, max_image_side=max_image_side,
        calls_as="json",
    )  # fmt: skip
    pixels = iter(images)
    out = []
    for turn in chat:
        parts = []
        for part in turn["content"]:
            if part["type"] == "image":
                parts.append({"type": "image_url", "image_url": {"url": _data_url(next(pixels))}})
            else:
                parts.append(part)
        content: Any = parts
        if all(p["type"] == "text" for p in parts):
            content = "\n".join(p["text"] for p in parts)
        out.append({"role": turn["role"], "content": content})
    return out


def _data_url(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def escape_control_tokens(chat: list[dict[str, Any]], tokens: list[str]) -> None:
    """Break up control tokens written as text in user and tool turns (a caption with
    `<|im_end|>` or `<image>`), for processors that would otherwise read them as markup:
    a word joiner (U+2060) after the first character keeps the text readable."""
    tokens = sorted({t for t in tokens if len(t) > 1}, key=len, reverse=True)
    for turn in chat:
        if turn["role"] not in ("user", "tool"):
            continue
        for part in turn["content"]:
            if part["type"] == "text":
                for token in tokens:
                    part["text"] = part["text"].replace(token, token[0] + "\u2060" + token[1:])


def _assistant(
    message: AIMessage, parts: list[dict], template_tools: bool, calls_as: str = "tagged"
) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": "assistant", "parts": parts}
    if not message.tool_calls:
        return turn
    if template_tools:
        turn["tool_calls"] = [
            {
                "type": "function",
                "id": tc["id"],
                "function": {"name": tc["name"], "arguments": tc["args"]},
            }
            for tc in message.tool_calls
        ]
    else:
        for tc in message.tool_calls:
            call = json.dumps({"name": tc["name"], "arguments": tc["args"]}, ensure_ascii=False)
            parts.append(
                _text(call if calls_as == "json" else f"\n<tool_call>\n{call}\n</tool_call>")
            )
    return turn


def _finish(turn: dict[str, Any], multimodal: bool) -> dict[str, Any]:
    """Processors of vision-language models want a list of parts; tokenizers a string."""
    parts = turn.pop("parts")
    if multimodal:
        merged: list[dict[str, Any]] = []
        for part in parts:
            if part["type"] == "text" and merged and merged[-1]["type"] == "text":
                merged[-1] = _text(merged[-1]["text"] + part["text"])
            else:
                merged.append(part)
        turn["content"] = [p if p["type"] != "text" else _text(p["text"].strip()) for p in merged]
    else:
        turn["content"] = "".join(p["text"] for p in parts).strip()
    return turn


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _parts(content: Any, images: list[Any], multimodal: bool, max_side: int) -> list[dict]:
    if isinstance(content, str):
        return [_text(content)]
    parts: list[dict] = []
    for block in content:
        if isinstance(block, str):
            parts.append(_text(block))
        elif block.get("type") == "text":
            parts.append(_text(block.get("text", "")))
        elif block.get("type") in _IMAGE_TYPES:
            parts.append(_image_part(block, images, multimodal, max_side))
        else:
            log.debug("content block of type %r not shown to the model", block.get("type"))
    return parts


def _image_part(block: dict, images: list[Any], multimodal: bool, max_side: int) -> dict:
    source = image_source(block)
    label = _label(source)
    if not multimodal:
        return _text(f"\n[image {label}: not shown, this model reads text only]\n")
    try:
        image = load_image(source)
    except (OSError, ValueError) as e:
        log.warning("image %s not shown to the model: %s", label, e)
        return _text(f"\n[image {label}: could not be read]\n")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    images.append(image)
    return {"type": "image"}


def image_source(block: dict[str, Any]) -> Any:
    """Where a LangChain image block's pixels are: base64 text, a URL, a path or a PIL image.

    Knows the v1 blocks (`{"type": "image", "base64" | "url" | "path": ...}`), the v0 ones
    (`"source_type"` + `"data"`), OpenAI's `image_url`, and transformers' `"image"` key."""
    if block.get("type") == "image_url":
        url = block.get("image_url")
        return url.get("url") if isinstance(url, dict) else url
    for key in ("base64", "data"):
        if block.get(key):
            mime = block.get("mime_type") or "image/png"
            return f"data:{mime};base64,{block[key]}"
    for key in ("url", "path", "file_path", "image", "image_url"):
        if block.get(key) is not None:
            return block[key]
    raise ValueError(f"image block without pixels: keys {sorted(block)}")


def _label(source: Any) -> str:
    if not isinstance(source, str):
        return "(in memory)"
    if source.startswith("data:"):
        return "(inline)"
    return repr(Path(unquote(urlparse(source).path) or source).name)


def load_image(source: Any) -> Any:
    """A PIL RGB image from a data URL, a `file://` URL, a path or a PIL image."""

    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if not isinstance(source, str | Path):
        raise ValueError(f"cannot read an image from {type(source).__name__}")
    source = str(source)
    if source.startswith("data:"):
        try:
            data = base64.b64decode(source.split(",", 1)[1], validate=False)
        except (IndexError, binascii.Error) as e:
            raise ValueError(f"bad base64 image data: {e}") from None
        return Image.open(io.BytesIO(data)).convert("RGB")
    if source.startswith(("http://", "https://")):
        raise ValueError("remote image URLs are not fetched (evident runs offline)")
    if source.startswith("file://"):
        source = unquote(urlparse(source).path)
    with Image.open(source) as image:
        return image.convert("RGB")
