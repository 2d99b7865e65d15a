"""Images embedded in PDFs, each with the caption text printed near it.

Layout comes from pypdf's content-stream visitors: where each image XObject is drawn
(the current transformation maps the unit square onto the page) and where each run of
text starts. Text runs are grouped into lines and blocks; a block that starts with
"Figure N" / "Fig. N" is a caption. An image's caption is the nearest caption block
below it (else above it), preferring one that overlaps it horizontally; a page without
such captions falls back to the text block just below the image if it reads like words
(at least three words of letters: tick labels and axis titles of a plot do not).

Extracted images are written once to `cache_dir` under their content hash, so a
re-run finds the same files and the index sees them as unchanged. Not handled:
vector drawings (only raster XObjects are images), rotated pages, text drawn as
outlines, images inside annotations; captions of multi-image figures go to every
panel that finds them.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from evident.tools.errors import InputError
from evident.tools.ingest.files import read_bounded
from evident.tools.ingest.images import ImageFile, content_id
from evident.tools.limits import MAX_DOCUMENT_BYTES
from evident.tools.records import Skipped

log = logging.getLogger(__name__)

CAPTION_RE = re.compile(r"^\s*(fig(ure)?\.?)\s*[0-9IVX]+", re.IGNORECASE)
WORD_RE = re.compile(r"\b[^\W\d_]{2,}\b")
MAX_CAPTION_CHARS = 600
KEEP_AS_IS = (".png", ".jpg", ".jpeg")
# What pypdf raises on malformed files, beyond its own errors (a hostile PDF can reach
# all of these; each costs the one page or image, never the run).
MALFORMED = (
    PyPdfError, NotImplementedError, ValueError, KeyError, IndexError, TypeError, AttributeError,
    RecursionError, ZeroDivisionError, OSError, Image.DecompressionBombError,
)  # fmt: skip


@dataclass
class _Block:
    """Text on the page: `top`/`bottom` in PDF units, y growing upwards."""

    x0: float
    x1: float
    top: float
    bottom: float
    text: str
    size: float


def pdf_images(
    path: Path, *, cache_dir: Path, min_side: int = 32, max_bytes: int = MAX_DOCUMENT_BYTES
) -> Iterator[ImageFile | Skipped]:
    """Raster images of the PDF at `path` (each content once), saved under `cache_dir`.

    Metadata: `source` (the PDF) and `page` (1-based): the first page that draws the
    image. Images smaller than `min_side` pixels on a side (rules, bullets, spacers) are
    skipped. A PDF that cannot be read (or is not a regular file of at most `max_bytes`)
    is logged and yields one `Skipped` with the reason.
    """
    try:
        data = read_bounded(path, max_bytes, "documents")
        pages = list(PdfReader(io.BytesIO(data)).pages)
    except InputError as exc:
        yield Skipped(str(path), str(exc))
        return
    except MALFORMED as exc:
        log.warning("skipping unreadable PDF %s: %s", path, exc)
        yield Skipped(str(path), f"unreadable PDF: {exc}")
        return
    done: set = set()  # XObjects handled (resource dicts are often shared by all pages)
    unplaced: dict = {}  # images listed in a page's resources but not drawn at a known spot
    hashes: set[str] = set()

    def extract(page, number: int, key, box, blocks) -> ImageFile | None:
        try:
            saved = _save(page.images[key], cache_dir, min_side)
        except MALFORMED as exc:
            log.warning("skipping image %s on page %d of %s: %s", key, number, path, exc)
            return None
        if saved is None or saved.name in hashes:
            return None
        hashes.add(saved.name)
        return ImageFile(saved, caption_for(box, blocks), {"source": str(path), "page": number})

    for number, page in enumerate(pages, 1):
        try:
            placements, blocks = _layout(page)
            keys, ids = page.images.keys(), _object_ids(page)
        except MALFORMED as exc:
            log.warning("skipping page %d of %s: %s", number, path, exc)
            continue
        order = list(placements)
        for key in sorted(keys, key=lambda k: _draw_index(k, order)):
            uid = ids.get(key) if isinstance(key, str) else (number, str(key))
            if uid in done:
                continue
            box = placements.get(_stem(key))
            if box is None:
                unplaced.setdefault(uid, (page, number, key, blocks))
                continue
            done.add(uid)
            if found := extract(page, number, key, box, blocks):
                yield found
    for uid, (page, number, key, blocks) in unplaced.items():
        if uid not in done and (found := extract(page, number, key, None, blocks)):
            yield found


def _stem(key) -> str:
    return str(key if isinstance(key, str) else key[-1]).lstrip("/")


def _draw_index(key, order: list[str]) -> int:
    stem = _stem(key)
    return order.index(stem) if stem in order else len(order)


def _object_ids(page) -> dict[str, int]:
    """PDF object number of each XObject named in the page's resources."""
    resources = page.get("/Resources")
    xobjects = resources.get_object().get("/XObject") if resources is not None else None
    if xobjects is None:
        return {}
    xobjects = xobjects.get_object()
    return {
        str(name): ref.idnum for name in xobjects if hasattr(ref := xobjects.raw_get(name), "idnum")
    }


