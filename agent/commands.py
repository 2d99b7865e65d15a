"""What each `evident` subcommand does: build the context, call tools, render."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

from evident.agent.cli import emit_json
from evident.tools.errors import InputError, ModelLoadError

err = Console(stderr=True)
out = Console()

NO_MODEL = (
    "no encoder configured: pass --model SPEC or set EVIDENT_MODEL, e.g. "
    "--model local-dir:/path/to/model (what `evident train` writes), "
    "--model ViT-B-32:laion2b_s34b_b79k (downloads; needs internet), or "
    "--model random:ViT-B-32 (random weights, smoke tests only)."
)


@contextmanager
def _progress(enabled: bool, desc: str):
    """A tqdm bar on an interactive stderr; callbacks (advance, set_total) either way."""
    if not enabled or not sys.stderr.isatty():
        yield (lambda n: None), (lambda n: None)
        return
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit="img", file=sys.stderr)

    def set_total(n: int) -> None:
        bar.total = n
        bar.refresh()

    try:
        yield bar.update, set_total
    finally:
        bar.close()


def cmd_index(args) -> int:
    from evident.tools.encoders import load_encoder
    from evident.tools.ingest.index import find_files, index_paths
    from evident.tools.store import Store

    cache = None if args.no_documents else _documents_cache(args.db)
    files = find_files(args.paths, cache)  # a missing path fails before any model loads
    with Store.open(args.db, create=True, lock_timeout=args.lock_timeout) as store:
        spec = args.model
        if spec is None and args.collection in store.collection_names():
            spec = store.model_of(args.collection)
        if spec is None:
            from evident.tools.encoders import bundled_model

            spec = bundled_model()
        if spec is None:
            raise ModelLoadError(NO_MODEL)
        encoder = load_encoder(spec)
        text = None
        if any(f.caption for f in files):
            from evident.tools.text_embed import load_text_embedder

            text = load_text_embedder()
        with _progress(not args.json, "indexing") as (advance, set_total):
            report = index_paths(
                args.paths,
                store=store,
                encoder=encoder,
                collection=args.collection,
                text_embedder=text,
                prune=args.prune,
                files=files,
                progress=advance,
                total=set_total,
            )
    if args.json:
        emit_json(report.to_dict())
        return 0
    err.print(
        f"[bold]{args.collection}[/]: {report.indexed} indexed, {report.unchanged} unchanged, "
        f"{report.moved} moved, {report.pruned} pruned, {len(report.skipped)} skipped "
        f"(model {report.model})"
    )
    for s in report.skipped:
        err.print(f"  skipped {s.path}: {s.reason}", markup=False)
    return 0


def _documents_cache(db: str):
    """Where images pulled out of PDFs (and data: URIs in HTML) are kept."""
    from pathlib import Path

    if db.startswith(("http://", "https://")):
        return Path.home() / ".cache" / "evident" / "document-images"
    return Path(db).expanduser().resolve() / "document-images"


def cmd_search(args) -> int:
    from evident.tools.records import Query

    where = _parse_where(args.where)
    query = Query(text=args.query or None, image=args.image)
    if not query.text and not query.image:
        raise InputError("give words to search for, an image with --image PATH, or both")
    result = run_search(args, query, where)
    if args.json:
        emit_json(result.to_dict())
        return 0
    out.print(_results_table(args.collection, query, result))
    return 0


def _results_table(collection, query, result) -> Table:
    table = Table(title=f"{collection}: {query.text or ''} {query.image or ''}".strip())
    for col in ("#", "score", "image", "caption", "evidence"):
        table.add_column(col)
    for h in result.hits:
        ev = result.evidence.get(h.id)
        regions = (
            " ".join(f"{r.id}{'' if r.supported else '(unsupported)'}" for r in ev.regions)
            if ev
            else ""
        )
        where = ev.overlay if ev and ev.overlay else ""
        evidence = "\n".join(x for x in (regions, where, result.errors.get(h.id, "")) if x)
        table.add_row(str(h.rank), f"{h.score:.3f}", h.uri, h.caption or "", evidence)
    return table


def run_search(args, query, where):
    from evident.tools.encoders import load_encoder
    from evident.tools.pipeline import run_query
    from evident.tools.store import Store

    with Store.open(args.db, lock_timeout=args.lock_timeout) as store:
        encoder = load_encoder(args.model or store.model_of(args.collection))
        text = None
        if query.text and store.captions(args.collection) is not None:
            from evident.tools.text_embed import load_text_embedder

            text = load_text_embedder()
        return run_query(
            query,
            args.k,
            where,
            store=store,
            collection=args.collection,
            encoder=encoder,
            text_embedder=text,
            cam=args.cam,
            rerank=args.rerank,
            out_dir=args.out,
        )


def _parse_where(raw: str | None) -> dict | None:
    if not raw:
        return None
    try:
        where = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"--where is not valid JSON ({exc.msg}): {raw!r}") from exc
    if not isinstance(where, dict):
        raise InputError(f'--where must be a JSON object such as {{"kind": "bar"}}, not {raw!r}')
    return where


def cmd_collections(args) -> int:
    from evident.tools.store import Store

    with Store.open(args.db, lock_timeout=args.lock_timeout) as store:
        infos = [store.info(n) for n in sorted(store.collection_names())]
    if args.json:
        emit_json([i.to_dict() for i in infos])
        return 0
    table = Table(title=str(args.db))
    for col in ("collection", "images", "captions", "model", "dim"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.name, str(i.count), str(i.captions), i.model, str(i.dim))
    out.print(table)
    return 0


def cmd_bench(args) -> int:
    from evident.eval.bench import render, run_bench

    figures = run_bench(model=args.model, n_images=args.images, n_vectors=args.vectors, log=err)
    if args.json:
        emit_json(figures)
    else:
        out.print(render(figures))
    return 0


def cmd_figures(args) -> int:
    from pathlib import Path

    from evident.eval.figures.generate import generate_figures

    report = generate_figures(
        Path(args.out_dir), args.n, seed=args.seed, progress=not args.json, workers=args.workers
    )
    if args.json:
        emit_json(report.to_dict())
    else:
        d = report.to_dict()
        err.print(f"{d['n_figures']} figures in {args.out_dir} ({d['seconds']:.1f} s)")
        err.print(f"  splits: {d['split_counts']}  queries: {d['query_counts']}", markup=False)
    return 0


def cmd_eval(args) -> int:
    from evident.eval.run_eval import cmd_eval as run

    return run(args)


def cmd_ask(args) -> int:
    from evident.agent.assistant import run_ask

    return run_ask(args)


def cmd_chat(args) -> int:
    from evident.agent.repl import run_chat

    return run_chat(args)


def cmd_train(args) -> int:
    from evident.eval.training.pairs import cmd_train as run

    return run(args)


def cmd_demo(args) -> int:
    from evident.eval.demo import run_demo

    return run_demo(args.out, console=out)
