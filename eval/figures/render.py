"""Render one synthetic figure from (seed, index) and measure where its parts landed.

Boxes are measured after `canvas.draw()` with the renderer that filled the pixel buffer,
and that buffer is exactly what gets saved: no `bbox_inches="tight"`, no dpi change, so
a box and the pixels it frames cannot disagree. Boxes are in the saved image's pixel
coordinates: integers, origin top-left, x1/y1 exclusive, clipped to the image.

An extent covers what a stroke adds (half a line width, a square cap's corner, a
marker's own size), plus a pixel or two where Agg snaps strokes and markers to the pixel
grid, and is clipped to the axes when the artist is. Text uses matplotlib's layout box
(padded by a pixel for glyph overhang), which spans the font's ascent and descent, so it
may be a few pixels looser than the ink. Boxes ignore occlusion: a line under an opaque
legend keeps its full box. Deliberately not handled: artists clipped to non-rectangular
paths (no drawer makes them).
"""

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Patch
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

from evident.eval.figures.kinds import KINDS
from evident.eval.figures.style import sample_style

KIND_NAMES = tuple(KINDS)
Box = tuple[int, int, int, int]
_NO_LINE = ("None", "none", "", " ")


@dataclass(frozen=True)
class Component:
    """A measured part of a figure: what it is, its label, and its pixel box."""

    name: str
    label: str
    box: Box
    color: str | None = None

    def to_dict(self) -> dict:
        record = {"name": self.name, "label": self.label, "box": list(self.box)}
        return record | ({"color": self.color} if self.color else {})


@dataclass(frozen=True)
class RenderedFigure:
    """One figure's pixels (H x W x 3, uint8) and everything known about them."""

    kind: str
    caption: str
    short_caption: str
    attributes: dict
    components: tuple[Component, ...]
    pixels: np.ndarray


