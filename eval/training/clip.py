"""Contrastive training of an open_clip model on image–caption pairs.

One loop serves three callers: tests and the demo (a tiny model trained for seconds
on generated scenes), and `evident train` (a real run on a GPU, AMP, resumable).
The result is saved in open_clip's `local-dir:` layout, so `load_encoder` reads it.
Not handled: distributed training, gradient accumulation, fancy augmentation.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file

from evident.tools.encoders import Encoder, default_device, load_encoder, register_configs
from evident.tools.errors import InputError
from evident.tools.ingest.images import read_image

log = logging.getLogger(__name__)

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
STATE_FILE = "train_state.pt"

ImageSource = Image.Image | str | Path


def _open(src: ImageSource) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    try:
        return read_image(Path(src))
    except InputError as exc:
        raise InputError(f"cannot train on image {str(src)!r}: {exc}") from exc


def train_clip(
    images: Sequence[ImageSource],
    captions: Sequence[str],
    *,
    arch: str = "evident-tiny-vit",
    init: str | None = None,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    device: str | torch.device | None = None,
    out_dir: Path | None = None,
    checkpoint_every: int = 200,
    on_step: Callable[[int, float], None] | None = None,
    fp16: bool = False,
) -> Encoder:
    """Train (or fine-tune, from `init` spec) with the symmetric InfoNCE loss.

    With `out_dir` the run checkpoints every `checkpoint_every` steps and resumes
    from the last checkpoint there; the final model is saved there too (as float16
    with `fp16`). `on_step(step, loss)` is called after each step, 1-based.
    """

    if len(images) != len(captions) or not images:
        raise ValueError("train_clip needs as many captions as images, and at least one pair")
    register_configs()
    dev = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    base = load_encoder(init or f"random:{arch}", device=dev, init_seed=None if init else seed)
    model = base.model.train().requires_grad_(True)
    # The fused kernel does AdamW in one pass over each tensor: ~7% of a tiny model's step
    # on a CPU, where the 49k-row token table otherwise costs a sqrt/div/mul sweep each.
    opt = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay, fused=dev.type in ("cpu", "cuda")
    )
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    loss_fn = open_clip.ClipLoss()
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start = _resume(out_dir, model, opt, sched, scaler) if out_dir else 0
    rng = random.Random(seed * 1_000_003 + start)
    by_caption: dict[str, list[int]] = {}
    for i, c in enumerate(captions):
        by_caption.setdefault(c, []).append(i)
    groups = list(by_caption.values())
    bs = min(batch_size, len(groups))

    def sample() -> list[int]:
        # One image per distinct caption: duplicates in a batch are false negatives.
        return [rng.choice(g) for g in rng.sample(groups, bs)]

    pool = ThreadPoolExecutor(max_workers=2)

    def batch(indices: list[int]):
        pix = torch.stack(list(pool.map(lambda i: base.preprocess(_open(images[i])), indices)))
        return pix, base.tokenizer([captions[i] for i in indices])

    pending = pool.submit(batch, sample())
    for step in range(start, steps):
        pix, tok = pending.result()
        if step + 1 < steps:  # decode the next batch while this one trains
            pending = pool.submit(batch, sample())
        with torch.autocast(dev.type, enabled=use_amp):
            img = model.encode_image(pix.to(dev), normalize=True)
            txt = model.encode_text(tok.to(dev), normalize=True)
            loss = loss_fn(img, txt, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if on_step:
            on_step(step + 1, loss.item())
        if out_dir and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            _checkpoint(out_dir, model, opt, sched, scaler, step + 1)
    pool.shutdown()
    model.eval().requires_grad_(False)
    if out_dir:
        save_model(model, arch if init is None else _arch_of(base), out_dir, base, fp16=fp16)
        (Path(out_dir) / STATE_FILE).unlink(missing_ok=True)
        return load_encoder(f"local-dir:{out_dir}", device=dev)
    base.spec = f"trained:{arch}:seed{seed}:steps{steps}"
    return base


def save_model(model: torch.nn.Module, arch: str, out_dir: Path, enc: Encoder, fp16=False) -> Path:
    """Write the `local-dir:` layout (config + safetensors) atomically enough: weights last."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if arch.startswith("local-dir:"):  # fine-tuned from a local-dir model: keep its config
        cfg = json.loads((Path(arch.partition(":")[2]) / CONFIG_FILE).read_text())["model_cfg"]
    else:
        cfg = open_clip.get_model_config(arch)
    pp = dict(getattr(model.visual, "preprocess_cfg", {}))
    pp["resize_mode"] = "squash"
    (out_dir / CONFIG_FILE).write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": pp}))
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    tmp = out_dir / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(out_dir / WEIGHTS_FILE)
    return out_dir


def _arch_of(enc: Encoder) -> str:
    return enc.info.get("arch", "")


def _checkpoint(out_dir: Path, model, opt, sched, scaler, step: int) -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(out_dir) / (STATE_FILE + ".tmp")
    torch.save(
        {
            "step": step,
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": np.random.get_state(),
        },
        tmp,
    )
    tmp.replace(Path(out_dir) / STATE_FILE)


def _resume(out_dir: Path, model, opt, sched, scaler) -> int:
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    scaler.load_state_dict(state["scaler"])
    log.info("resuming training from step %d (%s)", state["step"], path)
    return int(state["step"])
