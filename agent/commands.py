"""The collection commands: `evident index` and `collections`, and the half of `search`
that explains (`agent.searching` ranks and prints first).

Each builds what it needs from the parsed arguments, calls the library, and renders the
records it gets back (`agent.render`); none of them holds retrieval logic.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from evident.agent import render
from evident.agent.config import Settings, documents_cache, ocr_cache
from evident.tools.chroma import check_location
from evident.tools.encoders import load_encoder
from evident.tools.errors import InputError, ModelLoadError
from evident.tools.ingest.files import inside
from evident.tools.ingest.images import IMAGE_SUFFIXES, ImageFile
from evident.tools.ingest.index import find_files, index_paths
from evident.tools.ingest.ocr import load_reader
from evident.tools.limits import Limits
from evident.tools.pipeline import explain, open_retrieval, run_query
from evident.tools.records import Query, QueryResult, Skipped
from evident.tools.specs import bundled_model
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
    settings = Settings()
    check_location(args.db, create=True)  # another program's folder: before writing to it
    cache = None if args.no_documents else documents_cache(args.db)
    # a missing path or a folder without images: before any model loads
    files = _files(args.paths, cache, settings.limits)
    with _open(args, settings, create=True) as store:
        spec = args.model
        if spec is None and args.collection in store.collection_names():
            spec = store.model_of(args.collection)
        spec = spec or bundled_model()
        if spec is None:
            raise ModelLoadError(NO_MODEL)
        encoder = load_encoder(spec, device=settings.device, offline=settings.offline)
        captioned = any(isinstance(f, ImageFile) and f.caption for f in files)
        text = load_text_embedder() if captioned or args.ocr != "off" else None
        with render.progress(not args.json, "indexing") as (advance, set_total):
            report = index_paths(
                args.paths, store=store, encoder=encoder, collection=args.collection,
                text_embedder=text, prune=args.prune, files=files, progress=advance,
                total=set_total, limits=settings.limits, ocr=args.ocr,
                reader=load_reader(cache=ocr_cache()) if args.ocr != "off" else None,
            )  # fmt: skip
    if args.json:
        render.emit_json(report.to_dict())
    else:
        render.index_summary(err, report, args.collection)
    return 0


def _files(paths: list[str], cache: Path | None, limits: Limits) -> list[ImageFile | Skipped]:
    """The files to index (and those refused, with reasons); a path with no images is a
    warning, no images at all an error (nothing is created, and `--prune` cannot empty a
    collection by accident). All paths are searched together: a page under one may show
    an image under another."""
    files = find_files(paths, cache, limits)
    images = [f for f in files if isinstance(f, ImageFile)]
    for path in paths:
        root = [Path(path).expanduser().resolve()]
        if not any(inside(f.path, root) or _shown_from(f, root) for f in images):
            err.print(f"warning: no images under {path!r}", markup=False)
    if not images:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        refused = [f for f in files if isinstance(f, Skipped)]
        why = (
            f"; {len(refused)} refused, e.g. {refused[0].path}: {refused[0].reason}"
            if refused
            else ""
        )
        raise InputError(
            f"no images found under {', '.join(map(repr, paths))} (looked for {kinds}, and "
            f"images in HTML pages and PDFs){why}; nothing was indexed"
        )
    return files


def _shown_from(f: ImageFile, root: list[Path]) -> bool:
    """Whether `f` came out of a document under `root` (a PDF's images live in a cache)."""
    source = f.metadata.get("source")
    return isinstance(source, str) and inside(Path(source), root)


def _open(args, settings: Settings, *, create: bool = False) -> Store:
    return Store.open(
        args.db, create=create, lock_timeout=args.lock_timeout, timeout=settings.chroma_timeout
    )


def explain_search(args, store: Store, query: Query, model: str, first, out_dir: Path, words=None):
    """`evident search`'s second half (`agent.searching`): the evidence for the ranked
    hits `first` (a `SearchResult`), or when it is None the whole search, reranked if
    asked; `words` is the collection's lexical index, when the first stage built it."""
    settings = Settings()
    encoder = load_encoder(model, device=settings.device, offline=settings.offline)
    ctx = open_retrieval(store, args.collection, model=encoder, rerank=args.rerank, words=words)
    if first is None:
        return run_query(
            query, args.k, args.where, ctx=ctx, method=args.cam,
            explain_top=0 if args.cam == "none" else None, out_dir=out_dir,
        )  # fmt: skip
    explained = explain(
        query, first.hits, ctx=ctx, embedding=first.query_embedding, method=args.cam,
        out_dir=out_dir, fusion=dict(first.fusion),
    )  # fmt: skip
    return QueryResult(first, explained)


def cmd_collections(args) -> int:
    with _open(args, Settings()) as store:
        infos = [store.info(n) for n in sorted(store.collection_names())]
    if args.json:
        render.emit_json([i.to_dict() for i in infos])
    else:
        out.print(render.collections_table(args.db, infos))
    return 0
