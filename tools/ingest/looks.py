"""What indexing reads from an image besides its embedding, kept in its metadata: the
colours' shares and the areas they fill (`tools.colours`), where the plot lies across
the image (`frame`), the marks a chart is drawn with (`marks_reader`, when the reader is
installed) and the words (`tools.ingest.ocr`) with what they show of how it is drawn
(`tools.printed`); `metadata.READ` names them all — and which of them a stored record
still needs (`due`): never read, or read by another marks reader or OCR version.
An image already embedded is brought up to date by reading only what is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from evident.tools import printed
from evident.tools.colours import (
    NAMER,
    SHARES_SIDE,
    colour_shares,
    encode,
    fill_shares,
    name_grid,
    solid_blocks,
)
from evident.tools.ingest import frame, marks_reader
from evident.tools.ingest.ocr import OCR_VERSION, Reader, Reading, looks_like_figure

OcrMode = Literal["auto", "on", "off"]
OCR_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Due:
    """Which of an image's looks are to be read now."""

    colours: bool
    marks: bool
    words: bool

    def __bool__(self) -> bool:
        return self.colours or self.marks or self.words


def due(meta: dict, ocr: OcrMode) -> Due:
    """What `meta` lacks: colours never counted, named by another namer (`NAMER`) or
    without the plot's span (`frame`), marks not read by the installed reader, words not
    read under this `OCR_VERSION` (with `ocr` not "off"; an image "auto" passed by stays
    passed by).

    >>> passed = due({"colours_by": NAMER, "plot": "{}", "ocr": "skipped"}, "auto")
    >>> passed.colours, passed.words, due({}, "on").words, due({}, "off").words
    (False, False, True, False)
    """
    by = marks_reader.version()
    return Due(
        colours=meta.get("colours_by") != NAMER or "plot" not in meta,
        marks=by is not None and meta.get("marks_by") != by,
        words=ocr != "off" and meta.get("ocr") not in (OCR_VERSION, "skipped"),
    )


def look(image, meta: dict, todo: Due) -> None:
    """Into `meta`: the colours' shares and fills, the plot's span, and the marks a chart is
    drawn with (`tools.marks`; "{}" for an image that is not a chart on paper, and for one
    that has none) with the reader that read them, as far as `todo` asks; one coarse grid
    of colour names, and one map of its solid blocks, serve them all."""
    if not (todo.colours or todo.marks):
        return
    coarse = name_grid(image, SHARES_SIDE)
    blocks = solid_blocks(coarse, 4)  # fills, the plot's span and the reader's check share it
    fills = fill_shares(coarse, blocks)
    if todo.colours:
        meta["colours"] = encode(colour_shares(image, coarse))
        meta["fills"] = encode(fills)
        meta["colours_by"] = NAMER
        meta["plot"] = encode(frame.plot_span(coarse, blocks))
    if todo.marks:
        read = marks_reader.read_marks(image, coarse=coarse, blocks=blocks, fills=fills)
        meta["marks"] = encode(read)
        meta["marks_by"] = marks_reader.version()


def read_words(image, ocr: OcrMode, reader: Reader, meta: dict, key: str) -> Reading:
    """The words in `image` ("auto": only if it looks like a figure), recorded in `meta`:
    `ocr` is the reader's version ("skipped" when auto passed it by), `words` the lines,
    `printed` what they show of how it is drawn (`tools.printed`: a logarithmic axis,
    percentage labels)."""
    if ocr == "auto" and not looks_like_figure(image):
        meta |= {"ocr": "skipped", "words": 0}
        return Reading()
    reading = reader.read(image, key)
    shown = printed.encode(printed.read(reading.lines, reading.size))
    meta |= {"ocr": reading.version, "words": len(reading.lines), "printed": shown}
    return reading
