"""Where a query puts something: "a bar chart with a legend in the upper left", "a dog at
the bottom", "legend outside the plot on the right".

A whole-image embedding averages its patches, so it cannot say where a thing is: on the
figure benchmark the model ranks "a bar chart with a legend in the center right" no
better than "a bar chart with a legend" (precision@5 0.155 on the validation split). The
model's patches can. `named_place` reads the place a query names and the thing it names
there (the words just before it, after the last punctuation or "with", "and", "has",
"having", "showing", "where": "a legend", "legend"); `place_scores` asks of each
candidate's map for that thing (the patch contributions of
`tools.evidence.contribution`, one forward) how much of its peak lies at the place: the
patches' contributions, standardised per image and sharpened (`exp(SHARPNESS * z)`, so
the map's peak and not its spread counts), weighted by a Gaussian `SPREAD` of the image
wide around the place's point.

Places are points on the image: thirds for left/centre/right and upper/middle/lower,
and for "outside the plot on the right" (or left) the image's edge (`EDGE`), where a
legend outside the axes sits. `tools.pipeline.search` reorders the first stage's top
`POOL` by `(1 - WEIGHT) x first stage + WEIGHT x place` (both min-max scaled over the
pool). Chosen on the benchmark's validation split, where the first stage was the image
cosine alone: legend-position queries 0.155 -> 0.547, and the captions that name their
legend's place (279) recall@5 0.527 -> 0.728. On the test split, through the product's
search: the 49 legend-position queries 0.147 -> 0.682, captions unchanged (README).
`WEIGHT` was 1/3 until the places read from the words made the place surer; on today's
validation split, capped precision@5 of the 49 legend-position queries 0.968 at 1/3,
0.977 at 0.4 and 0.45, 0.981 at 0.5 (where caption recall@5 falls 0.984 -> 0.976; at 0.4
and 0.45 it holds), 0.930 at 0.75: 0.4 is kept.

A figure's text parts are also placed by their words. When the thing placed is a legend,
a title or an axis label (`role_of`) and the images' words were read (`evident index
--ocr`), `words_scores` asks where the lines of that layout role (`tools.ingest.layout`)
lie: the Gaussian at the place around the centre of their box, 0 where none was read.
"Outside the plot" is judged against the plot, not the image: the part's lines start
beyond the plot's span where indexing read one (`ingest.frame`: the x axis; a pie's
slices, `FILLED_MARGIN` beyond), else more than `OUTSIDE` of the image's width beyond
the x-axis tick labels (the tick lines in the image's lower `TICK_BAND`), where an
upper-right legend inside the axes mostly ends before the last tick label (validation
split, legends inside the plot's right side judged inside: 155 of 155 by the span, 143
of 155 by the tick labels); a part outside the plot scores 0 for a place inside it, and
where the span judged it (`elsewhere`) the whole place score is 0, the patches' too. A
legend's centre alone cannot tell the two apart: both sit at about (0.87, 0.2) of the
image. Inside the plot, a centre is placed across the plot's span where indexing read
one (matplotlib's "upper center" is the axes' top middle; validation, legend queries
0.952 -> 0.968), clipped to its edges, and on the image otherwise: not on the plot the
tick labels outline (that scored 0.885 against 0.902 on the validation split: its extent
is noisier than the layouts are different). For a place outside the plot the words decide alone: the
patches' point there is a guess at the image's edge, where such a legend is seldom
centred (validation, the 7 outside-right queries: 0.693 with both, 0.807 by the words).
Measured on the validation split (49 legend-position queries, capped precision@5,
through the product's search): patches alone 0.652, words alone 0.907, both
(`WORDS_SHARE` of the place score each) 0.906, and 0.928 with the OCR's roles of version
5 and the words alone outside the plot; the 279 captions that name a legend's place
0.996 -> 1.000.

Not handled: relations between two things ("the cat left of the dog"), places in a panel
of a multi-panel figure (the image's, not the panel's; by words, all panels' legend lines
make one box), "left"/"right" without "in the" or "on the" before it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from evident.tools.ingest.ocr import Reading

POOL = 64  # the first stage's candidates the place reorders
WEIGHT = 0.4  # the place's share of the final score
SPREAD = 0.15  # the place's Gaussian, as a share of the image's side
SHARPNESS = 3.0  # how much the map's peak counts over its spread
EDGE = 0.05  # "outside the plot on the right": this far from the image's right edge
WORDS_SHARE = 0.5  # the words' share of the place score, for a text part with words read
OUTSIDE = 0.03  # outside the plot: this share of the width beyond the x-axis tick labels
TICK_BAND = 0.3  # the x-axis tick labels: tick lines whose top is in this lower share
FILLED_MARGIN = 0.05  # outside a plot of filled shapes (a pie): words this far beyond them
MIN_PLOT = 0.2  # a plot span narrower than this share of the width is no plot to place in

_SIDE = r"(?:left|right)"
_ROW = r"(?:upper|lower|top|bottom)"
_MIDDLE = r"(?:center|centre|middle)"
_OF_IMAGE = r"(?: of the (?:image|picture|photo|figure|plot|chart|page))?"
_NOT = r"\b(?! \d| of\b)"  # "in the top 10", "at the top of the hill": not places in the image
PLACE = re.compile(
    rf"\b(?:in|at) the (?P<row>{_ROW}|{_MIDDLE})(?:[ -](?P<col>{_SIDE}|{_MIDDLE}))?"
    rf"(?: corner)?{_OF_IMAGE}{_NOT}"
    rf"|\b(?:in|at|on) the (?P<side>{_SIDE})(?: side)?{_OF_IMAGE}{_NOT}"
    rf"|\boutside the (?:plot|axes|chart) (?:on|to) the (?P<outside>{_SIDE})\b",
    re.IGNORECASE,
)
_BEFORE = re.compile(r"[;,:.!?]|\b(?:with|and|has|having|showing|where)\b", re.IGNORECASE)
_ROLE = re.compile(
    r"\b(?:(?P<legend>legend|key)|(?P<title>title|heading)"
    r"|(?P<xlabel>x[- ]?(?:axis )?label)|(?P<ylabel>y[- ]?(?:axis )?label))s?\b",
    re.IGNORECASE,
)
_ROWS = {"upper": 1 / 6, "top": 1 / 6, "lower": 5 / 6, "bottom": 5 / 6}
_COLS = {"left": 1 / 6, "right": 5 / 6}


@dataclass(frozen=True)
class Place:
    """A place a query names: `phrase` as written, the `part` placed there, and the point
    `(x, y)` on the image (0-1, from the left and the top)."""

    phrase: str
    part: str
    x: float
    y: float
    outside: bool = False  # "outside the plot on the right": beyond the plot, at that side

    def to_dict(self) -> dict:
        return {"where": self.phrase, "part": self.part, "at": [round(self.x, 3), round(self.y, 3)]}


def named_place(text: str | None) -> Place | None:
    """The first place `text` names with something before it, or None.

    >>> named_place("a bar chart with a legend in the upper left")
    Place(phrase='in the upper left', part='a legend', x=0.167, y=0.167, outside=False)
    >>> named_place("legend outside the plot on the right").x, named_place("ranked in the top 10")
    (0.95, None)
    """
    for m in PLACE.finditer(text or ""):
        part = _BEFORE.split(text[: m.start()])[-1].strip()
        if not part:
            continue
        x, y = _point(m)
        return Place(m.group(0), part, round(x, 3), round(y, 3), bool(m.group("outside")))
    return None


def _point(m: re.Match) -> tuple[float, float]:
    g = {k: (v or "").lower() for k, v in m.groupdict().items()}
    if g["outside"]:
        return (1 - EDGE if g["outside"] == "right" else EDGE), 0.5
    if g["side"]:
        return _COLS[g["side"]], 0.5
    return _COLS.get(g["col"], 0.5), _ROWS.get(g["row"], 0.5)


def role_of(part: str) -> str | None:
    """The OCR layout role (`tools.ingest.layout.ROLES`) of a figure's text part, or None.

    >>> role_of("a legend"), role_of("the y-axis label"), role_of("a dog")
    ('legend', 'ylabel', None)
    """
    m = _ROLE.search(part or "")
    return next(k for k, v in m.groupdict().items() if v) if m else None


def words_scores(
    readings: Sequence[Reading | None],
    place: Place,
    role: str,
    plots: Sequence[dict | None] | None = None,
) -> np.ndarray:
    """`(B,)`, 0-1: how near the place the lines of layout `role` lie in each image's
    reading (None: nothing read there), 0 where no line has that role; `plots`, each
    image's plot span where indexing read it (`ingest.frame`), says where the plot ends."""
    return words_places(readings, place, role, plots)[0]


