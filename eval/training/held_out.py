"""What the figure model's recipe measures on its held-out figures once it has exported
the model (`figure_model.build_model`'s last two stages).

- `check`: chart-type and attribute precision@5 and the pointing game of the patch
  contributions, on the training form of the model: a sanity check written to
  `recipe.json`, not the evaluation (`evident eval` on a fresh benchmark is);
- `calibrate`: the band of best cosines the model's own text queries reach, measured
  through the product's encoder and written into the exported config, where search reads
  it to tell a query the model knows from one it does not (`tools.hybrid.confidence`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

from evident.eval.metrics import pointing_game
from evident.eval.training.figure_data import pooled_phrases, texts_of
from evident.tools import specs
from evident.tools.encoders import load_encoder
from evident.tools.towers import patch_features


def check(model, pixels: np.ndarray, records: list[dict], size: int) -> dict:
    """Chart-type and attribute precision@5 and the pointing game of the patch
    contributions on the held-out figures: a sanity check, not the evaluation
    (`evident eval` on a fresh benchmark is)."""

    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        batches = [
            torch.from_numpy(pixels[i : i + 64]).permute(0, 3, 1, 2).float() / 255
            for i in range(0, len(pixels), 64)
        ]
        feats = torch.cat([patch_features(model.visual, (x - mean) / std) for x in batches])
        emb = F.normalize(feats.mean(1), dim=-1)
        texts = sorted({t for r in records for t in [r["type"], *r["phrases"], *r["parts"]]})
        text = F.normalize(model.text.proj(pooled_phrases(model, texts)), dim=-1)
    column = {t: i for i, t in enumerate(texts)}
    sims = (text @ emb.T).numpy()
    out = {}
    for level, key in (("type", "type"), ("attribute", "phrases")):
        precisions = []
        for t in sorted({x for r in records for x in ([r[key]] if level == "type" else r[key])}):
            top = np.argsort(-sims[column[t]])[:5]
            truth = [t in texts_of(records[j]) for j in top]
            precisions.append(sum(truth) / 5)
        out[f"{level}_p@5"] = round(float(np.mean(precisions)), 4)
    grid = model.visual.grid_size[0]
    hits = []
    for j, r in enumerate(records):
        for name, boxes in r["parts"].items():
            heat = (feats[j] @ text[column[name]]).view(grid, grid).numpy()
            big = np.kron(heat, np.ones((size // grid, size // grid)))
            w, h = r["size"]
            ys, xs = np.unravel_index(np.argmax(big), big.shape)
            point = np.zeros((h, w))
            point[
                min(h - 1, int((ys + 0.5) * h / size)), min(w - 1, int((xs + 0.5) * w / size))
            ] = 1
            hits.append(pointing_game(point, boxes))
    out["pointing"] = round(float(np.mean(hits)), 4)
    return out


def calibrate(folder: Path, pixels: np.ndarray, records: list[dict]) -> dict:
    """Write the model's in-domain band for text queries into its config (`evident.
    query_band`, read by `tools.specs.text_band`): over the held-out figures' captions,
    chart types and attribute phrases, each query's best cosine; the band is their 1st
    and 5th percentiles. Measured through the product's encoder, as search sees it."""

    encoder = load_encoder(f"local-dir:{folder}")
    images = [Image.fromarray(p) for p in pixels]
    emb = encoder.encode_images(images)
    texts = sorted({t for r in records for t in [r["caption"], r["type"], *r["phrases"]]})
    sims = encoder.encode_texts(texts) @ emb.T
    best = sims.max(1)
    low, high = np.percentile(best, [1, 5])
    band = {
        "low": round(float(low), 4), "high": round(float(high), 4),
        "median": round(float(np.median(best)), 4), "queries": len(texts),
        "images": len(images),
    }  # fmt: skip
    config = specs.read_config(folder)
    config["evident"]["query_band"] = band
    tmp = folder / (specs.CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config, indent=1) + "\n")
    tmp.replace(folder / specs.CONFIG_FILE)
    return band
