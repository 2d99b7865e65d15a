"""A figure's text lines and their layout roles, from geometry alone (a figure's layout,
not a parse of its drawing); `tools.ingest.ocr` reads the lines and assigns them here:
- `tick`: text that is a number, a short numeric expression or a unit power ("10²", "-0.5");
- `ylabel`: a box taller than wide near the left edge (rotated text);
- `title`: non-number text in the top band, the widest there;
- `xlabel`: non-number text in the bottom band, except a row with more text under it (a
  bar chart's category names: those are `tick`, as are three or more lines in the left
  half right-aligned one above another, not left-aligned or spaced wider than a
  legend's entries: a horizontal chart's category names or a heatmap's row names);
- `legend`: lines inside the figure stacked under each other at the same left edge, or a
  single line with a legend handle (a short line, patch or marker) just left of it;
- `label`: any other text (annotations, panel letters, cell values).
The role decides a line's weight in search (titles, labels and legends say what a figure
is about; tick labels rarely do) and lets a query that names a part ("the title of ...")
cite that part's words. A change to these rules is a new `ocr.OCR_VERSION`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

Role = Literal["title", "xlabel", "ylabel", "legend", "tick", "label"]
ROLES = ("title", "xlabel", "ylabel", "legend", "tick", "label")
Box = tuple[int, int, int, int]
_NUMBERISH = re.compile(r"^[\s\d.,:%+\-−–×x*^eE()\[\]²³¹⁰⁴⁵⁶⁷⁸⁹⁻/$°]*$")


@dataclass(frozen=True)
class TextLine:
    """One line of text read in an image: its words, its box in original pixels (x1/y1
    exclusive), the recogniser's confidence and its layout role."""

    text: str
    box: Box
    confidence: float
    role: Role = "label"

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "box": list(self.box),
            "confidence": round(self.confidence, 3),
            "role": self.role,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextLine:
        return cls(d["text"], tuple(int(v) for v in d["box"]), float(d["confidence"]), d["role"])


def upright(box: Box, width: int) -> bool:
    """A tall box near the left edge: a y-axis label's place and shape."""
    x0, y0, x1, y1 = box
    return y1 - y0 > 1.5 * (x1 - x0) and x1 <= 0.25 * width


def is_numberish(text: str) -> bool:
    """Tick-label-like text: numbers, signs, powers, units of one or two letters.

    >>> [is_numberish(t) for t in ("10²", "-0.5", "1e-3", "45%", "time (s)", "x")]
    [True, True, True, True, False, True]
    """
    return bool(_NUMBERISH.match(text)) or len(text.strip()) <= 1


def assign_roles(
    lines: Sequence[TextLine], size: tuple[int, int], image: Image.Image | None = None
) -> list[TextLine]:
    """Each line with its layout role (see the module notes); order kept. With the `image`,
    a lone line is a legend entry when a legend handle is drawn just left of it."""
    w, h = size
    roles: list[str] = []
    for line in lines:
        _, y0, _, y1 = line.box
        if is_numberish(line.text):
            roles.append("tick")
        elif upright(line.box, w):
            roles.append("ylabel")
        elif y1 <= 0.16 * h:
            roles.append("title")
        elif y0 >= 0.8 * h:
            roles.append("xlabel")
        else:
            roles.append("label")
    titles = [i for i, r in enumerate(roles) if r == "title"]
    if len(titles) > 1:  # the widest line up top is the title; the others are labels
        widest = max(titles, key=lambda i: lines[i].box[2] - lines[i].box[0])
        for i in titles:
            roles[i] = "title" if i == widest else "label"
    for i in _category_labels([i for i, r in enumerate(roles) if r == "xlabel"], lines):
        roles[i] = "tick"
    named = [i for i, r in enumerate(roles) if r in ("label", "xlabel")]
    for i in _category_column(named, lines, w):
        roles[i] = "tick"
    for i, j in _stacked([i for i, r in enumerate(roles) if r == "label"], lines):
        roles[i] = roles[j] = "legend"
    if image is not None and "legend" not in roles:
        gray = np.asarray(image.convert("L"), dtype=np.int16)
        for i, r in enumerate(roles):
            if r in ("title", "label", "xlabel") and _has_handle(gray, lines[i].box):
                roles[i] = "legend"
    return [TextLine(x.text, x.box, x.confidence, r) for x, r in zip(lines, roles, strict=True)]


