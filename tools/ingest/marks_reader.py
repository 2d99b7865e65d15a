"""The marks reader (`tools.marks`): for every colour name a figure holds enough ink in
(`tools.colours`; at least `MIN_PIXELS` pixels, the `MAX_COLOURS` with the most), the
pixels of that name make a mask at the figure's own size, and a small convolutional
network (`MarksNet`, 109k weights) says which marker shapes and line styles the mask
shows anywhere, and whether it draws an arrow annotation. Images and colours whose ink
fills areas (pie and bar charts, drawings of filled shapes: blocks of one colour,
`drawing`, `filled`) are not read: they draw no marks, and skipping them keeps indexing
fast; in an image whose ink mostly fills areas a pie's slice pulled out is sought instead
(`pies`, no network). It is trained on the benchmark generator's line charts, scatter and
error-bar plots (seeds no benchmark uses; `eval/training/marks_model.py`, minutes on 2
cores) and ships beside the figure model (`WEIGHTS`); without that file nothing is read.
Kept apart from `tools.marks`, which search imports without loading torch.

Not handled: charts not drawn on white paper (dark themes: less than `PAPER` white);
figures far larger or smaller than the generator's (270-434 pixels a side, 4.5-8-pixel
markers, 1.2-3-pixel lines: the reader has seen no others; images are read at most 512
pixels a side); markers in a colour that holds under `MIN_PIXELS` pixels; the line
panel of a figure whose other panels fill most of its ink, unless it is one half along
the figure's longer side (`panel`).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from evident.tools.colours import NAMER, NAMES, SHARES_SIDE, fill_shares, name_grid, solid_blocks
from evident.tools.ingest import pies
from evident.tools.marks import LABELS

MIN_PIXELS = 20  # a colour with fewer pixels than this is not read
MAX_COLOURS = 6  # at most this many colours an image, those with the most ink
KEEP = 0.02  # probabilities below this are not stored
PAPER = 0.5  # read only images at least this white: charts on paper (the generator's line,
# scatter and error-bar plots are 0.89-0.95 white; a photo or a heatmap is not)
FILLED = 0.45  # ink with this share of its pixels in 8 x 8 blocks of one colour fills areas
PANEL_FILLED = 0.1  # a half read on its own (`panel`) holds less of its ink in fills than this
WEIGHTS = Path(__file__).parents[1] / "models" / "evident-figures" / "marks.pt"
READS = "views-4-pies"  # how `read` reads: change it when that changes, and indexes read again


class MarksNet(nn.Module):
    """A colour's mask (N, 1, H, W) -> one logit per label in `LABELS`, the maximum over
    the image of a fully convolutional map. The mask's 4x4 blocks become 16 channels first
    (lossless, and a sixteenth of the positions); the receptive field is 52 pixels, more
    than a dash-dot line's period at 3-pixel width."""

    def __init__(self) -> None:
        super().__init__()
        widths = (16, 48, 64, 64, 64)
        strides = (1, 2, 1, 1)
        layers: list[nn.Module] = [nn.PixelUnshuffle(4)]
        for cin, cout, stride in zip(widths[:-1], widths[1:], strides, strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(widths[-1], len(LABELS), 1))
        self.body = nn.Sequential(*layers)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        h, w = masks.shape[-2:]
        masks = F.pad(masks, (0, -w % 4, 0, -h % 4))
        out = self.body(masks)
        # the maximum over places with ink only: over the empty rest the map is one
        # constant, and a maximum taken there would teach nothing about the ink
        inked = F.max_pool2d(masks, 8, ceil_mode=True) > 0  # each place's 8 x 8 pixels
        return out.masked_fill(~inked, -1e4).amax(dim=(2, 3))


def masks(grid: np.ndarray, colours: list[str]) -> torch.Tensor:
    """One float mask (1 where the pixel has that colour name) per colour."""
    return torch.from_numpy(
        np.stack([grid == NAMES.index(c) for c in colours]).astype(np.float32)[:, None]
    )


def inked(grid: np.ndarray) -> list[str]:
    """The colour names with at least `MIN_PIXELS` pixels, most ink first, at most
    `MAX_COLOURS`."""
    counts = np.bincount(grid.ravel(), minlength=len(NAMES) + 1)[: len(NAMES)]
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] >= MIN_PIXELS]
    return [NAMES[i] for i in order[:MAX_COLOURS]]


