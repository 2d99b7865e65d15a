"""Learned fusion: the reranker whose weights `evident`'s learning to rank fits.

Each candidate gets four features (`FEATURES`):
- `global`: cosine of the whole image with the query (the first stage's image score);
- `best_crop`: the best cosine over the multi-scale crops `evident.tools.rerank.crop_boxes` cuts;
- `caption`: the caption-side cosine of a hybrid search (missing -> 0: no evidence);
- `concentration`: share of the heatmap's heat in its hottest 10% of pixels (0.1 for a
  flat map, 1 for a point), from `evident.tools.evidence.heatmaps.compute_heatmaps`.

`Fusion` scores them linearly on standardised features. `evident.eval.ltr` fits one and saves it
as JSON (`Fusion.save`); `--rerank learned:FILE` loads it into `LearnedReranker`, which
computes the same features the same way at search time. The concentration feature needs
a heatmap of every candidate, so it is computed only when its weight is not zero.

Not handled: non-linear fusions, features of the query alone (they do not change a
ranking).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evident.tools.errors import InputError
from evident.tools.evidence.heatmaps import compute_heatmaps
from evident.tools.records import Hit, Query
from evident.tools.rerank import rerank_by, view_embeddings

FEATURES = ("global", "best_crop", "caption", "concentration")
TOP_SHARE = 0.10  # concentration: heat in the hottest 10% of pixels
CROP_SIDES = (0.5,)  # the crops `MultiScaleReranker` cuts by default
FORMAT = "evident-fusion/1"


@dataclass(frozen=True)
class Fusion:
    """A linear fusion on standardised features: `score = ((x - mean) / std) @ weights`."""

    weights: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    names: tuple[str, ...] = FEATURES
    loss: list[float] = field(default_factory=list, compare=False, repr=False)

    def scores(self, features: np.ndarray) -> np.ndarray:
        return ((filled(features) - self.mean) / self.std) @ self.weights

    def raw_weights(self) -> np.ndarray:
        """The same fusion on unstandardised features (up to a constant per list)."""
        return self.weights / self.std

    def uses(self, name: str) -> bool:
        return bool(self.weights[self.names.index(name)] != 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "weights": dict(zip(self.names, map(float, self.weights), strict=True)),
            "raw_weights": dict(zip(self.names, map(float, self.raw_weights()), strict=True)),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "final_loss": self.loss[-1] if self.loss else None,
        }

    def save(self, path: str | Path) -> Path:
        """Write the fusion as JSON (whole or not at all)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Fusion:
        """Read what `save` wrote; anything else is an `InputError` naming the problem."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"no fusion weights at {str(path)!r}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read fusion weights {str(path)!r}: {exc}") from None
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            weights = data["weights"]
            if set(weights) != set(FEATURES):
                raise ValueError(f"weights must name exactly {', '.join(FEATURES)}")
            w = np.array([float(weights[n]) for n in FEATURES])
            mean = np.array(data["mean"], dtype=np.float64).reshape(len(FEATURES))
            std = np.array(data["std"], dtype=np.float64).reshape(len(FEATURES))
            if not (np.isfinite(w).all() and np.isfinite(mean).all() and (std > 0).all()):
                raise ValueError("weights and means must be finite and deviations positive")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{str(path)!r} holds no usable fusion weights: {exc}") from None
        return cls(w, mean, std)


def filled(features: np.ndarray) -> np.ndarray:
    """Missing features (NaN: no caption) count as 0, no evidence."""
    return np.nan_to_num(np.asarray(features, dtype=np.float64), nan=0.0)


def concentration(heatmap: np.ndarray, share: float = TOP_SHARE) -> float:
    """Share of the heat in the hottest `share` of pixels; a flat or empty map gives `share`.

    >>> concentration(np.ones((10, 10))), concentration(np.zeros((10, 10)))
    (0.1, 0.1)
    >>> m = np.zeros((10, 10)); m[0, :5] = 1; concentration(m)
    1.0
    """
    h = np.sort(np.clip(np.asarray(heatmap, dtype=np.float64).ravel(), 0, None))[::-1]
    top = max(1, round(share * h.size))
    return float(h[:top].sum() / h.sum()) if h.sum() > 0 else float(share)


def candidate_features(
    query_embedding: np.ndarray,
    hits: Sequence[Hit],
    views: Sequence[np.ndarray],
    heatmaps: np.ndarray | None = None,
) -> np.ndarray:
    """`(len(hits), len(FEATURES))` from each hit's view embeddings (and heatmaps, if any;
    without them concentration is NaN)."""
    q = np.asarray(query_embedding, dtype=np.float32).reshape(-1)
    q = q / (np.linalg.norm(q) or 1.0)
    out = np.full((len(hits), len(FEATURES)), np.nan)
    for i, (hit, v) in enumerate(zip(hits, views, strict=True)):
        cos = v @ q
        out[i, 0], out[i, 1] = cos[0], cos[1:].max() if len(cos) > 1 else cos[0]
        out[i, 2] = hit.scores.get("caption", np.nan)
        if heatmaps is not None:
            out[i, 3] = concentration(heatmaps[i])
    return out


@dataclass
class LearnedReranker:
    """`--rerank learned:FILE`: the four features of each hit, scored by a fitted `Fusion`."""

    encoder: Any
    fusion: Fusion
    crop_sides: tuple[float, ...] = CROP_SIDES
    name: str = "learned"

    def rerank(
        self,
        query: Query,
        query_embedding: np.ndarray,
        hits: Sequence[Hit],
        images: Sequence[Image.Image],
    ) -> list[Hit]:
        if len(hits) != len(images):
            raise InputError(f"{len(hits)} hits but {len(images)} images to rerank.")
        if not hits:
            return []
        views = view_embeddings(self.encoder, images, self.crop_sides)
        maps = None
        if self.fusion.uses("concentration"):
            maps = compute_heatmaps(self.encoder, list(images), query_embedding).maps
        features = candidate_features(query_embedding, hits, views, maps)
        scores = self.fusion.scores(features)
        if not all(math.isfinite(s) for s in scores):
            raise InputError("the learned fusion gave a non-finite score; refit its weights.")
        return rerank_by(hits, scores)
