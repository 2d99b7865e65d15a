"""Generate the scientific-figure benchmark: images, captions, part boxes and query suites.

`generate_figures(out_dir, n, seed=...)` writes, under `out_dir`:

    images/{train,val,test}/fig_NNNNNN.png
    figures.jsonl                          one record per image
    pairs.jsonl                            train image-caption pairs (two captions each)
    train.jsonl, val.jsonl, test.jsonl     retrieval queries over that split's images

Every file is a pure function of (n, seed, splits): figure i is drawn from its own
generator seeded by (seed, i), so one process or many give byte-identical output.
A directory holding only a previous figure set is regenerated in place; any other
non-empty directory is refused rather than mixed into.
"""

import json
import logging
import multiprocessing
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from evident.eval.figures.queries import split_queries
from evident.eval.figures.render import render_figure
from evident.tools.errors import InputError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
OUTPUT_FILES = ("figures.jsonl", "pairs.jsonl", *(f"{split}.jsonl" for split in SPLITS))
PARALLEL_FROM = 64  # below this many figures, starting worker processes costs more than it saves
_FIGURE_FILE = re.compile(r"fig_\d+\.png")
CAPTIONS_FILE = "captions.jsonl"  # what `write_captions` puts beside a split's images


@dataclass(frozen=True)
class FigureSetReport:
    """What `generate_figures` wrote, for the CLI to show and scripts to read."""

    out_dir: Path
    n_figures: int
    seed: int
    split_counts: dict[str, int]
    kind_counts: dict[str, int]
    query_counts: dict[str, int]
    n_pairs: int
    figures_path: Path
    pairs_path: Path
    query_paths: dict[str, Path]
    seconds: float

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "n_figures": self.n_figures,
            "seed": self.seed,
            "split_counts": dict(self.split_counts),
            "kind_counts": dict(self.kind_counts),
            "query_counts": dict(self.query_counts),
            "n_pairs": self.n_pairs,
            "figures_path": str(self.figures_path),
            "pairs_path": str(self.pairs_path),
            "query_paths": {split: str(path) for split, path in self.query_paths.items()},
            "seconds": round(self.seconds, 3),
        }


def generate_figures(
    out_dir: Path,
    n: int = 1200,
    *,
    seed: int = 0,
    splits: tuple[float, float, float] = (0.7, 0.1, 0.2),
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> FigureSetReport:
    """Render `n` figures into `out_dir` and write their records, pairs and queries.

    `splits` are the train/val/test fractions. `workers` is the number of processes
    (default: one per CPU, up to 8, once n >= 64); it never changes the output.
    `progress(1)` is called as each figure is done.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    workers = _check_args(n, seed, splits, workers)
    _prepare(out_dir)
    assigned = assign_splits(n, seed, splits)
    images = [f"images/{assigned[i]}/fig_{i:06d}.png" for i in range(n)]
    jobs = [(seed, i, str(out_dir / image)) for i, image in enumerate(images)]
    rendered = list(_render_all(jobs, workers, progress))
    shorts = [r.pop("short_caption") for r in rendered]
    records = [
        {"id": f"fig_{i:06d}", "image": images[i], "split": assigned[i], **r}
        for i, r in enumerate(rendered)
    ]
    pairs = [
        {"image": r["image"], "caption": caption}
        for r, short in zip(records, shorts, strict=True)
        if r["split"] == "train"
        for caption in (r["caption"], short)
    ]
    _write_jsonl(out_dir / "figures.jsonl", records)
    _write_jsonl(out_dir / "pairs.jsonl", pairs)
    query_counts = _write_queries(out_dir, records)
    report = FigureSetReport(
        out_dir=out_dir,
        n_figures=n,
        seed=seed,
        split_counts={split: assigned.count(split) for split in SPLITS},
        kind_counts=dict(sorted(Counter(r["kind"] for r in records).items())),
        query_counts=query_counts,
        n_pairs=len(pairs),
        figures_path=out_dir / "figures.jsonl",
        pairs_path=out_dir / "pairs.jsonl",
        query_paths={split: out_dir / f"{split}.jsonl" for split in SPLITS},
        seconds=time.perf_counter() - started,
    )
    logger.info("wrote %d figures to %s in %.1f s", n, out_dir, report.seconds)
    return report


def _write_queries(out_dir: Path, records: list[dict]) -> dict[str, int]:
    """Write each split's query suite; ids run on across the files, so each is unique."""
    counts, number = {}, 0
    for split in SPLITS:
        queries = split_queries([r for r in records if r["split"] == split])
        rows = [{"id": f"q{number + i:06d}"} | q for i, q in enumerate(queries, start=1)]
        _write_jsonl(out_dir / f"{split}.jsonl", rows)
        counts[split], number = len(rows), number + len(rows)
    return counts


def assign_splits(n: int, seed: int, splits: tuple[float, float, float]) -> list[str]:
    """A seeded shuffle cut into train/val/test by the given fractions (rounded)."""
    n_val = min(n, round(n * splits[1]))
    n_test = min(n - n_val, round(n * splits[2]))
    order = np.random.default_rng([seed, 2]).permutation(n)
    assigned = [""] * n
    for position, index in enumerate(order):
        assigned[index] = (
            "val" if position < n_val else "test" if position < n_val + n_test else "train"
        )
    return assigned


def _render_to_file(job: tuple[int, int, str]) -> dict:
    """Render one figure, save its pixels as PNG, return its record fields (worker entry)."""
    seed, index, path = job
    figure = render_figure(seed, index)
    Image.fromarray(figure.pixels).save(path, format="PNG")
    return {
        "kind": figure.kind,
        "caption": figure.caption,
        "short_caption": figure.short_caption,
        "attributes": figure.attributes,
        "components": [c.to_dict() for c in figure.components],
    }


def _render_all(jobs: list, workers: int, progress: Callable[[int], None] | None):
    """Yield the rendered records in job order, from this process or a pool of workers."""
    if workers == 1:
        done = map(_render_to_file, jobs)
        yield from _counted(done, progress)
        return
    # "spawn": a forked child would inherit the parent's threads (torch) mid-lock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunk = max(1, min(32, len(jobs) // (workers * 4)))
        yield from _counted(pool.map(_render_to_file, jobs, chunksize=chunk), progress)


def _counted(items, progress: Callable[[int], None] | None):
    for item in items:
        if progress is not None:
            progress(1)
        yield item


def _check_args(n, seed, splits, workers) -> int:
    """Validate the arguments; return the number of worker processes to use."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise InputError(f"n must be a positive whole number of figures, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative whole number, got {seed!r}")
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1) > 1e-6:
        raise InputError(
            f"splits must be three non-negative train/val/test fractions summing to 1, "
            f"got {tuple(splits)!r}"
        )
    if workers is None:
        return min(os.cpu_count() or 1, 8) if n >= PARALLEL_FROM else 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive whole number, got {workers!r}")
    return workers


def _prepare(out_dir: Path) -> None:
    """Make `out_dir` ready: create it, or clear a previous figure set from it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(
            f"{str(out_dir)!r} is a file; pass a new or empty directory for the figure set"
        )
    if out_dir.is_dir():
        ours, foreign = _previous_outputs(out_dir)
        if foreign:
            raise InputError(
                f"{str(out_dir)!r} is not empty and holds {foreign[0]!r}, which a figure set "
                "does not contain; pass a new or empty directory (a previous figure set is "
                "regenerated in place)"
            )
        for path in ours:
            path.unlink()
    for split in SPLITS:
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)


