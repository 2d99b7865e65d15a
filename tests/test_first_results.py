"""`evident search` prints its ranked results before torch loads: the query's vectors from
numpy MiniLM (`tools.minilm`) equal the torch ones, the quick first stage ranks as the
full search does, and the CLI shows the ranking first, then the evidence."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from evident.agent.cli import main
from evident.eval.figures.generate import generate_figures, write_captions
from evident.tools.errors import InputError, ModelLoadError
from evident.tools.minilm import MiniLM, QueryTextEmbedder, minilm, query_encoder
from evident.tools.pipeline import open_retrieval, search
from evident.tools.records import Query
from evident.tools.retrieve import quick_search
from evident.tools.specs import bundled_model
from evident.tools.store import Store
from evident.tools.text_embed import load_text_embedder

TEXTS = [
    "a bar chart with a legend",
    "Modified Struve functions &amp; ÄÖ x² — «quoted»",  # entities, accents, symbols
    "  spaced\tout\n words  ",
    "",
    "halflogistic pdf | frozen pdf " * 40,  # past both truncation lengths (128, 256)
]


@pytest.fixture(scope="module")
def figures_db(tmp_path_factory, bundled_encoder):
    root = tmp_path_factory.mktemp("first")
    generate_figures(root / "figures", 16, seed=5, workers=1)
    write_captions(root / "figures")
    db = root / "db"
    argv = ["index", str(root / "figures" / "images"), "--db", str(db), "--ocr", "off"]
    assert main([*argv, "--json"]) == 0
    return db


def test_numpy_minilm_gives_the_torch_vectors(bundled_encoder):
    quick = query_encoder(bundled_model())
    assert (
        quick is not None
        and quick.spec == bundled_encoder.spec
        and quick.dim == bundled_encoder.dim
    )
    np.testing.assert_allclose(
        quick.encode_texts(TEXTS), bundled_encoder.encode_texts(TEXTS), atol=1e-5
    )
    ours = QueryTextEmbedder(minilm()).encode(TEXTS)
    np.testing.assert_allclose(ours, load_text_embedder().encode(TEXTS), atol=1e-5)
    with pytest.raises(InputError):
        quick.encode_images([])


def test_models_without_a_minilm_tower_take_the_full_path(tmp_path):
    assert query_encoder("random:evident-tiny-vit") is None


def test_quick_first_stage_ranks_as_the_full_search(figures_db, bundled_encoder):
    with Store.open(figures_db) as store:
        ctx = open_retrieval(store, "images", model=bundled_encoder)
        for text in ("a bar chart with a legend", "a pie chart", "a scatter plot with a log axis"):
            full = search(Query(text), 8, ctx=ctx)
            quick = quick_search(Query(text), 8, store=store, collection="images",
                                 model=bundled_encoder.spec)  # fmt: skip
            assert quick.scoring == full.scoring == "hybrid"  # image and caption signals
            assert [h.id for h in quick.hits] == [h.id for h in full.hits]
            np.testing.assert_allclose([h.score for h in quick.hits],
                                       [h.score for h in full.hits], atol=1e-5)  # fmt: skip
        image = Query(image=full.hits[0].uri)
        assert (
            quick_search(image, 3, store=store, collection="images", model=bundled_encoder.spec)
            is None
        )


def test_the_cli_ranks_without_torch_when_no_evidence_is_asked(figures_db):
    code = (
        "import sys; from evident.agent.cli import main; "
        f"main(['search', 'a pie chart', '--db', {str(figures_db)!r}, '--cam', 'none', "
        "'--json']); "
        "print(sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules), "
        "file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "[]"  # nothing heavy was imported
    results = json.loads(out.stdout)["results"]
    assert results[0]["metadata"]["kind"] == "pie"
    assert all(r["regions"] == [] and r["heatmap"] is None for r in results)


def test_the_cli_prints_the_ranking_then_the_evidence(figures_db, capsys):
    argv = ["search", "a bar chart with a legend", "--db", str(figures_db), "--k", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.index("caption") < out.index("evidence (contribution)") < out.index("overlay")
    assert main([*argv, "--json"]) == 0  # the same ranking in the JSON, explained
    data = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in data["results"]] == [1, 2, 3]
    assert all(r["heatmap"] for r in data["results"]) and data["scoring"] == "hybrid"


def test_the_cli_says_when_the_image_side_did_not_count(figures_db, capsys):
    """A sentence from outside the figure model's domain ranks by the captions alone, and
    the table says so; a chart query does not get the note."""
    argv = ["search", "--db", str(figures_db), "--k", "3", "--cam", "none"]
    assert main([*argv, "boil the pasta in salted water"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "image signal not counted: its best match" in out and "is below the model's" in out
    assert main([*argv, "a pie chart"]) == 0
    assert "image signal" not in capsys.readouterr().out


def test_a_missing_or_broken_minilm_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load all-MiniLM-L6-v2"):
        MiniLM(tmp_path / "nowhere")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot load all-MiniLM-L6-v2"):
        MiniLM(tmp_path)