def kind_for(seed: int, index: int) -> str:
    """Kinds cycle in shuffled blocks, so any 10 consecutive indices hold every kind once."""
    block = np.random.default_rng([seed, 0, index // len(KIND_NAMES)])
    return KIND_NAMES[int(block.permutation(len(KIND_NAMES))[index % len(KIND_NAMES)])]


def render_figure(seed: int, index: int, *, hidden: Collection[int] = ()) -> RenderedFigure:
    """Draw figure `index` of the set made with `seed`.

    `hidden` lists positions in the returned `components` whose artists are made invisible
    before the pixels are taken (the boxes are still those of the full figure): tests use
    it to see exactly which pixels a component paints.
    """
    rng = np.random.default_rng([seed, 1, index])
    kind = kind_for(seed, index)
    style = sample_style(rng)
    # The extra 0.01 px keeps int(width_in * dpi) from rounding 300 down to 299.
    size = ((style.width + 0.01) / style.dpi, (style.height + 0.01) / style.dpi)
    fig = Figure(figsize=size, dpi=style.dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    drawn = KINDS[kind](fig, rng, style)
    # Laid out once, before drawing, so hiding a part later cannot move the others.
    fig.tight_layout(pad=float(rng.uniform(0.4, 1.2)))
    canvas.draw()
    renderer = canvas.get_renderer()
    measured = [
        (part, _box(part.artists, renderer, style.width, style.height)) for part in drawn.parts
    ]
    measured = [(part, box) for part, box in measured if box is not None]
    if hidden:
        for i in hidden:
            for artist in measured[i][0].artists:
                artist.set_visible(False)
        canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    if pixels.shape != (style.height, style.width, 3):
        raise RuntimeError(f"rendered {pixels.shape}, expected {(style.height, style.width)}")
    return RenderedFigure(
        kind=kind,
        caption=drawn.caption(),
        short_caption=drawn.short,
        attributes={"width": style.width, "height": style.height, "dpi": style.dpi}
        | drawn.attributes,
        components=tuple(Component(p.name, p.label, box, p.color) for p, box in measured),
        pixels=pixels,
    )


def _box(artists: tuple, renderer, width: int, height: int) -> Box | None:
    """The union of the artists' extents as an integer pixel box, or None if nothing shows."""
    extents = [e for a in artists if (e := _extent(a, renderer)) is not None]
    if not extents:
        return None
    union = Bbox.union(extents)
    eps = 1e-6  # float noise must not widen a box that sits exactly on pixel edges
    x0 = max(0, math.floor(union.x0 + eps))
    x1 = min(width, math.ceil(union.x1 - eps))
    y0 = max(0, math.floor(height - union.y1 + eps))  # display y points up; image rows down
    y1 = min(height, math.ceil(height - union.y0 - eps))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _extent(artist, renderer) -> Bbox | None:
    """Where an artist paints, in display pixels, including its stroke and clipping."""
    px = renderer.dpi / 72.0
    if isinstance(artist, Axes):
        # The tight box ignores the spines' own width; their snapped strokes can stick out.
        spines = [s for s in artist.spines.values() if s.get_visible()]
        extent = Bbox.union(
            [artist.get_tightbbox(renderer)]
            + [s.get_window_extent(renderer).padded(_stroke_pad(s, px)) for s in spines]
        )
    elif isinstance(artist, Legend):
        frame = artist.get_frame()
        extent = artist.get_window_extent(renderer).padded(_stroke_pad(frame, px))
    elif isinstance(artist, Annotation):
        arrow = artist.arrow_patch
        # An arrow head's mitred tip reaches past half the line width: pad by all of it.
        head = arrow.get_window_extent(renderer).padded(_stroke_pad(arrow, px, 2.0))
        extent = Bbox.union([artist.get_window_extent(renderer).padded(1.0), head])
    elif isinstance(artist, Text):
        # Agg rounds the text image's position, and glyph ink may overhang the layout box.
        extent = artist.get_window_extent(renderer).padded(1.0) if artist.get_text() else None
    elif isinstance(artist, Line2D):
        extent = _line_extent(artist, px)
    elif isinstance(artist, LineCollection):
        segments = artist.get_segments()
        points = artist.get_transform().transform(np.concatenate(segments)) if segments else []
        extent = _points_extent(points, max(artist.get_linewidths(), default=0) * px / 2 + 1)
    elif isinstance(artist, Patch):
        extent, pad = artist.get_window_extent(renderer), _stroke_pad(artist, px)
        # An empty histogram bin is a zero-height bar: nothing is painted unless it has an edge.
        extent = extent.padded(pad) if pad or (extent.width and extent.height) else None
    else:
        extent = artist.get_window_extent(renderer)
    if extent is None or not np.isfinite(extent.extents).all():
        return None
    clip = artist.get_clip_box() if artist.get_clip_on() else None
    return Bbox.intersection(extent, clip) if clip is not None else extent


def _stroke_pad(patch: Patch, px: float, widths: float = 0.5) -> float:
    """How far a patch's edge reaches past its path, in pixels (0 with no visible edge):
    `widths` line widths, plus a pixel for snapping."""
    if patch.get_edgecolor()[3] == 0 or patch.get_linewidth() == 0:
        return 0.0
    return patch.get_linewidth() * px * widths + 1.0


def _line_extent(line: Line2D, px: float) -> Bbox | None:
    """Data points plus the stroke's reach, or the marker's if that is larger."""
    pad = 0.0
    if line.get_linestyle() not in _NO_LINE:
        # A square ("projecting") cap's corner reaches half a width diagonally; +1 for snapping.
        pad = line.get_linewidth() * px * math.sqrt(0.5) + 1.0
    if line.get_marker() not in _NO_LINE and line.get_marker() is not None:
        marker = MarkerStyle(line.get_marker())
        reach = np.abs(marker.get_path().transformed(marker.get_transform()).get_extents().extents)
        # Agg rounds marker centres to whole pixels and snaps the marker's own outline,
        # which together can move its ink by up to two pixels.
        edge = line.get_markeredgewidth() * px / 2
        pad = max(pad, reach.max() * line.get_markersize() * px + edge + 2.0)
    return _points_extent(line.get_transform().transform(line.get_xydata()), pad)


def _points_extent(points, pad: float) -> Bbox | None:
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]
    if not len(points):
        return None
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return Bbox.from_extents(x0 - pad, y0 - pad, x1 + pad, y1 + pad)
