"""Making what sidecars say storable: every key and value Chroma would refuse (and abort a
whole batch over) or silently lose is renamed, converted, cut or dropped here, with a note.

Rules, from what chromadb 1.5 accepts (embedded and over HTTP):

- keys must be non-empty; `#...` and `$...` are refused and `chroma:...` silently dropped,
  so those are renamed `meta_<key>`, as are evident's own fields (`uri`, `caption`, ...). A
  renamed key that the record also holds under its new name is dropped (the explicit one
  wins). Keys longer than `MAX_KEY_CHARS` or holding control characters are dropped; at
  most `MAX_META_KEYS` are kept.
- integers must fit in 64 bits (a server refuses the batch): larger ones are stored as text;
  NaN and infinities (stored as null) are dropped; text with lone surrogates (from JSON
  `\\udc80` escapes, refused) has them replaced by U+FFFD; text is cut to `MAX_META_CHARS`.
- the caption is cut to `max_caption_chars` and its full length kept in `caption_chars`.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from evident.tools.ingest.images import ImageFile
from evident.tools.limits import MAX_CAPTION_CHARS, MAX_KEY_CHARS, MAX_META_CHARS, MAX_META_KEYS

LOOKS = ("printed", "colours", "colours_by", "fills", "plot", "marks", "marks_by")
"""What indexing reads from an image's pixels for search to weigh, kept in its metadata
as evident's own (`tools.ingest.looks`); not shown with a result."""
READ = ("width", "height", "format", "ocr", "words", *LOOKS)
"""Everything read from an image's pixels: an image whose bytes are already embedded
keeps it under a new path or caption."""
OWN = ("uri", "caption", "caption_chars", "size", "mtime_ns", *READ)
CHROMA_PREFIXES = ("chroma:", "#", "$")
INT64 = (-(2**63), 2**63 - 1)
SURROGATES = re.compile("[\ud800-\udfff]")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sanitize(f: ImageFile, max_caption_chars: int = MAX_CAPTION_CHARS) -> ImageFile:
    """`f` with a storable caption and metadata, and a note for each change."""
    notes = list(f.notes)
    caption, meta = f.caption, clean_metadata(f.metadata, notes)
    if caption is not None:
        caption = clean_text(caption)
        if len(caption) > max_caption_chars:
            notes.append(f"caption cut to {max_caption_chars:,} characters")
            meta["caption_chars"] = len(caption)
            caption = caption[:max_caption_chars]
    return replace(f, caption=caption, metadata=meta, notes=tuple(notes))


def clean_metadata(record: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """The storable part of `record`, keys renamed where needed; changes noted in `notes`.

    >>> notes = []
    >>> clean_metadata({"uri": "x", "#a": 2**70, "": 1, "ok": float("nan")}, notes)
    {'meta_uri': 'x', 'meta_#a': '1180591620717411303424'}
    >>> len(notes)
    5
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        if len(out) == MAX_META_KEYS:
            notes.append(f"only the first {MAX_META_KEYS} metadata keys kept")
            break
        why = _bad_key(key)
        if why:
            notes.append(f"metadata key {_short(key)!r} dropped: {why}")
            continue
        name = f"meta_{key}" if key in OWN or key.startswith(CHROMA_PREFIXES) else key
        if name != key:
            if name in record:
                notes.append(f"metadata key {key!r} dropped: {name!r} is given too")
                continue
            notes.append(f"metadata key {key!r} stored as {name!r} (the name is reserved)")
        stored = _value(key, value, notes)
        if stored is not None:
            out[name] = stored
    return out


def clean_text(text: str, limit: int | None = None) -> str:
    """`text` with lone surrogates replaced, cut to `limit` characters.

    >>> clean_text("a\\udc80b", 2)
    'a\\ufffd'
    """
    text = SURROGATES.sub("\ufffd", text)
    return text if limit is None else text[:limit]


def _bad_key(key: Any) -> str | None:
    if not isinstance(key, str) or not key:
        return "empty"
    if len(key) > MAX_KEY_CHARS:
        return f"longer than {MAX_KEY_CHARS} characters"
    if CONTROL.search(key) or SURROGATES.search(key):
        return "it holds control characters"
    return None


def _value(key: str, v: Any, notes: list[str]) -> Any:
    """The stored form of `v`, or None (dropped, noted unless it was null)."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        if INT64[0] <= v <= INT64[1]:
            return v
        notes.append(f"metadata {key!r}: a whole number beyond 64 bits, stored as text")
        return clean_text(str(v), MAX_META_CHARS)
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        notes.append(f"metadata {key!r} dropped: not a finite number ({v})")
        return None
    if isinstance(v, str):
        return _text(key, v, notes)
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return [_text(key, x, notes) for x in v[:MAX_META_KEYS]]
    notes.append(f"metadata {key!r} dropped: not text, a number, true/false or a list of text")
    return None


def _text(key: str, v: str, notes: list[str]) -> str:
    if len(v) > MAX_META_CHARS:
        notes.append(f"metadata {key!r} cut to {MAX_META_CHARS:,} characters")
    return clean_text(v, MAX_META_CHARS)


def _short(key: Any) -> Any:
    return key[:40] + "…" if isinstance(key, str) and len(key) > 40 else key
