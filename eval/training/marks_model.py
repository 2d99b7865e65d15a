"""The marks reader's recipe (`tools.ingest.marks_reader`): render, train, export.

`python -m evident.eval.training.marks_model OUT` renders `n` series figures of the
benchmark generator (`seed`) and `val` more (`val_seed`) into `OUT/marks` (`marks_data`,
resumable), trains `MarksNet` on every colour each figure draws with enough ink (binary
cross-entropy, one output per marker shape, line style and arrow; a checkpoint each
epoch, so a killed run resumes at the last one), measures it on the held-out figures as
the reader reads them (each colour's whole cut) and writes
`marks.pt` and `marks.json` (settings, sizes, seconds, machine, the measures) into
`OUT`. `make figure-model` runs it after the figure model and copies both beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evident.eval.training import marks_data
from evident.tools.colours import NAMES
from evident.tools.ingest.marks_reader import MarksNet, around, inked, masks, read
from evident.tools.marks import LABELS

log = logging.getLogger(__name__)

DEFAULTS = {
    "n": 8000, "seed": 3003, "val": 1000, "val_seed": 4004, "epochs": 10, "batch": 32,
    "lr": 0.006, "weight_decay": 0.0001, "train_seed": 0, "unmarked": 0.35, "crop": 128,
    "whole_epochs": 2, "whole_lr": 0.003,
}  # fmt: skip
"""Two phases. First `epochs` on crops: each colour on a `crop`-pixel square around one of
its pixels (`crops`) instead of its whole cut; a series draws its markers and its line
style all along it, so a square on it shows them, for a seventh of the work. Then
`whole_epochs` on the whole cuts the reader reads (`batches`), at `whole_lr` falling to
0: an arrow annotation is one small place among its colour's words and ticks, which a
square mostly misses. Held-out mean average precision (the reader's width, 8,000
figures): 0.806 after crops alone (arrows 0.34, in 393 s), 0.831 after one whole epoch
(arrows 0.51, 374 s more), against 0.785 for the narrower reader trained whole for ten
epochs (1,532 s). Leaving the arrow's label out of the loss on crops (a square mostly
misses the arrow) did worse: arrows 0.13, mean 0.794."""


def samples(
    grids: list[np.ndarray], records: list[dict], unmarked: float = 1.0, seed: int = 0
) -> list[tuple[int, str, np.ndarray]]:
    """(figure, colour, target) for every colour a figure draws with enough ink; the target
    marks what that colour's series are drawn with. Colours without series (text, axes,
    grid, arrows: half of them) are kept with probability `unmarked`."""
    rng = random.Random(seed)
    out = []
    for f, (grid, record) in enumerate(zip(grids, records, strict=True)):
        for colour in inked(grid):
            drawn = record["marks"].get(colour, [])
            if drawn or rng.random() < unmarked:
                out.append((f, colour, np.array([m in drawn for m in LABELS], np.float32)))
    return out


def cuts_of(items: list, grids: list[np.ndarray]) -> dict[tuple[int, str], tuple]:
    """Each item's cut of its figure (`marks_reader.around`), found once for all epochs."""
    return {(f, colour): around(grids[f], colour) for f, colour, _ in items}


def batches(items: list, grids: list[np.ndarray], size: int, cuts: dict | None = None):
    """(masks, targets) batches, each colour's mask cut around its ink as the reader cuts
    it (`cuts`, or found here) and padded to the largest in its batch."""
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        where = cuts or cuts_of(chunk, grids)
        parts = [grids[f][where[f, colour]] for f, colour, _ in chunk]
        h, w = max(c.shape[0] for c in parts), max(c.shape[1] for c in parts)
        x = torch.zeros(len(chunk), 1, h, w)
        for j, ((_, colour, _), part) in enumerate(zip(chunk, parts, strict=True)):
            x[j, :, : part.shape[0], : part.shape[1]] = masks(part, [colour])[0]
        yield x, torch.from_numpy(np.stack([t for _, _, t in chunk]))


def by_size(items: list, cuts: dict, size: int, rng: random.Random) -> list:
    """`items` (shuffled) in batches of `size` whose cuts are of like size, the batches in
    random order: less padding, the same colours each epoch."""

    def area(item) -> int:
        ys, xs = cuts[item[0], item[1]]
        return (ys.stop - ys.start) * (xs.stop - xs.start)

    window = size * 50
    chunks = []
    for start in range(0, len(items), window):
        part = sorted(items[start : start + window], key=area)
        chunks += [part[i : i + size] for i in range(0, len(part), size)]
    rng.shuffle(chunks)
    return [item for chunk in chunks for item in chunk]


