"""Finding image files and reading them safely.

A bad file never raises out of `read_image` as anything but `InputError` with a reason a
person can act on: not a regular file, over the size limit, zero bytes, not an image of a
kind we read, truncated, too many pixels. A file is a regular file under the size limit
(`files.open_regular`) and its first bytes say it is a PNG, JPEG, WebP, GIF, BMP or TIFF of
an acceptable size before the rest is read, so a 2 GB file named `.png` costs a `stat`.
Other formats PIL could open (EPS through Ghostscript, say) are refused.

`discover` walks the folders a person named and yields what it finds: an `ImageFile` for
each image, and a `Skipped` for what it refuses to read (a FIFO named `.png`, a link out of
the named folders, an unreadable `captions.jsonl`). Captions: `ingest.captions`.

Not handled: animated frames beyond the first, EXIF rotation of the pixel grid
(applied), colour profiles (ignored).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from evident.tools.errors import InputError
from evident.tools.ingest.captions import FolderCaptions
from evident.tools.ingest.files import KINDS, inside, open_regular
from evident.tools.limits import MAX_DOCUMENT_BYTES, MAX_IMAGE_BYTES
from evident.tools.records import Skipped

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # what PIL may decode (JPEG: MPO too)
MAX_PIXELS = 64_000_000  # ~8000 x 8000; larger files are refused as possible decompression bombs
HASH_CHARS = 32


@dataclass(frozen=True)
class ImageFile:
    """A file to index, with what its sidecars say about it; `notes` are what was changed or
    ignored on the way in (a cut caption, a renamed metadata key), for the report."""

    path: Path
    caption: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def content_id(data: bytes) -> str:
    """Stable id from the file's bytes, so moving or re-indexing a file keeps its id.

    >>> content_id(b"abc")
    'ba7816bf8f01cfea414140de5dae2223'
    """
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def image_bytes(
    path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_PIXELS
) -> bytes:
    """The bytes of the image file at `path`, read whole only once its header says it is an
    image of a kind we read and of at most `max_pixels`; else `InputError` saying why."""
    with open_regular(path, max_bytes) as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise InputError("empty file (0 bytes)")
        with _decoding():
            _open(f, max_pixels)  # not closed: that would close `f` too
        f.seek(0)
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError("too large: it grew past the limit while it was read")
    return data


def read_image(
    path: str | Path,
    data: bytes | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> Image.Image:
    """Decode fully into RGB, or raise `InputError` saying why the file is unusable. `data`
    is the file's bytes when they were read already (`image_bytes`)."""
    if data is None:
        data = image_bytes(path, max_bytes=max_bytes, max_pixels=max_pixels)
    if not data:
        raise InputError("empty file (0 bytes)")
    with _decoding():
        im = _open(io.BytesIO(data), max_pixels)
        im.load()
    return _to_rgb(ImageOps.exif_transpose(im))


def _open(fp: BinaryIO, max_pixels: int) -> Image.Image:
    """The image's header, refused when it has too many pixels (nothing decoded yet)."""
    im = Image.open(fp, formats=FORMATS)
    w, h = im.size
    if w * h > max_pixels:
        raise InputError(
            f"too many pixels ({w}x{h} > {max_pixels:,}); refused as a possible decompression bomb"
        )
    return im


@contextmanager
def _decoding() -> Iterator[None]:
    """Whatever PIL raises on a bad file, as an `InputError` with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"refused as a possible decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InputError(
            "not an image (unrecognised format; PNG, JPEG, WebP, GIF, BMP and TIFF are read)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"corrupt or truncated image: {exc}") from exc


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB with transparency composited on white (palette and grey images too)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def discover(
    paths: Iterable[str | Path], *, max_document_bytes: int = MAX_DOCUMENT_BYTES
) -> Iterator[ImageFile | Skipped]:
    """Image files under `paths` (files or folders, recursive), sorted, with captions, and a
    `Skipped` for each one refused (not a regular file, a link out of `paths`) and each
    caption file that could not be used.

    Captions come from a sidecar `NAME.txt`, a sidecar `NAME.json` (`caption` plus other
    scalar fields as metadata), or a `captions.jsonl` (`file`, `caption`, …) in the image's
    folder or a folder above it. Sidecars larger than `max_document_bytes` are not read.
    A path that does not exist raises `InputError` before anything is indexed.
    """
    roots = [Path(p).expanduser() for p in paths]
    missing = [str(r) for r in roots if not os.path.lexists(r)]
    if missing:
        raise InputError(f"no such file or folder: {', '.join(map(repr, missing))}")
    resolved = [r.resolve() for r in roots]
    captions = FolderCaptions(resolved, max_document_bytes)
    seen: set[Path] = set()
    for root in roots:
        found = sorted(root.rglob("*")) if root.is_dir() else [root]
        for p in found:
            if p.suffix.lower() not in IMAGE_SUFFIXES or (f := p.resolve()) in seen:
                continue
            seen.add(f)
            if (refused := _refused(p, f, resolved)) is not None:
                yield refused
            elif not p.is_dir():
                yield ImageFile(f, *captions.for_image(f))
    yield from captions.problems()


def _refused(p: Path, f: Path, roots: list[Path]) -> Skipped | None:
    """Why the image-named entry `p` (resolving to `f`) is not read, or None."""
    if not inside(f, roots):
        return Skipped(str(p), f"a link to {str(f)!r}, outside the folders named; not read")
    try:
        kind = stat.S_IFMT(os.stat(p).st_mode)
    except OSError as exc:
        return Skipped(str(p), f"cannot read: {exc.strerror or exc}")
    if kind in (stat.S_IFREG, stat.S_IFDIR):
        return None
    return Skipped(str(f), f"not a regular file: it is {KINDS.get(kind, 'a special file')}")
