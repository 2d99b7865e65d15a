"""How many of something a query asks for: "a bar chart with 5 bars", "a box plot with four
boxes", "a line chart with 3 lines", "a pie chart with 5 slices", "a grouped bar chart
comparing 2 series".

A whole-image embedding does not count: on the figure benchmark the bundled model ranks
"a bar chart with 5 bars" like "a bar chart". Two things indexing reads do count:

- categories (bars, boxes, groups): a chart's category names, one under each bar or box
  (or beside it, in a horizontal chart), read by OCR as a row or a column of tick labels
  that are not numbers (`tools.ingest.layout` roles); `category_count` counts the longest
  such row or column in a reading (0: none read).
- series (lines, slices, series): one colour each. `series_count` counts the colours that
  fill areas (`colours.fill_shares`: a pie's slices, a grouped bar chart's series) and
  those the marks reader sees drawing a marker or a line style (`tools.marks`: a line
  chart's lines), from the image's metadata.

`named_count` reads the number and the thing counted; `count_scores` and `series_scores`
give 1 where what was read numbers what was asked, 0 where another number was read and
`UNKNOWN` where none was or where it is one off: a count one off is more often a misread
than another figure (a pie's slice under 1% of the ink, a black or grey slice taken for
the text's colour, the blend of two colours counted as a third). On the benchmark's
validation split that lifted the 48 captions that name a count (recall@5 0.979 -> 1.0)
and the 21 attribute queries (capped precision@5 0.887 -> 0.903); a one-off count at
0.5, above a count not read, lost the latter on the test split (0.910 -> 0.891).
`tools.pipeline.search` reorders the first stage's top `POOL` by `(1 - WEIGHT) x first
stage + WEIGHT x count` (the first stage min-max scaled over the pool); categories only
when the collection's words were read (`evident index --ocr`).

On the benchmark's validation split the category names read give the number of bars or
boxes for 81 of 96 bar charts and box plots (vertical 59 of 66, horizontal 22 of 30); the
series colours the number of slices of 45 of 48 pie charts, of series of 41 of 41
grouped bar charts and of lines of 45 of 52 line charts (two series in one colour name,
"red" and "brown" say, count as one).

Not handled: counting categories that have no names under them, a histogram's overlaid
distributions (their overlap blends colours that fill areas too: 21 of 39 right), a
scatter plot's series (a fit line is one more colour), numbers above `MOST`, "at
least"/"more than", charts whose category names the OCR cannot read (rotated labels)
or reads as one line (names set close together), and a vertical chart with no axis
label under its category names (the OCR's roles then read the names as the axis label).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evident.tools.ingest.layout import is_numberish, same_right_edge, same_row
from evident.tools.ingest.ocr import Reading
from evident.tools.marks import LINES, MARKS

POOL = 64  # the first stage's candidates the count reorders
WEIGHT = 1 / 3  # the count's share of the final score
UNKNOWN = 0.25  # the count score of an image whose categories were not read
MOST = 30  # larger numbers are not read as counts
_NUMBERS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]
CATEGORIES = ("bars", "boxes", "box plots", "categories", "groups")
SERIES = ("lines", "line", "curves", "curve", "series", "slices", "wedges")
COUNTED = re.compile(
    r"\b(?:with|comparing|showing) (?P<n>\d{1,2}|a single|" + "|".join(_NUMBERS) + r") "
    r"(?:(?:different|distinct|separate|coloured|colored)\s+)?"
    r"(?P<what>" + "|".join(CATEGORIES + SERIES) + r")\b"
    r"(?![\s-]+(?:charts?|plots?|graphs?|panels?|of)\b)",  # "3 line charts", "2 lines of text"
    re.IGNORECASE,
)
FILLS = 0.01  # a colour fills areas (a slice, a bar series) with this share of the ink
DRAWS = 0.5  # a colour draws a series where the marks reader is this sure of a mark


@dataclass(frozen=True)
class Count:
    """A count a query asks for: `phrase` as written, `n` of `what`."""

    phrase: str
    n: int
    what: str

    @property
    def by(self) -> str:
        """What counts it: "categories" (their names, read by OCR) or "series" (colours)."""
        return "categories" if self.what in CATEGORIES else "series"

    def to_dict(self) -> dict:
        return {"where": self.phrase, "n": self.n, "what": self.what, "by": self.by}


def named_count(text: str | None) -> Count | None:
    """The first count of categories `text` asks for, or None.

    >>> named_count("a bar chart with five bars")
    Count(phrase='with five bars', n=5, what='bars')
    >>> named_count("a box plot with 4 boxes").n, named_count("a line chart with 3 lines").by
    (4, 'series')
    >>> named_count("a grouped bar chart comparing two series").n, named_count("3 lines")
    (2, None)
    >>> named_count("a line chart with a single line").n
    1
    """
    m = COUNTED.search(text or "")
    if m is None:
        return None
    word = m.group("n").lower()
    n = int(word) if word.isdigit() else 1 if word == "a single" else _NUMBERS.index(word) + 1
    if not 1 <= n <= MOST:
        return None
    return Count(m.group(0), n, m.group("what").lower())


def counted(fusion: dict | None) -> dict | None:
    """The `count` record of a search's `fusion` when the count counted in its order (a
    weight above 0), else None.

    >>> counted({"count": {"n": 5, "what": "bars", "weight": 0.33}})["n"], counted({})
    (5, None)
    """
    count = (fusion or {}).get("count") or {}
    return count if count.get("weight") else None


def counted_by(count: dict) -> str:
    """What a `fusion.count` record was counted by, in words.

    >>> counted_by({"by": "series"}), counted_by({})
    ('the colours each draws its series in', 'the category names read in each')
    """
    if count.get("by") == "series":
        return "the colours each draws its series in"
    return "the category names read in each"


def category_count(reading: Reading | None) -> int:
    """The number of category names read in one row (under the bars) or one column
    (beside them): tick labels that are not numbers, at one height or right-aligned;
    0 where none were read."""
    if reading is None:
        return 0
    names = [x.box for x in reading.lines if x.role == "tick" and not is_numberish(x.text)]
    best = 0
    for a in names:
        row = sum(same_row(a, b) for b in names)
        column = sum(same_right_edge(a, b) for b in names)
        best = max(best, row, column)
    return best if best >= 2 else 0


def count_scores(readings: Sequence[Reading | None], count: Count) -> np.ndarray:
    """`(B,)`: 1 where the categories read number `count.n`, 0 where another number was
    read, `UNKNOWN` where none was or one off (`_said`)."""
    return _said([category_count(r) for r in readings], count)


def series_count(marks: dict | None, fills: dict | None) -> int:
    """The colours an image draws series in: those that fill `FILLS` of its ink, and those
    the marks reader is `DRAWS` sure draw a marker or a line style (an arrow or a slice
    pulled out is no series); 0 where neither was read.

    >>> series_count({"red": {"dashed": 0.9}, "black": {"dashed": 0.1}}, {"blue": 0.2})
    2
    >>> series_count(None, {"red": 0.004}), series_count({}, {})
    (0, 0)
    """
    drawn = {c for c, v in (fills or {}).items() if v >= FILLS}
    for colour, probs in (marks or {}).items():
        if any(p >= DRAWS for m, p in probs.items() if m in MARKS + LINES):
            drawn.add(colour)
    return len(drawn)


def series_scores(read: Sequence[tuple[dict | None, dict | None]], count: Count) -> np.ndarray:
    """`(B,)` from each image's (marks, fills): 1 where its series number `count.n`, 0 where
    another number was read, `UNKNOWN` where none was or one off (`_said`)."""
    return _said([series_count(marks, fills) for marks, fills in read], count)


def _said(found: list[int], count: Count) -> np.ndarray:
    """1 where the number found (0: none) is the one asked, `UNKNOWN` where none was found
    or it is one off (as likely a misread as another figure), else 0.

    >>> _said([5, 4, 6, 3, 0], Count("with 5 slices", 5, "slices")).tolist() == [
    ...     1.0, UNKNOWN, UNKNOWN, 0.0, UNKNOWN]
    True
    """
    return np.array(
        [1.0 if k == count.n else UNKNOWN if not k or abs(k - count.n) == 1 else 0.0 for k in found]
    )
