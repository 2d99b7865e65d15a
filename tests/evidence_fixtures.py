"""Shared pieces of the evidence tests: tiny encoders, one tiny CLIP trained per process,
a fake encoder whose evidence is known, and scenes with small shapes in corners.

Cached with `lru_cache` rather than pytest fixtures so that several test modules share
one trained model (training is the slow part); nothing here may mutate them.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from evident.eval.scenes import BACKGROUNDS, COLOURS, SHAPES, draw_shape, make_scenes
from evident.tools.encoders import Encoder, load_encoder

ARCHS = ("evident-tiny-vit", "evident-tiny-vit-avg", "evident-tiny-rn")
# ~16k image-caption pairs: enough for the tiny ViT to tell colours apart and to localise
# them (shapes stay near chance at this budget); about 30 s of CPU.
TRAIN = {"n": 2000, "empty": 200, "steps": 250, "batch_size": 64, "lr": 2e-3}


@cache
def held_out() -> list:
    """60 scenes the trained model never saw, half of them cluttered: what the localisation
    tests explain."""
    return make_scenes(30, seed=123) + make_scenes(30, seed=124, clutter=True)


@cache
def tiny(arch: str) -> Encoder:
    return load_encoder(f"random:{arch}")


@lru_cache(maxsize=1)
def trained() -> Encoder:
    """A tiny CLIP trained on plain and cluttered one-shape scenes captioned by what the
    queries name ("a red circle"), plus empty backgrounds, so that an image with the shape
    removed is something the model has seen."""
    from evident.eval.training.clip import train_clip

    n = TRAIN["n"]
    scenes = make_scenes(n // 2, seed=0) + make_scenes(n - n // 2, seed=1, clutter=True)
    images = [s.image for s in scenes]
    captions = [shape_query(s.colour, s.shape) for s in scenes]
    for i in range(TRAIN["empty"]):
        name = list(BACKGROUNDS)[i % len(BACKGROUNDS)]
        images.append(Image.new("RGB", (64, 64), BACKGROUNDS[name]))
        captions.append(f"an empty {name} background")
    return train_clip(
        images,
        captions,
        steps=TRAIN["steps"],
        batch_size=TRAIN["batch_size"],
        lr=TRAIN["lr"],
        seed=0,
    )


def shape_query(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def corner_scene(
    rng: np.random.Generator,
    target: tuple[str, str],
    *,
    present: bool = True,
    size: int = 128,
    small: int = 18,
    big: int = 40,
) -> Image.Image:
    """Three big distractors in three quadrants, none in the target's colour, and a small
    shape in a corner of the fourth: the target (colour, shape) when `present`, else a
    shape of another colour. Squashed to the tiny model's 64 px the small shape is ~9 px,
    far smaller than any it was trained on; a crop of half the side shows it at ~28%."""
    image = Image.new("RGB", (size, size), BACKGROUNDS[list(BACKGROUNDS)[rng.integers(3)]])
    draw = ImageDraw.Draw(image)
    others = [c for c in COLOURS if c != target[0]]
    corner = int(rng.integers(4))
    half = size // 2
    for quad in range(4):
        x0, y0 = (quad % 2) * half, (quad // 2) * half
        if quad == corner:
            colour = target[0] if present else others[rng.integers(len(others))]
            shape = target[1] if present else SHAPES[rng.integers(len(SHAPES))]
            x = x0 + (2 if quad % 2 == 0 else half - small - 2)  # the image's own corner
            y = y0 + (2 if quad // 2 == 0 else half - small - 2)
            draw_shape(draw, shape, (x, y, x + small, y + small), COLOURS[colour])
        else:
            x, y = (int(v) for v in rng.integers(2, half - big - 1, 2) + (x0, y0))
            colour = COLOURS[others[rng.integers(len(others))]]
            draw_shape(draw, SHAPES[rng.integers(len(SHAPES))], (x, y, x + big, y + big), colour)
    return image


class _FakeModel(torch.nn.Module):
    """Embeds an image by the redness of its top-left quadrant: evidence with a known place."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def encode_image(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self.calls += 1
        h, w = x.shape[-2:]
        red = x[:, 0, : h // 2, : w // 2].mean((1, 2))
        return F.normalize(torch.stack([red, torch.full_like(red, 0.5)], -1), dim=-1)


class FakeEncoder:
    """Just enough of `Encoder` for counterfactuals: 16-px pixels in [0, 1], 2-d embeddings."""

    image_size, dim, batch_size = 16, 2, 4
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.model = _FakeModel()

    def pixels(self, images) -> torch.Tensor:
        arrays = [np.asarray(im.convert("RGB").resize((16, 16)), np.float32) / 255 for im in images]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def red_corner_image(size: tuple[int, int] = (32, 32)) -> Image.Image:
    """Grey, with a red block filling the top-left quadrant."""
    image = Image.new("RGB", size, (128, 128, 128))
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 2 - 1, size[1] // 2 - 1), fill=(230, 0, 0))
    return image
