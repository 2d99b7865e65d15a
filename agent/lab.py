"""The research commands: `evident bench`, `figures`, `eval`, `train` and `demo`.

Thin handlers over `evident.eval` (and `agent.demo`): parse, call, render.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from evident.agent import render
from evident.agent.assistant import Assistant
from evident.agent.config import Settings
from evident.agent.demo import run_demo
from evident.eval.bench import run_bench
from evident.eval.figures.generate import generate_figures
from evident.eval.run_eval import run_eval
from evident.eval.training.pairs import train_from_pairs

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def cmd_bench(args) -> int:
    def say(msg: str) -> None:
        if not args.json:
            err.print(f"bench: {msg}", style="dim", markup=False)

    def open_assistant(db, encoder) -> Assistant:
        return Assistant(db=db, model=encoder, llm="none", history=":memory:")

    product = None if args.no_product else open_assistant
    figures = run_bench(
        model=args.model, n_images=args.images, n_vectors=args.vectors,
        open_assistant=product, n_figures=args.figures, say=say,
    )  # fmt: skip
    if args.json:
        render.emit_json(figures)
    else:
        out.print(render.bench_table(figures))
    return 0


def cmd_figures(args) -> int:
    with render.progress(not args.json, "figures", unit="fig") as (advance, set_total):
        report = generate_figures(
            Path(args.out_dir), args.n, seed=args.seed, workers=args.workers, progress=advance
        )
    if args.json:
        render.emit_json(report.to_dict())
    else:
        render.figures_summary(err, report.to_dict(), args.out_dir)
    return 0


def cmd_eval(args) -> int:
    """`evident eval`: run, then print a short summary (or the report JSON with --json).
    In `--mode ask` the answers come from an `Assistant` with `--llm`, each query in its
    own thread, nothing kept."""
    assistant = None
    if args.mode == "ask":
        assistant = Assistant(
            db=args.db, model=args.model, llm=args.llm, collection=args.collection,
            history=":memory:", k=args.k, rerank=args.rerank, lock_timeout=args.lock_timeout,
        )  # fmt: skip
    with render.progress(not args.json, "eval", unit="query") as (advance, set_total):
        try:
            report = run_eval(
                args.suite, db=args.db, collection=args.collection, encoder=args.model,
                methods=args.methods.split(",") if args.methods else None, out_dir=args.out,
                k=args.k, explain_top=args.explain_top, mode=args.mode, rerank=args.rerank,
                resume=not args.no_resume, images=args.images, limit=args.limit,
                per_query=args.per_query or None, seed=args.seed, assistant=assistant,
                progress=advance, total=set_total, store_timeout=Settings().chroma_timeout,
            )  # fmt: skip
        finally:
            if assistant is not None:
                assistant.close()
    if args.json:
        render.emit_json(report.to_dict())
    else:
        render.eval_summary(err, report)
    return 0


def cmd_train(args) -> int:
    """Progress bar on a terminal, one summary line (or `--json`)."""
    with render.progress(not args.json, "training", unit="step") as (advance, set_total):
        set_total(args.steps)
        report = train_from_pairs(
            Path(args.pairs), Path(args.out), arch=args.model, init=args.init,
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            device=args.device, fp16=args.fp16, checkpoint_every=args.checkpoint_every,
            on_step=lambda step, loss: advance(1),
        )  # fmt: skip
    if args.json:
        render.emit_json(report.to_dict())
    else:
        render.train_summary(err, report)
    return 0


def cmd_demo(args) -> int:
    return run_demo(args.out, console=out)
