"""`make demo` / `evident demo`: the whole product on built-in offline data.

Generates 60 scientific figures with their captions and metadata (kind, title, legend
position, series…), indexes them with the words read in them (OCR) into `OUT/db`
(collection `images`, the default, so `evident chat --db OUT/db` works right after), asks
one question with the `none` LLM backend (deterministic policy and template writer),
prints the cited answer and writes the overlays to `OUT/db/overlays`. It needs the
bundled figure model; a checkout without it (one that has not shipped it yet) trains a
tiny CLIP on generated shape scenes for a minute instead and says so plainly — that model
knows colours and shapes, nothing else.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from evident.agent.assistant import Assistant
from evident.agent.config import Settings, ocr_cache
from evident.agent.render import CITATION
from evident.eval.figures.generate import generate_figures, write_captions
from evident.eval.scenes import make_scenes
from evident.eval.training.clip import train_clip
from evident.tools.encoders import load_encoder
from evident.tools.ingest.index import index_paths
from evident.tools.ingest.ocr import load_reader
from evident.tools.specs import bundled_model
from evident.tools.store import Store
from evident.tools.text_embed import load_text_embedder

log = logging.getLogger(__name__)

SCENES_RECIPE = {"arch": "evident-tiny-rn", "steps": 400, "batch_size": 48, "lr": 2e-3, "seed": 0}
FIGURES_QUESTION = "a bar chart with a legend"
SCENES_QUESTION = "a red circle"


def run_demo(out: str | Path, *, console: Console) -> int:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    collection = Settings().collection  # the one `evident chat --db OUT/db` opens
    spec = bundled_model()
    captioned = spec is not None
    if spec:
        images, question = _figures(out, console), FIGURES_QUESTION
    else:
        images, question = _scenes(out), SCENES_QUESTION
        spec = _tiny_model(out, console)
    encoder = load_encoder(spec)
    db = out / "db"
    shutil.rmtree(db, ignore_errors=True)  # the demo starts clean every time
    with Store.open(db, create=True) as store:
        report = index_paths(
            [images], store=store, encoder=encoder, collection=collection,
            text_embedder=load_text_embedder() if captioned else None,
            ocr="auto" if captioned else "off",
            reader=load_reader(cache=ocr_cache()) if captioned else None,
        )  # fmt: skip
    console.print(
        Text(f"indexed {report.indexed} images into {db} (collection {collection}, model {spec})")
    )
    overlays = db / "overlays"
    with Assistant(
        db=db, model=encoder, llm="none", collection=collection, out_dir=overlays,
        history=":memory:",
    ) as assistant:  # fmt: skip
        console.print(Text.assemble("\n", ("question: ", "bold"), question))
        answer = assistant.ask(question)
    data = answer.to_dict()
    text = Text(data["answer"])
    text.highlight_regex(CITATION, "bold cyan")
    console.print(Panel(text, title="answer (llm: none — deterministic policy)"))
    g = data["grounding"]
    console.print(
        f"grounding: {g['sentences']} sentences, {g['cited']} citations, {g['valid']} valid, "
        f"{g['supported']} supported, {len(g['removed'])} removed"
    )
    for r in data["results"]:
        overlay = (r["heatmap"] or {}).get("overlay") or "not explained"
        console.print(Text(f"  #{r['rank']} {r['uri']}  overlay: {overlay}"), soft_wrap=True)
    console.print(Text(f"\ndone in {time.perf_counter() - t0:.0f} s; everything is in {out}"))
    console.print(Text(f"go on with: evident chat --db {db}"))
    return 0


def _figures(out: Path, console: Console) -> Path:
    console.print("generating 60 scientific figures with captions (matplotlib, deterministic)…")
    generate_figures(out / "figures", 60, seed=1)
    write_captions(out / "figures")
    return out / "figures" / "images"


def _scenes(out: Path) -> Path:
    folder = out / "scenes"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, s in enumerate(make_scenes(60, seed=2024, size=64)):
        s.image.resize((192, 192), resample=0).save(folder / f"scene_{i:03d}.png")
    return folder


def _tiny_model(out: Path, console: Console) -> str:
    model_dir = out / "tiny-model"
    if (model_dir / "open_clip_model.safetensors").is_file():
        return f"local-dir:{model_dir}"
    console.print(
        Panel(
            "No bundled figure model in this checkout, so the demo trains a tiny CLIP for "
            "about a minute on generated shape scenes (a coloured shape on a plain "
            "background). It knows colours and shapes, nothing else: this shows the "
            "machinery, not real-world quality.",
            title="model trained in seconds",
        )
    )
    scenes = make_scenes(1500, seed=0)
    t = time.perf_counter()
    train_clip(
        [s.image for s in scenes], [s.caption for s in scenes], out_dir=model_dir, **SCENES_RECIPE
    )
    console.print(Text(f"trained in {time.perf_counter() - t:.0f} s → {model_dir}"))
    return f"local-dir:{model_dir}"
