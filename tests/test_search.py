"""Search quality with the bundled figure model on figures it never saw, hybrid scoring,
filters, error paths."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from evident.agent.cli import main
from evident.eval.figures.generate import generate_figures
from evident.eval.scenes import make_scenes
from evident.tools.errors import InputError, StoreError
from evident.tools.ingest.index import index_paths
from evident.tools.records import Query
from evident.tools.retrieve import search_images
from evident.tools.specs import BUNDLED, MODELS_DIR, WEIGHTS_FILE
from evident.tools.store import Store
from tests.conftest import write_scenes


def _figures(root, n, seed):
    """`n` rendered figures of a seed training never used, all in one split, and the
    generator's records of them (their kind) and chart-type queries."""
    generate_figures(root, n, seed=seed, splits=(0.0, 0.0, 1.0), workers=1)
    records = [json.loads(line) for line in (root / "figures.jsonl").open()]
    queries = [json.loads(line) for line in (root / "test.jsonl").open()]
    kinds = {str(root / r["image"]): r["kind"] for r in records}
    types = [(q["query"], {str(root / p) for p in q["relevant"]}) for q in queries
             if q["level"] == "type"]  # fmt: skip
    return kinds, types


@pytest.fixture(scope="module")
def collection(tmp_path_factory, bundled_encoder):
    """60 held-out figures, indexed from their image files alone (no captions)."""
    root = tmp_path_factory.mktemp("search")
    kinds, types = _figures(root / "figs", 60, seed=123)
    with Store.open(root / "db", create=True) as store:
        index_paths([root / "figs" / "images"], store=store, encoder=bundled_encoder,
                    collection="images", ocr="off")  # fmt: skip
    return root / "db", kinds, types


def _ranked(db, encoder, query, k):
    with Store.open(db) as store:
        hits = search_images(query, k, store=store, collection="images", encoder=encoder).hits
    return [h.uri for h in hits]


def test_text_search_ranks_the_right_images_first(collection, bundled_encoder):
    """ "a pie chart" and the like: chance is about 1/10 at every rank."""
    db, _, types = collection
    firsts, r_precisions = [], []
    for text, relevant in types:
        ranked = _ranked(db, bundled_encoder, Query(text), len(relevant))
        firsts.append(ranked[0] in relevant)
        r_precisions.append(len(set(ranked) & relevant) / len(relevant))
    assert len(types) >= 8
    assert np.mean(firsts) >= 0.9, list(zip(types, firsts, strict=True))
    assert np.mean(r_precisions) >= 0.8, r_precisions


def test_image_query_finds_the_same_kind_of_image(collection, bundled_encoder, tmp_path):
    db, kinds, _ = collection
    probes, _ = _figures(tmp_path / "probe", 12, seed=999)
    same = [
        np.mean([kinds[u] == kind for u in _ranked(db, bundled_encoder, Query(image=path), 3)])
        for path, kind in probes.items()
    ]
    assert np.mean(same) >= 0.8, same


def test_hybrid_scoring_uses_captions(tmp_path, bundled_encoder, text_embedder):
    scenes = make_scenes(24, seed=7)
    write_scenes(tmp_path / "imgs", scenes, captions=True)
    (tmp_path / "imgs" / "scene_0005.txt").write_text("the quarterly sales figure for Lisbon")
    with Store.open(tmp_path / "db", create=True) as store:
        index_paths(
            [tmp_path / "imgs"],
            store=store,
            encoder=bundled_encoder,
            collection="images",
            text_embedder=text_embedder,
        )
        res = search_images(
            Query("Lisbon sales"),
            3,
            store=store,
            collection="images",
            encoder=bundled_encoder,
            text_embedder=text_embedder,
        )
    assert res.hits[0].uri.endswith("scene_0005.png")
    assert set(res.hits[0].scores) == {"image", "caption"}
    assert res.scoring.startswith("hybrid")
    assert [h.rank for h in res.hits] == [1, 2, 3]
    assert res.hits[0].score >= res.hits[1].score >= res.hits[2].score


