"""`evident eval`: run a query suite against a collection and write the report.

For each query, in suite order:
- `search` mode: the first-stage search for the top `k`, then the product's explanation
  of the top `explain_top` hits (default heatmap method, regions, counterfactuals and
  curves, `tools.evidence.explain`) for its latency and the share of shown regions that pass the
  check; `ask` mode: the assistant's answer instead (its ranking, its `grounding`);
- for queries with target boxes, the localization of every method in `methods` on the
  relevant images themselves (`evident.eval.localize`).
Each query's results are appended to `out_dir/results.jsonl` as soon as they exist. The
file's first line holds the run's settings and their hash; a rerun with the same settings
skips the queries already there (a torn last line from a killed run is dropped), and a
rerun with other settings is refused rather than mixed in. The report (`evident.eval.report`) is
built from the file, so a resumed run reports every query.

Determinism: fixed seeds, suite order, per-(query, image) seeds for the random baseline;
on one machine two runs give the same report apart from `latency_ms`.
Not handled: reranking before the explanation, several collections in one run.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evident.eval.results_log import ResultsLog
from evident.eval.suite import SuiteQuery, load_suite, select
from evident.tools.errors import InputError, ModelLoadError

log = logging.getLogger(__name__)

Mode = Literal["search", "ask"]
RESULTS = "results.jsonl"
VERSION = 1


@dataclass(frozen=True)
class Report:
    """What one `run_eval` call produced: the report's content and files, and how many
    queries this call evaluated (the rest came from an earlier, interrupted run)."""

    data: dict
    files: tuple[Path, ...]
    evaluated: int
    seconds: float

    def to_dict(self) -> dict:
        return self.data | {"files": [str(f) for f in self.files], "evaluated": self.evaluated}


def check_methods(methods: Sequence[str] | None) -> list[str]:
    """The methods to compare, in the given order (default: every CAM method + baselines)."""
    from evident.eval.localize import known_methods

    known = known_methods()
    if methods is None:
        return known
    methods = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise InputError(
            f"unknown heatmap method(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"known: {', '.join(known)}."
        )
    return methods


def run_eval(
    suite: str | Path,
    *,
    db: str | Path,
    collection: str,
    encoder: str | None = None,
    methods: Sequence[str] | None = None,
    out_dir: str | Path,
    k: int = 10,
    explain_top: int = 5,
    mode: Mode = "search",
    resume: bool = True,
    progress: bool = False,
    images: str | Path | None = None,
    limit: int | None = None,
    per_query: int | None = 5,
    seed: int = 0,
    assistant: Any = None,
) -> Report:
    """Evaluate `suite` on `collection` and write report.json, report.md and plots.

    `encoder` is a spec (default: the collection's own); `images` is indexed into the
    collection first; `limit` takes a seeded sample of the queries; `per_query` caps the
    relevant images localized per query (None: all); `assistant` (ask mode) is any object
    with `ask(question, image=None, thread=None)` whose answer has `to_dict()`, default
    `evident.agent.Assistant` with the `none` LLM. Each query is asked in its own thread.
    """
    from evident.eval.per_query import CURVE_STEPS, RunContext, ask_record, search_record
    from evident.eval.report import build_report, write_report
    from evident.tools.encoders import load_encoder
    from evident.tools.store import Store

    started = time.perf_counter()
    queries = select(load_suite(suite), limit, seed)
    methods = check_methods(methods)
    _check_settings(k, explain_top, mode, per_query)
    out_dir = Path(out_dir)
    with Store.open(db, create=images is not None) as store:
        spec = encoder or _collection_model(store, collection, images)
        enc = load_encoder(spec)
        if images is not None:
            _index(images, store, enc, collection)
        count = store.images(collection, model=enc.spec, dim=enc.dim).count()
        config = {
            "version": VERSION, "suite": str(Path(suite).resolve()), "suite_sha256": _sha(suite),
            "limit": limit, "db": _where(db), "collection": collection,
            "collection_count": count, "encoder": enc.spec, "methods": methods, "k": k,
            "explain_top": explain_top, "mode": mode, "per_query": per_query, "seed": seed,
            "curve_steps": CURVE_STEPS,
        }  # fmt: skip
        results = ResultsLog(out_dir / RESULTS, config, resume=resume)
        todo = [q for q in queries if q.id not in results.records]
        suite_dir = Path(suite).resolve().parent
        ctx = RunContext(enc, methods, explain_top, per_query, seed, suite_dir)
        if mode == "search" and todo:
            ctx.search = _searcher(store, collection, enc, k)
            _loop(todo, lambda q: search_record(ctx, q), results, progress)
    if mode == "ask" and todo:  # the assistant opens the store itself: ours is closed
        with _assistant(assistant, db, collection, enc, k) as ctx.assistant:
            _loop(todo, lambda q: ask_record(ctx, q), results, progress)
    data = build_report(config, queries, results.records, default_method=_default(enc))
    files = write_report(data, results.records, out_dir)
    seconds = time.perf_counter() - started
    log.info("evaluated %d of %d queries in %.1f s", len(todo), len(queries), seconds)
    return Report(data, tuple(files), len(todo), seconds)


def _check_settings(k: int, explain_top: int, mode: str, per_query: int | None) -> None:
    if k < 10:
        raise InputError(f"k must be at least 10 (Recall@10 and nDCG@10 need 10 results), not {k}.")
    if not 0 <= explain_top <= k:
        raise InputError(f"explain_top must be between 0 and k={k}, not {explain_top}.")
    if mode not in ("search", "ask"):
        raise InputError(f"mode must be 'search' or 'ask', not {mode!r}.")
    if per_query is not None and per_query < 1:
        raise InputError(f"per_query must be at least 1 (or None for all), not {per_query}.")


def _collection_model(store, collection: str, images) -> str:
    if collection in store.collection_names():
        return store.model_of(collection)
    if images is None:
        store.images(collection)  # raises a StoreError that names the collections there
    raise ModelLoadError(
        f"collection {collection!r} does not exist yet: pass --model SPEC to index {str(images)!r}."
    )


def _index(images, store, encoder, collection: str) -> None:
    from evident.tools.ingest.images import discover
    from evident.tools.ingest.index import index_paths

    if not Path(images).is_dir():
        raise InputError(f"--images {str(images)!r} is not a folder.")
    text = None
    if any(f.caption for f in discover([images])):
        from evident.tools.text_embed import load_text_embedder

        text = load_text_embedder()
    report = index_paths(
        [images], store=store, encoder=encoder, collection=collection, text_embedder=text
    )
    log.info("indexed %s: %s", images, report.to_dict())


def _where(db) -> str:
    db = str(db)
    return db if db.startswith(("http://", "https://")) else str(Path(db).expanduser().resolve())


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _default(encoder) -> str:
    from evident.tools.evidence.heatmaps import default_method

    return default_method(encoder)


def _searcher(store, collection: str, encoder, k: int) -> Callable:
    from evident.tools.retrieve import search_images

    text = None
    if store.captions(collection) is not None:
        from evident.tools.text_embed import load_text_embedder

        text = load_text_embedder()

    def search(query):
        return search_images(
            query, k, store=store, collection=collection, encoder=encoder, text_embedder=text
        )

    return search


@contextmanager
def _assistant(given, db, collection: str, encoder, k: int) -> Iterator[Any]:
    """The given assistant, or `evident.agent.Assistant` with the `none` LLM on our encoder, no
    saved history, and its overlays in a temporary folder removed afterwards."""
    if given is not None:
        yield given
        return
    from evident.agent.assistant import Assistant

    with (
        tempfile.TemporaryDirectory(prefix="evident-eval-") as tmp,
        Assistant(
            db=str(db), model=encoder, llm="none", collection=collection,
            history=":memory:", out_dir=tmp, k=k,
        ) as assistant,
    ):  # fmt: skip
        yield assistant


def _loop(todo: list[SuiteQuery], run: Callable, results: ResultsLog, progress: bool) -> None:
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="eval", unit="query", file=sys.stderr)
    try:
        for q in todo:
            results.append(run(q))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def add_arguments(p) -> None:
    """The `evident eval` options beside the common --db/--collection/--model/--json/-v."""
    p.add_argument("suite", metavar="SUITE.jsonl", help="queries with relevant images")
    p.add_argument("--out", default="eval-out", help="folder for the report (default eval-out)")
    p.add_argument("--methods", help="heatmap methods, comma-separated (default: all + baselines)")
    p.add_argument("--images", metavar="DIR", help="index this folder into the collection first")
    p.add_argument("--mode", choices=("search", "ask"), default="search")
    p.add_argument("--k", type=int, default=10, help="results per query (at least 10)")
    p.add_argument("--explain-top", type=int, default=5, help="results explained per query")
    p.add_argument("--limit", type=int, help="evaluate a seeded sample of N queries")
    p.add_argument("--per-query", type=int, default=5, help="images localized per query (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="start over in --out")


def cmd_eval(args) -> int:
    """`evident eval`: run, then print a short summary (or the report JSON with --json)."""
    report = run_eval(
        args.suite,
        db=args.db,
        collection=args.collection,
        encoder=args.model,
        methods=args.methods.split(",") if args.methods else None,
        out_dir=args.out,
        k=args.k,
        explain_top=args.explain_top,
        mode=args.mode,
        resume=not args.no_resume,
        progress=not args.json,
        images=args.images,
        limit=args.limit,
        per_query=args.per_query or None,
        seed=args.seed,
    )
    if args.json:
        from evident.agent.cli import emit_json

        emit_json(report.to_dict())
        return 0
    from rich.console import Console

    data, err = report.data, Console(stderr=True)
    r = data["retrieval"]
    err.print(
        f"{data['n_queries']} queries ({report.evaluated} run now, {report.seconds:.0f} s): "
        f"R@1 {r['recall@1']:.3f}  R@5 {r['recall@5']:.3f}  P@5 {r['precision@5']:.3f}  "
        f"MRR {r['mrr']:.3f}  nDCG@10 {r['ndcg@10']:.3f}"
    )
    for method, values in data["localization"].items():
        if values["pointing_game"] is not None:
            err.print(f"  {method:<10} pointing game {values['pointing_game']:.3f}")
    err.print(f"report: {report.files[1]}", markup=False)
    return 0
