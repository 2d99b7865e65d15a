"""Marks: which marker shapes and line styles each colour of a chart is drawn with, and
whether it draws an arrow annotation — the signal behind "a scatter plot with cyan circle
markers", "a line chart with a red dashed line" and "a red arrow annotation", which the
figure model cannot see. A fit line whose style the query leaves open ("a scatter plot
with a brown regression line") asks for any line style in that colour (`LINE`).

The figure model looks at a figure 192 pixels a side, where a 6-pixel marker becomes
three pixels and a circle, a square and a diamond look alike (on the figure benchmark's
validation split, through search, its marker queries reach capped precision@5 0.45, its
line-style queries 0.43, against 0.87 for the other kinds it knows). The marks reader
(`tools.ingest.marks_reader`) looks at each colour on its own at the figure's own size
as the image is indexed, and stores per colour the probability of each of `LABELS` in
the image's metadata, stored as the colours are (`colours.encode`). Here is what search
needs, without torch: `named_marks` reads what a query asks for,
`mark_scores` gives each image the reader's probability that it shows it, a column
`tools.hybrid` weighs beside the model and the colours.

A pie's slice pulled out ("one slice pulled out", "an exploded pie", "the red slice
pulled out") is read with the marks, from the areas the colours fill (`ingest.pies`), and
stored as the mark `PULLED` of the slice's colour.

Not handled: other marker shapes and line styles ("pentagon", "loosely dotted"); which
series the query means when it names a label ("control as dashed line"); negation.
"""

from __future__ import annotations

import re

import numpy as np

from evident.tools.colours import NAMES, SYNONYMS

MARKS = ("circle", "square", "triangle", "diamond", "cross", "plus", "star")
LINES = ("solid", "dashed", "dotted", "dash-dot")
ARROWS = ("arrow",)  # an arrow annotation drawn in the colour (its arrow and its words)
LABELS = MARKS + LINES + ARROWS  # what the marks reader's network reads
LINE = "line"  # asked for by "a red regression line": any of `LINES`
PULLED = "pulled-out slice"  # a pie's slice pulled out, in its colour (`ingest.pies`)


_COLOUR = "|".join(sorted({*NAMES, *SYNONYMS}, key=len, reverse=True))
_SHAPES = {
    "circle": "circle", "circular": "circle", "round": "circle", "dot": "circle",
    "square": "square", "triangle": "triangle", "triangular": "triangle",
    "diamond": "diamond", "cross": "cross", "x": "cross", "plus": "plus", "star": "star",
}  # fmt: skip
_STYLES = {
    "solid": "solid", "dashed": "dashed", "dotted": "dotted", "dash-dot": "dash-dot",
    "dashdot": "dash-dot", "dash-dotted": "dash-dot", "dot-dashed": "dash-dot",
}  # fmt: skip
_COLOUR_WORD = rf"(?:\b(?P<colour>{_COLOUR})\s+)?"
MARK = re.compile(
    _COLOUR_WORD
    + r"(?:(?:hollow|filled|open|solid)\s+)?"
    + r"\b(?P<shape>{})s?(?:-shaped)?\s+markers?\b".format("|".join(_SHAPES)),
    re.IGNORECASE,
)
STYLED = re.compile(
    _COLOUR_WORD
    + r"\b(?P<style>{})\s+(?:regression\s+|fit\s+|trend\s+)?lines?\b".format(
        "|".join(sorted(_STYLES, key=len, reverse=True))
    ),
    re.IGNORECASE,
)
FIT = re.compile(_COLOUR_WORD + r"\b(?:regression|fit|fitted|trend)\s+lines?\b", re.IGNORECASE)
ARROW = re.compile(_COLOUR_WORD + r"\barrows?(?:\s+annotations?)?\b", re.IGNORECASE)
SLICE = re.compile(
    r"(?:" + _COLOUR_WORD + r"\b(?:slice|wedge)s?\s+(?:(?:is|are)\s+)?(?:pulled|pushed|moved)"
    r"\s+out\b|\b(?:pulled|pushed)[- ]out\s+(?:slice|wedge)s?\b|\bexplod(?:ed|ing)\s+"
    r"(?:pie|donut|doughnut|slice|wedge)s?\b)",
    re.IGNORECASE,
)


def named_marks(text: str) -> tuple[tuple[str | None, str], ...]:
    """The (colour or None, mark) pairs a query asks for.

    >>> named_marks("a scatter plot with cyan circle markers and a grey dash-dot line")
    (('cyan', 'circle'), ('grey', 'dash-dot'))
    >>> named_marks("square markers joined by dotted lines"), named_marks("a red bar chart")
    (((None, 'square'), (None, 'dotted')), ())
    >>> named_marks("coloured box markers, a hatred dashed line")
    ((None, 'dashed'),)
    >>> named_marks("a scatter plot with a red regression line and a grey arrow annotation")
    (('red', 'line'), ('grey', 'arrow'))
    >>> named_marks("a blue dashed regression line"), named_marks("a chart with an arrow")
    ((('blue', 'dashed'),), ((None, 'arrow'),))
    >>> named_marks("a pie chart with one slice pulled out"), named_marks("an exploded pie")
    (((None, 'pulled-out slice'),), ((None, 'pulled-out slice'),))
    >>> named_marks("a pie chart whose red slice is pulled out")
    (('red', 'pulled-out slice'),)
    """
    found = []
    for m in MARK.finditer(text):
        found.append((m.start(), _colour(m.group("colour")), _SHAPES[m.group("shape").lower()]))
    styled = list(STYLED.finditer(text))
    for m in styled:
        found.append((m.start(), _colour(m.group("colour")), _STYLES[m.group("style").lower()]))
    for m in FIT.finditer(text):  # a fit line whose style the query leaves open
        if not any(s.start() <= m.start() < s.end() for s in styled):
            found.append((m.start(), _colour(m.group("colour")), LINE))
    for m in ARROW.finditer(text):
        found.append((m.start(), _colour(m.group("colour")), "arrow"))
    for m in SLICE.finditer(text):
        found.append((m.start(), _colour(m.group("colour")), PULLED))
    out = []
    for _, colour, mark in sorted(found):
        if (colour, mark) not in out:
            out.append((colour, mark))
    return tuple(out)


def _colour(word: str | None) -> str | None:
    return None if word is None else SYNONYMS.get(word.lower(), word.lower())


def mark_scores(
    wanted: tuple[tuple[str | None, str], ...], stored: dict[str, dict | None]
) -> dict[str, float]:
    """Per image read by the marks reader, the mean over `wanted` of the probability that it
    shows that mark in that colour (in any colour where the query names none; `LINE` is
    the likeliest of the line styles).

    >>> seen = {"a": {"red": {"dashed": 0.9}}, "b": {"red": {"circle": 0.8}}, "c": None}
    >>> mark_scores((("red", LINE),), seen), mark_scores(((None, "circle"),), seen)
    ({'a': 0.9, 'b': 0.0}, {'a': 0.0, 'b': 0.8})
    """
    out = {}
    for i, marks in stored.items():
        if marks is None:
            continue
        probs = []
        for colour, mark in wanted:
            seen = [marks.get(colour, {})] if colour else list(marks.values())
            names = LINES if mark == LINE else (mark,)
            probs.append(max((s.get(n, 0.0) for s in seen for n in names), default=0.0))
        out[i] = float(np.mean(probs))
    return out