@functools.cache
def reader() -> MarksNet | None:
    """The bundled marks reader, or None when it is not installed beside the model. Its
    weights are kept channels-last, as `read` passes the masks (the same numbers, about
    30% less time on a CPU)."""
    if not WEIGHTS.exists():
        return None
    net = MarksNet()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval().to(memory_format=torch.channels_last)


UPRIGHT = ("circle", "triangle", "diamond", "star")
"""The labels read from the two upright views only (`read`): a triangle or a star upside
down is another marker, and circles and diamonds read no better from four views."""
_UPRIGHT = torch.tensor([label in UPRIGHT for label in LABELS])


def read(net: MarksNet, x: torch.Tensor) -> torch.Tensor:
    """The logits for masks `x` (N, 1, H, W): per label, the mean of the network's for the
    views of each mask that keep that label — as drawn and mirrored left to right for
    every label, and upside down both ways as well for all but the `UPRIGHT` markers (a
    square, a cross or a plus upside down is still one; a line style and an arrow still
    are). Views average out part of what one reading gets wrong. On the marks reader's
    1,000 held-out figures, mean average precision 0.895 read once, 0.917 from the two
    upright views, 0.910 from all four for every label (triangle 0.965 -> 0.896, star
    0.772 -> 0.700), 0.922 this way (plus 0.849 -> 0.874, cross 0.882 -> 0.892, arrow
    0.942 -> 0.955, dash-dot 0.982 -> 0.987), for twice the upright views' time."""
    views = torch.cat([x, x.flip(-1), x.flip(-2), x.flip(-2, -1)])
    out = net(views.contiguous(memory_format=torch.channels_last)).unflatten(0, (4, len(x)))
    return torch.where(_UPRIGHT, out[:2].mean(0), out.mean(0))


def version() -> str | None:
    """Which reader reads marks (None: none is installed): the first 12 hex digits of the
    SHA-256 of its weights, of how it reads (`READS`) and of the colour namer's version
    (`colours.NAMER`: the masks it reads are pixels of one name), stored beside each
    image's marks so that an index read by another reader, read another way or named by
    another namer, is read again."""
    return None if reader() is None else _digest(WEIGHTS)


@functools.cache
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes() + READS.encode() + NAMER.encode()).hexdigest()[:12]


