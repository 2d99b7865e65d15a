"""The bundled figure model's recipe: render, embed the phrases, train, export.

`python -m evident.eval.training.figure_model OUT` (what `make figure-model` runs) goes through four
stages, each resumable, so a killed run picks up where it stopped:

1. render (`figure_data`): `n` figures of the benchmark generator (`seed`), squashed to
   the model's input size, into shards of 1,000 under `OUT/data` (parallel workers,
   atomic files); `val` more figures with another seed for a check at the end.
2. phrases (`figure_data`): every text that is true of some figure (full and short
   captions, chart types, attribute and component phrases, exactly as the benchmark
   words them) is embedded once by the locked MiniLM tower (`OUT/data/phrases.pt`).
3. train: the image tower and the text projection, with two losses:
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
import math
import os
import platform
import random
import sys
import time
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors.torch import save_file

from evident.eval.training.figure_data import (
    load_shards,
    pooled_phrases,
    render,
    siblings,
    texts_of,
)
from evident.eval.training.held_out import calibrate, check
from evident.tools import specs, towers
from evident.tools.towers import grid_coverage, patch_features

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


# --- 3. train --------------------------------------------------------------------------


class Phase(NamedTuple):
    """One cosine cycle of the training: global steps `first` to `first + steps`, and how
    many one-word siblings of each attribute phrase join the batch as its negatives."""

    first: int
    steps: int
    lr: float
    siblings: int


def phases(s: dict) -> list[Phase]:
    """The two cycles: the recipe, then a refinement at a lower rate that teaches apart the
    phrases one word tells apart ("grey circle markers" from "grey square markers")."""

    return [
        Phase(0, s["steps"], s["lr"], 0),
        Phase(s["steps"], s["refine_steps"], s["refine_lr"], s["siblings"]),
    ]


class Trainer:
    """The training state of one phase; `step()` runs one batch, `save()`/`resume()`
    checkpoint it."""

    def __init__(
        self, s: dict, model, pixels: np.ndarray, records: list[dict], phrases, phase: Phase
    ):

        self.s, self.model, self.pixels, self.records = s, model, pixels, records
        self.phase = phase
        self.texts = phrases["texts"]
        self.pooled = phrases["pooled"]
        index = {t: i for i, t in enumerate(self.texts)}
        self.index = index
        self.truth = [{index[t] for t in texts_of(r)} for r in records]
        visual, proj = model.visual, model.text.proj
        self.grid = visual.grid_size[0]
        self.scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = torch.nn.Parameter(torch.tensor(-10.0))
        self.dense_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
        params = [*visual.parameters(), *proj.parameters()]
        self.params = params
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2] + [self.scale, self.bias, self.dense_scale]
        groups = [
            {"params": decay, "weight_decay": s["weight_decay"]},
            {"params": rest, "weight_decay": 0.0},
        ]
        self.opt = torch.optim.AdamW(groups, lr=phase.lr, betas=(0.9, 0.98), fused=True)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, partial(_schedule, phase.steps))
        self.done = phase.first
        attributes = {p for r in records for p in r["phrases"]}
        self.siblings = siblings(attributes) if phase.siblings else {}
        self.mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(STD).view(1, 3, 1, 1)
        self.bf16 = _bf16()

    def batch(self, step: int):
        """The images, phrases, labels and dense targets of one step (a function of the
        step number, so a resumed run sees exactly the batches it would have). With
        siblings, each attribute phrase brings phrases one word away: labelled exactly,
        they are negatives unless true of the figure."""

        s = self.s
        rng = random.Random(s["train_seed"] * 1_000_003 + step)
        chosen = rng.sample(range(len(self.records)), s["batch"])
        texts, dense = [], []
        for b, i in enumerate(chosen):
            r = self.records[i]
            texts += [r["caption"] if rng.random() < 0.6 else r["short"], r["type"]]
            picked = rng.sample(r["phrases"], min(s["attributes"], len(r["phrases"])))
            texts += picked
            for p in picked if self.phase.siblings else ():
                near = self.siblings[p]
                texts += rng.sample(near, min(self.phase.siblings, len(near)))
            for name in rng.sample(sorted(r["parts"]), min(s["components"], len(r["parts"]))):
                texts.append(name)
                cover = grid_coverage(r["parts"][name], r["size"], s["size"], self.grid)
                dense.append((b, self.index[name], cover))
        ids = sorted({self.index[t] for t in texts})
        labels = torch.tensor([[float(t in self.truth[i]) for t in ids] for i in chosen])
        x = torch.from_numpy(self.pixels[chosen]).permute(0, 3, 1, 2).float().div_(255)
        keep = None
        n = self.grid * self.grid
        if step - self.phase.first < s["drop_until"] * self.phase.steps and s["drop"] > 0:
            kept = n - round(n * s["drop"])
            g = torch.Generator().manual_seed(step)
            keep = torch.rand(len(chosen), n, generator=g).topk(kept, dim=1).indices
        return (x - self.mean) / self.std, ids, labels, dense, keep

    def step(self, step: int) -> tuple[float, float]:

        x, ids, labels, dense, keep = self.batch(step)
        with torch.autocast(
            "cpu" if x.device.type == "cpu" else "cuda", torch.bfloat16, enabled=self.bf16
        ):
            feats = patch_features(self.model.visual, x, keep)
        feats = feats.float()
        emb = F.normalize(feats.mean(1), dim=-1)
        text = F.normalize(self.model.text.proj(self.pooled[ids]), dim=-1)
        logits = emb @ text.T * self.scale.exp() + self.bias
        glob = -F.logsigmoid((2 * labels - 1) * logits).sum() / len(x)
        loc = torch.zeros(())
        if dense and self.s["dense_weight"] > 0:
            col = {t: c for c, t in enumerate(ids)}
            rows = torch.tensor([d[0] for d in dense])
            cols = torch.tensor([col[d[1]] for d in dense])
            cover = torch.tensor([d[2] for d in dense])
            if keep is not None:
                cover = torch.gather(cover, 1, keep[rows])
            ok = cover.sum(1) > 0
            if ok.any():
                sim = torch.einsum("knd,kd->kn", feats[rows], text[cols]) * self.dense_scale.exp()
                target = cover / cover.sum(1, keepdim=True).clamp(min=1e-6)
                loc = -(target * F.log_softmax(sim, -1)).sum(1)[ok].mean()
        loss = glob + self.s["dense_weight"] * loc
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        self.done = step + 1
        return glob.item(), loc.item()

    def state(self) -> dict:
        return {
            "step": self.done,
            "phase": self.phase.first,
            "model": {
                k: v
                for k, v in self.model.state_dict().items()
                if not k.startswith("text.transformer.")
            },
            "loss": self.loss_values(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
        }  # fmt: skip

    def save(self, path: Path) -> None:

        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)

    def resume(self, state: dict) -> None:
        """Take the weights of a checkpoint; its optimiser too when it is of this phase
        (a checkpoint from the end of the phase before starts this one afresh)."""

        self.model.load_state_dict(state["model"], strict=False)
        self.take_loss(state["loss"])
        if state.get("phase", 0) == self.phase.first:
            self.opt.load_state_dict(state["opt"])
            self.sched.load_state_dict(state["sched"])
            self.done = int(state["step"])

    def loss_values(self) -> list[torch.Tensor]:
        """The sigmoid loss's scale and bias and the dense loss's scale, as checkpointed."""
        return [self.scale.data, self.bias.data, self.dense_scale.data]

    def take_loss(self, values) -> None:
        for p, v in zip((self.scale, self.bias, self.dense_scale), values, strict=True):
            p.data.copy_(v)


def _schedule(steps: int, k: int) -> float:
    """Linear warm-up over the first 5% of the steps, then a cosine to zero.

    >>> [round(_schedule(100, k), 2) for k in (0, 4, 50, 100)]
    [0.2, 1.0, 0.5, 0.0]
    """
    warm = max(1, steps // 20)
    return min(1.0, (k + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))


def _bf16() -> bool:

    if torch.cuda.is_available():
        return True
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


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
