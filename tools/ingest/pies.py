"""A pie chart's slice pulled out ("a pie chart with one slice pulled out", "an exploded
pie"): read from the areas its colours fill, as the marks are (`marks_reader`), and
stored with them as the mark `PULLED` of the slice's colour (`tools.marks`).

A pie's slices, filled, make one round area once the thin white edges drawn between them
are closed; a slice pulled out stands apart from it, beside its rim. `pulled_slices`
finds such areas: the fills' pixels (`colours.fill_shares`), closed by one pixel, fall
into parts; the largest must be round (its box at least `ASPECT` as wide as high and the
other way, filling at most `BOX` of it as a disc does, at least `ROUND` of the circle it
spans, and less than `OUTSIDE` of it beyond: a pie or a donut, not a bar or a heatmap's
cells), and every other part that holds at least `PART` of its pixels and whose centre
lies within `REACH` of its radius from the round part's centre is a slice pulled out.
The round area is sought on the 4-pixel blocks of one colour first (and must hold two
colours there: a disc drawn alone is no pie), the slices on the image's full grid of
colour names only where one is found. On the figure benchmark's validation and test
splits this finds 37 of the 45 pies drawn with a slice pulled out (35 in the slice's
colour) and none of the 113 drawn without; the misses are small slices, whose gap (a
tenth of the radius, across a narrow slice) is a pixel or two that the closing bridges.
Of the other kinds, 8 of 159 heatmaps and 2 other charts show a part beside a round
area: a query for a pulled-out slice counts them only as far as the kind gate lets it
(`hybrid.NEAR`).

Not handled: pies drawn without white edges (a slice pulled out of one is found; two
slices of one colour name touch), a pie drawn in perspective (not round), and which
slice a query names by its label ("the Apr slice").
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from evident.tools.colours import NAMES, name_grid
from evident.tools.marks import PULLED

ROUND = 0.4  # the round part fills at least this share of the circle its box spans
ASPECT = 0.6  # its box is at least this wide for its height (and high for its width)
BOX = 0.85  # and it fills at most this share of its box
OUTSIDE = 0.05  # and less than this share of it lies beyond 1.1 radii (a square: 11%)
PART = 0.01  # a pulled-out slice holds at least this share of the round part's pixels
REACH = 1.2  # and its centre lies within this many radii of the round part's centre


def pulled_slices(
    image: Image.Image, blocks: np.ndarray, fills: dict[str, float]
) -> dict[str, dict[str, float]]:
    """`{colour: {PULLED: 1.0}}` for each slice pulled out of a pie drawn in `image`, the
    colour the slice is drawn in; `blocks`: its `colours.solid_blocks` on the grid the
    colour shares are counted on, `fills`: its `colours.fill_shares`. Empty where no round
    area is drawn. Whether one is is judged on `blocks` first (a 64-cell grid: about 0.2
    ms); only then are the slices sought on the image's full grid of colour names, where
    the gap of a slice pulled out is widest."""
    if not fills:
        return {}
    round_, parts, _ = _parts(blocks >= 0)
    if round_ is None or len(np.unique(blocks[parts == round_[0] + 1])) < 2:
        return {}  # no round area, or one of a single colour (a disc, not a pie)
    grid = name_grid(image)
    mask = np.isin(grid, [NAMES.index(c) for c in fills])
    return _pulled(*_parts(mask), mask, grid)


def _parts(mask: np.ndarray):
    """(the round part of `mask`, closed by one cell, as (index, centre, radius), or None;
    its parts; their areas)."""
    parts, n = ndimage.label(ndimage.binary_closing(mask, np.ones((3, 3), bool)))
    areas = np.bincount(parts.ravel())[1:]
    if not n:
        return None, parts, areas
    main = int(np.argmax(areas))
    ys, xs = np.nonzero(parts == main + 1)
    centre = np.array([ys.min() + ys.max(), xs.min() + xs.max()]) / 2
    radius = max(np.ptp(ys), np.ptp(xs)) / 2 + 0.5
    beyond = np.hypot(ys - centre[0], xs - centre[1]) > 1.1 * radius
    h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
    if (
        min(h, w) < ASPECT * max(h, w)  # pies are drawn round, a big slice pulled out
        or areas[main] > BOX * h * w  # a disc fills 0.79 of its box, a heatmap's cells 0.9+
        or beyond.mean() > OUTSIDE
        or areas[main] < ROUND * np.pi * radius**2
    ):
        return None, parts, areas
    return (main, centre, radius), parts, areas


def _pulled(round_, parts, areas, mask, grid) -> dict[str, dict[str, float]]:
    """The colours of the parts beside the round one (`pulled_slices`).

    >>> grid = np.full((120, 120), len(NAMES))
    >>> yy, xx = np.mgrid[:120, :120]; r = np.hypot(yy - 60, xx - 60)
    >>> grid[(r < 40) & (xx < 60)] = NAMES.index("blue")
    >>> grid[(r < 40) & (xx > 61)] = NAMES.index("red")
    >>> mask = grid != len(NAMES); _pulled(*_parts(mask), mask, grid)
    {}
    >>> quarter = (r < 40) & (yy > 61) & (xx > 61)
    >>> grid[quarter] = len(NAMES); grid[np.roll(quarter, (5, 5), (0, 1))] = NAMES.index("green")
    >>> mask = grid != len(NAMES); _pulled(*_parts(mask), mask, grid)
    {'green': {'pulled-out slice': 1.0}}
    """
    if round_ is None or len(areas) < 2:
        return {}
    main, centre, radius = round_
    out: dict[str, dict[str, float]] = {}
    for i in np.flatnonzero(areas >= PART * areas[main]):
        if i == main:
            continue
        here = parts == i + 1
        if np.hypot(*(np.array(ndimage.center_of_mass(here)) - centre)) >= REACH * radius:
            continue
        colours = np.bincount(grid[here & mask], minlength=len(NAMES) + 1)[: len(NAMES)]
        out[NAMES[int(np.argmax(colours))]] = {PULLED: 1.0}
    return out