def read_marks(
    image: Image.Image,
    net: MarksNet | None = None,
    coarse: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    fills: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """Per colour drawn in `image`, the probability of each mark the reader sees at least
    `KEEP` of (empty without a reader and for an image less than `PAPER` white; nor are
    the colours that fill areas read). An image whose ink mostly fills areas is not read
    so: a slice pulled out of a pie is what it shows (`pies.pulled_slices`). `coarse` is
    the image's `name_grid` at `SHARES_SIDE`, `blocks` its `solid_blocks(coarse, 4)`,
    `fills` its `fill_shares`, when the caller has them."""
    net = net or reader()
    if net is None:
        return {}
    coarse = name_grid(image, SHARES_SIDE) if coarse is None else coarse
    blocks = solid_blocks(coarse, 4) if blocks is None else blocks
    part = panel(coarse, blocks)
    if part is None:  # no drawing: a pie's slice pulled out is what there is to read
        fills = fill_shares(coarse, blocks) if fills is None else fills
        return pies.pulled_slices(image, blocks, fills)
    grid = name_grid(image)
    cut = zip(part, coarse.shape, grid.shape, strict=True)  # the whole, or one half
    grid = grid[tuple(_scaled(cells, n, m) for cells, n, m in cut)]
    solid = solid_blocks(grid)
    out = {}
    with torch.inference_mode():
        for colour in inked(grid):
            if filled(grid, colour, solid):
                continue
            probs = torch.sigmoid(read(net, masks(grid[around(grid, colour)], [colour])))[0]
            kept = {m: round(float(p), 3) for m, p in zip(LABELS, probs.tolist(), strict=True)
                    if p >= KEEP}  # fmt: skip
            if kept:
                out[colour] = kept
    return out


def filled(grid: np.ndarray, colour: str, solid: np.ndarray | None = None) -> bool:
    """Whether `colour` mostly fills areas (`FILLED` of its pixels in `solid_blocks`): its
    marks are not read.

    >>> grid = np.full((64, 64), len(NAMES)); grid[8:40, 8:40] = NAMES.index("red")
    >>> grid[50, :] = NAMES.index("blue"); filled(grid, "red"), filled(grid, "blue")
    (True, False)
    """
    solid = solid_blocks(grid) if solid is None else solid
    index = NAMES.index(colour)
    return int((solid == index).sum()) * 64 >= FILLED * max(1, int((grid == index).sum()))


def panel(coarse: np.ndarray, blocks: np.ndarray | None = None) -> tuple[slice, slice] | None:
    """The part of an image to read, in `coarse`'s cells: all of it when it is a `drawing`;
    else, when one half along its longer side draws with little fill (less than
    `PANEL_FILLED` of its ink: a line, scatter or error-bar panel beside a bar or
    histogram panel, whose fills make the whole not a drawing), that half; else None. On
    the figure benchmark's validation and test splits the 32 two-panel figures with a
    line, scatter or error-bar panel that are not drawings hold at most 0.053 of that
    half's ink in fills; the halves of single bar charts, histograms, pies and heatmaps
    0.218 or more; 3 of `evident bench`'s 64 drawings of shapes have a half of outlines
    (0-0.05) that is read (about 10 ms each).

    >>> grid = np.full((64, 128), len(NAMES)); grid[8:56, 70:120] = NAMES.index("red")
    >>> grid[30, 4:60] = NAMES.index("blue"); panel(grid)
    (slice(0, 64, None), slice(0, 64, None))
    >>> grid[8:56, 8:60] = NAMES.index("red"); panel(grid) is None
    True
    """
    whole = (slice(0, coarse.shape[0]), slice(0, coarse.shape[1]))
    solid = solid_blocks(coarse, 4) if blocks is None else blocks
    if drawing(coarse, solid):
        return whole
    axis = 1 if coarse.shape[1] >= coarse.shape[0] else 0
    cut = coarse.shape[axis] // 8 * 4  # on the 4-cell lattice of `solid`
    if not cut:  # too small to hold two panels
        return None
    for half in (slice(0, cut), slice(cut, coarse.shape[axis])):
        part = (whole[0], half) if axis else (half, whole[1])
        cells = tuple(slice(s.start // 4, -(-s.stop // 4)) for s in part)
        if drawing(coarse[part], solid[cells], PANEL_FILLED):
            return part
    return None


def _scaled(cells: slice, coarse: int, full: int) -> slice:
    """A slice of a `coarse`-long side as the slice of the same part of a `full`-long one."""
    return slice(round(cells.start * full / coarse), round(cells.stop * full / coarse))


def drawing(coarse: np.ndarray, blocks: np.ndarray | None = None, most: float = FILLED) -> bool:
    """Whether an image is a drawing on paper worth reading, from its `coarse` grid (at most
    `SHARES_SIDE` a side, as colour shares are counted): at least `PAPER` white, and less
    than `most` (`FILLED`) of its ink in 4 x 4 blocks of one colour. On the figure benchmark's
    validation split line charts, scatter and error-bar plots have at most 0.12 of
    their ink in such blocks, pie charts 0.61-0.93, most bar charts and the benchmark's
    drawings of filled shapes (JPEGs) 0.5 and more. `blocks`: `solid_blocks(coarse, 4)`,
    when the caller has it."""
    ink = coarse != len(NAMES)
    if 1.0 - ink.mean() < PAPER:
        return False
    solid = solid_blocks(coarse, 4) if blocks is None else blocks
    return int((solid >= 0).sum()) * 16 < most * max(1, int(ink.sum()))


def around(grid: np.ndarray, colour: str, margin: int = 32) -> tuple[slice, slice]:
    """The part of `grid` around `colour`'s pixels, cut on the network's 8-pixel lattice
    and `margin` beyond them (more than half its receptive field): what the network says
    there is what it says of the whole, for less work."""
    ys, xs = np.nonzero(grid == NAMES.index(colour))
    y0, x0 = max(0, (ys.min() - margin) // 8 * 8), max(0, (xs.min() - margin) // 8 * 8)
    return slice(y0, ys.max() + margin + 1), slice(x0, xs.max() + margin + 1)
