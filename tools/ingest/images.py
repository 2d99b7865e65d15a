"""Finding image files, reading them safely, and finding their captions.

A bad file never raises out of `read_image` as anything but `InputError` with a
reason a person can act on (zero bytes, not an image, truncated, too many pixels).
Not handled: animated frames beyond the first, EXIF rotation of the pixel grid
(applied), colour profiles (ignored).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from evident.tools.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MAX_PIXELS = 64_000_000  # ~8000 x 8000; larger files are refused as possible decompression bombs
CAPTIONS_JSONL = "captions.jsonl"
HASH_CHARS = 32


@dataclass(frozen=True)
class ImageFile:
    """A file to index, with what its sidecars say about it."""

    path: Path
    caption: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def content_id(data: bytes) -> str:
    """Stable id from the file's bytes, so moving or re-indexing a file keeps its id.

    >>> content_id(b"abc")
    'ba7816bf8f01cfea414140de5dae2223'
    """
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def read_image(path: Path, data: bytes | None = None, *, max_pixels: int = MAX_PIXELS):
    """Decode fully into RGB, or raise `InputError` saying why the file is unusable."""
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    if not data:
        raise InputError("empty file (0 bytes)")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise InputError(
                    f"too many pixels ({w}x{h} > {max_pixels:,}); refused as a possible "
                    "decompression bomb"
                )
            im.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"refused as a possible decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InputError("not an image (unrecognised format)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"corrupt or truncated image: {exc}") from exc
    return _to_rgb(ImageOps.exif_transpose(im))


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB with transparency composited on white (palette and grey images too)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def discover(paths: Iterable[str | Path]) -> Iterator[ImageFile]:
    """Image files under `paths` (files or folders, recursive), sorted, with captions.

    Captions come from a sidecar `NAME.txt`, a sidecar `NAME.json` (`caption` plus other
    scalar fields as metadata), or a folder's `captions.jsonl` (`file`, `caption`, …).
    A path that does not exist raises `InputError` before anything is indexed.
    """
    roots = [Path(p).expanduser() for p in paths]
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        raise InputError(f"no such file or folder: {', '.join(map(repr, missing))}")
    seen: set[Path] = set()
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        folder_captions: dict[Path, dict[str, dict]] = {}
        for f in files:
            f = f.resolve()
            if f.suffix.lower() not in IMAGE_SUFFIXES or f in seen:
                continue
            seen.add(f)
            if f.parent not in folder_captions:
                folder_captions[f.parent] = _read_captions_jsonl(f.parent / CAPTIONS_JSONL)
            yield _with_caption(f, folder_captions[f.parent].get(f.name))


def _with_caption(path: Path, from_jsonl: dict | None) -> ImageFile:
    meta: dict[str, Any] = {}
    caption = None
    if from_jsonl:
        caption = from_jsonl.get("caption")
        meta.update(_scalars(from_jsonl, skip={"file", "image", "path", "caption"}))
    txt, js = path.with_suffix(".txt"), path.with_suffix(".json")
    if js.is_file():
        try:
            record = json.loads(js.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            log.warning("ignoring unreadable caption file %s: %s", js, exc)
            record = {}
        if isinstance(record, dict):
            caption = record.get("caption", caption)
            meta.update(_scalars(record, skip={"caption"}))
    if txt.is_file():
        caption = txt.read_text(encoding="utf-8", errors="replace").strip() or caption
    return ImageFile(path, caption if isinstance(caption, str) and caption else None, meta)


def _read_captions_jsonl(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    out: dict[str, dict] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            name = rec.get("file") or rec.get("image") or rec.get("path")
        except (ValueError, AttributeError):
            log.warning("%s:%d is not a JSON object; line ignored", path, n)
            continue
        if isinstance(name, str):
            out[Path(name).name] = rec
    return out


def _scalars(record: dict, *, skip: set[str]) -> dict[str, Any]:
    """Metadata Chroma can store and filter on: str, int, float, bool (and lists of str)."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if k in skip or not isinstance(k, str):
            continue
        scalar = isinstance(v, str | int | float | bool)
        strings = isinstance(v, list) and v and all(isinstance(x, str) for x in v)
        if scalar or strings:
            out[k] = v
    return out
