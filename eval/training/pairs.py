"""`evident train PAIRS.jsonl --model ARCH --out DIR`: train an encoder on image–caption pairs.

The pairs file holds one JSON object per line, `{"image": PATH, "caption": TEXT}`, with
relative image paths taken from the pairs file's folder (what `evident figures` writes).
Everything is checked before any model loads, and every problem is an `InputError` that
names the file and line.

A run is resumable: `eval.training.clip.train_clip` checkpoints into DIR, and running the same
command again continues from the last checkpoint; running it once more after it finished
does nothing. DIR also gets `recipe.json` (settings, data, sizes, time, device), written
at the start and at each checkpoint and completed at the end, so anyone can rebuild the
model. A rerun with other settings than the recipe in DIR is refused rather than mixed.
Not handled: a validation split during training (evaluate with `evident eval`), several
GPUs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch

from evident.eval.training.clip import STATE_FILE, train_clip
from evident.tools.encoders import default_device, register_configs
from evident.tools.errors import InputError

log = logging.getLogger(__name__)

RECIPE_FILE = "recipe.json"
SETTINGS = ("arch", "init", "steps", "batch_size", "lr", "seed", "pairs_sha256")


@dataclass(frozen=True)
class TrainReport:
    """What a training run left in `out_dir`; `spec` loads it with `load_encoder`."""

    out_dir: Path
    recipe: dict[str, Any] = field(repr=False)
    resumed_from: int = 0
    already_done: bool = False

    @property
    def spec(self) -> str:
        return f"local-dir:{self.out_dir}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "spec": self.spec,
            "resumed_from": self.resumed_from,
            "already_done": self.already_done,
            "recipe": self.recipe,
        }


def read_pairs(path: Path) -> tuple[list[Path], list[str]]:
    """Image paths and captions from a pairs JSONL file, or an `InputError` saying what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"no such pairs file: {str(path)!r} (write one with `evident figures`)")
    images: list[Path] = []
    captions: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise InputError(f"{where}: expected an object with 'image' and 'caption'")
            image, caption = record.get("image"), record.get("caption")
            if not isinstance(image, str) or not image:
                raise InputError(f"{where}: 'image' must be a non-empty path string")
            if not isinstance(caption, str) or not caption.strip():
                raise InputError(f"{where}: 'caption' must be a non-empty string")
            file = (path.parent / image).resolve()
            if not file.is_file():
                raise InputError(f"{where}: image {image!r} not found (looked for {str(file)!r})")
            images.append(file)
            captions.append(caption.strip())
    if not images:
        raise InputError(f"{str(path)!r} holds no image–caption pairs")
    return images, captions


def train_from_pairs(
    pairs: Path,
    out_dir: Path,
    *,
    arch: str | None = None,
    init: str | None = None,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | None = None,
    fp16: bool = False,
    checkpoint_every: int = 200,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainReport:
    """Train (`arch`, from scratch) or fine-tune (`init` spec) on `pairs` into `out_dir`."""

    _check_numbers(steps=steps, batch_size=batch_size, checkpoint_every=checkpoint_every)
    if not lr > 0:
        raise InputError(f"--lr must be positive, got {lr!r}")
    if arch is None and init is None:
        raise InputError("pass --model ARCH to train from scratch, or --init SPEC to fine-tune")
    if init is None:
        _check_arch(arch)
    elif arch is not None:
        log.warning("fine-tuning %s keeps its architecture; --model %s is ignored", init, arch)
    images, captions = read_pairs(pairs)
    out_dir = Path(out_dir).expanduser().resolve()
    dev = torch.device(device) if device else default_device()
    settings = {
        "arch": arch if init is None else None,
        "init": init,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "pairs_sha256": hashlib.sha256(Path(pairs).read_bytes()).hexdigest(),
    }
    previous = _previous_recipe(out_dir, settings)
    if previous.get("complete") and (out_dir / "open_clip_model.safetensors").is_file():
        log.info("%s already holds the finished model; nothing to do", out_dir)
        return TrainReport(out_dir, previous, previous["steps"], already_done=True)
    state = out_dir / STATE_FILE
    resumed_from = int(previous.get("steps_done", 0)) if state.is_file() else 0
    recipe = settings | {
        "pairs": str(Path(pairs).resolve()),
        "n_pairs": len(images),
        "n_images": len(set(images)),
        "n_captions": len(set(captions)),
        "fp16": fp16,
        "device": _device_name(dev),
        "versions": _versions(),
        "steps_done": resumed_from,
        "wall_seconds": float(previous.get("wall_seconds", 0.0)) if resumed_from else 0.0,
        "complete": False,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_recipe(out_dir, recipe)
    started, losses = time.perf_counter(), []
    prior = recipe["wall_seconds"]

    def step_done(step: int, loss: float) -> None:
        losses.append(loss)
        if step % checkpoint_every == 0:  # train_clip checkpoints at the same steps
            recipe.update(steps_done=step, wall_seconds=prior + time.perf_counter() - started)
            _write_recipe(out_dir, recipe)
        if on_step:
            on_step(step, loss)

    encoder = train_clip(
        images,
        captions,
        arch=arch or "evident-tiny-vit",
        init=init,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=dev,
        out_dir=out_dir,
        checkpoint_every=checkpoint_every,
        on_step=step_done,
        fp16=fp16,
    )
    recipe.update(
        steps_done=steps,
        wall_seconds=round(prior + time.perf_counter() - started, 2),
        final_loss=round(sum(losses[-50:]) / len(losses[-50:]), 4) if losses else None,
        image_size=encoder.image_size,
        embed_dim=encoder.dim,
        parameters=sum(p.numel() for p in encoder.model.parameters()),
        complete=True,
    )
    _write_recipe(out_dir, recipe)
    return TrainReport(out_dir, recipe, resumed_from)


def _check_numbers(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} must be a positive integer, got {value!r}")


def _check_arch(arch: str) -> None:

    register_configs()
    if arch not in open_clip.list_models():
        ours = [m for m in open_clip.list_models() if m.startswith("evident-")]
        raise InputError(
            f"unknown model architecture {arch!r}; evident's own are {', '.join(ours)}, and "
            "open_clip.list_models() lists the rest (e.g. ViT-B-32). To fine-tune existing "
            "weights, pass --init SPEC instead."
        )


def _previous_recipe(out_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The recipe a previous run left in `out_dir`, if its settings match this run's."""
    path = out_dir / RECIPE_FILE
    if not path.is_file():
        if out_dir.is_dir() and any(out_dir.iterdir()):
            raise InputError(
                f"{str(out_dir)!r} is not empty and holds no {RECIPE_FILE}; pass a new --out folder"
            )
        return {}
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{str(path)!r} is not valid JSON; pick a new --out folder") from exc
    changed = [k for k in SETTINGS if previous.get(k) != settings[k]]
    if changed:
        was = ", ".join(f"{k}={previous.get(k)!r}" for k in changed)
        raise InputError(
            f"{str(out_dir)!r} holds a run with other settings ({was}); rerun with those to "
            "resume it, or pass a new --out folder"
        )
    return previous


def _write_recipe(out_dir: Path, recipe: dict[str, Any]) -> None:
    tmp = out_dir / (RECIPE_FILE + ".tmp")
    tmp.write_text(json.dumps(recipe, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out_dir / RECIPE_FILE)


def _device_name(dev) -> str:

    if dev.type == "cuda" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"{dev.type} ({platform.machine()}, {torch.get_num_threads()} threads)"


def _versions() -> dict[str, str]:

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
    }
