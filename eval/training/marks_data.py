"""The marks reader's training data: figures of the benchmark generator that draw series
(line charts, scatter plots, error-bar plots), rendered at their own size, each kept as
its grid of colour names (`tools.colours.name_grid`) with, per colour, the marker shapes
and line styles its series are drawn with, and the box of its arrow annotation if any.
Shards of `SHARD` figures, written atomically and never rendered twice, so a run resumes
where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from PIL import Image

from evident.eval.figures.render import kind_for, render_figure
from evident.eval.training.figure_data import render_shards
from evident.tools.colours import name_grid
from evident.tools.marks import LABELS

log = logging.getLogger(__name__)

SHARD = 500
KINDS = ("line", "scatter", "errorbar")


def labels(kind: str, attributes: dict) -> dict[str, list[str]]:
    """Per colour the figure's series are drawn in, the marker shapes and line styles drawn
    in it, and "arrow" for the colour of an arrow annotation (error bars in a colour are no
    line style).

    >>> labels("line", {"series": [{"color": "red", "linestyle": "dashed", "marker": None}]})
    {'red': ['dashed']}
    """
    out: dict[str, set[str]] = {}
    for s in attributes.get("series", []):
        drawn = out.setdefault(s["color"], set())
        if s.get("marker"):
            drawn.add(s["marker"])
        if s.get("linestyle"):
            drawn.add(s["linestyle"])
    if kind == "scatter" and attributes.get("regression"):
        fit = attributes["regression"]
        out.setdefault(fit["color"], set()).add(fit["linestyle"])
    if attributes.get("annotation"):
        out.setdefault(attributes["annotation"]["color"], set()).add("arrow")
    assert all(m in LABELS for v in out.values() for m in v), out
    return {c: sorted(v) for c, v in out.items()}


def indices(seed: int, n: int) -> list[int]:
    """The first `n` figure indices of `seed` whose kind draws series."""
    found, i = [], 0
    while len(found) < n:
        if kind_for(seed, i) in KINDS:
            found.append(i)
        i += 1
    return found


def _render(job: tuple[int, int]) -> tuple[np.ndarray, dict]:
    seed, index = job
    fig = render_figure(seed, index)
    grid = name_grid(Image.fromarray(fig.pixels)).astype(np.uint8)
    record = {"index": index, "kind": fig.kind, "marks": labels(fig.kind, fig.attributes)}
    boxes = [list(c.box) for c in fig.components if c.name == "annotation"]
    return grid, record | ({"annotation": boxes[0]} if boxes else {})


def render(folder: Path, n: int, seed: int, workers: int | None = None) -> None:
    jobs = [(seed, i) for i in indices(seed, n)]
    render_shards(folder, jobs, SHARD, _render, _save, chunksize=8, workers=workers)


def _save(path: Path, done: list[tuple[np.ndarray, dict]]) -> None:
    grids = {f"g{j}": d[0] for j, d in enumerate(done)}
    np.savez_compressed(path, records=np.array(json.dumps([d[1] for d in done])), **grids)


def load(folder: Path, n: int) -> tuple[list[np.ndarray], list[dict]]:
    """The first `n` figures' grids and records."""
    grids, records = [], []
    for path in sorted(folder.glob("shard_[0-9][0-9][0-9][0-9].npz"))[: math.ceil(n / SHARD)]:
        with np.load(path) as data:
            recs = json.loads(str(data["records"]))
            grids += [data[f"g{j}"] for j in range(len(recs))]
            records += recs
    return grids[:n], records[:n]