def elsewhere(
    readings: Sequence[Reading | None], place: Place, role: str, plots: Sequence[dict | None]
) -> np.ndarray:
    """`(B,)` bool: where the plot's span (`plots`) says the part's lines lie on the other
    side of the plot's edge than `place` asks (beside the plot, asked inside it, or the
    reverse)."""
    return words_places(readings, place, role, plots)[1]


def words_places(
    readings: Sequence[Reading | None],
    place: Place,
    role: str,
    plots: Sequence[dict | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`words_scores` and `elsewhere` in one pass over the readings."""
    plots = plots or [None] * len(readings)
    judged = [_judge(r, place, role, p) for r, p in zip(readings, plots, strict=True)]
    return (
        np.array([score for score, _ in judged], dtype=np.float64),
        np.array([overruled for _, overruled in judged], dtype=bool),
    )


def _judge(
    reading: Reading | None, place: Place, role: str, plot: dict | None
) -> tuple[float, bool]:
    """How near `place` the part's lines lie, and whether the plot's span puts them on the
    other side of the plot's edge."""
    if reading is None or not reading.size[0] or not reading.size[1]:
        return 0.0, False
    width, height = reading.size
    boxes = np.array([line.box for line in reading.lines if line.role == role], dtype=float)
    if not len(boxes):
        return 0.0, False
    x0, y0, x1, y1 = boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()
    side = _side(reading, x0, x1, plot)
    if side is not None:  # where the plot ends is known
        wanted = ("right" if place.x > 0.5 else "left") if place.outside else "inside"
        overruled = plot is not None and side != wanted
        if place.outside or side != "inside":  # outside the plot, or asked for outside it
            return float(side == wanted), overruled
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    if plot is not None and plot["x"][1] - plot["x"][0] >= MIN_PLOT:
        left, right = plot["x"]  # inside the plot: placed across it, at most at its edges
        cx = float(np.clip((cx - left) / (right - left), 0.0, 1.0))
    score = float(np.exp(-((cx - place.x) ** 2 + (cy - place.y) ** 2) / (2 * SPREAD**2)))
    return score, False


def _side(reading: Reading, x0: float, x1: float, plot: dict | None) -> str | None:
    """Where lines spanning `x0`-`x1` lie against the plot: "inside", beyond it on the
    "right" or the "left", or None where the plot's extent is not known: from the plot's
    span when indexing read one (its x axis; its filled shapes, `FILLED_MARGIN` beyond),
    else from the x-axis tick labels (`OUTSIDE` beyond the first and the last)."""
    width, height = reading.size
    if plot is not None:
        left, right = (v * width for v in plot["x"])
        margin = (FILLED_MARGIN if plot.get("by") == "fills" else 0.0) * width
    else:
        ticks = [
            line.box
            for line in reading.lines
            if line.role == "tick" and line.box[1] > (1 - TICK_BAND) * height
        ]
        if not ticks:
            return None
        right, left = max(b[2] for b in ticks), min(b[0] for b in ticks)
        margin = OUTSIDE * width
    return "right" if x0 - right > margin else "left" if left - x1 > margin else "inside"


def applied(fusion: dict | None) -> dict | None:
    """The `place` record of a search's `fusion` when the place counted in its order (a
    weight above 0), else None (no place named, or named and not used).

    >>> applied({"place": {"part": "a legend", "weight": 0.33}})["part"], applied({})
    ('a legend', None)
    """
    place = (fusion or {}).get("place") or {}
    return place if place.get("weight") else None


def read_from(place: dict) -> str:
    """What placed a search's `place` record, for a sentence: "" when the model's patches
    alone did.

    >>> read_from({"by": ["patches", "words"]}), read_from({"by": ["patches"]})
    (", read from its words and the model's patches", '')
    """
    by = place.get("by") or []
    if "words" not in by:
        return ""
    return ", read from its words" + (" and the model's patches" if "patches" in by else "")


def place_scores(maps: np.ndarray, place: Place) -> np.ndarray:
    """`(B,)`: how much of each map's peak lies at `place`; `maps` `(B, h, w)`, any scale
    (the patch contributions of the thing placed)."""

    maps = np.asarray(maps, dtype=np.float64)
    _, h, w = maps.shape
    ys, xs = np.mgrid[0:h, 0:w]
    near = np.exp(
        -(((xs + 0.5) / w - place.x) ** 2 + ((ys + 0.5) / h - place.y) ** 2) / (2 * SPREAD**2)
    )
    flat = maps.reshape(len(maps), -1)
    z = (flat - flat.mean(1, keepdims=True)) / np.maximum(flat.std(1, keepdims=True), 1e-12)
    weight = np.exp(SHARPNESS * (z - z.max(1, keepdims=True)))
    weight /= weight.sum(1, keepdims=True)
    return weight @ near.ravel()