def _save(image, cache_dir: Path, min_side: int) -> Path | None:
    """Write the image's bytes under their hash (re-encoded to PNG unless PNG or JPEG)."""
    pil = image.image
    if min(pil.size) < min_side:
        return None
    suffix = Path(image.name).suffix.lower()
    data = image.data
    if suffix not in KEEP_AS_IS:
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        data, suffix = buf.getvalue(), ".png"
    out = Path(cache_dir) / f"{content_id(data)}{suffix}"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    return out.resolve()


def _apply(m, x: float, y: float) -> tuple[float, float]:
    """Point (x, y) through the PDF matrix [a b c d e f]."""
    return m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5]


def _layout(page) -> tuple[dict[str, tuple[float, float, float, float]], list[_Block]]:
    """Where each named image is drawn (x0, y0, x1, y1), and the page's text blocks."""
    placements: dict[str, tuple[float, float, float, float]] = {}
    runs: list[tuple[float, float, float, str]] = []

    def on_operator(op, args, cm, tm) -> None:
        if op == b"Do" and args:
            corners = [_apply(cm, x, y) for x in (0, 1) for y in (0, 1)]
            xs, ys = [c[0] for c in corners], [c[1] for c in corners]
            placements[str(args[0]).lstrip("/")] = (min(xs), min(ys), max(xs), max(ys))

    def on_text(text, cm, tm, font_dict, font_size) -> None:
        if text and text.strip():
            x, y = _apply(cm, *_apply(tm, 0, 0))
            scale = (abs(tm[3] * cm[3]) or 1.0) * (font_size or 10.0)
            runs.append((x, y, scale, text))

    page.extract_text(visitor_operand_before=on_operator, visitor_text=on_text)
    return placements, _blocks(runs)


def _blocks(runs: list[tuple[float, float, float, str]]) -> list[_Block]:
    """Group text runs (in drawing order) into lines, then lines into blocks.

    A run on the baseline of the previous one continues its line; a line at most ~1.8
    line heights below the previous one continues its block, unless it starts a caption.
    """
    blocks: list[_Block] = []
    last_y: float | None = None
    for x, y, size, text in runs:
        width = 0.5 * size * len(text)
        b = blocks[-1] if blocks else None
        same_line = b is not None and last_y is not None and abs(y - last_y) < 0.5 * size
        next_line = b is not None and last_y is not None and 0 < last_y - y <= 1.8 * size
        starts_caption = CAPTION_RE.match(text) is not None and not same_line
        if b is not None and (same_line or next_line) and not starts_caption:
            b.text += (" " if same_line else "\n") + text.strip()
            b.x0, b.x1 = min(b.x0, x), max(b.x1, x + width)
            b.bottom = min(b.bottom, y)
        else:
            blocks.append(_Block(x, x + width, y + size, y, text.strip(), size))
        last_y = y
    for b in blocks:
        b.text = " ".join(b.text.split())
    return blocks


def caption_for(box: tuple[float, float, float, float] | None, blocks: list[_Block]) -> str | None:
    """The caption text for an image drawn at `box` (None: position unknown).

    >>> fig = _Block(0, 100, 90, 80, "Figure 1: a cat.", 10)
    >>> caption_for((0, 100, 100, 200), [_Block(0, 100, 300, 290, "Intro.", 10), fig])
    'Figure 1: a cat.'
    """
    captions = [b for b in blocks if CAPTION_RE.match(b.text)]
    if box is None:
        return _clip(captions[0].text) if len(captions) == 1 else None
    x0, y0, x1, y1 = box
    slack = 0.02 * max(y1 - y0, 1.0) + 2.0

    def distance(b: _Block) -> float:
        if b.top <= y0 + slack:  # below the image: the usual place
            gap = y0 - b.top
        elif b.bottom >= y1 - slack:  # above it: only when nothing fits below
            gap = 1e4 + b.bottom - y1
        else:
            return float("inf")  # beside or inside the image
        overlaps = b.x0 < x1 and b.x1 > x0
        return max(gap, 0.0) + (0.0 if overlaps else 5e3)

    if captions:
        best = min(captions, key=distance)
        return _clip(best.text) if distance(best) < float("inf") else None
    near = [
        b
        for b in blocks
        if b.top <= y0 + slack and b.x0 < x1 and b.x1 > x0 and len(WORD_RE.findall(b.text)) >= 3
    ]
    best = min(near, key=lambda b: y0 - b.top, default=None)
    if best is None or y0 - best.top > 3 * best.size:
        return None
    return _clip(best.text)


def _clip(text: str) -> str | None:
    text = text.strip()
    if len(text) > MAX_CAPTION_CHARS:
        text = text[:MAX_CAPTION_CHARS].rsplit(" ", 1)[0] + " …"
    return text or None
