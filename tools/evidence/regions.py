"""Evidence regions: a heatmap becomes a few ranked boxes in original-image pixels.

A region is a connected blob (8-neighbour) of the heatmap at or above `threshold` times
the map's peak; 0.5 is the half-maximum cut, wide enough to hold an object, narrow
enough to leave the background out. Regions are ranked by peak heat, then by mass, and
named `R<rank>.<n>` (blobs holding under `min_mass` of the heat are dropped as specks,
except the strongest): `R1.1` is the strongest region of result 1, `R2.3` the third of
result 2. Ids depend only on the result's rank and the map, so they are stable across
renders and can be cited.

Boxes are found on the map at model resolution and mapped to the original image by the
inverse of the encoder's squash: `floor` for the start and `ceil` for the end, so the box
covers every original pixel its model pixels came from, clamped inside the image and at
least one pixel wide. `mass` is measured on the map: resizing scales both axes, so a
share of heat is the same at either resolution.

Not handled: masks or polygons (a box is what a person can check by eye), merging
regions across results.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from evident.tools.records import Region

Box = tuple[int, int, int, int]


def find_regions(
    heat: np.ndarray,
    image_size: tuple[int, int],
    *,
    rank: int,
    max_regions: int = 3,
    threshold: float = 0.5,
    min_mass: float = 0.01,
) -> tuple[Region, ...]:
    """Ranked regions of one `(h, w)` heatmap for an original image of `(W, H)` pixels.

    >>> heat = np.zeros((4, 4)); heat[0, 0] = 1.0; heat[3, 2:] = 0.6
    >>> [(r.id, r.box) for r in find_regions(heat, (8, 8), rank=2)]
    [('R2.1', (0, 0, 2, 2)), ('R2.2', (4, 6, 8, 8))]
    """

    heat = np.asarray(heat, dtype=np.float64)
    top, total = float(heat.max(initial=0.0)), float(heat.clip(min=0).sum())
    if top <= 0 or total <= 0:
        return ()
    labels, n = ndimage.label(heat >= threshold * top, structure=np.ones((3, 3)))
    found = []
    for index, slices in enumerate(ndimage.find_objects(labels), start=1):
        inside = heat[slices]
        box = (slices[1].start, slices[0].start, slices[1].stop, slices[0].stop)
        peak = float(inside[labels[slices] == index].max())
        found.append((peak, float(inside.clip(min=0).sum()) / total, box))
    found.sort(key=lambda f: (-f[0], -f[1], f[2]))
    found = found[:1] + [f for f in found[1:] if f[1] >= min_mass]  # specks are not evidence
    return tuple(
        Region(
            id=f"R{rank}.{n}",
            box=map_box(box, heat.shape, image_size),
            peak=peak,
            mass=mass,
        )
        for n, (peak, mass, box) in enumerate(found[:max_regions], start=1)
    )


def map_box(box: Box, map_shape: tuple[int, int], image_size: tuple[int, int]) -> Box:
    """A box on an `(h, w)` map -> the covering box on a `(W, H)` image.

    >>> map_box((1, 0, 3, 2), (4, 4), (10, 6))
    (2, 0, 8, 3)
    """
    (h, w), (width, height) = map_shape, image_size
    return _scaled(box, width / w, height / h, width, height)


def box_on_map(box: Box, image_size: tuple[int, int], map_shape: tuple[int, int]) -> Box:
    """The inverse: a box on a `(W, H)` image -> the covering box on an `(h, w)` map."""
    (width, height), (h, w) = image_size, map_shape
    return _scaled(box, w / width, h / height, w, h)


def _scaled(box: Box, sx: float, sy: float, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    # the tiny slack keeps floating-point error from growing an exact box by a pixel
    nx0 = min(max(math.floor(x0 * sx + 1e-9), 0), width - 1)
    ny0 = min(max(math.floor(y0 * sy + 1e-9), 0), height - 1)
    nx1 = max(min(math.ceil(x1 * sx - 1e-9), width), nx0 + 1)
    ny1 = max(min(math.ceil(y1 * sy - 1e-9), height), ny0 + 1)
    return (nx0, ny0, nx1, ny1)
