"""The figure model's training data: figures of the benchmark generator rendered at the
model's input size into shards of `SHARD` (parallel workers, atomic files, resumable: a
shard on disk is never rendered again), each with its record and every text true of it;
and those texts' vectors from the locked MiniLM tower, computed once.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer

from evident.eval.figures.queries import attribute_phrases, component_phrases
from evident.eval.figures.render import render_figure
from evident.eval.figures.style import KIND_PHRASES
from evident.tools.specs import minilm_path

log = logging.getLogger(__name__)

SHARD = 1000


def _render(job: tuple[int, int, int]) -> tuple[np.ndarray, dict]:
    """One figure at model resolution and its record (worker entry point)."""

    seed, index, size = job
    fig = render_figure(seed, index)
    pixels = np.asarray(Image.fromarray(fig.pixels).resize((size, size), Image.BICUBIC))
    record = {"kind": fig.kind, "attributes": fig.attributes}
    record["components"] = [c.to_dict() for c in fig.components]
    record |= {
        "caption": fig.caption,
        "short": fig.short_caption,
        "type": KIND_PHRASES[fig.kind],
        "phrases": sorted(attribute_phrases(record)),
        "parts": component_phrases(record),
        "size": [fig.attributes["width"], fig.attributes["height"]],
    }
    return pixels, record


def render(folder: Path, n: int, seed: int, size: int, workers: int | None = None) -> None:
    jobs = [(seed, i, size) for i in range(n)]
    render_shards(folder, jobs, SHARD, _render, _save, chunksize=16, workers=workers)


def _save(path: Path, done: list[tuple[np.ndarray, dict]]) -> None:
    pixels = np.stack([d[0] for d in done])
    np.savez(path, pixels=pixels, records=np.array(json.dumps([d[1] for d in done])))


def render_shards(
    folder: Path, jobs: list, shard: int, work, save, *, chunksize: int, workers: int | None
) -> None:
    """`work` over `jobs` in worker processes, `shard` jobs a file: `save(path, results)`
    writes each shard, which then takes its final name (`shard_0000.npz`, ...) at once; a
    shard on disk is never made again, so a killed run resumes where it stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = math.ceil(len(jobs) / shard)
    todo = [s for s in range(shards) if not (folder / f"shard_{s:04d}.npz").exists()]
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    workers = workers or min(os.cpu_count() or 1, 8)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for s in todo:
            t0 = time.perf_counter()
            done = list(pool.map(work, jobs[s * shard : (s + 1) * shard], chunksize=chunksize))
            tmp = folder / f"shard_{s:04d}.tmp.npz"
            save(tmp, done)
            tmp.replace(folder / f"shard_{s:04d}.npz")
            seconds = time.perf_counter() - t0
            log.info("%s: shard %d (%d figures) in %.0f s", folder.name, s, len(done), seconds)


def load_shards(folder: Path) -> tuple[np.ndarray, list[dict]]:
    pixels, records = [], []
    for path in sorted(folder.glob("shard_[0-9][0-9][0-9][0-9].npz")):
        with np.load(path) as data:
            pixels.append(data["pixels"])
            records += json.loads(str(data["records"]))
    return np.concatenate(pixels), records


def texts_of(record: dict) -> list[str]:
    return [
        record["caption"],
        record["short"],
        record["type"],
        *record["phrases"],
        *record["parts"],
    ]


def pooled_phrases(model, texts: list[str], batch: int = 256):
    """MiniLM's mean-pooled output for each text (before the learned projection), padded
    per batch of similar lengths: the same vectors as the tower's own padded forward."""

    tower = model.text
    tokenizer = _hf_tokenizer()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.zeros(len(texts), tower.transformer.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            enc = tokenizer(
                [texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                max_length=128,
            )  # fmt: skip
            hidden = tower.transformer(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
            )
            out[idx] = tower.pooler(hidden, enc["attention_mask"]).float()
    return out


def _hf_tokenizer():

    return AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


def siblings(phrases: set[str] | list[str]) -> dict[str, list[str]]:
    """For each phrase, the others that differ from it in exactly one word ("a line chart
    with grey circle markers": "... pink circle markers", "... grey square markers").

    >>> siblings(["a red line", "a blue line", "a red bar", "two red lines"])["a red line"]
    ['a blue line', 'a red bar']
    """

    groups: dict[tuple, set[str]] = {}
    for p in phrases:
        words = p.split()
        for i in range(len(words)):
            groups.setdefault((len(words), i, *words[:i], "", *words[i + 1 :]), set()).add(p)
    out: dict[str, set[str]] = {p: set() for p in phrases}
    for group in groups.values():
        for p in group:
            out[p] |= group - {p}
    return {p: sorted(v) for p, v in out.items()}
