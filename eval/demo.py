"""`make demo` / `evident demo`: the whole product on built-in offline data.

Builds a small collection, indexes it, asks one question with the `none` LLM backend
(deterministic policy and template writer), prints the cited answer and writes the
overlays. With the bundled figure model it uses generated scientific figures; without
one (a checkout that has not shipped it yet) it trains a tiny CLIP on generated shape
scenes for a few seconds and says so plainly — that model knows colours and shapes,
nothing else.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

log = logging.getLogger(__name__)

SCENES_RECIPE = {"arch": "evident-tiny-rn", "steps": 400, "batch_size": 48, "lr": 2e-3, "seed": 0}
FIGURES_QUESTION = "a bar chart with a legend"
SCENES_QUESTION = "a red circle"


def run_demo(out: str | Path, *, console: Console) -> int:
    from evident.agent.assistant import Assistant
    from evident.tools.encoders import bundled_model
    from evident.tools.ingest.index import index_paths
    from evident.tools.store import Store

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    spec = bundled_model()
    if spec:
        images, question = _figures(out, console), FIGURES_QUESTION
    else:
        images, question = _scenes(out, console)
        spec = _tiny_model(out, images, console)
    from evident.tools.encoders import load_encoder

    encoder = load_encoder(spec)
    db = out / "db"
    shutil.rmtree(db, ignore_errors=True)  # the demo starts clean every time
    with Store.open(db, create=True) as store:
        report = index_paths([images], store=store, encoder=encoder, collection="demo")
    console.print(f"indexed {report.indexed} images into {db} (model {spec})", soft_wrap=True)
    overlays = out / "overlays"
    shutil.rmtree(overlays, ignore_errors=True)
    with Assistant(
        db=db, model=encoder, llm="none", collection="demo", out_dir=overlays, history=":memory:"
    ) as assistant:
        console.print(f"\n[bold]question:[/] {question}")
        answer = assistant.ask(question)
    data = answer.to_dict()
    console.print(Panel(data["answer"], title="answer (llm: none — deterministic policy)"))
    g = data["grounding"]
    console.print(
        f"grounding: {g['sentences']} sentences, {g['cited']} citations, {g['valid']} valid, "
        f"{g['supported']} supported, {len(g['removed'])} removed"
    )
    for r in data["results"]:
        overlay = (r.get("heatmap") or {}).get("overlay")
        console.print(
            f"  #{r['rank']} {r['uri']}  overlay: {overlay}", markup=False, soft_wrap=True
        )
    console.print(f"\ndone in {time.perf_counter() - t0:.0f} s; everything is in {out}")
    return 0


def _figures(out: Path, console: Console) -> Path:
    from evident.eval.figures.generate import generate_figures

    console.print("generating 60 scientific figures (matplotlib, deterministic)…")
    generate_figures(out / "figures", 60, seed=1)
    return out / "figures" / "images"


def _scenes(out: Path, console: Console) -> tuple[Path, str]:
    from evident.eval.scenes import make_scenes

    folder = out / "scenes"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, s in enumerate(make_scenes(60, seed=2024, size=64)):
        s.image.resize((192, 192), resample=0).save(folder / f"scene_{i:03d}.png")
    return folder, SCENES_QUESTION


def _tiny_model(out: Path, images: Path, console: Console) -> str:
    from evident.eval.scenes import make_scenes
    from evident.eval.training.clip import train_clip

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
    console.print(f"trained in {time.perf_counter() - t:.0f} s → {model_dir}")
    return f"local-dir:{model_dir}"
