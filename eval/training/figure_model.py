"""The bundled figure model's recipe: render, embed the phrases, train, export.

`python -m evident.eval.training.figure_model OUT` (what `make figure-model` runs) goes through four
stages, each resumable, so a killed run picks up where it stopped:

1. render (`figure_data`): `n` figures of the benchmark generator (`seed`), squashed to
   the model's input size, into shards of 1,000 under `OUT/data` (parallel workers,
   atomic files); `val` more figures with another seed for a check at the end.
2. phrases (`figure_data`): every text that is true of some figure (full and short
   captions, chart types, attribute and component phrases, exactly as the benchmark
   words them) is embedded once by the locked MiniLM tower (`OUT/data/phrases.pt`).
3. train (`trainer`): the image tower and the text projection, with two losses:
   - a sigmoid loss (SigLIP) over every image-phrase pair of the batch, labelled exactly
     from the figure records: "a pie chart" is a positive for every pie in the batch,
     so no true pair is ever pushed apart as a negative;
   - a dense loss for component phrases: the softmax over patches of each patch's
     similarity to "the legend of a bar chart" is pulled toward the patches the legend
     covers. Because the image embedding is the mean of the patch vectors, this is what
     makes a heatmap point at the legend.
   Patches are dropped at random (a quarter of them, the first 80% of the steps; FLIP,
   Li et al. 2023): cheaper steps, and a model used to missing patches, which is how the
   counterfactual check removes a region. Checkpoints every `checkpoint_every` steps.
4. export: `open_clip_config.json`, `open_clip_model.safetensors` (float16, without the
   installed text tower) and `recipe.json` (settings, sizes, seconds, machine), then the
   measures on the held-out figures (`held_out`): the check, and the band of best cosines
   search reads from the config.

On a CPU with bfloat16 units (AVX512-BF16/AMX) the forward runs under bfloat16
autocast; on CUDA too. Not handled: several GPUs, augmentation (the generator's variety
is the augmentation).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors.torch import save_file

from evident.eval.training.figure_data import (
    load_shards,
    pooled_phrases,
    render,
    texts_of,
)
from evident.eval.training.held_out import calibrate, check
from evident.eval.training.trainer import Trainer, phases
from evident.tools import specs, towers

log = logging.getLogger(__name__)

DEFAULTS = {
    "n": 36_000, "seed": 1001, "val": 500, "val_seed": 2002, "size": 192, "width": 256,
    "layers": 8, "stem": [32, 64, 128, 256], "dim": 384, "steps": 3000, "batch": 64,
    "lr": 1e-3, "weight_decay": 0.05, "dense_weight": 1.0, "attributes": 6, "components": 2,
    "drop": 0.25, "drop_until": 0.8, "train_seed": 0, "checkpoint_every": 200,
    "refine_steps": 2000, "refine_lr": 3e-4, "siblings": 3,
}  # fmt: skip
MEAN, STD = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD  # CLIP's own pixel statistics


def model_config(s: dict) -> dict:
    """The exported `open_clip_config.json` for settings `s`."""
    return {
        "model_cfg": {
            "embed_dim": s["dim"],
            "vision_cfg": {
                "image_size": s["size"], "layers": s["layers"], "width": s["width"],
                "head_width": 64, "patch_size": 16, "pool_type": "avg",
            },
            "text_cfg": {
                "hf_proj_type": "linear", "hf_pooler_type": "mean_pooler", "context_length": 128,
            },
        },
        "preprocess_cfg": {
            "size": [s["size"], s["size"]], "mode": "RGB", "mean": list(MEAN), "std": list(STD),
            "interpolation": "bicubic", "resize_mode": "squash", "fill_color": 0,
        },
        "evident": {"stem": s["stem"], "text_tower": "all-MiniLM-L6-v2"},
    }  # fmt: skip


# --- the whole recipe ------------------------------------------------------------------


def build_model(out: Path, settings: dict | None = None) -> dict:
    """Run (or resume) every stage into `out`; returns the recipe."""

    s = DEFAULTS | (settings or {})
    out.mkdir(parents=True, exist_ok=True)
    recipe_path = out / "recipe.json"
    recipe = json.loads(recipe_path.read_text()) if recipe_path.exists() else {}
    if recipe and recipe.get("settings") != s:
        raise SystemExit(f"{out} holds a run with other settings; pass a new folder")
    recipe |= {"settings": s, "machine": _machine()}
    clock = recipe.setdefault("seconds", {})

    def timed(stage: str, fn):
        t0 = time.perf_counter()
        result = fn()
        clock[stage] = round(clock.get(stage, 0) + time.perf_counter() - t0, 1)
        _write(recipe_path, recipe)
        return result

    data = out / "data"
    timed("render", lambda: render(data / "train", s["n"], s["seed"], s["size"]))
    timed("render_val", lambda: render(data / "val", s["val"], s["val_seed"], s["size"]))
    config = model_config(s)
    torch.manual_seed(s["train_seed"])
    model = towers.build(config)
    with torch.no_grad():
        model.text.proj.weight.copy_(torch.eye(s["dim"]))  # start from MiniLM's own space
    pixels, records = load_shards(data / "train")
    phrases_path = data / "phrases.pt"
    if not phrases_path.exists():

        def embed():
            texts = sorted({t for r in records for t in texts_of(r)})
            torch.save({"texts": texts, "pooled": pooled_phrases(model, texts)}, phrases_path)

        timed("phrases", embed)
    phrases = torch.load(phrases_path, weights_only=False)
    state_path = out / "train_state.pt"
    state = None
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
    model.visual.train()
    losses = recipe.setdefault("loss", [])
    trainer = None
    for phase in phases(s):
        end = phase.first + phase.steps
        if state is not None and state["step"] > end:
            continue  # a later phase's checkpoint: this one is over
        before, trainer = trainer, Trainer(s, model, pixels, records, phrases, phase)
        if state is not None:
            trainer.resume(state)
            log.info("resuming at step %d", state["step"])
            state = None
        elif before is not None:
            trainer.take_loss(before.loss_values())
        t0, since = time.perf_counter(), trainer.done
        for step in range(trainer.done, end):
            glob, loc = trainer.step(step)
            if (step + 1) % 50 == 0:
                rate = s["batch"] * (step + 1 - since) / (time.perf_counter() - t0)
                losses.append([step + 1, round(glob, 4), round(loc, 4)])
                log.info("step %d: sigmoid %.3f dense %.3f (%.1f img/s)", step + 1, glob, loc, rate)
            if (step + 1) % s["checkpoint_every"] == 0 or step + 1 == end:
                trainer.save(state_path)
                clock["train"] = round(clock.get("train", 0) + time.perf_counter() - t0, 1)
                t0, since = time.perf_counter(), step + 1
                recipe["steps_done"] = step + 1
                _write(recipe_path, recipe)
    model.eval()
    export(out, model, config)
    val_pixels, val_records = load_shards(data / "val")
    recipe["check"] = timed("check", lambda: check(model, val_pixels, val_records, s["size"]))
    recipe["query_band"] = timed("calibrate", lambda: calibrate(out, val_pixels, val_records))
    recipe["complete"] = True
    _write(recipe_path, recipe)
    return recipe


def export(out: Path, model, config: dict) -> None:

    (out / specs.CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
    tmp = out / (specs.WEIGHTS_FILE + ".tmp")
    save_file(towers.shipped_state(model), str(tmp))
    tmp.replace(out / specs.WEIGHTS_FILE)


def _machine() -> str:

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _write(path: Path, recipe: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(recipe, indent=1) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evident.eval.training.figure_model", description=__doc__.split("\n")[0]
    )
    p.add_argument("out", type=Path)
    for key, value in DEFAULTS.items():
        if not isinstance(value, list):
            p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = {k: getattr(args, k) for k in DEFAULTS if not isinstance(DEFAULTS[k], list)}
    recipe = build_model(args.out, settings)
    print(json.dumps(recipe.get("check"), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