def crops(
    items: list,
    grids: list[np.ndarray],
    size: int,
    side: int,
    rng: random.Random,
    arrows: dict[int, list[int]] | None = None,
):
    """(masks, targets) batches of `size`: each colour's mask on a `side`-pixel square
    around one of its pixels picked at random (kept inside the figure). A colour that
    draws its figure's arrow annotation (`arrows`: figure -> the annotation's box) is cut
    around a pixel of it inside that box, so the square shows the arrow it is labelled
    with, which a random pixel of the colour (often on a series or on words) mostly
    misses; half the time only when the colour also draws series, whose markers and line
    style a square on the annotation would not show."""
    arrow = LABELS.index("arrow")
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        x = torch.zeros(len(chunk), 1, side, side)
        for j, (f, colour, target) in enumerate(chunk):
            inked = grids[f] == NAMES.index(colour)  # the mask, compared once
            ys, xs = np.nonzero(inked)
            # a colour that also draws series: half its squares on them, for their labels
            centred = target.sum() == 1 or rng.random() < 0.5
            if target[arrow] and arrows and f in arrows and centred:
                x0, y0, x1, y1 = arrows[f]
                inside = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
                if inside.any():
                    ys, xs = ys[inside], xs[inside]
            k = rng.randrange(len(ys))
            h, w = inked.shape
            y0 = min(max(0, ys[k] - side // 2), max(0, h - side))
            x0 = min(max(0, xs[k] - side // 2), max(0, w - side))
            part = inked[y0 : y0 + side, x0 : x0 + side]
            x[j, 0, : part.shape[0], : part.shape[1]] = torch.from_numpy(part)
        yield x, torch.from_numpy(np.stack([t for _, _, t in chunk]))


def fit(net: MarksNet, opt, sched, batches) -> float:
    """One pass over `batches` of (masks, targets) (binary cross-entropy per label); the
    mean loss."""
    net.train()
    losses = []
    for x, y in batches:
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def measure(net: MarksNet, grids: list[np.ndarray], items: list) -> dict:
    """Per label, average precision over the held-out colours, and the share of colours
    whose every label is right at 0.5, read as the reader reads (`marks_reader.read`)."""
    net.eval()
    probs, targets = [], []
    with torch.inference_mode():
        for x, y in batches(items, grids, 64):
            probs.append(torch.sigmoid(read(net, x)))
            targets.append(y)
    p, t = torch.cat(probs).numpy(), torch.cat(targets).numpy()
    ap = {label: round(_average_precision(p[:, k], t[:, k]), 4) for k, label in enumerate(LABELS)}
    exact = float(((p >= 0.5) == (t >= 0.5)).all(1).mean())
    return {"average_precision": ap, "mean_ap": round(float(np.nanmean(list(ap.values()))), 4),
            "exact": round(exact, 4), "colours": len(items)}  # fmt: skip


def _average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    if truth.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = truth[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def build(out: Path, settings: dict | None = None) -> dict:
    s = DEFAULTS | (settings or {})
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    marks_data.render(out / "marks" / "train", s["n"], s["seed"])
    marks_data.render(out / "marks" / "val", s["val"], s["val_seed"])
    t_render = time.perf_counter() - t0
    grids, records = marks_data.load(out / "marks" / "train", s["n"])
    vgrids, vrecords = marks_data.load(out / "marks" / "val", s["val"])
    items = samples(grids, records, s["unmarked"], s["train_seed"])
    vitems = samples(vgrids, vrecords)
    cuts = cuts_of(items, grids)
    arrows = {f: r["annotation"] for f, r in enumerate(records) if "annotation" in r}
    torch.manual_seed(s["train_seed"])
    net = MarksNet()
    per_epoch = -(-len(items) // s["batch"])
    state_path, epoch, seconds = out / "marks_state.pt", 0, 0.0
    state = torch.load(state_path, weights_only=False) if state_path.exists() else None
    if state is not None and state["settings"] == s:
        net.load_state_dict(state["net"])
        epoch, seconds = state["epoch"], state["seconds"]
        log.info("marks: resumed after epoch %d", epoch)
    else:
        state = None
    t1 = time.perf_counter() - seconds
    for phase, epochs, lr in (("crops", s["epochs"], s["lr"]), ("whole", s["whole_epochs"],
                                                               s["whole_lr"])):  # fmt: skip
        done = epoch - (0 if phase == "crops" else s["epochs"])
        if done >= epochs:
            continue
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=s["weight_decay"])
        if phase == "crops":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, lr, total_steps=epochs * per_epoch, pct_start=0.1
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * per_epoch)
        if state is not None and done > 0:
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
        for _ in range(done, epochs):
            rng = random.Random(s["train_seed"] * 1000 + epoch)
            rng.shuffle(items)
            if phase == "crops":
                cut = crops(items, grids, s["batch"], s["crop"], rng, arrows)
                loss = fit(net, opt, sched, cut)
            else:
                order = by_size(items, cuts, s["batch"], rng)
                loss = fit(net, opt, sched, batches(order, grids, s["batch"], cuts))
            epoch += 1
            log.info("marks: epoch %d (%s) loss %.4f (%.0f s)", epoch, phase, loss,
                     time.perf_counter() - t1)  # fmt: skip
            state = {"net": net.state_dict(), "opt": opt.state_dict(),
                     "sched": sched.state_dict(), "epoch": epoch,
                     "seconds": time.perf_counter() - t1, "settings": s}  # fmt: skip
            torch.save(state, state_path.with_suffix(".tmp"))
            state_path.with_suffix(".tmp").replace(state_path)
    t_train = time.perf_counter() - t1
    check = measure(net, vgrids, vitems)
    torch.save(net.state_dict(), out / "marks.pt")
    recipe = {
        "settings": s,
        "figures": len(records), "colours": len(items),
        "machine": f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
        "seconds": {"render": round(t_render, 1), "train": round(t_train, 1)},
        "check": check,
    }  # fmt: skip
    (out / "marks.json").write_text(json.dumps(recipe, indent=1) + "\n")
    return recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = {k: type(DEFAULTS[k])(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    recipe = build(args.out, settings)
    print(json.dumps(recipe["check"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
