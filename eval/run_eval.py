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
Not handled: several collections in one run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evident.eval.baselines import BASELINES
from evident.eval.localize import known_methods
from evident.eval.per_query import CURVE_STEPS, RunContext, ask_record, search_record
from evident.eval.report import build_report
from evident.eval.report_md import write_report
from evident.eval.results_log import ResultsLog
from evident.eval.sanity import LEVELS, randomized
from evident.eval.suite import SuiteQuery, load_suite, select
from evident.tools.encoders import load_encoder
from evident.tools.errors import InputError, ModelLoadError
from evident.tools.evidence.heatmaps import default_method
from evident.tools.ingest.images import discover
from evident.tools.ingest.index import index_paths
from evident.tools.limits import CHROMA_TIMEOUT
from evident.tools.pipeline import open_retrieval
from evident.tools.store import Store
from evident.tools.text_embed import load_text_embedder

log = logging.getLogger(__name__)

Mode = Literal["search", "ask"]
RESULTS = "results.jsonl"
VERSION = 5  # 2: capped precision per query, stemmed words, gated image side; 3: 15 px pointing;
# 4: colour regions; 5: pointing on the ink (and on the patches alone)


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
    rerank: str | None = None,
    resume: bool = True,
    images: str | Path | None = None,
    limit: int | None = None,
    per_query: int | None = 5,
    seed: int = 0,
    assistant: Any = None,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
    store_timeout: float = CHROMA_TIMEOUT,
) -> Report:
    """Evaluate `suite` on `collection` and write report.json, report.md and plots.

    `encoder` is a spec (default: the collection's own); `images` is indexed into the
    collection first; `limit` takes a seeded sample of the queries; `per_query` caps the
    relevant images localized per query (None: all); `rerank` names the reranker search
    mode uses (`tools.pipeline.make_reranker`). Ask mode needs an `assistant`: any object
    with `ask(question, image=None, thread=None)` whose answer has `to_dict()` (the CLI
    passes `evident.agent.Assistant`); each query is asked in its own thread.
    `progress(1)` is called after each query, `total(n)` once with the number to run.
    `store_timeout` is the seconds a Chroma server may take per request.
    """
    started = time.perf_counter()
    queries = select(load_suite(suite), limit, seed)
    methods = check_methods(methods)
    _check_settings(k, explain_top, mode, per_query)
    if mode == "ask" and assistant is None:
        raise InputError("ask mode needs an assistant to ask (the CLI passes evident's own)")
    out_dir = Path(out_dir)
    with Store.open(db, create=images is not None, timeout=store_timeout) as store:
        spec = encoder or _collection_model(store, collection, images)
        enc = load_encoder(spec)
        # the randomization test, for the methods that explain the model (`eval.sanity`)
        sanity = list(LEVELS) if any(m not in BASELINES for m in methods) else []
        if images is not None:
            _index(images, store, enc, collection)
        count = store.images(collection, model=enc.spec, dim=enc.dim).count()
        config = {
            "version": VERSION, "suite": str(Path(suite).resolve()), "suite_sha256": _sha(suite),
            "limit": limit, "db": _where(db), "collection": collection,
            "collection_count": count, "encoder": enc.spec, "methods": methods, "k": k,
            "explain_top": explain_top, "mode": mode, "rerank": rerank, "per_query": per_query,
            "seed": seed, "curve_steps": CURVE_STEPS, "sanity": sanity,
            "llm": getattr(assistant, "llm_name", None) if mode == "ask" else None,
        }  # fmt: skip
        results = ResultsLog(out_dir / RESULTS, config, resume=resume)
        todo = [q for q in queries if q.id not in results.records]
        if total is not None:
            total(len(todo))
        suite_dir = Path(suite).resolve().parent
        ctx = RunContext(enc, methods, k, explain_top, per_query, seed, suite_dir)
        if todo:
            ctx.randomized = {lv: randomized(enc, LEVELS[lv], seed=seed) for lv in sanity}
        if mode == "search" and todo:
            ctx.retrieval = open_retrieval(store, collection, model=enc, rerank=rerank)
            _loop(todo, lambda q: search_record(ctx, q), results, progress)
    if mode == "ask" and todo:  # the assistant opens the store itself: ours is closed
        ctx.assistant = assistant
        _loop(todo, lambda q: ask_record(ctx, q), results, progress)
    data = build_report(config, queries, results.records, default_method=default_method(enc))
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

    if not Path(images).is_dir():
        raise InputError(f"--images {str(images)!r} is not a folder.")
    text = None
    if any(getattr(f, "caption", None) for f in discover([images])):  # Skipped ones have none
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


def _loop(todo: list[SuiteQuery], run: Callable, results: ResultsLog, progress) -> None:
    for q in todo:
        results.append(run(q))
        if progress is not None:
            progress(1)
