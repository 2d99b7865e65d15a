"""Real documentation figures, queried by what their authors wrote (`make test-docs`).

Needs Debian's python-skimage-doc and python-statsmodels-doc (the make target installs
them). The queries are written down in `data/doc_queries.jsonl` (built once by
`evident.eval.docs.doc_queries`: each page's first descriptive sentence, its figures as the
relevant images). Four setups on the same 532 figures: the image files alone, with the
words read in them, with their pages' text as captions, with both. The numbers go to
stdout and to `$EVIDENT_DOCS_OUT` (default: the test's tmp folder) as `docs_retrieval.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from evident.agent.config import ocr_cache
from evident.eval.docs import ROOTS, SETUPS, corpus, recall_with_interval
from evident.tools.encoders import load_encoder
from evident.tools.ingest.index import index_paths
from evident.tools.ingest.ocr import load_reader
from evident.tools.pipeline import open_retrieval, search
from evident.tools.records import Query
from evident.tools.specs import bundled_model
from evident.tools.store import Store
from evident.tools.text_embed import load_text_embedder

QUERIES = Path(__file__).parent / "data" / "doc_queries.jsonl"


@pytest.mark.docs
@pytest.mark.timeout(3600)
def test_words_lift_retrieval_of_real_figures(tmp_path):
    missing = [str(r) for r in ROOTS if not r.is_dir()]
    assert not missing, (
        f"install {missing}: apt-get install python-skimage-doc python-statsmodels-doc"
    )
    queries = [json.loads(line) for line in QUERIES.read_text().splitlines()]
    folders = corpus(tmp_path / "corpus")
    n = len(list(folders["plain"].glob("*.*")))
    encoder = load_encoder(bundled_model())
    text = load_text_embedder()
    reader = load_reader(cache=ocr_cache())
    results = {"figures": n, "queries": len(queries), "chance": round(10 / n, 4)}
    for name, (captioned, words) in SETUPS.items():
        folder = folders["captioned" if captioned else "plain"]
        with Store.open(tmp_path / "db", create=True) as store:
            collection = name.replace(" ", "").replace("+", "plus")
            index_paths(
                [folder], store=store, encoder=encoder, collection=collection,
                text_embedder=text, ocr="on" if words else "off", reader=reader,
            )  # fmt: skip
            ctx = open_retrieval(store, collection, model=encoder, text_embedder=text)
            ranked = [
                [Path(h.uri).name for h in search(Query(q["query"]), 10, ctx=ctx).hits]
                for q in queries
            ]
        found = recall_with_interval(ranked, queries)
        results[name] = found | {"x_chance": round(found["recall@10"] / results["chance"], 1)}
    out = Path(os.environ.get("EVIDENT_DOCS_OUT", tmp_path)) / "docs_retrieval.json"
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    image, words = results["image files"], results["+ words"]
    assert n >= 500 and len(queries) >= 150
    assert words["recall@10"] > image["recall@10"]
    assert results["+ both"]["recall@10"] >= results["+ page text"]["recall@10"]
    assert words["x_chance"] >= 10