def _previous_outputs(out_dir: Path) -> tuple[list[Path], list[str]]:
    """Files a figure run writes that are present, and entries it would never write."""
    ours, foreign = [], []
    for entry in sorted(out_dir.iterdir()):
        if entry.name in OUTPUT_FILES and entry.is_file():
            ours.append(entry)
        elif entry.name != "images" or not entry.is_dir():
            foreign.append(entry.name)
    images = out_dir / "images"
    for entry in sorted(images.iterdir()) if images.is_dir() else []:
        if entry.name not in SPLITS or not entry.is_dir():
            foreign.append(f"images/{entry.name}")
            continue
        for path in sorted(entry.iterdir()):
            if (_FIGURE_FILE.fullmatch(path.name) or path.name == CAPTIONS_FILE) and path.is_file():
                ours.append(path)
            else:
                foreign.append(f"images/{entry.name}/{path.name}")
    return ours, foreign


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def write_captions(out_dir: Path) -> int:
    """A `captions.jsonl` beside each split's images, from `figures.jsonl`: each figure's
    caption and the facts a person would filter on (kind, title, legend position, number
    of series, log axes, grid), so the set indexes like a captioned collection. Returns
    the number of lines written."""
    out_dir = Path(out_dir)
    records = [json.loads(line) for line in (out_dir / "figures.jsonl").open(encoding="utf-8")]
    by_folder: dict[Path, list[dict]] = {}
    for r in records:
        a = r["attributes"]
        row = {
            "file": Path(r["image"]).name, "caption": r["caption"], "kind": r["kind"],
            "title": a.get("title") or "", "has_legend": bool(a.get("legend")),
            "series": int(a.get("n_series") or len(a.get("series") or []) or 1),
            "log_axis": a.get("xscale") == "log" or a.get("yscale") == "log",
            "grid": bool(a.get("has_grid")),
        }  # fmt: skip
        if a.get("legend"):
            row["legend_position"] = a["legend"]
        by_folder.setdefault((out_dir / r["image"]).parent, []).append(row)
    for folder, rows in by_folder.items():
        _write_jsonl(folder / CAPTIONS_FILE, rows)
    return len(records)
