"""Candidate lists for learning to rank, from a figure set, and the comparison run.

`python -m evident.eval.ltr_data FIGURES_DIR --model SPEC` indexes the fit split's and the test
split's images (one collection each, images only: the figure set writes no caption
sidecars, so the caption feature is absent and its weight stays 0), runs each suite
query through the first stage (`search_images`, top `--k`), computes the features of
`evident.tools.fusion` for every candidate and prints `compare_fusion`'s report as JSON;
`--save-fusion FILE` writes the fitted weights for `evident search --rerank learned:FILE`.

Crop embeddings do not depend on the query, so each image's views are embedded once
per run and cached; only the heatmaps are computed per query. `--cam none` leaves the
concentration feature out (much faster on a CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evident.eval.ltr import CandidateList, compare_fusion
from evident.eval.suite import load_suite, select
from evident.tools.encoders import load_encoder
from evident.tools.errors import EvidentError
from evident.tools.evidence.heatmaps import compute_heatmaps
from evident.tools.fusion import FEATURES, Fusion, candidate_features, view_embeddings
from evident.tools.ingest.images import read_image
from evident.tools.ingest.index import index_paths
from evident.tools.records import Query
from evident.tools.rerank import MultiScaleReranker
from evident.tools.retrieve import search_images
from evident.tools.store import Store

log = logging.getLogger(__name__)


def build_lists(
    queries: Sequence, search: Callable, encoder: Any, *, cam: str | None = None
) -> list[CandidateList]:
    """One `CandidateList` per suite query (`eval.suite.SuiteQuery`), first stage by `search`."""

    cache: dict[str, np.ndarray] = {}
    lists = []
    for n, q in enumerate(queries, 1):
        result = search(Query(text=q.text, image=q.image))
        hits = list(result.hits)
        images = [read_image(Path(h.uri)) for h in hits]
        new = [i for i, h in enumerate(hits) if h.uri not in cache]
        embedded = view_embeddings(encoder, [images[i] for i in new], MultiScaleReranker.crop_sides)
        cache.update({hits[i].uri: e for i, e in zip(new, embedded, strict=True)})
        maps = None
        if cam != "none" and hits:
            maps = compute_heatmaps(encoder, images, result.query_embedding, method=cam).maps
        features = candidate_features(
            result.query_embedding, hits, [cache[h.uri] for h in hits], maps
        )
        relevant = {q.paths.get(r, r) for r in q.relevant}
        rel = np.array([h.uri in relevant for h in hits], dtype=np.float64)
        lists.append(
            CandidateList(q.text or q.image or q.id, features, rel, len(relevant), q.level)
        )
        if n % 50 == 0:
            log.info("features for %d/%d queries", n, len(queries))
    return lists


def run_comparison(
    figures_dir: Path,
    *,
    model: str,
    db: Path,
    k: int = 20,
    cam: str | None = None,
    fit_split: str = "train",
    test_split: str = "test",
    limit: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Index both splits, build their candidate lists, fit on one, compare on the other."""

    figures_dir = Path(figures_dir)
    encoder = load_encoder(model)
    lists = {}
    with Store.open(db, create=True) as store:
        for split in (fit_split, test_split):
            collection = f"ltr-{split}"
            index_paths([figures_dir / "images" / split], store=store, encoder=encoder,
                        collection=collection)  # fmt: skip
            queries = select(load_suite(figures_dir / f"{split}.jsonl"), limit, seed)

            def search(query, collection=collection):
                return search_images(query, k, store=store, collection=collection, encoder=encoder)

            lists[split] = build_lists(queries, search, encoder, cam=cam)
    report = compare_fusion(lists[fit_split], lists[test_split], seed=seed)
    report["settings"] = {
        "figures": str(figures_dir), "model": encoder.spec, "k": k, "cam": cam or "default",
        "fit_split": fit_split, "test_split": test_split, "limit": limit, "seed": seed,
    }  # fmt: skip
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evident.eval.ltr_data", description=__doc__.split("\n")[0]
    )
    p.add_argument("figures_dir", type=Path, metavar="FIGURES_DIR")
    p.add_argument("--model", required=True, help="encoder spec, e.g. local-dir:/path")
    p.add_argument("--db", type=Path, help="Chroma folder (default: a temporary one)")
    p.add_argument("--k", type=int, default=20, help="candidates per query")
    p.add_argument("--cam", default=None, help="heatmap method (default: the model's; none)")
    p.add_argument("--fit-split", default="train", choices=("train", "val"))
    p.add_argument("--limit", type=int, default=None, help="queries per split (seeded sample)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the report here")
    p.add_argument(
        "--save-fusion", type=Path, metavar="FILE",
        help="write the fitted weights here, for `evident search --rerank learned:FILE`",
    )  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    try:
        with tempfile.TemporaryDirectory(prefix="evident-ltr-") as tmp:
            report = run_comparison(
                args.figures_dir, model=args.model, db=args.db or Path(tmp) / "db", k=args.k,
                cam=args.cam, fit_split=args.fit_split, limit=args.limit, seed=args.seed,
            )  # fmt: skip
    except EvidentError as exc:
        sys.stderr.write(f"evident: error: {exc}\n")
        return 2
    text = json.dumps(report, indent=2)
    if args.save_fusion:
        fitted = report["fusion"]
        Fusion(
            np.array([fitted["weights"][name] for name in FEATURES]),
            np.array(fitted["mean"]),
            np.array(fitted["std"]),
        ).save(args.save_fusion)
    if args.out:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
