"""Benchmarks of the product as people run it: the bundled model, words in images, `ask`,
and the CLI from a cold start.

- `bundled_index_images_per_s`: `index_paths` with the bundled figure model on rendered
  benchmark figures, words off (the model's own rate; OCR is timed apart);
- `bundled_cam_top5_s`, `bundled_forward_top5_s`, `bundled_counterfactual_5x3_s`: the
  evidence engine on the bundled model as `explain` runs it (the contribution map and the
  calibrated check sharing one pass over the early blocks), against its plain forward;
- `ocr_images_per_s`: words read in rendered figures, two at a time (how indexing reads);
- `ask_s`: a question answered end to end in-process (`none` backend, a 200-figure
  collection, the answer verified), against `ask_floor_s`: one search plus one batched
  explanation of the top 3 with their checks and the overlay PNGs the answer links to
  (`ask_floor_no_overlays_s` without them, for comparison);
- `search_s` and `place_search_s`: one search of that collection (the one path, warm),
  for the question and for the question with a place ("... in the upper left"), whose
  first 64 candidates are read and run through the model again (`tools.places`) with
  none of their patch vectors kept; `place_again_s` the same placed search once more,
  the patch vectors kept (`tools.evidence.contribution`), as a second question about
  the same candidates finds them;
- `cli_help_s`, `cli_cold_search_s` and `cli_search_explained_s`: a new process printing
  `evident --help`; one searching the same collection, until its first result is printed
  and until it has printed the evidence too and exited.
Each figure is the median of a few runs; ratios come from the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from evident.eval.figures.generate import generate_figures
from evident.tools.encoders import load_encoder
from evident.tools.evidence import tokens
from evident.tools.evidence.contribution import forget
from evident.tools.evidence.counterfactuals import check_regions
from evident.tools.evidence.heatmaps import compute_heatmaps, query_rows
from evident.tools.evidence.regions import find_regions
from evident.tools.ingest.index import index_paths
from evident.tools.ingest.ocr import load_reader
from evident.tools.pipeline import explain, open_retrieval, search
from evident.tools.records import Query, Region
from evident.tools.specs import bundled_model
from evident.tools.store import Store
from evident.tools.text_embed import load_text_embedder

QUESTION = "a bar chart with a legend"
PLACED = QUESTION + " in the upper left"


def bench_product(
    workdir: Path,
    open_assistant: Callable[[Path, Any], Any],
    *,
    n_figures: int = 200,
    repeats: int = 3,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Every product figure, from one set of `n_figures` rendered figures.

    `open_assistant(db, encoder)` returns the agent's `Assistant` (a context manager) on
    that collection with the `none` backend: the caller supplies it, since the evaluator
    sits below the agent in the layering."""
    say(f"rendering {n_figures} figures")
    generate_figures(workdir / "figs", n_figures, seed=5)
    images = sorted((workdir / "figs" / "images").rglob("*.png"))
    spec = bundled_model()
    encoder = load_encoder(spec)
    out: dict[str, float] = {}
    say("indexing with the bundled model")
    with Store.open(workdir / "db", create=True) as store:
        t = time.perf_counter()
        report = index_paths([workdir / "figs" / "images"], store=store, encoder=encoder,
                             collection="images", ocr="off")  # fmt: skip
        out["bundled_index_images_per_s"] = report.indexed / (time.perf_counter() - t)
    say("evidence on the bundled model")
    out |= _evidence(encoder, [Image.open(p).convert("RGB") for p in images[:5]], repeats)
    say("reading words")
    reader = load_reader()
    sample = [Image.open(p).convert("RGB") for p in images[:20]]
    reader.read(sample[0])
    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(reader.read, sample))
    out["ocr_images_per_s"] = len(sample) / (time.perf_counter() - t)
    say("ask, against its floor")
    # a question takes ~0.3 s and the median of three swung 0.30-0.41 s between two runs
    # on a quiet machine: nine of each
    out |= _ask(workdir / "db", encoder, 3 * repeats, open_assistant)
    say("a search that names a place, against one that does not")
    out |= _places(workdir / "db", encoder, 3 * repeats)
    say("the CLI from a cold start")
    out |= _cli(workdir / "db", repeats)
    out["bundled_cam_over_forward"] = out["bundled_cam_top5_s"] / out["bundled_forward_top5_s"]
    out["bundled_counterfactual_over_forward"] = (
        out["bundled_counterfactual_5x3_s"] / out["bundled_forward_top5_s"]
    )
    out["ask_over_floor"] = out["ask_s"] / out["ask_floor_s"]
    out["place_over_search"] = out["place_search_s"] / out["search_s"]
    out["place_again_over_search"] = out["place_again_s"] / out["search_s"]
    return out


