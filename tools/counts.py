"""How many of something a query asks for: "a bar chart with 5 bars", "a box plot with four
boxes", "a chart with 6 categories".

A whole-image embedding does not count: on the figure benchmark the bundled model ranks
"a bar chart with 5 bars" like "a bar chart". A chart's category names do count: one
under each bar or box (or beside it, in a horizontal chart), read by OCR as a row or a
column of tick labels that are not numbers (`tools.ingest.layout` roles). `named_count`
reads the number and the thing counted; `category_count` counts the longest such row or
column in a reading (0: none read); `count_scores` gives 1 where that is the number
asked for, 0 where another number was read and `UNKNOWN` where none was.
`tools.pipeline.search` reorders the first stage's top `POOL` by `(1 - WEIGHT) x first
stage + WEIGHT x count` (the first stage min-max scaled over the pool), when the
collection's words were read (`evident index --ocr`).

On the benchmark's validation split the category names read give the number of bars or
boxes for 81 of 96 bar charts and box plots (vertical 59 of 66, horizontal 22 of 30);
the 10 queries for a number of bars or boxes, capped precision@5: see the README.

Not handled: counting what has no names under it (a line chart's lines, a pie's slices,
a histogram's distributions: their legends' entries are read too seldom right to count
on), numbers above `MOST`, "at least"/"more than", charts whose category names the
OCR cannot read (rotated labels) or reads as one line (names set close together), and a
vertical chart with no axis label under its category names (the OCR's roles then read
the names as the axis label).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evident.tools.ingest.layout import is_numberish, same_right_edge, same_row
from evident.tools.ingest.ocr import Reading

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
COUNTED = re.compile(
    r"\bwith (?P<n>\d{1,2}|" + "|".join(_NUMBERS) + r") "
    r"(?P<what>bars|boxes|box plots|categories|groups)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Count:
    """A count a query asks for: `phrase` as written, `n` of `what`."""

    phrase: str
    n: int
    what: str

    def to_dict(self) -> dict:
        return {"where": self.phrase, "n": self.n, "what": self.what}


def named_count(text: str | None) -> Count | None:
    """The first count of categories `text` asks for, or None.

    >>> named_count("a bar chart with five bars")
    Count(phrase='with five bars', n=5, what='bars')
    >>> named_count("a box plot with 4 boxes").n, named_count("a line chart with 3 lines")
    (4, None)
    """
    m = COUNTED.search(text or "")
    if m is None:
        return None
    word = m.group("n").lower()
    n = int(word) if word.isdigit() else _NUMBERS.index(word) + 1
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
    read, `UNKNOWN` where none was."""
    found = [category_count(r) for r in readings]
    return np.array([UNKNOWN if not k else float(k == count.n) for k in found])
