"""Generated scenes: one coloured shape at a random place, with a caption and its exact box.

Used where quality must be asserted without downloads (a tiny CLIP trained for
seconds on these learns colour and shape), and by the offline demo. Deliberately
simple: one target shape per scene, optional grey clutter, no occlusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 205, 20),
}
BACKGROUNDS = {"white": (250, 250, 250), "black": (12, 12, 12), "grey": (128, 128, 128)}


@dataclass(frozen=True)
class Scene:
    image: Image.Image
    caption: str
    shape: str
    colour: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1; x1/y1 exclusive

    @property
    def centre(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) // 2, (y0 + y1) // 2


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, ...], rgb) -> None:
    x0, y0, x1, y1 = box[0], box[1], box[2] - 1, box[3] - 1
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=rgb)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=rgb)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=rgb)
    else:  # cross
        w, h = x1 - x0, y1 - y0
        draw.rectangle((x0 + w // 3, y0, x1 - w // 3, y1), fill=rgb)
        draw.rectangle((x0, y0 + h // 3, x1, y1 - h // 3), fill=rgb)


def make_scene(
    rng: np.random.Generator,
    *,
    size: int = 64,
    clutter: bool = False,
    scale: tuple[float, float] = (0.3, 0.45),
    shape: str | None = None,
    colour: str | None = None,
) -> Scene:
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
    bg = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    image = Image.new("RGB", (size, size), BACKGROUNDS[bg])
    draw = ImageDraw.Draw(image)
    if clutter:
        for _ in range(6):
            g = int(rng.integers(60, 200))
            pts = rng.integers(0, size, 4).tolist()
            draw.line(pts, fill=(g, g, g), width=int(rng.integers(1, 3)))
    side = int(size * rng.uniform(*scale))
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
    box = (x0, y0, x0 + side, y0 + side)
    draw_shape(draw, shape, box, COLOURS[colour])
    caption = f"a {colour} {shape} on a {bg} background"
    return Scene(image, caption, shape, colour, box)


def make_scenes(n: int, *, seed: int = 0, size: int = 64, clutter: bool = False) -> list[Scene]:
    """`n` scenes, deterministic by seed.

    >>> [s.caption for s in make_scenes(2, seed=1)]  # doctest: +SKIP
    ['a blue cross on a grey background', 'a red circle on a white background']
    """
    rng = np.random.default_rng(seed)
    return [make_scene(rng, size=size, clutter=clutter) for _ in range(n)]
