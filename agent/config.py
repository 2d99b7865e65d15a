"""Settings: the one place evident reads the environment.

Defaults, overridden by environment variables, then by CLI flags or `Assistant(...)`
arguments. Library code never reads the environment and never sets it: what it needs
comes in as arguments (a device, an offline switch, a path).

| variable | setting | default |
| --- | --- | --- |
| `EVIDENT_DB` | `db` | `$XDG_DATA_HOME/evident/db` |
| `EVIDENT_COLLECTION` | `collection` | `images` |
| `EVIDENT_MODEL` | `model` | the collection's own; the bundled model when indexing |
| `EVIDENT_LLM` | `llm` | `none` |
| `EVIDENT_HISTORY` | `history` | `$XDG_DATA_HOME/evident/chat.sqlite` |
| `EVIDENT_DEVICE` | `device` | `cuda` when there is one, else `cpu` |
| `EVIDENT_OUT` | `out` | `overlays/` in an embedded db's folder, else the user's cache |
| `HF_HUB_OFFLINE` | `offline` | off: a pretrained tag may be downloaded |
| `OPENAI_API_KEY` | `openai_api_key` | `not-needed` (local servers ignore it) |
| `EVIDENT_MAX_IMAGE_BYTES` | `max_image_bytes` | 134217728 (128 MiB): larger images are not read |
| `EVIDENT_MAX_DOCUMENT_BYTES` | `max_document_bytes` | 67108864 (64 MiB): pages, PDFs, sidecars |
| `EVIDENT_MAX_CAPTION_CHARS` | `max_caption_chars` | 2000: longer captions are cut (and say so) |
| `EVIDENT_CHROMA_TIMEOUT` | `chroma_timeout` | 30 seconds for each request to a Chroma server |

A value that is not a positive number is an `InputError` naming the variable.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from evident.tools.errors import InputError
from evident.tools.limits import (
    CHROMA_TIMEOUT,
    MAX_CAPTION_CHARS,
    MAX_DOCUMENT_BYTES,
    MAX_IMAGE_BYTES,
    Limits,
)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def _number(name: str, default: float, kind: type = int) -> float:
    """A positive number from the environment (`kind` int or float), or `default`."""
    text = _env(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        what = "whole number" if kind is int else "number"
        raise InputError(f"{name} must be a positive {what}, not {text!r}")
    return value


def _data_home() -> Path:
    return Path(_env("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "evident"


def _cache_home() -> Path:
    return Path(_env("XDG_CACHE_HOME") or Path.home() / ".cache") / "evident"


@dataclass(frozen=True)
class Settings:
    """Run-constant choices. `model=None` means: the collection's own encoder when
    searching, the bundled default when indexing."""

    db: str = field(default_factory=lambda: _env("EVIDENT_DB") or str(_data_home() / "db"))
    collection: str = field(default_factory=lambda: _env("EVIDENT_COLLECTION", "images"))
    model: str | None = field(default_factory=lambda: _env("EVIDENT_MODEL"))
    llm: str = field(default_factory=lambda: _env("EVIDENT_LLM", "none"))
    history: str = field(
        default_factory=lambda: _env("EVIDENT_HISTORY") or str(_data_home() / "chat.sqlite")
    )
    device: str | None = field(default_factory=lambda: _env("EVIDENT_DEVICE"))
    out: str | None = field(default_factory=lambda: _env("EVIDENT_OUT"))
    offline: bool = field(
        default_factory=lambda: (_env("HF_HUB_OFFLINE") or "").lower() in ("1", "true", "yes")
    )
    openai_api_key: str = field(default_factory=lambda: _env("OPENAI_API_KEY", "not-needed"))
    lock_timeout: float = 10.0
    k: int = 5
    max_image_bytes: int = field(
        default_factory=lambda: _number("EVIDENT_MAX_IMAGE_BYTES", MAX_IMAGE_BYTES)
    )
    max_document_bytes: int = field(
        default_factory=lambda: _number("EVIDENT_MAX_DOCUMENT_BYTES", MAX_DOCUMENT_BYTES)
    )
    max_caption_chars: int = field(
        default_factory=lambda: _number("EVIDENT_MAX_CAPTION_CHARS", MAX_CAPTION_CHARS)
    )
    chroma_timeout: float = field(
        default_factory=lambda: _number("EVIDENT_CHROMA_TIMEOUT", CHROMA_TIMEOUT, float)
    )

    @property
    def limits(self) -> Limits:
        """What indexing and queries may read and store."""
        return Limits(self.max_image_bytes, self.max_document_bytes, self.max_caption_chars)

    def overlay_dir(self, db: str | None = None) -> Path:
        """Where overlays go without `--out`: in an embedded database's folder (found with
        it, gone with it), or in the user's cache for a server."""
        if self.out:
            return Path(self.out).expanduser()
        db = db or self.db
        if db.startswith(("http://", "https://")):
            return _cache_home() / "overlays"
        return Path(db).expanduser().resolve() / "overlays"

    @property
    def prompt_history(self) -> Path:
        """The REPL's line history, beside the conversations."""
        return Path(self.history).expanduser().with_name("chat_history.txt")


def documents_cache(db: str) -> Path:
    """Where images pulled out of PDFs (and data: URIs in HTML) are kept."""
    if db.startswith(("http://", "https://")):
        return _cache_home() / "document-images"
    return Path(db).expanduser().resolve() / "document-images"


def ocr_cache() -> Path:
    """Where the words read in images are kept by content (shared by every database)."""
    return _cache_home() / "ocr"


def terminal_images() -> str | None:
    """The inline-image protocol this terminal speaks: `iterm`, `kitty`, or None."""
    if _env("TERM_PROGRAM") in ("iTerm.app", "WezTerm"):
        return "iterm"
    if _env("KITTY_WINDOW_ID") or _env("TERM") == "xterm-kitty":
        return "kitty"
    return None
