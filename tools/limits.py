"""Limits every entry point shares, in one place, importable without loading torch.

The CLI checks its arguments against these before any model loads; the tools check them
again, so a script calling a tool directly gets the same answer as the CLI.
"""

from dataclasses import dataclass

MAX_K = 1000
"""The most results one search returns (CLI, agent, evaluator alike)."""

LLM_RESULTS = 10
"""The most results a search shows the LLM line by line (the rest are counted)."""


def check_k(k: object) -> int:
    """`k` as an int in [1, MAX_K], or a `ValueError` that says what was wrong.

    >>> check_k(5)
    5
    >>> check_k(0)
    Traceback (most recent call last):
    ...
    ValueError: k must be a whole number from 1 to 1000, not 0
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
    return k


# --- what evident reads and stores: bounded, whoever made the files --------------------------

MAX_IMAGE_BYTES = 128 * 2**20
"""The largest image file read, indexed or queried (`EVIDENT_MAX_IMAGE_BYTES`)."""

MAX_DOCUMENT_BYTES = 64 * 2**20
"""The largest HTML page, PDF, sidecar or `captions.jsonl` read (`EVIDENT_MAX_DOCUMENT_BYTES`)."""

MAX_CAPTION_CHARS = 2000
"""Captions are cut to this many characters, the cut recorded (`EVIDENT_MAX_CAPTION_CHARS`)."""

MAX_META_CHARS = 1000
"""The longest metadata text value stored (longer ones are cut, with a warning)."""

MAX_META_KEYS = 64
"""The most user metadata keys stored per image."""

MAX_KEY_CHARS = 128
"""The longest user metadata key kept."""

CHROMA_TIMEOUT = 30.0
"""Seconds a Chroma server may take to answer one request (`EVIDENT_CHROMA_TIMEOUT`)."""


@dataclass(frozen=True)
class Limits:
    """The limits one indexing run or query applies to what it reads."""

    max_image_bytes: int = MAX_IMAGE_BYTES
    max_document_bytes: int = MAX_DOCUMENT_BYTES
    max_caption_chars: int = MAX_CAPTION_CHARS


DEFAULT_LIMITS = Limits()
