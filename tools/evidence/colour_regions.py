"""Colour regions: where the colours a query names are drawn, as citable evidence.

Search weighs the colours a query names ("a box plot with red boxes": `tools.retrieve`);
the heat explains the model, which does not see colour well, so the colour's own evidence
is shown too. The pixels named in the query's colours (`tools.colours`), spread over
`SPREAD` of the image's longer side so that a dashed line or a series of markers reads as
one shape, go through `find_regions` as if they were heat: compact blobs, area capped, and
no region where the colour is everywhere (a tinted background) or nowhere.

Each colour region is checked on the colour itself (`ColourCheck`, the same rule as the
image's counterfactual): how much of the image's ink is in the named colours once the
box is painted over, against the same box at `NULLS` other places in the image (seeded);
supported when its drop beats the `QUANTILE` of theirs. The share stays a share of the
ink the image had: renormalising by the ink left would make a figure drawn mostly in the
colour barely move (a bar chart of orange bars: 90% -> 89% for a whole bar). The image's
counterfactual check runs on it too, like on any region; either makes it supported.

A colour region that a heat region already covers (IoU >= 0.5) is not added: the heat
region carries the colour's name and check instead, as it carries the words it covers.

Not handled: which series of several in one colour the query means, colours named other
than by the basic terms and their synonyms (`tools.colours`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from PIL import Image
from scipy import ndimage

from evident.tools.colours import NAMES, name_grid, named_colours
from evident.tools.evidence.counterfactuals import NULLS, QUANTILE, placements
from evident.tools.evidence.regions import box_on_map, find_regions
from evident.tools.evidence.text_regions import iou
from evident.tools.records import ColourCheck, Region

SPREAD = 0.01  # the colour mask is smoothed over 1% of the longer side
UNPLACED = ("black", "grey")
"""Colours not placed: black is the ink of text, ticks and axes in nearly every figure, and
grey of grid lines and frames, so their regions are mostly those (benchmark validation
split: a region's centre in the named series 0.58 of the time for black and 0.67 for
grey, 0.76-1.0 for the other colours)."""
Box = tuple[int, int, int, int]


def colour_regions(
    query: str,
    image: Image.Image,
    *,
    rank: int,
    first: int,
    heat: Sequence[Region] = (),
    max_regions: int = 2,
    seed: int = 0,
) -> tuple[tuple[Region, ...], tuple[Region, ...]]:
    """`(heat regions, those covering a colour region with its check; new colour regions
    R<rank>.<first>...)`, for the colours `query` names (none: nothing changes)."""
    names = placeable(query)
    if not names:
        return tuple(heat), ()
    grid = name_grid(image)
    named = np.isin(grid, [NAMES.index(n) for n in names])
    if not named.any():
        return tuple(heat), ()
    ink = grid < len(NAMES)
    spread = ndimage.gaussian_filter(named.astype(np.float64), SPREAD * max(grid.shape))
    found = find_regions(spread, image.size, rank=rank, max_regions=max_regions)
    checks = [
        _check(named, ink, box_on_map(r.box, image.size, grid.shape), seed, rank, n)
        for n, r in enumerate(found)
    ]
    # most of the colour first: a legend's dense little swatch peaks higher than a long
    # thin line of the same colour, but holds less of it
    order = sorted(range(len(found)), key=lambda n: -checks[n].score_drop)
    heat, new = list(heat), []
    for region, check in ((found[n], checks[n]) for n in order):
        text = " and ".join(names)
        covering = [i for i, h in enumerate(heat) if iou(h.box, region.box) >= 0.5]
        if covering:  # the one holding more of the colour names it, if two cover it
            i = covering[0]
            if heat[i].colour_check is None:
                heat[i] = replace(heat[i], colour=text, colour_check=check)
            continue
        new.append(replace(region, kind="colour", colour=text, colour_check=check))
    return tuple(heat), tuple(replace(r, id=f"R{rank}.{first + n}") for n, r in enumerate(new))


def placeable(query: str) -> tuple[str, ...]:
    """The colours `query` names that get regions (all but `UNPLACED`).

    >>> placeable("black markers and a red line"), placeable("a line chart")
    (('red',), ())
    """
    return tuple(n for n in named_colours(query) if n not in UNPLACED)


def colour_first(query: str, regions: Sequence[Region], rank: int) -> tuple[Region, ...]:
    """The regions renumbered with those showing a colour the query names first (a
    colour region, or a heat region carrying one); the rest keep their order."""
    if not placeable(query):
        return tuple(regions)
    lead = [r for r in regions if r.colour]
    order = lead + [r for r in regions if all(r is not x for x in lead)]
    return tuple(replace(r, id=f"R{rank}.{n}") for n, r in enumerate(order, 1))


def _check(named: np.ndarray, ink: np.ndarray, box: Box, seed: int, rank: int, n: int):
    """The named colours' share of the image's ink with `box` painted over, against with
    the same box at `NULLS` other places painted over instead."""
    total_named, total_ink = int(named.sum()), max(int(ink.sum()), 1)
    before = total_named / total_ink

    def without(b: Box) -> float:
        x0, y0, x1, y1 = b
        return (total_named - int(named[y0:y1, x0:x1].sum())) / total_ink

    rng = np.random.default_rng([seed, rank, n])
    null = tuple(before - without(b) for b in placements(box, named.shape, NULLS, rng))
    return ColourCheck(before, without(box), float(np.quantile(null, QUANTILE)), null)