def _evidence(encoder, images: list[Image.Image], repeats: int) -> dict[str, float]:
    query = encoder.encode_texts([QUESTION])[0]
    pixels = encoder.pixels(images)
    sizes = [im.size for im in images]
    q = query_rows(query, len(images), encoder.device)
    start = tokens.split(encoder.model)
    state = {}

    def cam():  # what explain does: one prefix, the map from it, the regions
        state["hidden"] = tokens.prefix(encoder.model.visual, pixels, start)
        heat = compute_heatmaps(encoder, images, query, pixels=pixels, hidden=state["hidden"])
        state["heat"] = heat
        return [find_regions(heat.maps[i], sizes[i], rank=i + 1) for i in range(len(images))]

    def forward():
        encoder.embed_pixels(pixels)

    def check():  # 3 regions a result (padded with quadrants), nulls included
        regions = []
        for i, (w, h) in enumerate(sizes):
            found = list(find_regions(state["heat"].maps[i], (w, h), rank=i + 1))
            quads = [(0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h)]
            found += [Region(f"R{i + 1}.{j + 1}", quads[j]) for j in range(len(found), 3)]
            regions.append(tuple(found[:3]))
        check_regions(encoder, pixels, q, regions, sizes, hidden=state["hidden"])

    runs = {"bundled_cam_top5_s": cam, "bundled_forward_top5_s": forward,
            "bundled_counterfactual_5x3_s": check}  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in runs}
    for round_ in range(repeats + 1):  # round 0 warms up
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _ask(db: Path, encoder, repeats: int, open_assistant) -> dict[str, float]:
    asks, floors, bare = [], [], []
    with open_assistant(db, encoder) as assistant:
        assistant.ask(QUESTION, thread="warm")
        for i in range(repeats):
            t = time.perf_counter()
            assistant.ask(QUESTION, thread=f"t{i}")
            asks.append(time.perf_counter() - t)
    with Store.open(db) as store:
        ctx = open_retrieval(store, "images", model=encoder, text_embedder=load_text_embedder())
        query = Query(QUESTION)
        for _ in range(repeats):  # the floor writes the overlays the answer links to, too
            for out_dir, times in ((db.parent / "floor-overlays", floors), (None, bare)):
                t = time.perf_counter()
                found = search(query, 5, ctx=ctx)
                explain(query, found.hits[:3], ctx=ctx, embedding=found.query_embedding,
                        out_dir=out_dir)  # fmt: skip
                times.append(time.perf_counter() - t)
    return {
        "ask_s": statistics.median(asks),
        "ask_floor_s": statistics.median(floors),
        "ask_floor_no_overlays_s": statistics.median(bare),
    }


def _places(db: Path, encoder, repeats: int) -> dict[str, float]:
    """A warm search, the same naming a place with none of its candidates' patch vectors
    kept (`place_search_s`), and that placed search again, all of them kept."""
    times: dict[str, list[float]] = {"search_s": [], "place_search_s": [], "place_again_s": []}
    steps = (("search_s", QUESTION), ("place_search_s", PLACED), ("place_again_s", PLACED))
    with Store.open(db) as store:
        ctx = open_retrieval(store, "images", model=encoder)
        for round_ in range(repeats + 1):  # round 0 warms up
            for name, text in steps:
                if name == "place_search_s":
                    forget()
                t = time.perf_counter()
                search(Query(text), 5, ctx=ctx)
                if round_:
                    times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _cli(db: Path, repeats: int) -> dict[str, float]:
    evident = [sys.executable, "-m", "evident.agent.cli"]
    helps, firsts, searches = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([*evident, "--help"], check=True, capture_output=True)
        helps.append(time.perf_counter() - t)
        t = time.perf_counter()
        with subprocess.Popen([*evident, "search", QUESTION, "--db", str(db)],
                              stdout=subprocess.PIPE, text=True) as proc:  # fmt: skip
            for line in proc.stdout:  # the table row of result #1
                if line.count("\u2502") > 2 and line.split("\u2502")[1].strip() == "1":
                    firsts.append(time.perf_counter() - t)
                    break
            proc.stdout.read()
        if proc.returncode or len(firsts) < len(helps):
            raise RuntimeError(f"`evident search` printed no result (status {proc.returncode})")
        searches.append(time.perf_counter() - t)
    return {
        "cli_help_s": statistics.median(helps),
        "cli_cold_search_s": statistics.median(firsts),
        "cli_search_explained_s": statistics.median(searches),
    }