def test_where_filter_restricts_results(tmp_path, tiny_encoder):
    scenes = make_scenes(10, seed=8)
    paths = write_scenes(tmp_path / "imgs", scenes)
    for i, p in enumerate(paths):
        p.with_suffix(".json").write_text(json.dumps({"kind": "even" if i % 2 == 0 else "odd"}))
    with Store.open(tmp_path / "db", create=True) as store:
        index_paths([tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images")
        hits = search_images(
            Query("x"), 10, {"kind": "odd"}, store=store, collection="images", encoder=tiny_encoder
        ).hits
    assert len(hits) == 5 and all(h.metadata["kind"] == "odd" for h in hits)


def test_search_error_paths(tmp_path, tiny_encoder):
    with Store.open(tmp_path / "db", create=True) as store:
        store.ensure("images", model=tiny_encoder.spec, dim=tiny_encoder.dim)
        kw = {"store": store, "collection": "images", "encoder": tiny_encoder}
        with pytest.raises(StoreError, match="is empty"):
            search_images(Query("x"), **kw)
        with pytest.raises(InputError, match="k must be a whole number from 1 to"):
            search_images(Query("x"), 0, **kw)
        with pytest.raises(InputError, match="needs words, an image"):
            search_images(Query(), 3, **kw)


def cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exited:  # argparse refused the arguments
        code = exited.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_index_and_search_json_schema(tmp_path, capsys):
    write_scenes(tmp_path / "imgs", make_scenes(12, seed=9))
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n")
    db = str(tmp_path / "db")
    model = "bundled:evident-figures"
    code, out, _ = cli(
        capsys, "index", str(tmp_path / "imgs"), "--db", db, "--model", model, "--ocr", "off",
        "--json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert report["indexed"] == 12 and report["unchanged"] == 0
    assert report["skipped"][0]["path"].endswith("broken.png") and report["skipped"][0]["reason"]
    assert report["collection"] == "images" and report["model"] == model
    code, out, _ = cli(capsys, "search", "a red circle", "--db", db, "--k", "3", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["query"] == {"text": "a red circle", "image": None}
    assert res["model"] == model and res["collection"] == "images"
    assert [r["rank"] for r in res["results"]] == [1, 2, 3]
    assert {"id", "uri", "score", "caption"} <= set(res["results"][0])
    assert set(res["timings_ms"]) >= {"encode_query", "search"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "x", "--db", "{tmp}/none"], "no evident database at"),
        (["search", "x", "--db", "{db}", "--collection", "other"], "no collection 'other'"),
        (["search", "--image", "{tmp}/missing.png", "--db", "{db}"], "--image: no such file"),
        (["search", "x", "--db", "{db}", "--where", "[1]"], "--where: must be a JSON object"),
        (["search", "x", "--db", "{db}", "--where", '{"$bogus": 1}'], "invalid --where filter"),
        (["search", "--db", "{db}"], "give words to search for"),
        (
            ["search", "x", "--db", "{db}", "--model", "random:evident-tiny-rn"],
            "indexed with encoder",
        ),
        (["index", "{tmp}/nothing-here", "--db", "{db}"], "no such file or folder"),
        (["index", "{tmp}", "--db", "{tmp}/fresh", "--model", "bundled:nope"], "no bundled model"),
        (["search", "x", "--db", "{db}", "--k", "0"], "--k: must be from 1 to 1000"),
        (["search", "x", "--db", "http://127.0.0.1:9"], "cannot reach a Chroma server"),
    ],
)
def test_cli_errors_are_one_clear_line(tmp_path, capsys, tiny_encoder, argv, message):
    db = tmp_path / "db"
    write_scenes(tmp_path / "imgs", make_scenes(2, seed=10))
    with Store.open(db, create=True) as store:
        index_paths([tmp_path / "imgs"], store=store, encoder=tiny_encoder, collection="images")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{db}", str(db)) for a in argv]
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and out == ""


def test_index_without_a_model_uses_the_bundled_figure_model(tmp_path, capsys):
    write_scenes(tmp_path / "imgs", make_scenes(3, seed=12))
    db = str(tmp_path / "db")
    code, out, _ = cli(capsys, "index", str(tmp_path / "imgs"), "--db", db, "--json")
    assert code == 0 and json.loads(out)["model"] == "bundled:evident-figures"


def test_a_bundled_collection_older_than_recorded_versions_is_refused(tmp_path, capsys):
    """A collection indexed with the bundled model before collections recorded a
    fingerprint was made by an earlier bundled model (it has been retrained since): search
    refuses with one line instead of mixing its vectors with this model's."""
    write_scenes(tmp_path / "imgs", make_scenes(2, seed=22))
    db = str(tmp_path / "db")
    assert cli(capsys, "index", str(tmp_path / "imgs"), "--db", db, "--ocr", "off")[0] == 0
    with Store.open(tmp_path / "db") as store:
        images = store.client.get_collection("images", embedding_function=None)
        meta = dict(images.metadata)
        del meta["evident_weights"]
        images.modify(metadata=meta)  # as an index from before fingerprints left it
    code, out, err = cli(capsys, "search", "a red circle", "--db", db, "--cam", "none")
    assert code == 2 and "earlier version of 'bundled:evident-figures'" in err
    assert "Traceback" not in err and out == ""


def test_a_collection_from_another_version_of_the_model_is_refused(tmp_path, capsys):
    """Same spec, new weights (an upgraded bundled model, a retrained local-dir one): the
    stored vectors no longer match the model's, so search and indexing refuse with one
    line, on the quick first stage and the full path alike."""
    folder = tmp_path / "model"
    shutil.copytree(MODELS_DIR / BUNDLED, folder)
    spec = f"local-dir:{folder}"
    write_scenes(tmp_path / "imgs", make_scenes(3, seed=21))
    db = str(tmp_path / "db")
    index = ["index", str(tmp_path / "imgs"), "--db", db, "--model", spec, "--ocr", "off"]
    assert cli(capsys, *index)[0] == 0
    assert cli(capsys, "search", "a red circle", "--db", db, "--cam", "none")[0] == 0
    state = load_file(str(folder / WEIGHTS_FILE))  # a new version at the same place
    state["visual.proj"] = state["visual.proj"] * 1.01
    save_file(state, str(folder / WEIGHTS_FILE))
    image = str(tmp_path / "imgs" / "scene_0000.png")
    for argv in (["search", "a red circle", "--db", db, "--cam", "none"],
                 ["search", "--image", image, "--db", db], index):  # fmt: skip
        code, out, err = cli(capsys, *argv)
        assert code == 2 and "another version of" in err and "Traceback" not in err, argv
    argv = [*index, "--collection", "again"]
    assert cli(capsys, *argv)[0] == 0  # a new collection is indexed with the new weights