def _category_labels(candidates: list[int], lines: Sequence[TextLine]) -> list[int]:
    """Lines in the bottom band that are a bar chart's category names, not the axis label:
    those whose row (lines at the same height) has another bottom line under it."""
    out = []
    for a in candidates:
        _, _, _, y1 = lines[a].box
        row = [lines[b].box for b in candidates if same_row(lines[a].box, lines[b].box)]
        left, right = min(b[0] for b in row), max(b[2] for b in row)
        below = (lines[b].box for b in candidates if _cy(lines[b].box) > y1)
        if any(left <= (b[0] + b[2]) / 2 <= right for b in below):
            out.append(a)
    return out


def _category_column(candidates: list[int], lines: Sequence[TextLine], width: int) -> list[int]:
    """Lines in the left half that are a horizontal chart's category names (or a heatmap's
    row names): at least three one above another, right-aligned at the axis, and either
    not left-aligned or spaced more than `0.8` of a line apart (a legend's entries are
    left-aligned and stacked closer)."""
    out: set[int] = set()
    for a in candidates:
        _, y0, x1, y1 = lines[a].box
        if x1 > width / 2 or a in out:
            continue
        height = y1 - y0
        slack = _slack(lines[a].box)
        column = sorted(
            (b for b in candidates if same_right_edge(lines[a].box, lines[b].box)),
            key=lambda b: lines[b].box[1],
        )
        if len(column) < 3:
            continue
        gaps = [lines[c].box[1] - lines[b].box[3] for b, c in itertools.pairwise(column)]
        lefts = [lines[b].box[0] for b in column]
        ragged = max(lefts) - min(lefts) > slack
        if min(gaps) >= 0 and (ragged or min(gaps) >= 0.8 * height):
            out.update(column)
    return sorted(out)


def same_row(a: Box, b: Box) -> bool:
    """Whether `b`'s middle is within half `a`'s height of `a`'s: one row of text."""
    return abs(_cy(b) - _cy(a)) <= 0.5 * (a[3] - a[1])


def same_right_edge(a: Box, b: Box) -> bool:
    """Whether `b` ends where `a` does, give or take `_slack(a)`: right-aligned text."""
    return abs(b[2] - a[2]) <= _slack(a)


def _slack(box: Box) -> float:
    return max(4, 0.4 * (box[3] - box[1]))


def _cy(box: Box) -> float:
    return (box[1] + box[3]) / 2


def _stacked(candidates: list[int], lines: Sequence[TextLine]):
    """Pairs of lines one under the other at the same left edge: legend entries."""
    for a in candidates:
        for b in candidates:
            if b <= a:
                continue
            la, lb = lines[a].box, lines[b].box
            height = max(la[3] - la[1], lb[3] - lb[1])
            same_left = abs(la[0] - lb[0]) <= max(6, 0.6 * height)
            close = 0 <= lb[1] - la[3] <= 1.5 * height
            if same_left and close:
                yield a, b


def _has_handle(gray: np.ndarray, box: Box) -> bool:
    """Whether a legend handle sits just left of a text box: the nearest run of inked
    columns in the band at the text's middle is 0.4-3.5 text heights long, ends within 1.5
    heights of the text, has clear background on its left, and one row inked across at
    least 80% of it (a line, a patch, a marker; not a stray tick or an axis)."""
    x0, y0, _, y1 = box
    h = max(y1 - y0, 4)
    cy = (y0 + y1) / 2
    top, bottom = int(cy - 0.35 * h), int(cy + 0.35 * h) + 1
    left = max(0, int(x0 - 5 * h))
    if x0 - left < h or top < 0 or bottom > gray.shape[0]:
        return False
    band = gray[top:bottom, left:x0]
    ink = np.abs(band - np.median(band)) > 40
    columns = ink.any(axis=0)
    right = len(columns)
    while right > 0 and not columns[right - 1]:
        right -= 1
    if right == 0 or len(columns) - right > 1.5 * h:
        return False
    start = right
    while start > 0 and columns[start - 1]:
        start -= 1
    length = right - start
    if start == 0 or not 0.4 * h <= length <= 3.5 * h:
        return False
    return bool((ink[:, start:right].mean(axis=1) >= 0.8).any())
