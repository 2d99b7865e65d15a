"""Colour names: how much of an image's ink is each basic colour, and which colours a query
names — the signal behind "a box plot with red boxes" that the figure model misses.

The bundled model knows chart types (precision@5 1.0 on the figure benchmark) but not
which colour what is drawn in: it ranks any box plot for "red boxes". Counting pixels by
colour name is the classic content-based retrieval feature and costs a few milliseconds
at indexing time, so search can weigh it beside the model (`tools.retrieve`).

Naming a pixel: achromatic pixels (CIELAB chroma below `ACHROMATIC`) are black, grey or
white by their lightness; the others take the name of the nearest prototype in CIELAB
(lightness counted half: a thin line's anti-aliased edge is a lighter tint of the same
hue). The prototypes are matplotlib's own entries for each name — the CSS colour, the
Tableau colour matplotlib draws by default, and the xkcd colour survey's — so "blue"
means what the people who draw most scientific figures get when they ask for blue; and
the Tableau colours' blends with the paper (`TINTS`): a line one or two pixels wide is
mostly its anti-aliased blend with white, and a 60-80% blend of tab:red lies nearer CSS
brown (a dark red) than any red prototype (figure benchmark, test split: 43 of 57 red
series read as drawn in red before, as often as the other colours' after).
Shares are of the ink (every pixel that is not white), so a figure's margins do not
dilute them; a photograph has no white margin and its shares are of the whole image.

Not handled: colours named by anything but the basic terms in `NAMES` and `SYNONYMS`
("crimson", "#1f77b4"), negation ("without red"), which part of the image a colour
belongs to (red bars and a red title count alike, but see `PARTS`), and blends with
paper of any colour but white.
"""

from __future__ import annotations

import functools
import json
import re

import numpy as np
from PIL import Image

CHROMATIC = ("blue", "brown", "cyan", "green", "olive", "orange", "pink", "purple", "red", "yellow")
NAMES = (*CHROMATIC, "black", "grey")  # white is the paper, not ink
SYNONYMS = {
    "gray": "grey", "navy": "blue", "teal": "cyan", "turquoise": "cyan", "aqua": "cyan",
    "lime": "green", "indigo": "purple",
}  # fmt: skip
"""Other words for a basic colour, where the pixel namer agrees with them on both
matplotlib's CSS and xkcd colour of that name (a test holds it). Not "violet", "magenta",
"crimson" or "gold": their CSS and xkcd colours fall under two different names."""
ACHROMATIC = 12.0  # CIELAB chroma below which a pixel has no hue worth naming
DARK, LIGHT = 30.0, 92.0  # achromatic lightness: below DARK black, above LIGHT white (paper)
MAX_SIDE = 512  # regions: images are sampled down to this (nearest pixel: no blended colours)
TINTS = (0.5, 0.6, 0.7, 0.8, 0.9)  # the Tableau colours' blends with white named as them
NAMER = "tints-1"
"""Which namer named the pixels: stored beside an image's colours (`colours_by`), and part
of the marks reader's version, so that an index named by another is read again."""
FILL_KEEP = 0.005  # fills below this share of the ink are not stored
SHARES_SIDE = 256  # shares, counted for every image indexed: a third of the pixels of a
# 400-pixel figure (about 0.5 ms), and a share is a share at either size


def colour_shares(image: Image.Image, coarse: np.ndarray | None = None) -> dict[str, float]:
    """The share of `image`'s ink (pixels that are not white) each colour name has, for
    the names that have at least 0.1% of it; `coarse`, its `name_grid` at `SHARES_SIDE`
    when the caller has it.

    >>> im = Image.new("RGB", (10, 10), "white")
    >>> im.paste((31, 119, 180), (0, 0, 10, 3))  # matplotlib's default blue
    >>> im.paste((20, 20, 20), (0, 3, 10, 4))
    >>> colour_shares(im)
    {'blue': 0.75, 'black': 0.25}
    """
    names = (name_grid(image, SHARES_SIDE) if coarse is None else coarse).ravel()
    counts = np.bincount(names, minlength=len(NAMES) + 1)[: len(NAMES)]
    ink = counts.sum()
    if not ink:
        return {}
    shares = {n: round(float(c / ink), 4) for n, c in zip(NAMES, counts, strict=True)}
    return {n: v for n, v in shares.items() if v >= 1e-3}


def solid_blocks(grid: np.ndarray, side: int = 8) -> np.ndarray:
    """Per `side` x `side` block of `grid` (8: the network's lattice), the colour index that
    fills all of it, or -1: fills (bars, slices, shapes) fill such blocks, lines, markers
    and words do not."""
    h, w = grid.shape[0] // side * side, grid.shape[1] // side * side
    blocks = grid[:h, :w].reshape(h // side, side, w // side, side)
    first = blocks[:, :1, :, :1]
    whole = (blocks == first).all(axis=(1, 3)) & (first[:, 0, :, 0] != len(NAMES))
    return np.where(whole, first[:, 0, :, 0], -1)


def fill_shares(coarse: np.ndarray, blocks: np.ndarray | None = None) -> dict[str, float]:
    """The share of the ink that fills areas in each colour (pixels in 4 x 4 `solid_blocks`
    of it on `coarse`, an image's `name_grid` at `SHARES_SIDE`), for the colours with at
    least half a percent of it: a pie's slices, a grouped bar chart's series, a box plot's
    filled boxes; lines, markers and words fill none. How many colours fill areas is how
    many slices or bar series a chart has (`tools.counts`); a colour with ink that fills
    none draws lines or marks. `blocks`: `solid_blocks(coarse, 4)`, when the caller has it.

    >>> grid = np.full((64, 64), len(NAMES)); grid[8:40, 8:40] = NAMES.index("red")
    >>> grid[50, :] = NAMES.index("blue"); fill_shares(grid)
    {'red': 0.9412}
    """
    ink = max(1, int((coarse != len(NAMES)).sum()))
    solid = solid_blocks(coarse, 4) if blocks is None else blocks
    counts = np.bincount(solid[solid >= 0].ravel(), minlength=len(NAMES))[: len(NAMES)] * 16
    shares = {n: round(float(k / ink), 4) for n, k in zip(NAMES, counts, strict=True)}
    return {n: v for n, v in shares.items() if v >= FILL_KEEP}


def name_grid(image: Image.Image, max_side: int = MAX_SIDE) -> np.ndarray:
    """Each pixel's colour name, an index into `NAMES` (`len(NAMES)`: white, the paper),
    on the image sampled down to at most `max_side` a side."""
    rgb = image.convert("RGB")
    if max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.NEAREST)
    a = (np.asarray(rgb) >> 3).astype(np.uint16)  # 5 bits a channel: the table's grid
    return _table()[(a[..., 0] << 10) | (a[..., 1] << 5) | a[..., 2]]


def named_colours(text: str) -> tuple[str, ...]:
    """The colour names a query uses, once each in order; a capitalised word other than
    the first is read as a name ("Red Sea", "Green's function"), not a colour.

    >>> named_colours("Red bars beside a blue-to-grey colour map, not the Black Forest")
    ('red', 'blue', 'grey')
    """
    found = []
    for n, m in enumerate(re.finditer(r"[A-Za-z]+", text)):
        word = m.group()
        if n and not word.islower():
            continue
        name = SYNONYMS.get(word.lower(), word.lower())
        if name in NAMES and name not in found:
            found.append(name)
    return tuple(found)


PARTS = ("median line", "whisker")
"""A box plot's small parts: "red median lines" asks for a little red drawn in lines,
which a box plot with red boxes, filled or outlined, does not have, though it holds more
red; "black median lines", that no colour with a hue is drawn as small parts
(`hybrid.colour_scores`)."""
PART_SHARE = (0.02, 0.1)
"""A colour named for small parts counts its share of the ink up to 2% (a box plot's
median lines hold 1-7% of it) and nothing above 10% (its boxes' colour, outlined, holds
16-38%; figure benchmark, validation split)."""
ONE_COLOUR = ("median line",)
"""The small parts a chart draws all in one colour: a box plot's median lines. "Black
median lines" then says that no part is drawn in a hue (`hybrid.colour_scores`); black
whiskers say nothing of the kind (a filled box plot's are black beside medians in a hue)."""


@functools.cache
def _parts_pattern(parts: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"\b(?P<colour>[a-z]+)\s+(?:" + "|".join(parts) + r")s?\b", re.IGNORECASE)


def part_colours(text: str, parts: tuple[str, ...] = PARTS) -> tuple[str, ...]:
    """The colours a query names for a chart's small parts (`PARTS`, or `parts`), once each
    in order.

    >>> part_colours("a box plot with green boxes and red median lines")
    ('red',)
    >>> part_colours("a red line chart"), part_colours("grey whiskers")
    ((), ('grey',))
    >>> part_colours("black whiskers and black median lines", ONE_COLOUR)
    ('black',)
    """
    found = []
    for m in _parts_pattern(parts).finditer(text):
        word = m.group("colour").lower()
        name = SYNONYMS.get(word, word)
        if name in NAMES and name not in found:
            found.append(name)
    return tuple(found)


def encode(shares: dict[str, float]) -> str:
    """How `colour_shares` is stored in an image's metadata (one string: Chroma keeps
    scalars only)."""
    return json.dumps(shares, separators=(",", ":"))


def decode(stored: str | None) -> dict[str, float] | None:
    """The shares back from metadata; None when the image was indexed without them."""
    if not stored:
        return None
    try:
        shares = json.loads(stored)
    except ValueError:
        return None
    return shares if isinstance(shares, dict) else None


@functools.cache
def _table() -> np.ndarray:
    """The colour name (an index into `NAMES`; len(NAMES) for white) of every colour on
    a 32-level grid a channel; about 10 ms, once."""
    # search only reads names and stored shares; matplotlib loads when indexing needs it
    from matplotlib.colors import CSS4_COLORS, TABLEAU_COLORS, XKCD_COLORS, to_rgb  # noqa: PLC0415

    sources = (
        CSS4_COLORS,
        {k.removeprefix("tab:"): v for k, v in TABLEAU_COLORS.items()},
        {k.removeprefix("xkcd:"): v for k, v in XKCD_COLORS.items()},
    )
    protos = [(n, to_rgb(s[n])) for n in CHROMATIC for s in sources if n in s]
    tableau = sources[1]
    protos += [
        (n, tuple(a * np.array(to_rgb(tableau[n])) + 1 - a))  # sRGB blends, as Agg draws them
        for n in CHROMATIC if n in tableau for a in TINTS
    ]  # fmt: skip
    proto_lab = _lab(np.array([rgb for _, rgb in protos]))
    proto_name = np.array([NAMES.index(n) for n, _ in protos])
    levels = np.arange(32) / 31
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = _lab(grid)
    d = ((lab[:, None, 1:] - proto_lab[None, :, 1:]) ** 2).sum(-1)
    d += 0.5 * (lab[:, None, 0] - proto_lab[None, :, 0]) ** 2
    out = proto_name[np.argmin(d, axis=1)]
    grey = np.hypot(lab[:, 1], lab[:, 2]) < ACHROMATIC
    light = lab[:, 0]
    out[grey] = NAMES.index("grey")
    out[grey & (light < DARK)] = NAMES.index("black")
    out[grey & (light > LIGHT)] = len(NAMES)
    return out.astype(np.int32)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> CIELAB (D65 white)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], -1)


_SRGB_TO_XYZ = np.array(
    [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
)
_D65 = np.array([0.95047, 1.0, 1.08883])
