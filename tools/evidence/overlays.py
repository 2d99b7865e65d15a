"""Overlay PNGs: the heatmap alone, and blended on the image with numbered region boxes.

Made to read on light and dark images alike: the colour map's opacity grows with heat
(cold areas show the image untouched); every box is drawn as a dark outer and a light
inner stroke, and every label is white text on a dark tag. A region the counterfactual
did not support is drawn dashed and labelled "R1.2 ?", so nobody mistakes it for
evidence. Text regions (words read in the image) are boxed in cyan and labelled with the
first words they read. Images with a side over `max_side` pixels are rendered scaled down
(boxes with them); region ids and boxes in the JSON stay in original pixels.

Not handled: colour-blind-safe palettes beyond the perceptually uniform "inferno", and
vector output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evident.tools.evidence.heatmaps import as_rgb
from evident.tools.records import Region

COLORMAP = "inferno"
DARK, LIGHT = (15, 15, 15), (255, 255, 255)
WORDS = (40, 220, 255)  # text regions: the words read there, boxed in cyan
UNSUPPORTED = (170, 170, 170)


def _lut() -> np.ndarray:
    return (matplotlib.colormaps[COLORMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _levels(heat: np.ndarray) -> np.ndarray:
    return (np.clip(heat, 0, 1) * 255).astype(np.uint8)


def colorize(heat: np.ndarray) -> np.ndarray:
    """`(H, W)` heat in [0, 1] -> `(H, W, 3)` uint8 RGB through the colour map."""
    return _lut()[_levels(heat)]


def render_heatmap(heat: np.ndarray) -> Image.Image:
    """The heat through the colour map, as a palette image: the same pixels as
    `colorize`, a third of the bytes to write."""
    image = Image.fromarray(_levels(heat))  # "L"; a palette makes it "P"
    image.putpalette(_lut().reshape(-1).tolist())
    return image


def render_overlay(
    image: Image.Image,
    heat: np.ndarray,
    regions: Sequence[Region] = (),
    *,
    max_side: int = 1024,
) -> Image.Image:
    """`image` with `heat` (same `(H, W)` as the image) blended in and `regions` boxed."""
    image = as_rgb(image)
    scale = min(1.0, max_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    base = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32)
    heat_img = Image.fromarray(np.asarray(heat, dtype=np.float32))  # mode "F"
    h = np.clip(np.asarray(heat_img.resize(size, Image.BILINEAR)), 0, 1)[..., None]
    alpha = 0.1 + 0.5 * h  # hot areas half colour map (the object still shows), cold ones image
    out = Image.fromarray((base * (1 - alpha) + colorize(h[..., 0]) * alpha).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(10, min(size) // 18))
    width = max(1, min(size) // 150)
    for region in regions:
        box = tuple(round(v * scale) for v in region.box)
        checks = (region.counterfactual, region.words_check, region.colour_check)
        checked = any(c is not None for c in checks)
        dashed = checked and not region.supported
        words = region.kind == "text"
        _box(draw, box, width, dashed=dashed, colour=WORDS if words else LIGHT)
        label = region.id if region.supported or not checked else f"{region.id} ?"
        if words and region.text:
            label += " “" + (region.text[:24] + "…" if len(region.text) > 24 else region.text) + "”"
        elif region.kind == "colour":
            label += f" {region.colour}"
        _label(draw, box, label, font, size)
    return out


def _box(draw: ImageDraw.ImageDraw, box, width: int, *, dashed: bool, colour=LIGHT) -> None:
    x0, y0, x1, y1 = box[0], box[1], max(box[0], box[2] - 1), max(box[1], box[3] - 1)
    inner = UNSUPPORTED if dashed else colour
    if not dashed:
        draw.rectangle((x0, y0, x1, y1), outline=DARK, width=2 * width + 1)
        draw.rectangle((x0, y0, x1, y1), outline=inner, width=width)
        return
    dash = max(3, 4 * width)
    edges = [((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))]
    for (ax, ay), (bx, by) in edges:
        length = max(abs(bx - ax), abs(by - ay))
        for s in range(0, length + 1, 2 * dash):
            e = min(s + dash, length)
            p = (ax + (bx - ax) * s / max(length, 1), ay + (by - ay) * s / max(length, 1))
            q = (ax + (bx - ax) * e / max(length, 1), ay + (by - ay) * e / max(length, 1))
            draw.line((p, q), fill=DARK, width=2 * width + 1)
            draw.line((p, q), fill=inner, width=width)


def _label(draw: ImageDraw.ImageDraw, box, text: str, font, size) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left + 4, bottom - top + 4
    x = min(max(box[0], 0), max(0, size[0] - tw))
    y = box[1] - th if box[1] - th >= 0 else min(box[1] + 1, max(0, size[1] - th))
    draw.rectangle((x, y, x + tw, y + th), fill=DARK)
    draw.text((x + 2 - left, y + 2 - top), text, fill=LIGHT, font=font)


def write_pngs(
    out_dir: str | Path,
    stem: str,
    image: Image.Image,
    heat: np.ndarray,
    regions: Sequence[Region] = (),
) -> tuple[str, str]:
    """Write `<stem>.heatmap.png` and `<stem>.overlay.png`; returns their paths."""
    return write_heatmap(out_dir, stem, heat), write_overlay(out_dir, stem, image, heat, regions)


def write_heatmap(out_dir: str | Path, stem: str, heat: np.ndarray) -> str:
    """Write `<stem>.heatmap.png` (it needs no regions: it can be written while they are
    being checked); returns its path."""
    return _save(render_heatmap(heat), Path(out_dir) / f"{stem}.heatmap.png")


def write_overlay(
    out_dir: str | Path, stem: str, image: Image.Image, heat: np.ndarray,
    regions: Sequence[Region] = (),
) -> str:  # fmt: skip
    """Write `<stem>.overlay.png`, the regions drawn as checked; returns its path."""
    return _save(render_overlay(image, heat, regions), Path(out_dir) / f"{stem}.overlay.png")


def _save(image: Image.Image, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, compress_level=1)  # zlib level 1: faster, files a few percent larger
    return str(path)


KEEP = 400  # overlay and heatmap files kept per folder: about the last 40 queries' worth


def prune(out_dir: str | Path, keep: int = KEEP) -> int:
    """Delete all but the `keep` newest evident PNGs in `out_dir`; returns how many went.
    Only files this module writes (`*.heatmap.png`, `*.overlay.png`) are touched."""
    out = Path(out_dir)
    if not out.is_dir():
        return 0
    files = [p for p in out.iterdir() if p.name.endswith((".heatmap.png", ".overlay.png"))]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for p in files[keep:]:
        p.unlink(missing_ok=True)
    return max(0, len(files) - keep)
