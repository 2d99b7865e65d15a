"""The collection commands: `evident index`, `search` and `collections`.

Each builds what it needs from the parsed arguments, calls the library, and renders the
records it gets back (`agent.render`); none of them holds retrieval logic.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from evident.agent import render
from evident.agent.config import Settings, documents_cache
from evident.tools.encoders import bundled_model, load_encoder
from evident.tools.errors import InputError, ModelLoadError
from evident.tools.ingest.images import IMAGE_SUFFIXES
from evident.tools.ingest.index import find_files, index_paths
from evident.tools.pipeline import open_retrieval, run_query
from evident.tools.records import Query
from evident.tools.store import Store
from evident.tools.text_embed import load_text_embedder

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

NO_MODEL = (
    "no encoder configured: pass --model SPEC or set EVIDENT_MODEL, e.g. "
    "--model local-dir:/path/to/model (what `evident train` writes), "
    "--model ViT-B-32:laion2b_s34b_b79k (downloads; needs internet), or "
    "--model random:ViT-B-32 (random weights, smoke tests only)."
)


def cmd_index(args) -> int:
    cache = None if args.no_documents else documents_cache(args.db)
    files = _files(args.paths, cache)  # a missing path or an empty folder: before any model
    settings = Settings()
    with Store.open(args.db, create=True, lock_timeout=args.lock_timeout) as store:
        spec = args.model
        if spec is None and args.collection in store.collection_names():
            spec = store.model_of(args.collection)
        spec = spec or bundled_model()
        if spec is None:
            raise ModelLoadError(NO_MODEL)
        encoder = load_encoder(spec, device=settings.device, offline=settings.offline)
        wanted = args.ocr != "off" or any(f.caption for f in files)
        text = load_text_embedder() if wanted else None
        with render.progress(not args.json, "indexing") as (advance, set_total):
            report = index_paths(
                args.paths, store=store, encoder=encoder, collection=args.collection,
                text_embedder=text, prune=args.prune, files=files, progress=advance,
                total=set_total, ocr=args.ocr,
            )  # fmt: skip
    if args.json:
        render.emit_json(report.to_dict())
    else:
        render.index_summary(err, report, args.collection)
    return 0


def _files(paths: list[str], cache: Path | None) -> list:
    """The files to index; a path with no images is a warning, no images at all an error
    (nothing is created, and `--prune` cannot empty a collection by accident)."""
    files = []
    for path in paths:
        found = find_files([path], cache)
        if not found:
            err.print(f"warning: no images under {path!r}", markup=False)
        files += found
    if not files:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(
            f"no images found under {', '.join(map(repr, paths))} (looked for {kinds}, and "
            "images in HTML pages and PDFs); nothing was indexed"
        )
    return files


def cmd_search(args) -> int:
    query = Query(text=args.query or None, image=args.image)
    if not query.text and not query.image:
        raise InputError("give words to search for, an image with --image PATH, or both")
    settings = Settings()
    out_dir = Path(args.out) if args.out else settings.overlay_dir(args.db)
    with Store.open(args.db, lock_timeout=args.lock_timeout) as store:
        model = args.model or store.model_of(args.collection)
        encoder = load_encoder(model, device=settings.device, offline=settings.offline)
        ctx = open_retrieval(store, args.collection, model=encoder, rerank=args.rerank)
        result = run_query(
            query, args.k, args.where, ctx=ctx, method=args.cam,
            explain_top=0 if args.cam == "none" else None, out_dir=out_dir,
        )  # fmt: skip
    data = result.to_dict()
    if args.json:
        render.emit_json(data)
    else:
        title = f"{args.collection}: {query.text or ''} {query.image or ''}".strip()
        out.print(render.results_table(title, data))
    return 0


def cmd_collections(args) -> int:
    with Store.open(args.db, lock_timeout=args.lock_timeout) as store:
        infos = [store.info(n) for n in sorted(store.collection_names())]
    if args.json:
        render.emit_json([i.to_dict() for i in infos])
    else:
        out.print(render.collections_table(args.db, infos))
    return 0
