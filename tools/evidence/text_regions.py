"""Text regions: words read in a result's image that the query names, as citable evidence.

A line becomes a region when it shares a word with the query (by its stem, or for words
of five letters or more, nearly: one edit in ten letters, "cirmean" for "circmean"), or
when the query names the part of the figure it plays ("the title", "the legend", "the
x-axis label", "the y-axis label", "the axis labels", "the annotation"). The lines of a named
part that sit together are one region (a legend's entries, a two-line title); the same
part in two panels is two. Tick labels only by their words, never nearly. A text region is dropped
when a heat region already covers it (IoU >= 0.5): the heat region then carries its
words. At most `max_regions` per result, strongest first.

Each text region is checked twice: like any region, by removing it from the image
(`counterfactuals.check_regions`), and on the words themselves: the result's lexical
score (BM25 of the query against the image's words, `tools.lexical`) with the region's
words taken out, against taking out each of up to eight other lines (`WordsCheck`). It is
supported when either check passes.
Not handled: words split across lines, matches inside longer tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from difflib import SequenceMatcher

import numpy as np

from evident.tools.ingest.layout import TextLine
from evident.tools.ingest.ocr import WEIGHTS, Reading, words
from evident.tools.lexical import WordIndex, query_tokens, stem
from evident.tools.records import Region, WordsCheck

PARTS = {
    "title": re.compile(r"\btitles?\b|\bheading\b", re.I),
    "legend": re.compile(r"\blegends?\b|\bkey\b", re.I),
    "xlabel": re.compile(
        r"\bx[- ]?(?:axis)?[- ]?labels?\b|\bhorizontal axis\b|\baxis labels\b", re.I
    ),
    "ylabel": re.compile(
        r"\by[- ]?(?:axis)?[- ]?labels?\b|\bvertical axis\b|\baxis labels\b", re.I
    ),
    "label": re.compile(r"\bannotations?\b|\barrows?\b", re.I),
}
LEADS = ("title", "xlabel", "ylabel", "legend")
"""The parts whose region is cited first when named (`named_first`): those the layout
finds reliably (an annotation's text is an ordinary label; README, text regions)."""
Box = tuple[int, int, int, int]


def text_regions(
    query: str,
    reading: Reading,
    *,
    rank: int,
    first: int,
    heat: Sequence[Region] = (),
    max_regions: int = 2,
) -> tuple[tuple[Region, ...], tuple[Region, ...]]:
    """`(heat regions, with the words they cover; new text regions R<rank>.<first>...)`."""
    tokens = query_tokens(query)
    groups: list[tuple[float, list[TextLine], str]] = []
    for role, pattern in PARTS.items():
        if pattern.search(query):
            lines = [x for x in reading.lines if x.role == role]
            groups += [(2.0, part, role) for part in _clusters(lines)]
    named = {id(x) for _, lines, _ in groups for x in lines}
    for line in reading.lines:
        strength = _match(tokens, line)
        if strength and id(line) not in named:
            groups.append((strength, [line], line.role))
    groups.sort(key=lambda g: -g[0])
    heat = list(heat)
    found: list[Region] = []
    for _, lines, role in groups:
        box = _union([x.box for x in lines])
        text = " | ".join(x.text for x in lines)
        covering = next((j for j, h in enumerate(heat) if iou(h.box, box) >= 0.5), None)
        if covering is not None:
            heat[covering] = replace(heat[covering], text=text, role=role)
            continue
        if len(found) < max_regions:
            found.append(
                Region(f"R{rank}.{first + len(found)}", box, kind="text", text=text, role=role)
            )
    return tuple(heat), tuple(found)


def named_first(query: str, regions: Sequence[Region], rank: int) -> tuple[Region, ...]:
    """The regions renumbered `R<rank>.1...` with those of a part the query names first
    (one of `LEADS`): "the title of the pie chart" is answered by the title's region (a
    text region, or the heat region that covers the title), then the rest in their order.

    >>> heat, title = Region("R1.1", (0, 0, 9, 9)), Region("R1.2", (0, 0, 9, 2), role="title")
    >>> [(r.id, r.role) for r in named_first("the title of a chart", [heat, title], 1)]
    [('R1.1', 'title'), ('R1.2', None)]
    """
    named = {role for role in LEADS if PARTS[role].search(query)}
    lead = [r for r in regions if r.role in named]
    if not lead:
        return tuple(regions)
    order = lead + [r for r in regions if all(r is not x for x in lead)]
    return tuple(replace(r, id=f"R{rank}.{n}") for n, r in enumerate(order, 1))


def words_checks(
    query: str,
    reading: Reading,
    regions: Sequence[Region],
    index: WordIndex,
    *,
    nulls: int = 8,
    seed: int = 0,
) -> list[Region]:
    """Each text region with its `WordsCheck`: the lexical score of the image's words
    without the region's lines, against without each of up to `nulls` other lines."""
    doc = [(line, _tokens(line)) for line in reading.lines]
    everything = [t for _, toks in doc for t in toks]
    before = index.score(query, everything)
    out = []
    for n, region in enumerate(regions):
        mine = [i for i, (line, _) in enumerate(doc) if _inside(line.box, region.box)]
        after = index.score(
            query, [t for i, (_, toks) in enumerate(doc) if i not in mine for t in toks]
        )
        others = [i for i in range(len(doc)) if i not in mine]
        rng = np.random.default_rng([seed, n, len(doc)])
        picked = rng.permutation(others)[:nulls] if others else []
        null = tuple(
            before
            - index.score(query, [t for j, (_, toks) in enumerate(doc) if j != i for t in toks])
            for i in picked
        )
        out.append(replace(region, words_check=WordsCheck(before, after, null)))
    return out


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes.

    >>> iou((0, 0, 2, 2), (1, 0, 3, 2))
    0.3333333333333333
    """
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _match(tokens: list[str], line: TextLine) -> float:
    """How strongly a line matches the query's tokens: exact matches (or the same stem,
    "skeletonization" and "skeletonize") count 1, near ones 0.5; tick labels only match
    exactly."""
    mine = words(line.text)
    stems = {stem(m) for m in mine}
    score = 0.0
    for t in tokens:
        if stem(t) in stems:
            score += 1.0
        elif line.role != "tick" and len(t) >= 5 and any(_near(t, m) for m in mine):
            score += 0.5
    return score


def _near(a: str, b: str) -> bool:
    """One edit in ten letters.

    >>> _near("circmean", "cirmean"), _near("circmean", "median")
    (True, False)
    """
    return abs(len(a) - len(b)) <= 2 and SequenceMatcher(None, a, b).ratio() >= 0.9


def _tokens(line: TextLine) -> list[str]:
    """A line's tokens as they count in the search document (weighted by role)."""
    return words(line.text) * WEIGHTS[line.role]


def _clusters(lines: list[TextLine]) -> list[list[TextLine]]:
    """Lines of one part grouped by nearness (a gap of at most 1.5 line heights either
    way): a two-line title is one part, the x-axis labels of two panels are two; the
    group with the most lines first, then in reading order."""
    groups: list[list[TextLine]] = []
    for line in lines:
        near = [g for g in groups if any(_near_box(line.box, x.box) for x in g)]
        merged = [line] + [x for g in near for x in g]
        groups = [g for g in groups if g not in near] + [merged]
    return sorted(groups, key=lambda g: (-len(g), _union([x.box for x in g])[1::-1]))


def _near_box(a: Box, b: Box) -> bool:
    gap = 1.5 * max(a[3] - a[1], b[3] - b[1], 1)
    dx = max(a[0] - b[2], b[0] - a[2], 0)
    dy = max(a[1] - b[3], b[1] - a[3], 0)
    return dx <= gap and dy <= gap


def _union(boxes: Sequence[Box]) -> Box:
    return (
        min(b[0] for b in boxes), min(b[1] for b in boxes),
        max(b[2] for b in boxes), max(b[3] for b in boxes),
    )  # fmt: skip


def _inside(inner: Box, outer: Box) -> bool:
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )
