"""Where a chart's plot lies across the image, read at indexing time from the grid of colour
names the colours are counted on: what tells "a legend outside the plot on the right"
from one in the plot's upper right (`tools.places`), both near the image's upper right.

- `"axis"`: the x axis, the longest line of black or grey across the image's lower
  `LOWER` (at least `AXIS` of its width; a run of them with little of it `THICK` rows
  above or below, which a black slice's edge has): an axis line, or a grid line, which
  spans the plot as the axis does. Where it is found, a legend whose words start beyond its right
  end is outside the plot (the figure benchmark's validation split: 126 of 127 legends
  inside the plot's right side and 26 of 27 outside it judged right, against 143 of 149
  and 26 of 27 by the x-axis tick labels, whose last one can end short of the plot).
- `"fills"`: otherwise, for a chart of filled shapes without an axis (a pie), the
  columns they span (`colours.solid_blocks`, the pieces at least `PIECE` of the largest,
  which hold at least `FILLED` of the ink; a legend's swatches are smaller).

Not handled: a chart with no x-axis line, grid or filled shapes; one on less than
`PAPER` white (a heatmap); a figure of several panels (the longest run is one panel's
axis).
"""

from __future__ import annotations

import numpy as np

from evident.tools import colours
from evident.tools.colours import NAMES, solid_blocks

PAPER = 0.4  # only images at least this white are read (charts: 0.5 and more on the benchmark)
LOWER = 0.6  # the axis is looked for in this lower share of the image
AXIS = 0.3  # a run at least this share of the width is an axis
PIECE = 0.1  # filled pieces at least this share of the largest make the plot
FILLED = 0.3  # a chart of filled shapes: its pieces hold at least this share of the ink
THICK = 4  # a line: this many rows above and below it (on the 256-pixel grid) are not dark


def plot_span(coarse: np.ndarray, blocks: np.ndarray | None = None) -> dict:
    """`{"by": "axis" | "fills", "x": [left, right]}` (shares of the width) for `coarse`,
    an image's `colours.name_grid` (`blocks`: its `solid_blocks(coarse, 4)`, when the
    caller has it); `{}` where neither is found.

    >>> grid = np.full((40, 100), len(NAMES)); grid[35, 10:90] = NAMES.index("black")
    >>> plot_span(grid)
    {'by': 'axis', 'x': [0.1, 0.9]}
    """
    h, w = coarse.shape
    if (coarse == len(NAMES)).mean() < PAPER:
        return {}  # a photograph, a heatmap: no plot on paper to find
    top = int((1 - LOWER) * h)
    dark = np.isin(coarse, [NAMES.index("black"), NAMES.index("grey")])
    edges = np.diff(np.pad(dark[top:].astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows, starts = np.nonzero(edges == 1)  # every run in the lower rows, row by row
    ends = np.nonzero(edges == -1)[1]
    for k in np.argsort(starts - ends, kind="stable"):  # the longest first
        a, b = int(starts[k]), int(ends[k])
        if b - a < AXIS * w:
            break
        if _thin(dark, top + int(rows[k]), a, b):
            return {"by": "axis", "x": [round(a / w, 4), round(b / w, 4)]}
    # search reads the stored spans; scipy loads when indexing needs it
    from scipy import ndimage  # noqa: PLC0415

    blocks = solid_blocks(coarse, 4) if blocks is None else blocks
    pieces, n = ndimage.label(blocks >= 0)
    if not n:
        return {}
    sizes = np.bincount(pieces.ravel())[1:]
    kept = np.isin(pieces, np.flatnonzero(sizes >= PIECE * sizes.max()) + 1)
    if 16 * kept.sum() < FILLED * (coarse != len(NAMES)).sum():
        return {}  # a few filled markers or swatches, not a chart of filled shapes
    cols = np.flatnonzero(kept.any(axis=0))
    left, right = float(4 * cols[0] / w), float(4 * (cols[-1] + 1) / w)
    return {"by": "fills", "x": [round(left, 4), round(right, 4)]}


def _thin(dark: np.ndarray, y: int, a: int, b: int) -> bool:
    """Whether the dark run at row `y`, columns `a`-`b`, is a line: `THICK` rows above and
    below it mostly not dark (a black or grey slice's edge is dark on one side)."""
    above = dark[y - THICK, a:b].mean() if y >= THICK else 0.0
    below = dark[y + THICK, a:b].mean() if y + THICK < dark.shape[0] else 0.0
    return above < 0.5 and below < 0.5


def decode(stored: str | None) -> dict | None:
    """The span back from metadata (`colours.encode`d); None when it was not read."""
    span = colours.decode(stored)
    return span if span and "x" in span else None
