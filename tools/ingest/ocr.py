"""Words in images: text lines read by PP-OCRv4 (rapidocr-onnxruntime, offline), with their
boxes, confidences and layout roles.

Reading. The detector runs on the image scaled so its longer side is at most `max_side`
pixels (figures are rarely larger; the library's default scales *up* to 736 px on the
shorter side, which costs 3-6x more and reads tick labels no better); recognition runs in
one batch per image; the 180-degree direction classifier is off (figure text is upright,
or turned 90 degrees). The detector rarely finds text turned 90 degrees, so when an image
has text but no y-axis label was found, the left fifth of it is read again turned a
quarter clockwise (about a fifth more time). An image where the detector finds nothing
costs only the detector. Lines under `min_confidence` are
dropped.

Each line's layout role (title, axis labels, legend entry, tick label, other label) is
assigned from the geometry alone (`tools.ingest.layout`).

Not handled: handwriting, text in photos beyond what the detector finds, languages other
than those PP-OCRv4's Chinese-English recogniser reads, vertical CJK text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import wordninja
from PIL import Image

from evident.tools.errors import ModelLoadError
from evident.tools.ingest.layout import (
    ROLES,
    Box,
    TextLine,
    assign_roles,
    is_numberish,
    upright,
)

log = logging.getLogger(__name__)

READ_VERSION = "ppocrv4-4"  # what the engine reads (detector, recogniser, settings):
# cached readings are kept under it
OCR_VERSION = "ppocrv4-6"  # the reading, its layout roles and what they show (log axes,
# percentage labels: `tools.printed`), recorded with each image: an
# index whose images were read under another reads them again (from the cache when there,
# so a change to the roles' rules alone costs no new reading)
MAX_SIDE = 960
MIN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Reading:
    """Everything read in one image."""

    lines: tuple[TextLine, ...] = ()
    size: tuple[int, int] = (0, 0)
    seconds: float = 0.0
    version: str = OCR_VERSION

    def text(self, roles: Sequence[str] = ROLES) -> str:
        """The lines of the given roles, in reading order, one per line."""
        return "\n".join(line.text for line in self.lines if line.role in roles)

    def to_json(self) -> str:
        lines = [x.to_dict() for x in self.lines]
        data = {"v": self.version, "size": list(self.size), "lines": lines}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Reading:
        d = json.loads(text)
        lines = tuple(TextLine.from_dict(x) for x in d.get("lines", []))
        return cls(lines, tuple(d.get("size", (0, 0))), 0.0, d.get("v", OCR_VERSION))


@dataclass
class Reader:
    """A loaded OCR engine; `read(image)` may be called from several threads at once.
    With `cache`, readings are kept there by the image's content id (`key`), so indexing
    the same file into another collection or database reads nothing again (the layout
    roles are assigned afresh, so a change to their rules needs no new reading)."""

    engine: Any
    max_side: int = MAX_SIDE
    min_confidence: float = MIN_CONFIDENCE
    cache: Path | None = None

    def read(self, image: Image.Image, key: str | None = None) -> Reading:
        cached = self.cache / f"{key}.{READ_VERSION}.json" if self.cache and key else None
        if cached is not None and cached.is_file():
            try:
                reading = Reading.from_json(cached.read_text(encoding="utf-8"))
                lines = assign_roles(reading.lines, reading.size, image)
                return Reading(tuple(lines), reading.size, 0.0, OCR_VERSION)
            except (OSError, ValueError, KeyError):
                log.warning("ignoring an unreadable cached reading %s", cached)
        reading = self._read(image)
        if cached is not None:
            _write_atomic(cached, reading.to_json())
        return reading

    def _read(self, image: Image.Image) -> Reading:
        t0 = time.perf_counter()
        image = original = image.convert("RGB")
        width, height = image.size
        scale = min(1.0, self.max_side / max(width, height))
        if scale < 1.0:
            image = image.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
        lines = self._lines(image, scale, (width, height))
        if lines and not any(upright(x.box, width) and not is_numberish(x.text) for x in lines):
            lines += self._turned_strip(image, scale, (width, height))
        lines.sort(key=lambda x: (x.box[1], x.box[0]))
        roles = assign_roles(lines, (width, height), original)
        return Reading(tuple(roles), (width, height), time.perf_counter() - t0)

    def _lines(self, image: Image.Image, scale: float, size: tuple[int, int]) -> list[TextLine]:
        found, _ = self.engine(np.asarray(image))
        lines = []
        for points, text, confidence in found or []:
            text = " ".join(str(text).split())
            if text and float(confidence) >= self.min_confidence:
                lines.append(TextLine(text, _box(points, scale, size), float(confidence)))
        return lines

    def _turned_strip(
        self, image: Image.Image, scale: float, size: tuple[int, int]
    ) -> list[TextLine]:
        """The detector misses text turned 90 degrees (a y-axis label): read the left fifth
        of the image turned a quarter clockwise, and keep the tall non-number lines."""
        strip_w, strip_h = max(1, round(image.width * 0.2)), image.height
        turned = image.crop((0, 0, strip_w, strip_h)).transpose(Image.Transpose.ROTATE_270)
        out = []
        for line in self._lines(turned, 1.0, turned.size):
            a0, b0, a1, b1 = line.box  # turned pixels: x' = H - 1 - y, y' = x
            x0, y0, x1, y1 = b0, strip_h - a1, b1, strip_h - a0
            box = _box([(x0, y0), (x1, y1)], scale, size)
            if not is_numberish(line.text) and upright(box, size[0]):
                out.append(TextLine(line.text, box, line.confidence))
        return out


def load_reader(*, max_side: int = MAX_SIDE, threads: int = 1, cache: Path | None = None) -> Reader:
    """The OCR engine, from the models inside the installed rapidocr-onnxruntime wheel;
    `threads` per call (calls from several threads run side by side); `cache` a folder
    for readings by content id."""
    try:
        from rapidocr_onnxruntime import RapidOCR  # noqa: PLC0415 - onnxruntime loads in seconds
    except ImportError as exc:
        raise ModelLoadError(
            "reading words in images needs rapidocr-onnxruntime: pip install rapidocr-onnxruntime"
        ) from exc
    options = {
        "use_cls": False,
        "det_limit_type": "max",
        "det_limit_side_len": max_side,
        "rec_batch_num": 6,
        "print_verbose": False,
        "intra_op_num_threads": threads,
        "inter_op_num_threads": 1,
    }
    return Reader(RapidOCR(**options), max_side=max_side, cache=cache)


def _write_atomic(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:  # a cache that cannot be written only costs time
        log.warning("could not cache a reading in %s: %s", path.parent, exc)


def _box(points, scale: float, size: tuple[int, int]) -> Box:
    pts = np.asarray(points, dtype=np.float64) / scale
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int)
    w, h = size
    x0, y0 = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
    return (int(x0), int(y0), int(max(x0 + 1, min(x1, w))), int(max(y0 + 1, min(y1, h))))


def words(text: str) -> list[str]:
    """Lower-case word tokens for matching, with identifiers split as people say them, and
    run-together words (the recogniser often drops spaces) split as well as kept.

    >>> words("plot_circmean vs. halfLogistic PDF n=2")
    ['plot', 'circmean', 'vs', 'half', 'logistic', 'pdf', 'n', '2']
    >>> words("95%confidenceinterval")
    ['95', 'confidenceinterval', 'confidence', 'interval']
    """
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    out = []
    for token in re.findall(r"[^\W_]+", spaced.lower()):
        out.append(token)
        if len(token) >= 8 and not token.isdigit():
            parts = wordninja.split(token)
            if len(parts) > 1 and all(len(p) > 1 or p.isdigit() for p in parts):
                out += parts
    return out


# --- what the words become in the index ----------------------------------------------------

WEIGHTS = {"title": 3, "legend": 2, "xlabel": 2, "ylabel": 2, "label": 1, "tick": 1}
"""How many times a line's words count in the search document: what a figure is about
is in its title, labels and legend; its tick labels rarely say."""


def search_document(reading: Reading) -> str:
    """The words of a reading as a space-delimited token string, each line's tokens
    repeated by its role's weight (`WEIGHTS`), padded with spaces so that a token is found
    as " token ".

    >>> title = TextLine("Run 12", (0, 0, 9, 9), 1.0, "title")
    >>> tick = TextLine("3", (0, 9, 9, 19), 1.0, "tick")
    >>> search_document(Reading((title, tick)))
    ' run 12 run 12 run 12 3 '
    """
    tokens = [t for line in reading.lines for t in words(line.text) * WEIGHTS[line.role]]
    return " " + " ".join(tokens) + " "


def words_text(reading: Reading) -> str:
    """What the text embedder embeds: the lines that say what the figure is about (titles,
    labels, legend entries; tick labels only when nothing else was read), most telling first.
    """
    order = {role: n for n, role in enumerate(("title", "xlabel", "ylabel", "legend", "label"))}
    telling = sorted((x for x in reading.lines if x.role != "tick"), key=lambda x: order[x.role])
    chosen = telling or list(reading.lines)
    return ". ".join(x.text for x in chosen)


def looks_like_figure(image: Image.Image) -> bool:
    """Charts, diagrams, documents and screenshots: a few flat colours cover most of the
    picture (a photo's colours spread). The four commonest of 512 colour bins cover at
    least 60% of a 64x64 thumbnail.

    >>> looks_like_figure(Image.new("RGB", (300, 200), "white"))
    True
    >>> noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    >>> looks_like_figure(Image.fromarray(noise))
    False
    """
    small = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR)) // 32
    codes = (small[..., 0] * 64 + small[..., 1] * 8 + small[..., 2]).ravel()
    counts = np.bincount(codes, minlength=512)
    return float(np.sort(counts)[-4:].sum()) / codes.size >= 0.6
