"""The figure model's training loop (stage 3 of `figure_model`): the cycles of the recipe
(`Phase`, `phases`) and the `Trainer` that runs one batch at a time and checkpoints; the
losses are described in `figure_model`'s docstring.
"""

from __future__ import annotations

import logging
import math
import random
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN as MEAN
from open_clip.constants import OPENAI_DATASET_STD as STD

from evident.eval.training.figure_data import siblings, texts_of
from evident.tools.towers import grid_coverage, patch_features

log = logging.getLogger(__name__)


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
